"""One chat on one trained run (Qt-free): what the "Try it" pane does, without the widgets.

The session decides which classes a chat starts from (the run's held-out classes, falling
back to the dataset's own when the run has none, and to as many as a learner adapts to
when it adapts only to its training way, as PLATIPUS does), edits the support set, turns
feedback on answers into examples, and reads and writes transcripts and tables of intents.

    session = open_run(db, run_id)          # a ChatSession (or a RegressionEngine for sinusoids)
    answer = session.ask("my card has not arrived yet")
    session.feedback(0, "card_arrival")     # the message joins that intent
    session.adapt()                         # the next answer follows the support set
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
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

    def add_intent(self, name: str, examples: Iterable[str] = (), reply: str = "") -> str:
        """Add an intent; returns its name as stored (whitespace normalised)."""
        return self.support.add_intent(name, examples, reply).name

    def add_example(self, intent: str, example: str) -> bool:
        """False when the example is empty or already there."""
        return self.support.add_example(intent, example)

    def set_reply(self, intent: str, reply: str) -> bool:
        """True when the reply changed."""
        if intent not in self.support or self.support[intent].reply == reply.strip():
            return False
        self.support.set_reply(intent, reply)
        return True

    def remove(self, intents: Iterable[str] = (), examples: Iterable[tuple[str, int]] = ()) -> bool:
        """Remove whole intents and (intent, index) examples; True when anything went."""
        intents = list(intents)
        examples = [e for e in examples if e[0] not in intents]
        for name in intents:
            self.support.remove_intent(name)
        for name, idx in sorted(examples, key=lambda e: -e[1]):
            self.support.remove_example(name, idx)
        return bool(intents or examples)

    def add_images(self, intent: str, paths: Sequence[str]) -> str:
        """Image files as examples of ``intent``, or of a new class named after their folder
        when ``intent`` is not one; returns the class they joined."""
        if self.modality != "image":
            raise DataError("images can be added when the model is an image model")
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
        return self.support.import_csv(path)

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
        self.engine.feedback(turn, intent if intent is not None else self.predicted(turn), adapt=False)
        return self.transcript[turn]["feedback"]

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
