"""Feedback becomes data: the messages a deployed (or tried) model was corrected on, with
their right intents, as a text table (``text,label``) that the Data page and ``metagui train``
read as any other (``source = "text_table"``)."""

from __future__ import annotations

import csv
from pathlib import Path

from metagui.core.errors import DataError


def write_feedback_csv(store, run_id: int, path: str | Path) -> tuple[Path, int, int]:
    """Write run ``run_id``'s feedback to ``path``: (path, messages, intents). The same message
    given twice with the same intent is written once."""
    rows = store.feedback(run_id)
    seen: set[tuple[str, str]] = set()
    out = Path(path)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "w", encoding="utf-8", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(["text", "label"])
            for r in rows:
                key = (r["message"], r["intent"])
                if key not in seen:
                    seen.add(key)
                    w.writerow(key)
    except OSError as exc:
        raise DataError(f"cannot write {out}: {exc.strerror or exc}") from None
    return out, len(seen), len({label for _, label in seen})


def feedback_file(store, run_id: int) -> Path:
    """Where the app keeps run ``run_id``'s feedback table: beside the store."""
    return store.path.parent / f"{store.path.stem}-feedback" / f"run-{run_id}.csv"
