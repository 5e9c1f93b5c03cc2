"""Example values for the lists that Home Assistant's intent templates leave open.

At run time Home Assistant fills ``{name}``, ``{area}`` and ``{floor}`` from the user's own
home, and wildcards (``{search_query}``, ``{shopping_list_item}``, ...) take any words. To
turn templates into training sentences we need stand-ins; these are small, hand-written
and plain text (no template syntax). Languages without a table use the English one.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

_EN_NAMES: dict[str, list[str]] = {
    "light": [
        "ceiling light",
        "desk lamp",
        "floor lamp",
        "porch light",
        "night light",
        "reading lamp",
        "led strip",
    ],
    "switch": ["coffee maker", "power strip", "christmas tree", "kettle", "wall outlet"],
    "fan": ["ceiling fan", "desk fan", "bathroom fan"],
    "media_player": ["tv", "kitchen speaker", "soundbar", "radio", "stereo"],
    "input_boolean": ["guest mode", "vacation mode", "party mode"],
    "climate": ["thermostat", "air conditioner", "heat pump"],
    "cover": ["garage door", "living room blinds", "bedroom curtains", "patio shutters", "awning"],
    "valve": ["water valve", "sprinkler valve", "gas valve"],
    "lock": ["front door", "back door", "garage lock", "side gate"],
    "scene": ["movie night", "good morning", "dinner time", "relax"],
    "script": ["bedtime routine", "wake up", "leave home"],
    "binary_sensor": ["front door sensor", "motion sensor", "window sensor", "smoke detector"],
    "sensor": ["outdoor temperature", "humidity", "power usage", "air quality"],
    "person": ["alice", "bob", "maria", "john"],
    "weather": ["forecast", "home"],
    "vacuum": ["robot vacuum", "roomba"],
    "lawn_mower": ["lawn mower", "robot mower"],
    "todo": ["shopping list", "groceries", "chores"],
    "button": ["doorbell", "restart button"],
}

_EN_WILDCARDS: dict[str, list[str]] = {
    "timer_name": ["pizza", "pasta", "laundry", "tea", "eggs", "oven"],
    "timer_command": ["turn off the lights", "open the blinds", "turn on the fan"],
    "search_query": [
        "jazz",
        "the beatles",
        "relaxing music",
        "the news",
        "abbey road",
        "taylor swift",
    ],
    "todo_list_item": ["call mom", "pay the bills", "water the plants", "book the dentist"],
    "shopping_list_item": ["milk", "eggs", "bread", "apples", "coffee", "butter"],
    "zone": ["home", "work", "school", "the gym"],
    "message": ["dinner is ready", "time to go", "the laundry is done", "welcome home"],
}


@dataclass(frozen=True)
class _Table:
    areas: list[str]
    floors: list[str]
    names: list[str]  # generic device names, used when no per-domain list exists
    wildcards: dict[str, list[str]] = field(default_factory=dict)
    domain_names: dict[str, list[str]] = field(default_factory=dict)


_TABLES: dict[str, _Table] = {
    "en": _Table(
        areas=[
            "kitchen",
            "living room",
            "bedroom",
            "bathroom",
            "office",
            "garage",
            "hallway",
            "dining room",
            "basement",
            "garden",
        ],
        floors=["ground floor", "first floor", "second floor", "upstairs", "downstairs", "attic"],
        names=sorted({n for names in _EN_NAMES.values() for n in names}),
        wildcards=_EN_WILDCARDS,
        domain_names=_EN_NAMES,
    ),
    "de": _Table(
        areas=[
            "Küche",
            "Wohnzimmer",
            "Schlafzimmer",
            "Badezimmer",
            "Büro",
            "Garage",
            "Flur",
            "Esszimmer",
            "Keller",
            "Garten",
        ],
        floors=["Erdgeschoss", "Obergeschoss", "Dachgeschoss", "Keller"],
        names=[
            "Deckenlampe",
            "Stehlampe",
            "Schreibtischlampe",
            "Ventilator",
            "Fernseher",
            "Heizung",
            "Rollladen",
            "Haustür",
            "Kaffeemaschine",
            "Lautsprecher",
        ],
        wildcards={
            "timer_name": ["Pizza", "Nudeln", "Wäsche", "Tee", "Eier"],
            "search_query": ["Jazz", "die Beatles", "entspannende Musik", "Nachrichten"],
            "shopping_list_item": ["Milch", "Eier", "Brot", "Äpfel", "Kaffee", "Butter"],
            "todo_list_item": ["Mama anrufen", "Rechnungen bezahlen", "Blumen gießen"],
            "zone": ["Zuhause", "Arbeit", "Schule"],
            "message": ["das Essen ist fertig", "wir müssen los", "die Wäsche ist fertig"],
            "timer_command": ["mach das Licht aus", "öffne die Rollläden"],
        },
    ),
    "fr": _Table(
        areas=[
            "cuisine",
            "salon",
            "chambre",
            "salle de bain",
            "bureau",
            "garage",
            "couloir",
            "salle à manger",
            "cave",
            "jardin",
        ],
        floors=["rez-de-chaussée", "premier étage", "deuxième étage", "grenier"],
        names=[
            "plafonnier",
            "lampe de bureau",
            "lampadaire",
            "ventilateur",
            "télé",
            "chauffage",
            "volet",
            "porte d'entrée",
            "cafetière",
            "enceinte",
        ],
        wildcards={
            "timer_name": ["pizza", "pâtes", "lessive", "thé", "œufs"],
            "search_query": ["jazz", "les beatles", "musique relaxante", "les infos"],
            "shopping_list_item": ["lait", "œufs", "pain", "pommes", "café", "beurre"],
            "todo_list_item": ["appeler maman", "payer les factures", "arroser les plantes"],
            "zone": ["maison", "travail", "école"],
            "message": ["le dîner est prêt", "il faut partir", "la lessive est finie"],
            "timer_command": ["éteins la lumière", "ouvre les volets"],
        },
    ),
    "es": _Table(
        areas=[
            "cocina",
            "salón",
            "dormitorio",
            "baño",
            "oficina",
            "garaje",
            "pasillo",
            "comedor",
            "sótano",
            "jardín",
        ],
        floors=["planta baja", "primer piso", "segundo piso", "ático"],
        names=[
            "lámpara de techo",
            "lámpara de escritorio",
            "ventilador",
            "televisión",
            "calefacción",
            "persiana",
            "puerta principal",
            "cafetera",
            "altavoz",
        ],
        wildcards={
            "timer_name": ["pizza", "pasta", "colada", "té", "huevos"],
            "search_query": ["jazz", "los beatles", "música relajante", "las noticias"],
            "shopping_list_item": ["leche", "huevos", "pan", "manzanas", "café", "mantequilla"],
            "todo_list_item": ["llamar a mamá", "pagar las facturas", "regar las plantas"],
            "zone": ["casa", "trabajo", "colegio"],
            "message": ["la cena está lista", "hay que irse", "la colada está lista"],
            "timer_command": ["apaga la luz", "abre las persianas"],
        },
    ),
    "it": _Table(
        areas=[
            "cucina",
            "soggiorno",
            "camera da letto",
            "bagno",
            "ufficio",
            "garage",
            "corridoio",
            "sala da pranzo",
            "cantina",
            "giardino",
        ],
        floors=["piano terra", "primo piano", "secondo piano", "soffitta"],
        names=[
            "lampadario",
            "lampada da scrivania",
            "ventilatore",
            "televisore",
            "riscaldamento",
            "tapparella",
            "porta d'ingresso",
            "macchina del caffè",
            "altoparlante",
        ],
        wildcards={
            "timer_name": ["pizza", "pasta", "bucato", "tè", "uova"],
            "search_query": ["jazz", "i beatles", "musica rilassante", "il telegiornale"],
            "shopping_list_item": ["latte", "uova", "pane", "mele", "caffè", "burro"],
            "todo_list_item": ["chiamare la mamma", "pagare le bollette", "annaffiare le piante"],
            "zone": ["casa", "lavoro", "scuola"],
            "message": ["la cena è pronta", "bisogna andare", "il bucato è finito"],
            "timer_command": ["spegni la luce", "apri le tapparelle"],
        },
    ),
    "nl": _Table(
        areas=[
            "keuken",
            "woonkamer",
            "slaapkamer",
            "badkamer",
            "kantoor",
            "garage",
            "gang",
            "eetkamer",
            "kelder",
            "tuin",
        ],
        floors=["begane grond", "eerste verdieping", "tweede verdieping", "zolder"],
        names=[
            "plafondlamp",
            "bureaulamp",
            "staande lamp",
            "ventilator",
            "tv",
            "verwarming",
            "rolluik",
            "voordeur",
            "koffiezetapparaat",
            "speaker",
        ],
        wildcards={
            "timer_name": ["pizza", "pasta", "was", "thee", "eieren"],
            "search_query": ["jazz", "de beatles", "ontspannende muziek", "het nieuws"],
            "shopping_list_item": ["melk", "eieren", "brood", "appels", "koffie", "boter"],
            "todo_list_item": ["mama bellen", "rekeningen betalen", "planten water geven"],
            "zone": ["thuis", "werk", "school"],
            "message": ["het eten is klaar", "we moeten gaan", "de was is klaar"],
            "timer_command": ["doe het licht uit", "open de rolluiken"],
        },
    ),
    "pt": _Table(
        areas=[
            "cozinha",
            "sala",
            "quarto",
            "casa de banho",
            "escritório",
            "garagem",
            "corredor",
            "sala de jantar",
            "cave",
            "jardim",
        ],
        floors=["rés-do-chão", "primeiro andar", "segundo andar", "sótão"],
        names=[
            "candeeiro de teto",
            "candeeiro de secretária",
            "ventoinha",
            "televisão",
            "aquecimento",
            "estore",
            "porta da frente",
            "máquina de café",
            "coluna",
        ],
        wildcards={
            "timer_name": ["pizza", "massa", "roupa", "chá", "ovos"],
            "search_query": ["jazz", "os beatles", "música relaxante", "as notícias"],
            "shopping_list_item": ["leite", "ovos", "pão", "maçãs", "café", "manteiga"],
            "todo_list_item": ["ligar à mãe", "pagar as contas", "regar as plantas"],
            "zone": ["casa", "trabalho", "escola"],
            "message": ["o jantar está pronto", "temos de ir", "a roupa está pronta"],
            "timer_command": ["apaga a luz", "abre os estores"],
        },
    ),
}

# Used for intents whose responses are all full Jinja programs (they need live state).
ENGLISH_REPLIES: dict[str, str] = {
    "HassClimateGetTemperature": "It is 21 degrees.",
    "HassGetWeather": "18 degrees and partly cloudy.",
    "HassGetCurrentTime": "It is 10:30 AM.",
    "HassGetCurrentDate": "Today is June 3rd.",
    "HassGetState": "The front door is closed.",
    "HassStartTimer": "Timer set for 5 minutes.",
    "HassIncreaseTimer": "Added 5 minutes to the timer.",
    "HassDecreaseTimer": "Removed 5 minutes from the timer.",
    "HassTimerStatus": "5 minutes left on your timer.",
    "HassCancelAllTimers": "Canceled all timers.",
    "HassMediaSearchAndPlay": "Playing media.",
    "HassNevermind": "OK, never mind.",
    "HassTurnOn": "Turned on.",
    "HassTurnOff": "Turned off.",
    "HassClimateSetTemperature": "Temperature set.",
    "HassClimateSetFanMode": "Fan mode set.",
}


@dataclass(frozen=True)
class Fillers:
    """Stand-in values for one language."""

    table: _Table

    def open_list(self, list_name: str, slot_name: str, domains: list[str]) -> list[str]:
        """Values for a list the data leaves open (missing, empty or wildcard)."""
        t = self.table
        if list_name == "area" or slot_name == "area":
            return t.areas
        if list_name == "floor" or slot_name == "floor":
            return t.floors
        for key in (list_name, slot_name):
            if key in t.wildcards:
                return t.wildcards[key]
        if list_name == "name" or slot_name == "name":
            by_domain = [n for d in domains for n in t.domain_names.get(d, [])]
            return by_domain or t.names
        if list_name in _EN_WILDCARDS and t is not _TABLES["en"]:
            return _EN_WILDCARDS[list_name]
        return t.names

    @property
    def slot_examples(self) -> dict[str, list[str]]:
        t = self.table
        examples = {"area": t.areas, "floor": t.floors, "name": t.names}
        examples["item"] = t.wildcards.get(
            "shopping_list_item", _EN_WILDCARDS["shopping_list_item"]
        )
        examples.update(temperature=["21"], brightness=["50"], position=["50"], volume_level=["50"])
        return examples


@functools.cache
def fillers_for(lang: str) -> Fillers:
    base = lang.split("-")[0].lower()
    return Fillers(_TABLES.get(lang, _TABLES.get(base, _TABLES["en"])))
