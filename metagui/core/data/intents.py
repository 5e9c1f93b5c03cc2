"""Built-in intents: Home Assistant's voice command sentences, offline, in many languages.

The ``home-assistant-intents`` package holds sentence *templates* (``turn on [the] {name}``)
that ``hassil`` parses. We draw concrete sentences from them at random, a bounded number
per intent, because full expansion explodes combinatorially. The lists that Home
Assistant fills at run time from the user's home (device names, areas, floors) and the
free-text wildcards are filled here with plausible values.
"""

from __future__ import annotations

import functools
import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from metagui.core.data.base import Problem, TextDataset
from metagui.core.data.intent_fillers import (
    ENGLISH_REPLIES,
    fillers_for,
)
from metagui.core.errors import DataError

_MAX_DEPTH = 40
_COUNT_CAP = 10**6
_NUMBER_WORDS_CHANCE = 0.2
_ATTEMPTS_PER_SENTENCE = 5


def available_languages() -> list[str]:
    """Language codes that have intent data in the installed package."""
    import home_assistant_intents as hai

    return [lang for lang in hai.get_languages() if hai.get_intents(lang)]


def load_intents(
    languages: Sequence[str] = ("en",),
    max_per_intent: int = 200,
    seed: int = 0,
) -> TextDataset:
    """Sentences per intent (class), one domain per language; replies from the package."""
    langs = list(dict.fromkeys(languages))
    if not langs:
        raise DataError("choose at least one language for the built-in intents")
    if max_per_intent < 1:
        raise DataError(f"sentences per intent must be at least 1, not {max_per_intent}")
    multi = len(langs) > 1
    classes: list[str] = []
    domains: list[str] = []
    texts: list[str] = []
    labels: list[int] = []
    replies: dict[str, str] = {}
    problems: list[Problem] = []
    for lang in langs:
        data = _language(lang, max_per_intent, seed)
        for intent, sentences, reply in data.intents:
            name = f"{lang}/{intent}" if multi else intent
            label = len(classes)
            classes.append(name)
            domains.append(lang)
            replies[name] = reply
            texts += sentences
            labels += [label] * len(sentences)
        problems += [
            Problem(p.kind, f"{lang}: {p.message}" if multi else p.message) for p in data.problems
        ]
    return TextDataset(
        name="intents" if not multi else "intents-" + "-".join(langs),
        classes=classes,
        labels=np.asarray(labels, dtype=np.int64),
        class_domains=domains,
        problems=problems,
        texts=texts,
        replies=replies,
        language=langs[0] if not multi else "",
    )


@dataclass(frozen=True)
class _LanguageData:
    intents: list[tuple[str, list[str], str]]  # (intent, sentences, reply)
    problems: list[Problem]


@functools.lru_cache(maxsize=16)
def _language(lang: str, max_per_intent: int, seed: int) -> _LanguageData:
    """Sampled sentences for one language (cached: loading is repeated by GUI and tests)."""
    import home_assistant_intents as hai
    from hassil.intents import Intents

    raw = hai.get_intents(lang)
    if not raw:
        known = ", ".join(available_languages())
        raise DataError(f"no built-in intents for language '{lang}'; available: {known}")
    try:
        parsed = Intents.from_dict(raw)
    except Exception as exc:  # the package data is not ours: never crash on it
        raise DataError(f"the intent data for '{lang}' cannot be read ({exc})") from None

    sampler = _Sampler(lang, parsed, seed)
    intents: list[tuple[str, list[str], str]] = []
    owner: dict[str, str] = {}
    clashes: Counter[tuple[str, str]] = Counter()
    responses = (raw.get("responses") or {}).get("intents") or {}
    for name in sorted(parsed.intents):
        sentences = sampler.intent_sentences(parsed.intents[name], max_per_intent)
        kept = []
        for s in sentences:  # one sentence, one intent: ambiguous examples teach nothing
            first = owner.setdefault(s.casefold(), name)
            if first == name:
                kept.append(s)
            else:
                clashes[(first, name)] += 1
        if kept:
            reply = _reply(name, parsed.intents[name], responses.get(name) or {}, sampler)
            intents.append((name, kept, reply))
    problems = [
        Problem("duplicate", f"{n} sentence(s) of {b} also belong to {a} and were kept only there")
        for (a, b), n in sorted(clashes.items())
    ]
    return _LanguageData(intents, problems)


class _Sampler:
    """Draws random sentences from hassil templates, filling open lists with examples."""

    def __init__(self, lang: str, intents: Any, seed: int):
        self.lang = lang
        self.intents = intents
        self.rng = random.Random(f"{seed}:{lang}")
        self.fill = fillers_for(lang)
        self._numbers: dict[int, list[float | int]] = {}
        self._engine: Any = None
        self._engine_failed = False

    # --- public ---------------------------------------------------------------------------
    def intent_sentences(self, intent: Any, limit: int) -> list[str]:
        templates = []  # (sentence, lists, rules, name_domains, weight)
        for data in intent.data:
            lists = {**self.intents.slot_lists, **data.slot_lists}
            rules = {**self.intents.expansion_rules, **data.expansion_rules}
            name_domains = sorted(data.domains)
            for sentence in data.sentences:
                count = self._count(sentence.expression, lists, rules, name_domains, 0)
                templates.append((sentence, lists, rules, name_domains, max(1, min(count, limit))))
        if not templates:
            return []
        weights = [t[4] for t in templates]
        found: dict[str, None] = {}
        # Every template once first (rare phrasings stay represented), then by weight.
        order = list(range(len(templates)))
        self.rng.shuffle(order)
        attempts = 0
        while len(found) < limit and attempts < limit * _ATTEMPTS_PER_SENTENCE + len(templates):
            if attempts < len(order):
                i = order[attempts]
            else:
                i = self.rng.choices(range(len(templates)), weights=weights)[0]
            attempts += 1
            sentence, lists, rules, name_domains, _ = templates[i]
            text = _clean(self._sample(sentence.expression, lists, rules, name_domains, 0))
            if text:
                found.setdefault(text, None)
        return list(found)[:limit]

    def slot_example(self, slot: str) -> str | None:
        """A value to show for ``{{ slots.<slot> }}`` in a reply template."""
        values = self.fill.slot_examples.get(slot)
        return values[0] if values else None

    # --- sampling ---------------------------------------------------------------------------
    def _sample(self, expr: Any, lists: dict, rules: dict, domains: list[str], depth: int) -> str:
        from hassil.expression import (
            Alternative,
            ListReference,
            Permutation,
            RuleReference,
            Sequence,
            TextChunk,
        )

        if depth > _MAX_DEPTH:
            return ""
        if isinstance(expr, TextChunk):
            return expr.original_text or ""
        if isinstance(expr, Alternative):
            items = expr.items
            if expr.is_optional and self.rng.random() < 0.5:
                return ""
            if expr.is_optional:
                items = [x for x in items if not (isinstance(x, TextChunk) and not x.text)] or items
            return self._sample(self.rng.choice(items), lists, rules, domains, depth + 1)
        if isinstance(expr, Permutation):
            items = list(expr.items)
            self.rng.shuffle(items)
            return " ".join(self._sample(x, lists, rules, domains, depth + 1) for x in items)
        if isinstance(expr, Sequence):
            return "".join(self._sample(x, lists, rules, domains, depth + 1) for x in expr.items)
        if isinstance(expr, RuleReference):
            rule = rules.get(expr.rule_name)
            return (
                ""
                if rule is None
                else self._sample(rule.expression, lists, rules, domains, depth + 1)
            )
        if isinstance(expr, ListReference):
            return self._list_value(expr, lists, rules, domains, depth)
        return ""

    def _list_value(
        self, ref: Any, lists: dict, rules: dict, domains: list[str], depth: int
    ) -> str:
        from hassil.intents import RangeSlotList, TextSlotList

        if ref.is_inline_range:
            start, stop, step = ref.get_inline_range()
            return str(self.rng.randrange(start, stop + 1, step))
        slot_list = lists.get(ref.list_name)
        if isinstance(slot_list, TextSlotList) and slot_list.values:
            value = self.rng.choice(slot_list.values)
            return self._sample(value.text_in, lists, rules, domains, depth + 1)
        if isinstance(slot_list, RangeSlotList):
            return self._number(slot_list)
        return self.rng.choice(self.fill.open_list(ref.list_name, ref.slot_name, domains))

    def _number(self, slot_list: Any) -> str:
        key = id(slot_list)
        if key not in self._numbers:
            self._numbers[key] = list(slot_list.get_numbers()) or [slot_list.start]
        value = self.rng.choice(self._numbers[key])
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, int) and slot_list.words and self.rng.random() < _NUMBER_WORDS_CHANCE:
            words = self._number_words(value)
            if words:
                return words
        return str(value)

    def _number_words(self, value: int) -> str | None:
        if self._engine is None and not self._engine_failed:
            try:
                from hassil.numbers import get_rbnf_engine

                self._engine = get_rbnf_engine(self.lang)
            except Exception:  # no number words for this language: digits are fine
                self._engine_failed = True
        if self._engine is None:
            return None
        try:
            texts = sorted(set(self._engine.format_number(value).text_by_ruleset.values()))
        except Exception:
            return None
        return self.rng.choice(texts) if texts else None

    # --- counting (to weight templates by how much variety they hold) ---------------------
    def _count(self, expr: Any, lists: dict, rules: dict, domains: list[str], depth: int) -> int:
        from hassil.expression import (
            Alternative,
            ListReference,
            Permutation,
            RuleReference,
            Sequence,
            TextChunk,
        )
        from hassil.intents import RangeSlotList, TextSlotList

        if depth > _MAX_DEPTH or isinstance(expr, TextChunk):
            return 1
        if isinstance(expr, Alternative):
            total = sum(self._count(x, lists, rules, domains, depth + 1) for x in expr.items)
        elif isinstance(expr, Sequence | Permutation):
            total = 1
            for x in expr.items:
                total = min(_COUNT_CAP, total * self._count(x, lists, rules, domains, depth + 1))
            if isinstance(expr, Permutation):
                total *= max(1, len(expr.items))
        elif isinstance(expr, RuleReference):
            rule = rules.get(expr.rule_name)
            total = (
                1
                if rule is None
                else self._count(rule.expression, lists, rules, domains, depth + 1)
            )
        elif isinstance(expr, ListReference):
            slot_list = lists.get(expr.list_name)
            if isinstance(slot_list, TextSlotList) and slot_list.values:
                total = sum(
                    self._count(v.text_in, lists, rules, domains, depth + 1)
                    for v in slot_list.values
                )
            elif isinstance(slot_list, RangeSlotList):
                total = max(1, (slot_list.stop - slot_list.start) // max(1, slot_list.step) + 1)
            else:
                total = len(self.fill.open_list(expr.list_name, expr.slot_name, domains))
        else:
            total = 1
        return min(total, _COUNT_CAP)


_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,.!?;:])")


def _clean(text: str) -> str:
    text = " ".join(text.split())
    return _SPACE_BEFORE_PUNCT.sub(r"\1", text).strip()


# --- replies ---------------------------------------------------------------------------------
_SLOT_EXPR = re.compile(r"\{\{\s*slots\.(\w+)\s*(?:\|\s*(\w+)\s*)?\}\}")


def _reply(name: str, intent: Any, responses: dict[str, str], sampler: _Sampler) -> str:
    """A plain-text answer for the chat pane, from the intent's own response texts.

    Home Assistant renders responses with live state; here a fixed text must do, so we
    prefer responses without any template code, the ones the sentences use most first.
    """
    if sampler.lang.split("-")[0] == "en" and name in ENGLISH_REPLIES:
        return ENGLISH_REPLIES[name]
    used = Counter((d.response or "default") for d in intent.data)
    keys = sorted(
        (k for k, v in responses.items() if isinstance(v, str) and v.strip()),
        key=lambda k: (k != "default", -used.get(k, 0)),
    )
    plain = [k for k in keys if "{" not in responses[k]]
    if plain:
        return _sentence(responses[plain[0]])
    for k in keys:
        if "{%" not in responses[k]:
            rendered = _fill_slots(responses[k], sampler)
            if rendered:
                return _sentence(rendered)
    words = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name.removeprefix("Hass")).lower()
    return f"OK, {words}."


def _fill_slots(template: str, sampler: _Sampler) -> str | None:
    unknown = False

    def sub(m: re.Match[str]) -> str:
        nonlocal unknown
        value = sampler.slot_example(m.group(1))
        if value is None:
            unknown = True
            return ""
        return value.capitalize() if m.group(2) == "capitalize" else value

    text = _SLOT_EXPR.sub(sub, template)
    if unknown or "{{" in text or "{%" in text:
        return None
    return " ".join(text.split()) or None


def _sentence(text: str) -> str:
    text = " ".join(text.split())
    return text[:1].upper() + text[1:]
