"""One chat on one trained run (Qt-free): what the "Try it" pane does, without the widgets.

The session decides which classes a chat starts from (the run's held-out classes, falling
back to the dataset's own when the run has none, and to as many as a learner adapts to
when it adapts only to its training way, as PLATIPUS does), edits the support set, turns
feedback on answers into examples, and reads and writes transcripts and tables of intents.

    session = open_run(db, run_id)          # a ChatSession (or a RegressionEngine for sinusoids)
    answer = session.ask("my card has not arrived yet")
    session.feedback(0, "card_arrival")     # the message joins that intent
    session.adapt()                         # the next answer follows the support set

Nothing is lost: with ``on_change`` set (``journal_to_store``), every change of the support set
and every feedback item is written to the run store (one committed transaction) before the
method returns; when that write fails, the support set is put back as it was and the error
raised, so what the caller saw acknowledged is what the store holds.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metagui.core.chat.engine import Adaptation, Answer, ChatEngine
from metagui.core.chat.regression import RegressionEngine
from metagui.core.chat.support import SupportSet, support_from_dataset
from metagui.core.errors import ConfigError, DataError, MetaGUIError

START_FROM = ("held_out", "all", "empty")  # what a support set starts with
MAX_START_CLASSES = 60
NO_TEST_CLASSES = "This run has no test classes: the support set starts from the dataset's classes instead."


class NotAdapted(DataError):
    """A message asked before the first adaptation (a hint more than a failure)."""


def held_out_classes(ds, task) -> tuple[list[str], str]:
    """The classes a run never trained on (its test split), and a note when it has none and
    the dataset's first classes stand in for them."""
    from metagui.core.tasks import split_classes

    try:
        held = [ds.classes[i] for i in split_classes(ds, task).get("test", [])]
    except MetaGUIError:
        held = []
    if held:
        return held, ""
    return list(ds.classes)[:MAX_START_CLASSES], NO_TEST_CLASSES


@dataclass
class _Edit:
    changed: bool = True
    feedback: dict[str, Any] | None = None


# on_change(session, feedback): the support set changed (and, with ``feedback``, a message was
# given its right intent); it must have been recorded when it returns.
OnChange = Callable[["ChatSession", "dict[str, Any] | None"], None]


class ChatSession:
    """A ChatEngine with the run's dataset and held-out classes, the pane's choices and the
    saved transcript it continues."""

    def __init__(self, engine: ChatEngine, dataset=None, held_out: Sequence[str] = (), shots: int = 5,
                 run: dict[str, Any] | None = None) -> None:
        self.engine = engine
        self.dataset = dataset
        self.held_out = list(held_out)
        self.shots = max(1, int(shots))
        self.run = run  # the run's store row, when opened from the store
        self.note = ""  # what the start had to change, in words ("" when nothing)
        self.transcript_id: int | None = None  # the saved transcript this chat continues
        self.on_change: OnChange | None = None  # records every change (see the module docstring)

    @contextmanager
    def _edit(self) -> Iterator[_Edit]:
        """Around one edit of the support set: report it to ``on_change``; when that fails, put
        the support set back as it was before the edit and raise."""
        before = self.support.copy() if self.on_change is not None else None
        edit = _Edit()
        yield edit
        if self.on_change is not None and edit.changed:
            try:
                self.on_change(self, edit.feedback)
            except BaseException:
                self.engine.support = before
                raise

    # --- the model -------------------------------------------------------------------------------
    @property
    def run_id(self) -> int | None:
        return self.engine.run_id

    @property
    def modality(self) -> str:
        return self.engine.pre.modality

    @property
    def noun(self) -> str:
        """What a class is called in this chat: "intent" (texts) or "class" (images)."""
        return "intent" if self.modality == "text" else "class"

    @property
    def nouns(self) -> str:
        return "intents" if self.modality == "text" else "classes"

    @property
    def adaptation(self) -> Adaptation | None:
        return self.engine.adaptation

    @property
    def threshold(self) -> float:
        return self.engine.threshold

    @threshold.setter
    def threshold(self, value: float) -> None:
        self.engine.threshold = float(value)

    @property
    def steps(self) -> int:
        return self.engine.inner_steps

    @steps.setter
    def steps(self, value: int | None) -> None:
        self.engine.steps = value

    # --- where a chat starts --------------------------------------------------------------------------
    def start_classes(self, start: str = "held_out") -> list[str]:
        """The classes a support set starts with: the held-out ones, the dataset's (at most
        ``MAX_START_CLASSES``), or none."""
        if start not in START_FROM:
            raise ConfigError(f"a chat starts from {', '.join(START_FROM)}, not '{start}'")
        if start == "empty":
            return []
        if self.dataset is None:
            raise DataError("this chat has no dataset to take examples from")
        return list(self.held_out) if start == "held_out" else list(self.dataset.classes)[:MAX_START_CLASSES]

    def reset(self, start: str = "held_out") -> SupportSet:
        """A fresh support set: ``shots`` seeded examples of each start class (edits are lost)."""
        classes = self.start_classes(start)
        with self._edit():
            if start == "empty":
                self.engine.support = SupportSet(modality=self.modality)
            else:
                self.engine.support, _ = support_from_dataset(self.dataset, classes, self.shots)
        return self.support

    def start(self, start: str = "held_out") -> Adaptation | None:
        """Reset the support set and adapt to it (None when it is not adaptable yet). A learner
        that adapts only to the number of classes it was meta-trained with (PLATIPUS) starts
        with that many of them, and ``note`` says so."""
        self.reset(start)
        if self.support.problem():
            return None
        try:
            return self.adapt()
        except ConfigError:
            way = self.engine.learner.n_way
            if start == "empty" or len(self.support) <= way:
                raise
            with self._edit():
                self.engine.support = SupportSet([self.support[n] for n in self.support.names[:way]], self.modality)
            self.note = (f"{self.engine.learner.label} adapts to exactly {way} classes at a time (as meta-trained): "
                         f"the support set starts with {way} of the held-out classes.")
            return self.adapt()

    # --- the support set ------------------------------------------------------------------------------
    @property
    def support(self) -> SupportSet:
        return self.engine.support

    def problem(self) -> str:
        return self.support.problem()

    def snapshot(self) -> SupportSet:
        """A copy of the support set to adapt to in another thread while the user edits."""
        return self.support.copy()

    def adapt(self, support: SupportSet | None = None) -> Adaptation:
        return self.engine.adapt(support)

    def replace_support(self, new: SupportSet) -> Adaptation:
        """Adapt to ``new``, then make it the support set (recorded by ``on_change``); when
        adapting or recording fails, the support set and the adaptation stay as they were."""
        old = self.engine.adaptation
        ad = self.engine.adapt(new)
        try:
            with self._edit():
                self.engine.support = new
        except BaseException:
            self.engine.adaptation = old
            raise
        return ad

    def add_intent(self, name: str, examples: Iterable[str] = (), reply: str = "") -> str:
        """Add an intent; returns its name as stored (whitespace normalised)."""
        with self._edit():
            return self.support.add_intent(name, examples, reply).name

    def add_example(self, intent: str, example: str) -> bool:
        """False when the example is empty or already there."""
        with self._edit() as edit:
            edit.changed = self.support.add_example(intent, example)
        return edit.changed

    def set_reply(self, intent: str, reply: str) -> bool:
        """True when the reply changed."""
        if intent not in self.support or self.support[intent].reply == reply.strip():
            return False
        with self._edit():
            self.support.set_reply(intent, reply)
        return True

    def remove(self, intents: Iterable[str] = (), examples: Iterable[tuple[str, int]] = ()) -> bool:
        """Remove whole intents and (intent, index) examples; True when anything went."""
        intents = list(intents)
        examples = [e for e in examples if e[0] not in intents]
        with self._edit() as edit:
            for name in intents:
                self.support.remove_intent(name)
            for name, idx in sorted(examples, key=lambda e: -e[1]):
                self.support.remove_example(name, idx)
            edit.changed = bool(intents or examples)
        return edit.changed

    def add_images(self, intent: str, paths: Sequence[str]) -> str:
        """Image files as examples of ``intent``, or of a new class named after their folder
        when ``intent`` is not one; returns the class they joined."""
        if self.modality != "image":
            raise DataError("images can be added when the model is an image model")
        with self._edit():
            return self._add_images(intent, paths)

    def _add_images(self, intent: str, paths: Sequence[str]) -> str:
        if intent not in self.support:
            base = Path(paths[0]).parent.name or "class"
            intent, k = base, 2
            while intent in self.support:
                intent, k = f"{base} {k}", k + 1
            self.support.add_intent(intent)
        for p in paths:
            self.support.add_example(intent, p)
        return intent

    def import_csv(self, path: str | Path) -> tuple[int, int]:
        """Merge a table of intents (``SupportSet.import_csv``): (intents added, examples added).
        A file that cannot be read or has no intent / example columns raises DataError."""
        with self._edit() as edit:
            new, added = self.support.import_csv(path)
            edit.changed = bool(new or added)
        return new, added

    def export_support(self, path: str | Path) -> Path:
        p = Path(path)
        p.write_text(self.support.to_csv(), encoding="utf-8")
        return p

    # --- the conversation -------------------------------------------------------------------------------
    @property
    def transcript(self) -> list[dict[str, Any]]:
        return self.engine.transcript

    def ask(self, message: str, compare: bool = False) -> Answer | None:
        """Answer ``message`` (a text, or an image path) and record it; None when it is empty.
        Raises NotAdapted before the first adaptation."""
        if self.modality == "text":
            message = message.strip()
        if not message:
            return None
        if self.adaptation is None:
            raise NotAdapted("Adapt to the support set first (at least two intents with examples).")
        return self.engine.ask(message, compare=compare)

    def predicted(self, turn: int) -> str:
        return self.transcript[turn]["answer"]["intent"]

    def corrections(self, turn: int) -> list[str]:
        """The intents a wrong answer to ``turn`` could have been instead."""
        return [n for n in self.support.names if n != self.predicted(turn)]

    def feedback(self, turn: int, intent: str | None = None) -> dict[str, Any]:
        """Message ``turn`` was ``intent`` (None: the predicted one was right): it joins that
        intent's examples (a new intent if need be). Adapt afterwards for the next answer."""
        entry = self.transcript[turn]
        with self._edit() as edit:
            self.engine.feedback(turn, intent if intent is not None else self.predicted(turn), adapt=False)
            answer = entry["answer"]
            edit.feedback = {"message": entry["message"], "intent": entry["feedback"]["intent"],
                             "predicted": answer["intent"], "confidence": answer["confidence"]}
        return entry["feedback"]

    def teach(self, message: str, intent: str) -> dict[str, Any]:
        """``message`` is an example of ``intent`` (a new intent if need be), outside any
        transcript (what a deployed model is told): what the model answered before, and
        whether the example was new. Adapt afterwards for the next answer."""
        if self.modality == "text":
            message = " ".join(message.split())
        if not message:
            raise DataError("feedback needs a message")
        name = " ".join(intent.split())
        if not name:
            raise DataError("feedback needs the message's intent")
        before = self.engine.answers([message])[0] if self.adaptation is not None else None
        with self._edit() as edit:
            new = name not in self.support
            if new:
                self.support.add_intent(name)
            added = self.support.add_example(name, message)
            edit.feedback = {"message": message, "intent": name,
                             "predicted": before.intent if before else None,
                             "confidence": round(before.confidence, 6) if before else None}
        return {**edit.feedback, "added": added, "new_intent": new}

    def clear(self) -> None:
        """A new conversation on the same support set."""
        self.engine.clear()
        self.transcript_id = None

    # --- transcripts ---------------------------------------------------------------------------------------
    def save(self, store, title: str = "") -> int:
        """Save (or update) the transcript and the support set in the run store."""
        self.transcript_id = self.engine.save(store, title or "Chat", self.transcript_id)
        return self.transcript_id

    def saved(self, store) -> list[dict[str, Any]]:
        return store.transcripts(self.run_id) if self.run_id is not None else []

    def open(self, row: dict[str, Any]) -> None:
        """Continue a saved transcript (a ``RunStore.transcripts`` row) with its support set."""
        with self._edit():
            self.engine.restore(row)
        self.transcript_id = row.get("id")

    def export_transcript(self, path: str | Path) -> Path:
        """A ``.csv`` file gets the messages as rows; any other the JSON export (messages and
        the support set, titled with the file's name)."""
        p = Path(path)
        text = self.engine.transcript_csv() if p.suffix.lower() == ".csv" else self.engine.to_json(title=p.stem)
        p.write_text(text, encoding="utf-8")
        return p

    def import_transcript(self, path: str | Path) -> None:
        """Continue an exported JSON transcript (messages and support set)."""
        p = Path(path)
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except OSError as exc:
            raise DataError(f"cannot read {p}: {exc.strerror or exc}") from None
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise DataError(f"{p.name} is not a transcript exported as JSON") from None
        if not isinstance(data, dict) or not isinstance(data.get("messages"), list):
            raise DataError(f"{p.name} is not a transcript exported as JSON")
        self.open({"messages": data["messages"], "support": data.get("support") or {}})


def open_run(db, run_id: int, start: str = "held_out",
             reuse: Callable[[Any], Any] | None = None) -> ChatSession | RegressionEngine:
    """Open a run for the chat (off the GUI thread: it opens its own store connection): its
    best checkpoint, its dataset (``reuse(dataset_config)`` may return one already loaded),
    the starting support set and a first adaptation. Sinusoid runs get a RegressionEngine."""
    from metagui.core.config import RunConfig
    from metagui.core.store import RunStore

    store = RunStore.for_reading(db)
    try:
        run = store.run(run_id)
        cfg = RunConfig.from_toml(run["config"])
        if cfg.dataset.source == "sinusoid":
            return RegressionEngine.from_run(store, run_id)
        engine = ChatEngine.from_run(store, run_id)
    finally:
        store.close()
    ds = reuse(cfg.dataset) if reuse is not None else None
    if ds is None:
        from metagui.core.data import load_dataset

        ds = load_dataset(cfg.dataset)
    held, note = held_out_classes(ds, cfg.task)
    session = ChatSession(engine, ds, held, cfg.task.shot, run)
    session.note = note
    session.start(start)
    return session


def journal_to_store(db, run_id: int, source: str, synchronous_full: bool = False) -> OnChange:
    """An ``on_change`` that records the support set (and each feedback item) of run
    ``run_id`` in the run store at ``db``, on a connection of its own, committed before it
    returns. ``synchronous_full``: also wait for the disk (survives a power cut, not only a
    killed process). ``close`` on the returned callable closes its connection."""
    import threading

    from metagui.core.store import RunStore

    store = RunStore(db)
    if synchronous_full:
        store.db.conn.execute("PRAGMA synchronous=FULL")
    lock = threading.Lock()

    def record(session: ChatSession, feedback: dict[str, Any] | None) -> None:
        with lock:
            store.record_support(run_id, session.support.to_dict(), source, feedback)

    record.close = store.close  # type: ignore[attr-defined]
    record.store = store  # type: ignore[attr-defined]
    return record
