"""The support set of a chat (Qt-free): intents with their examples (texts, or images as
file paths / PNG data URIs) and replies; editing, CSV / dict round trips, tables of intents
read from files, and support sets drawn from a dataset."""

from __future__ import annotations

import base64
import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metagui.core.errors import DataError
from metagui.core.models import Preprocessing

DATA_URI = "data:image/png;base64,"
TEXT_COLUMNS = ("text", "example", "utterance", "sentence", "question", "message")
INTENT_COLUMNS = ("intent", "label", "category", "class", "name")
REPLY_COLUMNS = ("reply", "response", "answer")


def humanise(name: str) -> str:
    """``card_arrival`` / ``HassTurnOn`` -> words people read in a chat."""
    s = name.split("/")[-1]
    if s.startswith("Hass") and s[4:5].isupper():
        s = s[4:]
    out = []
    for i, ch in enumerate(s):
        if ch.isupper() and i and (s[i - 1].islower() or (i + 1 < len(s) and s[i + 1].islower())):
            out.append(" ")
        out.append(ch)
    words = "".join(out).replace("_", " ").replace("-", " ").split()
    return " ".join(words).lower() if words else name


def default_reply(name: str) -> str:
    return f"[{humanise(name)}] (no reply text yet: edit the intent to write one)"


# --- the support set ----------------------------------------------------------------------------
@dataclass
class Intent:
    """One class of the support set: its examples (texts, or images as file paths / PNG data
    URIs) and the reply the assistant gives when it recognises it."""

    name: str
    examples: list[str] = field(default_factory=list)
    reply: str = ""


class SupportSet:
    """Intents by name, in the order they were added (that order is the label order)."""

    def __init__(self, intents: Iterable[Intent] = (), modality: str = "text") -> None:
        self.modality = modality
        self.intents: dict[str, Intent] = {}
        for it in intents:
            self.intents[it.name] = Intent(it.name, list(it.examples), it.reply)

    # --- editing ---------------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return list(self.intents)

    def __len__(self) -> int:
        return len(self.intents)

    def __contains__(self, name: object) -> bool:
        return name in self.intents

    def __getitem__(self, name: str) -> Intent:
        return self.intents[name]

    def add_intent(self, name: str, examples: Iterable[str] = (), reply: str = "") -> Intent:
        name = " ".join(name.split())
        if not name:
            raise DataError("an intent needs a name")
        if name in self.intents:
            raise DataError(f"there is already an intent called '{name}'")
        it = Intent(name, [], reply.strip())
        self.intents[name] = it
        for ex in examples:
            self.add_example(name, ex)
        return it

    def remove_intent(self, name: str) -> None:
        self.intents.pop(name, None)

    def rename_intent(self, old: str, new: str) -> None:
        new = " ".join(new.split())
        if not new:
            raise DataError("an intent needs a name")
        if new != old and new in self.intents:
            raise DataError(f"there is already an intent called '{new}'")
        self.intents = {(new if k == old else k): v for k, v in self.intents.items()}
        self.intents[new].name = new

    def add_example(self, name: str, example: str) -> bool:
        """Add ``example`` to the intent; False when it is empty or already there."""
        if name not in self.intents:
            raise DataError(f"no intent called '{name}'")
        ex = " ".join(example.split()) if self.modality == "text" else example
        if not ex or ex in self.intents[name].examples:
            return False
        self.intents[name].examples.append(ex)
        return True

    def remove_example(self, name: str, index: int) -> None:
        del self.intents[name].examples[index]

    def set_reply(self, name: str, reply: str) -> None:
        self.intents[name].reply = reply.strip()

    def reply(self, name: str) -> str:
        return self.intents[name].reply or default_reply(name)

    def counts(self) -> dict[str, int]:
        return {k: len(v.examples) for k, v in self.intents.items()}

    @property
    def n_examples(self) -> int:
        return sum(len(v.examples) for v in self.intents.values())

    def usable(self) -> list[str]:
        """Intents that take part in adaptation (those with at least one example)."""
        return [k for k, v in self.intents.items() if v.examples]

    def problem(self) -> str:
        """Why the support set cannot be adapted to, or ""."""
        if len(self.usable()) < 2:
            return "Adaptation needs at least two intents with examples."
        return ""

    def copy(self) -> SupportSet:
        return SupportSet(self.intents.values(), self.modality)

    # --- (de)serialisation ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"modality": self.modality, "intents": [asdict(v) for v in self.intents.values()]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SupportSet:
        try:
            intents = [Intent(str(d["name"]), [str(e) for e in d.get("examples", [])], str(d.get("reply", "")))
                       for d in data.get("intents", [])]
        except (KeyError, TypeError, AttributeError):
            raise DataError("not a support set (expected {'intents': [{'name', 'examples', 'reply'}]})") from None
        return cls(intents, str(data.get("modality", "text")))

    def to_csv(self) -> str:
        """One row per example: intent, example, reply (the format ``import_csv`` reads)."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["intent", "example", "reply"])
        for it in self.intents.values():
            for ex in it.examples or [""]:
                w.writerow([it.name, ex, it.reply])
        return buf.getvalue()

    def import_csv(self, path: str | Path) -> tuple[int, int]:
        """Merge the intents of a table (columns like intent/label, text/example, optional
        reply). Returns (intents added, examples added)."""
        rows = read_intent_table(path)
        new_intents = added = 0
        for name, text, reply in rows:
            if name not in self.intents:
                self.add_intent(name)
                new_intents += 1
            if text:
                added += self.add_example(name, text)
            if reply and not self.intents[name].reply:
                self.set_reply(name, reply)
        return new_intents, added


def read_intent_table(path: str | Path) -> list[tuple[str, str, str]]:
    """(intent, text, reply) rows of a CSV / TSV file whose header names the columns."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {p}: {exc.strerror or exc}") from None
    try:
        content = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        content = raw.decode("latin-1")
    if not content.strip():
        raise DataError(f"{p.name} is empty")
    header = content.split("\n", 1)[0]
    delim = max(",;\t|", key=header.count) if any(d in header for d in ",;\t|") else ","
    reader = csv.DictReader(io.StringIO(content, newline=""), delimiter=delim)
    cols = {c.strip().lower(): c for c in reader.fieldnames or [] if c}

    def pick(options: Sequence[str]) -> str | None:
        return next((cols[o] for o in options if o in cols), None)

    text_col, intent_col, reply_col = pick(TEXT_COLUMNS), pick(INTENT_COLUMNS), pick(REPLY_COLUMNS)
    if intent_col is None or (text_col is None and reply_col is None):
        have = ", ".join(cols.values()) or "none"
        raise DataError(f"{p.name} needs an intent column ({'/'.join(INTENT_COLUMNS[:3])}) and an example "
                        f"column ({'/'.join(TEXT_COLUMNS[:3])}); it has: {have}")
    out = []
    try:
        for row in reader:
            name = " ".join(str(row.get(intent_col) or "").split())
            if not name:
                continue
            text = " ".join(str(row.get(text_col) or "").split()) if text_col else ""
            reply = str(row.get(reply_col) or "").strip() if reply_col else ""
            out.append((name, text, reply))
    except csv.Error as exc:
        raise DataError(f"{p.name} is not a readable table: {exc}") from None
    if not out:
        raise DataError(f"{p.name} has no rows with an intent")
    return out


def image_to_data_uri(img: torch.Tensor | np.ndarray) -> str:
    """A uint8 image [C, H, W] (already preprocessed, as the model sees it) as a PNG data URI."""
    from PIL import Image

    a = np.asarray(img.cpu().numpy() if hasattr(img, "cpu") else img, dtype=np.uint8)
    a = a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(a)).save(buf, format="PNG")
    return DATA_URI + base64.b64encode(buf.getvalue()).decode("ascii")


def support_from_dataset(ds, classes: Sequence[str] | None = None, per_class: int = 5, seed: int = 0,
                         max_classes: int | None = None) -> tuple[SupportSet, dict[str, list[int]]]:
    """A support set of ``per_class`` seeded examples of each class (replies from the
    dataset where it has them), and the indices of the items left out, per class, for
    checking the adapted model on examples it did not see."""
    rng = np.random.default_rng(seed)
    names = list(classes) if classes is not None else list(ds.classes)
    if max_classes is not None:
        names = names[:max_classes]
    index = {c: i for i, c in enumerate(ds.classes)}
    by_class = ds.items_by_class()
    modality = str(ds.modality.value)
    support = SupportSet(modality=modality)
    rest: dict[str, list[int]] = {}
    replies = getattr(ds, "replies", {}) or {}
    for name in names:
        if name not in index:
            raise DataError(f"the dataset has no class '{name}'")
        items = rng.permutation(by_class[index[name]])
        chosen, left = items[:per_class], items[per_class:]
        if modality == "text":
            examples = [ds.texts[i] for i in chosen]
        else:
            examples = [image_to_data_uri(ds.images[i]) for i in chosen]
        it = support.add_intent(name, reply=replies.get(name, ""))
        for ex in examples:
            support.add_example(it.name, ex)
        rest[name] = [int(i) for i in left]
    return support, rest


def load_image(item: str, pre: Preprocessing) -> torch.Tensor:
    """A file (resized, converted and inverted as training saw it) or a PNG data URI (already
    the model's view of an image) -> float [C, H, W] in [0, 1]."""
    from PIL import Image

    mode = "L" if pre.channels == 1 else "RGB"
    try:
        if item.startswith(DATA_URI):
            im = Image.open(io.BytesIO(base64.b64decode(item[len(DATA_URI) :])))
            invert = False
        else:
            im = Image.open(item)
            invert = pre.invert
        with im:
            im = im.convert(mode)
            if im.size != (pre.image_size, pre.image_size):
                im = im.resize((pre.image_size, pre.image_size), Image.Resampling.LANCZOS)
            a = np.array(im, dtype=np.uint8)
    except (OSError, ValueError) as exc:
        shown = "an image" if item.startswith("data:") else item
        raise DataError(f"cannot read {shown}: {exc}") from None
    if invert:
        a = 255 - a
    a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(a)).float().div_(255.0)
