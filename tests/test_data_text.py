"""Text tables: formats, encodings, bad rows reported, Banking77 from the shared data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from metagui.core.data.text import load_text_table
from metagui.core.errors import DataError
from tests.helpers import BANKING, needs_banking

ROWS = [
    ("turn on the lights", "lights_on"),
    ("lights on please", "lights_on"),
    ("switch the lamp off", "lights_off"),
    ("kill the lights", "lights_off"),
    ("what's the weather", "weather"),
]


def test_csv_with_quotes_empty_and_duplicate_rows(tmp_path: Path) -> None:
    p = tmp_path / "cmds.csv"
    lines = ["text,category"] + [f'"{t}",{c}' for t, c in ROWS]
    lines += ['"turn on the lights",lights_on', '"",weather', '"hello, world",greeting']
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    ds = load_text_table(p)
    assert ds.classes == ["greeting", "lights_off", "lights_on", "weather"]
    assert len(ds) == 6
    assert "hello, world" in ds.texts
    assert ds.texts.count("turn on the lights") == 1
    kinds = sorted(p.kind for p in ds.problems)
    assert kinds == ["duplicate", "empty"]
    assert ds.stats().per_class["lights_on"] == 2


def test_tsv_and_sniffed_semicolons(tmp_path: Path) -> None:
    tsv = tmp_path / "cmds.tsv"
    tsv.write_text(
        "utterance\tintent\n" + "".join(f"{t}\t{c}\n" for t, c in ROWS), encoding="utf-8"
    )
    ds = load_text_table(tsv, text_column="utterance", label_column="intent")
    assert len(ds) == 5 and len(ds.classes) == 3

    semi = tmp_path / "export.txt"
    semi.write_text("text;category\n" + "".join(f"{t};{c}\n" for t, c in ROWS), encoding="utf-8")
    ds2 = load_text_table(semi)
    assert ds2.texts == ds.texts and ds2.classes == ds.classes


def test_jsonl_with_domain_column_and_a_bad_line(tmp_path: Path) -> None:
    p = tmp_path / "multi.jsonl"
    objs = [{"text": t, "category": c, "lang": "en"} for t, c in ROWS]
    objs.append({"text": "mach das licht an", "category": "lights_on", "lang": "de"})
    p.write_text("\n".join(json.dumps(o) for o in objs) + "\n{not json\n", encoding="utf-8")
    ds = load_text_table(p, domain_column="lang")
    # lights_on exists in two domains: the classes are told apart by domain.
    assert "de/lights_on" in ds.classes and "en/lights_on" in ds.classes
    assert ds.class_domains[ds.classes.index("de/lights_on")] == "de"
    assert [p.kind for p in ds.problems] == ["unreadable"]


def test_missing_column_names_available_ones(tmp_path: Path) -> None:
    p = tmp_path / "cmds.csv"
    p.write_text("sentence,label\nhi,greet\n", encoding="utf-8")
    with pytest.raises(
        DataError, match=r"no column 'text'.*available columns: 'sentence', 'label'"
    ):
        load_text_table(p, label_column="label")


def test_latin1_file_is_read_with_a_warning(tmp_path: Path) -> None:
    p = tmp_path / "cafe.csv"
    p.write_bytes("text,category\ncafé crème,drinks\nthé glacé,drinks\n".encode("latin-1"))
    ds = load_text_table(p)
    assert ds.texts == ["café crème", "thé glacé"]
    assert ds.problems and ds.problems[0].kind == "other" and "UTF-8" in ds.problems[0].message
    # An explicit, wrong encoding is the user's choice: a clear error, not a guess.
    with pytest.raises(DataError, match="not valid utf-8"):
        load_text_table(p, encoding="utf-8")


def test_utf8_bom_and_errors(tmp_path: Path) -> None:
    p = tmp_path / "bom.csv"
    p.write_bytes("text,category\nnaïve,x\n".encode("utf-8-sig"))
    ds = load_text_table(p)
    assert ds.texts == ["naïve"] and not ds.problems
    with pytest.raises(DataError, match="not found"):
        load_text_table(tmp_path / "missing.csv")
    empty = tmp_path / "empty.csv"
    empty.write_text("text,category\n,\n", encoding="utf-8")
    with pytest.raises(DataError, match="no rows"):
        load_text_table(empty)


@needs_banking
def test_banking77_train() -> None:
    ds = load_text_table(BANKING / "train.csv")
    stats = ds.stats()
    assert stats.n_classes == 77
    assert 9_990 <= stats.n_items <= 10_003  # 10,003 rows, a few exact duplicates
    assert "card_arrival" in ds.classes
    assert stats.min_per_class >= 30
    assert all(p.kind == "duplicate" for p in ds.problems)


def test_utf16_export_with_tabs(tmp_path: Path) -> None:
    p = tmp_path / "excel.txt"
    p.write_bytes("text\tcategory\nhéllo\tgreet\n".encode("utf-16"))
    ds = load_text_table(p)
    assert ds.texts == ["héllo"] and ds.classes == ["greet"] and not ds.problems
