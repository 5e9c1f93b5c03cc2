"""Text classification datasets from CSV / TSV / JSONL tables.

Users bring tables from spreadsheets and scripts in whatever encoding and delimiter their
tools wrote, so both are detected, and whatever is odd about the rows is reported as a
``Problem`` instead of failing the whole load.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections import Counter
from pathlib import Path

import numpy as np

from metagui.core.data.base import Problem, TextDataset
from metagui.core.errors import DataError
from metagui.core.files import MAX_TABLE_BYTES, decode_text, read_bytes

_SNIFF_DELIMITERS = ",;\t|"
_JSONL_SUFFIXES = {".jsonl", ".ndjson", ".json"}
_TSV_SUFFIXES = {".tsv", ".tab"}
_MAX_LISTED_LINES = 5


def load_text_table(
    path: str | os.PathLike[str],
    *,
    text_column: str = "text",
    label_column: str = "category",
    domain_column: str = "",
    delimiter: str = "",
    encoding: str = "",
) -> TextDataset:
    """One example per row: ``text_column`` is the input, ``label_column`` its class."""
    p = Path(path).expanduser()
    problems: list[Problem] = []
    content = _decode(p, encoding, problems)
    if not content.strip():
        raise DataError(f"{p.name} is empty")

    if _looks_like_json(p, content):
        rows = _json_rows(p, content, problems)
    else:
        rows = _csv_rows(p, content, delimiter)
    return _build(p, rows, text_column, label_column, domain_column, problems)


def _decode(p: Path, encoding: str, problems: list[Problem]) -> str:
    text, note = decode_text(read_bytes(p, MAX_TABLE_BYTES, "text table"), p.name, encoding)
    if note:
        problems.append(Problem("other", note, str(p)))
    return text


def _looks_like_json(p: Path, content: str) -> bool:
    if p.suffix.lower() in _JSONL_SUFFIXES:
        return True
    return p.suffix.lower() not in {".csv", *_TSV_SUFFIXES} and content.lstrip().startswith(
        ("{", "[")
    )


# A row: (line number, {column: value}); values are str, or None where a row is short.
Row = tuple[int, dict[str, object]]


def _json_rows(p: Path, content: str, problems: list[Problem]) -> list[Row]:
    try:  # a whole-file JSON array of objects?
        data = json.loads(content)
    except (json.JSONDecodeError, RecursionError):  # nesting too deep is not a table either
        data = None  # most likely JSON Lines
    if isinstance(data, list):
        return [(i + 1, obj) for i, obj in enumerate(data) if isinstance(obj, dict)]
    if isinstance(data, dict) and "\n" in content.strip():
        raise DataError(
            f"{p.name} is one JSON object; expected one object per line or a list of objects"
        )
    rows: list[Row] = []
    bad: list[int] = []
    for i, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            bad.append(i)
            continue
        if isinstance(obj, dict):
            rows.append((i, obj))
        else:
            bad.append(i)
    if bad:
        problems.append(
            Problem(
                "unreadable",
                f"{len(bad)} line(s) are not JSON objects and were skipped ({_lines(bad)})",
                str(p),
            )
        )
    if not rows:
        raise DataError(f"{p.name} holds no JSON objects, one per line")
    return rows


def _csv_rows(p: Path, content: str, delimiter: str) -> list[Row]:
    delim = delimiter or _detect_delimiter(p, content)
    if delim == "\\t":
        delim = "\t"
    if len(delim) != 1:
        raise DataError(f"the delimiter must be one character, not '{delim}'")
    reader = csv.DictReader(io.StringIO(content, newline=""), delimiter=delim)
    try:
        rows: list[Row] = [(reader.line_num, row) for row in reader]
    except csv.Error as exc:
        raise DataError(
            f"{p.name} is not a readable table (line {reader.line_num}: {exc})"
        ) from None
    if reader.fieldnames is None:
        raise DataError(f"{p.name} has no header row")
    return rows


def _detect_delimiter(p: Path, content: str) -> str:
    if p.suffix.lower() in _TSV_SUFFIXES:
        return "\t"
    header = content.split("\n", 1)[0]
    sample = content[: 64 * 1024]
    try:
        found = csv.Sniffer().sniff(sample, delimiters=_SNIFF_DELIMITERS).delimiter
        if found in header:
            return found
    except csv.Error:
        pass
    # The sniffer gives up on ragged samples: fall back to the most common one in the header.
    counts = {d: header.count(d) for d in _SNIFF_DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _build(
    p: Path,
    rows: list[Row],
    text_column: str,
    label_column: str,
    domain_column: str,
    problems: list[Problem],
) -> TextDataset:
    columns: list[str] = []
    for _, row in rows:
        columns += [c for c in row if c is not None and c not in columns]
        if len(columns) > 200:
            break
    needed = [c for c in (text_column, label_column, domain_column) if c]
    missing = [c for c in needed if c not in columns]
    if missing:
        listed = ", ".join(repr(c) for c in columns) or "none"
        what = "column" if len(missing) == 1 else "columns"
        names = ", ".join(repr(c) for c in missing)
        raise DataError(f"{p.name} has no {what} {names}; available columns: {listed}")

    empty: list[int] = []
    no_label: list[int] = []
    dups: list[int] = []
    seen: set[tuple[str, str, str]] = set()
    records: list[tuple[str, str, str]] = []  # (domain, label, text)
    for line, row in rows:
        text = _cell(row.get(text_column))
        label = _cell(row.get(label_column))
        domain = _cell(row.get(domain_column)) if domain_column else ""
        if not text:
            empty.append(line)
            continue
        if not label:
            no_label.append(line)
            continue
        key = (domain, label, text)
        if key in seen:
            dups.append(line)
            continue
        seen.add(key)
        records.append(key)

    where = str(p)
    if empty:
        problems.append(
            Problem(
                "empty",
                f"{len(empty)} row(s) with empty text were skipped ({_lines(empty)})",
                where,
            )
        )
    if no_label:
        problems.append(
            Problem(
                "empty",
                f"{len(no_label)} row(s) without a label were skipped ({_lines(no_label)})",
                where,
            )
        )
    if dups:
        problems.append(
            Problem(
                "duplicate",
                f"{len(dups)} duplicate row(s) with the same text and label were kept once "
                f"({_lines(dups)})",
                where,
            )
        )
    if not records:
        raise DataError(f"{p.name} has no rows with both a text and a label")
    return records_to_dataset(p.stem, records, problems)


def records_to_dataset(
    name: str, records: list[tuple[str, str, str]], problems: list[Problem]
) -> TextDataset:
    """Group (domain, label, text) records into classes, sorted by name."""
    domains_of: dict[str, Counter[str]] = {}
    for domain, label, _ in records:
        domains_of.setdefault(label, Counter())[domain] += 1
    # A label used in several domains is really one class per domain: name them apart.
    split_labels = any(len(c) > 1 for c in domains_of.values())

    def class_name(domain: str, label: str) -> str:
        return f"{domain}/{label}" if split_labels and domain else label

    keys = sorted({(class_name(d, lab), d) for d, lab, _ in records})
    index = {k[0]: i for i, k in enumerate(keys)}
    labels = np.fromiter(
        (index[class_name(d, lab)] for d, lab, _ in records), dtype=np.int64, count=len(records)
    )
    return TextDataset(
        name=name,
        classes=[k[0] for k in keys],
        labels=labels,
        class_domains=[k[1] for k in keys],
        problems=problems,
        texts=[t for _, _, t in records],
    )


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, list):  # csv puts extra cells of a long row in a list
        value = " ".join(str(v) for v in value)
    return " ".join(str(value).split())


def _lines(lines: list[int]) -> str:
    shown = ", ".join(str(n) for n in lines[:_MAX_LISTED_LINES])
    more = "" if len(lines) <= _MAX_LISTED_LINES else ", ..."
    return f"line{'s' if len(lines) > 1 else ''} {shown}{more}"
