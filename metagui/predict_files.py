"""Reading support examples and queries from files, for ``metagui predict``.

Files are read as training tables are (UTF-8, UTF-16 with a byte-order mark, else cp1252 or
latin-1, with a note saying so), and only regular files of at most 64 MB.

Header rows of CSV/TSV files: with ``header=None`` (the default) the first row is a header
when one of its cells, stripped and in any case, is a column name below (``text,label``,
``utterance,intent``, ``Sentence,Category``...); the columns with known names are then used,
else the first ones left. ``header=True`` or ``False`` says so instead (``--header`` /
``--no-header``). Plain text query files (one query per line) have no header.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from metagui.core.errors import DataError
from metagui.core.files import read_text

ITEM_COLUMNS = ("item", "text", "path", "x", "utterance", "sentence", "example", "query", "input", "image",
                "file")
LABEL_COLUMNS = ("label", "y", "category", "class", "intent", "tag", "target")
TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json")


def read_labelled_items(path: str | Path, *, header: bool | None = None, resolve_paths: bool = True,
                        notes: list[str] | None = None) -> tuple[list[str], list[str]]:
    """Support examples from CSV/TSV (an item and a label column, or the first two columns) or
    JSON Lines ({"item": ..., "label": ...}). ``resolve_paths``: items naming a file beside
    ``path`` become that file's path (for image models; texts are left as they are)."""
    p = Path(path)
    items, labels = [], []
    for n, row in _read_rows(p, header, notes):
        item = _pick(row, ITEM_COLUMNS, 0)
        label = _pick(row, LABEL_COLUMNS, 1)
        if item is None or label is None or not str(item).strip() or not str(label).strip():
            raise DataError(f"{p.name} line {n} needs an item and a label")
        items.append(_resolve(str(item), p) if resolve_paths else str(item))
        labels.append(str(label).strip())
    if not items:
        raise DataError(f"{p.name} has no support examples")
    return items, labels


def read_items(path: str | Path, *, header: bool | None = None, resolve_paths: bool = True,
               notes: list[str] | None = None) -> list[str]:
    """Queries: one per line (a text file), or the item column of a CSV/TSV/JSON Lines file."""
    p = Path(path)
    if p.suffix.lower() in TABLE_SUFFIXES:
        items = [_pick(row, ITEM_COLUMNS, 0) for _, row in _read_rows(p, header, notes)]
        out = [str(i) for i in items if i is not None and str(i).strip()]
    else:
        lines = read_text(p, what="query file", notes=notes).splitlines()
        out = [line.strip() for line in lines if line.strip()]
    if not out:
        raise DataError(f"{p.name} has no queries")
    return [_resolve(i, p) for i in out] if resolve_paths else out


def is_header(row: list[str]) -> bool:
    """A first row whose cells include a known column name (any case) is a header."""
    names = {c.strip().lower() for c in row}
    return bool(names & {*ITEM_COLUMNS, *LABEL_COLUMNS})


def _read_rows(p: Path, header: bool | None, notes: list[str] | None) -> list[tuple[int, object]]:
    """(line number, row) pairs: dicts (JSON Lines, or a table with a header) or lists."""
    text = read_text(p, what="file", notes=notes)
    if p.suffix.lower() in (".jsonl", ".json"):
        rows: list[tuple[int, object]] = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    obj = json.loads(line)
                except (ValueError, RecursionError):
                    raise DataError(f"{p.name} line {n} is not JSON") from None
                if not isinstance(obj, dict):
                    raise DataError(f"{p.name} line {n} is not a JSON object such as {{\"item\": ..., \"label\": ...}}")
                rows.append((n, {str(k).strip().lower(): v for k, v in obj.items()}))
        return rows
    delim = "\t" if p.suffix.lower() == ".tsv" else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delim)
    try:
        table = [(reader.line_num, r) for r in reader if any(c.strip() for c in r)]
    except csv.Error as exc:
        raise DataError(f"{p.name} is not a readable table (line {reader.line_num}: {exc})") from None
    first_is_header = is_header(table[0][1]) if header is None and table else bool(header)
    if not first_is_header:
        return table
    head = [c.strip().lower() for c in table[0][1]]
    item = next((i for i, c in enumerate(head) if c in ITEM_COLUMNS), None)
    label = next((i for i, c in enumerate(head) if c in LABEL_COLUMNS), None)
    others = [i for i in range(len(head)) if i not in (item, label)]
    if item is None and others:  # a column of another name: the first one left
        item = others.pop(0)
    if label is None and others:
        label = others.pop(0)
    return [(n, [_cell(r, item), _cell(r, label)]) for n, r in table[1:]]


def _cell(row: list[str], index: int | None) -> str | None:
    return row[index] if index is not None and index < len(row) else None


def _pick(row: object, keys: tuple[str, ...], position: int):
    if isinstance(row, dict):
        value = next((row[k] for k in keys if k in row), None)
        return None if isinstance(value, dict | list) else value
    if isinstance(row, list) and len(row) > position and row[position] is not None:
        return row[position].strip()
    return None


def _resolve(item: str, source: Path) -> str:
    """Image paths relative to the file that lists them (existing paths unchanged)."""
    try:
        candidate = source.parent / item
        if not Path(item).exists() and candidate.exists():
            return str(candidate)
    except (OSError, ValueError):  # a name too long or otherwise impossible: not a file
        pass
    return item
