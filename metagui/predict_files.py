"""Reading support examples and queries from files, for ``metagui predict``."""

from __future__ import annotations

import io
import json
from pathlib import Path

from metagui.core.errors import DataError


def read_labelled_items(path: str | Path) -> tuple[list[str], list[str]]:
    """Support examples from CSV/TSV (columns item|text|path|x and label|y|category, or the
    first two columns) or JSON Lines ({"item": ..., "label": ...})."""
    p = Path(path)
    rows = _read_rows(p)
    items, labels = [], []
    for n, row in enumerate(rows, 1):
        item = _pick(row, ("item", "text", "path", "x"), 0)
        label = _pick(row, ("label", "y", "category", "class"), 1)
        if item is None or label is None:
            raise DataError(f"{p.name} row {n} needs an item and a label")
        items.append(_resolve(str(item), p))
        labels.append(str(label))
    if not items:
        raise DataError(f"{p.name} has no support examples")
    return items, labels


def read_items(path: str | Path) -> list[str]:
    """Queries: one per line (.txt), or the item column of a CSV/TSV/JSON Lines file."""
    p = Path(path)
    if p.suffix.lower() in (".csv", ".tsv", ".jsonl", ".json"):
        items = [_pick(row, ("item", "text", "path", "x"), 0) for row in _read_rows(p)]
        out = [_resolve(str(i), p) for i in items if i is not None]
    else:
        if not p.is_file():
            raise DataError(f"file not found: {p}")
        out = [_resolve(line.strip(), p) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not out:
        raise DataError(f"{p.name} has no queries")
    return out


def _read_rows(p: Path) -> list:
    import csv

    if not p.is_file():
        raise DataError(f"file not found: {p}")
    text = p.read_text(encoding="utf-8-sig")
    if p.suffix.lower() in (".jsonl", ".json"):
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    raise DataError(f"{p.name} line {n} is not JSON") from None
        return rows
    delim = "\t" if p.suffix.lower() == ".tsv" else ","
    table = [r for r in csv.reader(io.StringIO(text), delimiter=delim) if r]
    if table and {c.strip().lower() for c in table[0]} & {"item", "text", "path", "x", "label", "y", "category", "class"}:
        head = [c.strip().lower() for c in table[0]]
        return [dict(zip(head, r, strict=False)) for r in table[1:]]
    return table


def _pick(row, keys: tuple[str, ...], position: int):
    if isinstance(row, dict):
        return next((row[k] for k in keys if k in row), None)
    if isinstance(row, list) and len(row) > position:
        return row[position]
    return None


def _resolve(item: str, source: Path) -> str:
    """Image paths relative to the file that lists them (texts and existing paths unchanged)."""
    candidate = source.parent / item
    if not Path(item).exists() and candidate.exists():
        return str(candidate)
    return item
