"""Feedback becomes data: the messages a deployed (or tried) model was corrected on, with
their right intents, as a text table (``text,label``) that the Data page and ``metagui train``
read as any other (``source = "text_table"``)."""

from __future__ import annotations

import csv
from pathlib import Path

from metagui.core.errors import DataError


def write_feedback_csv(store, run_id: int, path: str | Path, combine: list[str | Path] = ()) -> tuple[Path, int, int]:
    """Write run ``run_id``'s feedback to ``path``, then the rows of the ``combine`` tables
    (any table of intents: a text / example column and an intent / label column), for
    fine-tuning on combined data: (path, rows, intents). A message given twice with the same
    intent is written once."""
    from metagui.core.chat import read_intent_table

    rows = [(r["message"], r["intent"]) for r in store.feedback(run_id)]
    for table in combine:
        rows += [(text, name) for name, text, _ in read_intent_table(table) if text]
    unique = list(dict.fromkeys(rows))
    out = Path(path)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "w", encoding="utf-8", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(["text", "label"])
            w.writerows(unique)
    except OSError as exc:
        raise DataError(f"cannot write {out}: {exc.strerror or exc}") from None
    return out, len(unique), len({label for _, label in unique})


def feedback_file(store, run_id: int) -> Path:
    """Where the app keeps run ``run_id``'s feedback table: beside the store."""
    return store.path.parent / f"{store.path.stem}-feedback" / f"run-{run_id}.csv"
