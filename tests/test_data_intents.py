"""Built-in Home Assistant intents: expanded sentences, filled slots, replies, languages."""

from __future__ import annotations

import re

import pytest

from metagui.core.data.intents import available_languages, load_intents
from metagui.core.errors import DataError

TEMPLATE_SYNTAX = re.compile(r"[{}\[\]<>|]")


@pytest.fixture(scope="module")
def english():
    return load_intents(("en",))


def test_english_has_many_intents_with_sentences(english) -> None:
    stats = english.stats()
    assert stats.n_classes >= 30
    assert {"HassTurnOn", "HassTurnOff", "HassStartTimer", "HassGetWeather"} <= set(english.classes)
    assert stats.max_per_class == 200  # the cap
    assert stats.n_items > 3000
    assert english.language == "en" and english.domains() == ["en"]
    turn_on = [
        t
        for t, lab in zip(english.texts, english.labels, strict=True)
        if english.classes[lab] == "HassTurnOn"
    ]
    assert len(set(turn_on)) == len(turn_on) == 200


def test_sentences_are_fully_expanded(english) -> None:
    leftovers = [t for t in english.texts if TEMPLATE_SYNTAX.search(t)]
    assert leftovers == []
    assert all(t == t.strip() and "  " not in t for t in english.texts)
    # Open lists were filled: areas, device names and numbers appear in sentences.
    text = "\n".join(english.texts)
    assert "kitchen" in text and "ceiling light" in text
    assert re.search(r"\b\d+ minutes?\b", text)


def test_replies_are_plain_text(english) -> None:
    assert set(english.replies) == set(english.classes)
    for reply in english.replies.values():
        assert reply and not TEMPLATE_SYNTAX.search(reply) and "%" not in reply
    assert english.replies["HassMediaPause"] == "Paused"
    assert english.replies["HassShoppingListAddItem"].startswith("Added ")


def test_sampling_is_deterministic_and_capped() -> None:
    a = load_intents(("en",), max_per_intent=20, seed=5)
    b = load_intents(("en",), max_per_intent=20, seed=5)
    c = load_intents(("en",), max_per_intent=20, seed=6)
    assert a.texts == b.texts
    assert a.texts != c.texts
    assert a.stats().max_per_class == 20


def test_two_languages() -> None:
    ds = load_intents(("en", "de"), max_per_intent=30)
    assert ds.domains() == ["de", "en"]
    assert "de/HassTurnOn" in ds.classes and "en/HassTurnOn" in ds.classes
    assert ds.language == ""
    german = [
        t for t, lab in zip(ds.texts, ds.labels, strict=True) if ds.class_domains[lab] == "de"
    ]
    assert len(german) > 500
    assert not any(TEMPLATE_SYNTAX.search(t) for t in german)
    assert "eingeschaltet" in ds.replies["de/HassTurnOn"]


def test_languages_listed_and_unknown_language_refused() -> None:
    langs = available_languages()
    assert {"en", "de", "fr"} <= set(langs) and len(langs) > 20
    with pytest.raises(DataError, match="no built-in intents for language 'xx'"):
        load_intents(("xx",))
