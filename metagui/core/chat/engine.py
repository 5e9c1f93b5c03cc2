"""The engine behind the "Try it" pane (Qt-free): a support set of intents, the trained
meta-learner's own few-shot adaptation to it, answers with a confidence and a fallback,
feedback that re-adapts at once, a before / after comparison, and transcripts.

    engine = ChatEngine.from_run(store, run_id)
    engine.support = support_from_dataset(ds, classes, per_class=5)
    engine.adapt()                     # inner steps (MAML family) or prototypes (metric)
    answer = engine.ask("my card has not arrived yet")
    engine.feedback(0, "card_arrival")  # adds the message as an example and re-adapts

How each family adapts to a support set of N intents:

- Metric learners (ProtoNet, Matching, Relation) take any N: the support embeddings are
  the adaptation.
- Optimisation learners (MAML, FOMAML, Meta-SGD, Reptile) were meta-trained with a head of
  ``n_way`` rows whose order means nothing (labels are shuffled in every episode). For
  N <= ``n_way`` intents the engine keeps the first N meta-learned rows (exactly the
  learner's own adaptation when N = ``n_way``). For more intents it builds a head of N
  rows, every row the mean meta-learned row (bias likewise): identical rows start
  undecided, exactly as a zero-initialised head would, and the support gradients pull
  them apart, so no intent is favoured by where it sits. Then the learner's inner loop runs
  on the meta-learned body and the new head (``eval_steps`` gradient steps at the
  test-time step size: ``eval_lr`` if set, else ``inner_lr``; per-weight step sizes for
  Meta-SGD). In a check on Banking77 (FOMAML, 100
  meta-steps on 50 intents), trained rows beat mean rows at 5-way (0.79 vs 0.71) and mean
  rows beat repeating the trained rows at 27-way (0.32 vs 0.28).
- Other learners use their own ``adapt`` and must support the N asked of them.

"Before / after" answers a message twice. *Before* is the model without few-shot
adaptation to this support set, defined per family (``baseline_label`` says it in words):
for optimisation learners the meta-learned initialisation with zero inner steps (its
head rows are not tied to any intent, so its answers are arbitrary (N <= ``n_way``) or
uniform (more intents): what the model knows of the intents comes from adaptation).
Metric learners have no unadapted state (the class embeddings are the adaptation), so
*before* uses the same examples in an encoder that was never meta-trained (the run's
architecture and seed, initial weights): what meta-learning adds to the few-shot answer.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metagui.core.algorithms.base import MetaLearner, Predictor
from metagui.core.chat.support import SupportSet, default_reply, humanise, load_image
from metagui.core.errors import ConfigError, DataError
from metagui.core.models import Preprocessing, TextFeaturizer

DEFAULT_THRESHOLD = 0.5
MAX_PER_INTENT = 20  # the latest examples of an intent that adaptation uses (keeps it fast)


# --- answers and adaptations ------------------------------------------------------------------------
@dataclass
class Answer:
    message: str
    intent: str
    confidence: float
    alternatives: list[tuple[str, float]]  # the next three intents after ``intent``
    reply: str
    fallback: bool  # below the threshold: the reply asks instead of guessing
    latency_ms: float  # encoding + prediction of this message

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["alternatives"] = [[n, p] for n, p in self.alternatives]
        return d


@dataclass
class Adaptation:
    names: list[str]  # label order
    predictor: Predictor
    seconds: float  # wall time of adapt(), encoding included
    examples: int
    method: str
    support: SupportSet | None = None  # what was adapted to (a copy)

    @property
    def ms(self) -> float:
        return self.seconds * 1000


def fallback_reply(top: Sequence[str], modality: str = "text") -> str:
    options = [f"“{humanise(n)}”" for n in top[:3]]
    said = options[0] if len(options) == 1 else ", ".join(options[:-1]) + " or " + options[-1]
    if modality == "image":
        return f"I'm not sure. Is it {said}?"
    return f"I'm not sure I understood. Did you mean {said}?"


class ChatEngine:
    """A trained meta-learner adapted to an editable support set; see the module docstring."""

    def __init__(self, learner: MetaLearner, pre: Preprocessing, support: SupportSet | None = None,
                 threshold: float = DEFAULT_THRESHOLD, max_per_intent: int = MAX_PER_INTENT,
                 config=None, run_id: int | None = None, steps: int | None = None) -> None:
        if learner.regression:
            raise ConfigError("this run is a regression model: use the regression view, not the chat")
        self.learner = learner.eval()
        self.pre = pre
        self.support = support or SupportSet(modality=pre.modality)
        self.threshold = threshold
        self.max_per_intent = max_per_intent
        self.config = config  # RunConfig of the run, when known (architecture of the baseline)
        self.run_id = run_id
        self.steps = steps  # inner steps override (optimisation learners); None: eval_steps
        self.adaptation: Adaptation | None = None
        self.transcript: list[dict[str, Any]] = []
        self._untrained: MetaLearner | None = None
        self._images: dict[str, torch.Tensor] = {}

    @classmethod
    def from_run(cls, store, run_id: int, kind: str | None = None, device: str = "cpu", **kw) -> ChatEngine:
        """Load a run's best checkpoint (or ``kind``; "last" when there is no best)."""
        from metagui.core.config import RunConfig
        from metagui.core.evaluation import checkpoint_folder, load_learner

        ckpts = store.checkpoints(run_id)
        kind = kind or ("best" if "best" in ckpts else "last")
        learner, meta = load_learner(checkpoint_folder(store, run_id, kind), kind, torch.device(device))
        pre = Preprocessing.from_dict(meta["preprocessing"])
        return cls(learner, pre, config=RunConfig.from_dict(meta["config"]), run_id=run_id, **kw)

    # --- what the learner is -----------------------------------------------------------------------
    @property
    def family(self) -> str:
        return self.learner.family

    @property
    def gradient_head(self) -> bool:
        """Adapted by the engine's head-building inner loop (see the module docstring)."""
        from metagui.core.algorithms.gradient import GradientLearner

        return isinstance(self.learner, GradientLearner) and type(self.learner).adapt is GradientLearner.adapt

    @property
    def inner_steps(self) -> int:
        return int(self.steps if self.steps is not None else self.learner.hp.get("eval_steps", 0))

    def method(self) -> str:
        """How the learner adapts, and on which pretrained text encoder (when it has one)."""
        if self.gradient_head:
            how = f"{self.inner_steps} inner gradient steps"
        elif self.family == "metric":
            how = "class embeddings of the examples, no gradient steps"
        else:
            how = f"{self.learner.label}'s own adaptation"
        if self.pre.text_encoder:
            how += f", on {Path(self.pre.text_encoder).name} sentence embeddings"
        return how

    @property
    def baseline_label(self) -> str:
        if self.gradient_head:
            return "Meta-learned start, not adapted (0 inner steps)"
        return "Same examples, encoder not meta-trained (its initial weights)"

    @property
    def baseline_help(self) -> str:
        if self.gradient_head:
            return ("The meta-learned initial weights before any inner step. Its head rows are not tied to any "
                    "intent (labels are shuffled in meta-training), so its answers are arbitrary, or uniform for "
                    f"more intents than it was trained with: what it knows of them comes from the {self.inner_steps} "
                    "adaptation steps.")
        why = ("A metric learner has no unadapted state: the class embeddings of the examples are its adaptation."
               if self.family == "metric" else f"{self.learner.label} has no unadapted predictor to show.")
        return (f"{why} So 'before' uses the same examples with the same architecture and seed, but weights "
                "that were never meta-trained: what meta-learning adds to few-shot answers.")

    # --- encoding ----------------------------------------------------------------------------------
    def encode(self, items: Sequence[str]) -> torch.Tensor:
        """Messages or examples -> model inputs (texts; image paths or PNG data URIs)."""
        dev = next(self.learner.parameters()).device
        if self.pre.modality == "text":
            return TextFeaturizer(self.pre)([str(i) for i in items]).to(dev)
        if self.pre.modality == "image":
            return torch.stack([self._image(str(i)) for i in items]).to(dev)
        raise ConfigError(f"the chat takes text or image models, not {self.pre.modality}")

    def _image(self, item: str) -> torch.Tensor:
        if item not in self._images:
            self._images[item] = load_image(item, self.pre)
            if len(self._images) > 4096:
                self._images.pop(next(iter(self._images)))
        return self._images[item]

    def _support_tensors(self, support: SupportSet) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        names = support.usable()
        items: list[str] = []
        labels: list[int] = []
        for i, name in enumerate(names):
            ex = support[name].examples[-self.max_per_intent :]
            items += ex
            labels += [i] * len(ex)
        x = self.encode(items)
        return x, torch.tensor(labels, dtype=torch.long, device=x.device), names

    # --- adaptation ----------------------------------------------------------------------------------
    def adapt(self, support: SupportSet | None = None) -> Adaptation:
        """Adapt to ``support`` (default: the engine's own; pass a copy when adapting in
        another thread while the user edits). Times the whole of it."""
        support = support or self.support
        problem = support.problem()
        if problem:
            raise DataError(problem)
        start = time.perf_counter()
        sx, sy, names = self._support_tensors(support)
        pred = self._adapt_learner(self.learner, sx, sy, len(names), self.inner_steps)
        seconds = time.perf_counter() - start
        method = f"{self.method()}; {pred.note}" if pred.note else self.method()  # e.g. the domain guard's answer
        ad = Adaptation(names, pred, seconds, int(sy.numel()), method, support.copy())
        self.adaptation = ad
        return ad

    def _adapt_learner(self, learner: MetaLearner, sx: torch.Tensor, sy: torch.Tensor, n: int, steps: int) -> Predictor:
        learner.eval()
        if self.gradient_head:
            return learner.adapt_head(sx, sy, n, steps)
        try:
            return learner.adapt(sx, sy, n)
        except ValueError as exc:
            raise ConfigError(f"{learner.label} cannot adapt to {n} intents: {exc}") from None

    def _baseline(self, sx: torch.Tensor, sy: torch.Tensor, n: int) -> Predictor:
        if self.gradient_head:
            return self.learner.adapt_head(sx, sy, n, 0)
        return self._adapt_learner(self.untrained_learner(), sx, sy, n, self.inner_steps)

    def untrained_learner(self) -> MetaLearner:
        """The run's learner as it was before meta-training: same architecture, same seed."""
        if self._untrained is None:
            from metagui.core import algorithms
            from metagui.core.models import make_backbone

            kind = self.config.algorithm.backbone if self.config is not None else "auto"
            seed = self.config.training.seed if self.config is not None else 0
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                backbone = make_backbone(kind, self.pre)
                fresh = algorithms.create(self.learner.name, backbone, self.learner.n_way, dict(self.learner.hp))
            dev = next(self.learner.parameters()).device
            self._untrained = fresh.to(dev).eval()
        return self._untrained

    # --- answering ------------------------------------------------------------------------------------
    def _require(self) -> Adaptation:
        if self.adaptation is None:
            raise DataError("adapt to the support set first")
        return self.adaptation

    def probabilities(self, messages: Sequence[str], predictor: Predictor | None = None) -> torch.Tensor:
        """[n, N] probabilities over the adapted intents (batched; for evaluations)."""
        ad = self._require()
        return (predictor or ad.predictor).predict(self.encode(messages)).float().cpu()

    def predict(self, messages: Sequence[str], batch: int = 256) -> list[str]:
        ad = self._require()
        out: list[str] = []
        for i in range(0, len(messages), batch):
            p = self.probabilities(messages[i : i + batch])
            out += [ad.names[j] for j in p.argmax(-1).tolist()]
        return out

    def answer(self, message: str, predictor: Predictor | None = None, support: SupportSet | None = None) -> Answer:
        """The reply to ``message``: the predicted intent's reply, or a fallback question when
        the confidence is under the threshold."""
        ad = self._require()
        support = support or self.support
        start = time.perf_counter()
        p = (predictor or ad.predictor).predict(self.encode([message]))[0].float().cpu()
        return self._answer(message, p, (time.perf_counter() - start) * 1000, ad.names, support)

    def _answer(self, message: str, p: torch.Tensor, latency: float, names: Sequence[str], support) -> Answer:
        """The answer to ``message`` from its class probabilities ``p``: the top intent, the
        next three, and its reply (or the fallback question under the threshold)."""
        order = torch.argsort(p, descending=True).tolist()
        ranked = [(names[j], float(p[j])) for j in order[:4]]
        intent, conf = ranked[0]
        fallback = conf < self.threshold
        if fallback:
            reply = fallback_reply([n for n, _ in ranked], self.pre.modality)
        else:
            reply = support.reply(intent) if intent in support else default_reply(intent)
        return Answer(message, intent, conf, ranked[1:4], reply, fallback, latency)

    def answers(self, messages: Sequence[str], batch: int = 256) -> list[Answer]:
        """``answer`` for many messages at once (encoded and predicted in batches); each
        answer's latency is its batch's time shared among its messages."""
        ad = self._require()
        out: list[Answer] = []
        for i in range(0, len(messages), batch):
            chunk = list(messages[i : i + batch])
            start = time.perf_counter()
            probs = ad.predictor.predict(self.encode(chunk)).float().cpu()
            latency = (time.perf_counter() - start) * 1000 / max(1, len(chunk))
            out += [self._answer(message, p, latency, ad.names, self.support)
                    for message, p in zip(chunk, probs, strict=True)]
        return out

    def compare(self, message: str) -> tuple[Answer, Answer]:
        """(before, after): the same message answered without and with adaptation."""
        ad = self._require()
        sx, sy, names = self._support_tensors(ad.support or self.support)  # the adapted support set
        before_pred = self._baseline(sx, sy, len(names))
        before = self.answer(message, before_pred)
        return before, self.answer(message)

    # --- the conversation -------------------------------------------------------------------------------
    def ask(self, message: str, compare: bool = False) -> Answer:
        """Answer and record the exchange in the transcript."""
        if compare:
            before, answer = self.compare(message)
        else:
            before, answer = None, self.answer(message)
        ad = self._require()
        self.transcript.append({
            "time": time.time(), "message": message, "answer": answer.as_dict(),
            "before": before.as_dict() if before else None, "adapt_ms": round(ad.ms, 2),
            "intents": len(ad.names), "threshold": self.threshold, "feedback": None,
        })
        return answer

    def feedback(self, turn: int, correct_intent: str, adapt: bool = True) -> Adaptation | None:
        """The user says which intent message ``turn`` was (the predicted one when it was
        right): the message joins that intent's examples, and the engine re-adapts."""
        entry = self.transcript[turn]
        if correct_intent not in self.support:
            self.support.add_intent(correct_intent)
        added = self.support.add_example(correct_intent, entry["message"])
        entry["feedback"] = {"intent": correct_intent, "correct": correct_intent == entry["answer"]["intent"],
                             "added": added}
        return self.adapt() if adapt else None

    def clear(self) -> None:
        self.transcript = []

    # --- transcripts -------------------------------------------------------------------------------------
    def to_json(self, title: str = "") -> str:
        return json.dumps({"run_id": self.run_id, "title": title, "threshold": self.threshold,
                           "messages": self.transcript, "support": self.support.to_dict()}, indent=1)

    def transcript_csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["time", "message", "intent", "confidence", "fallback", "reply", "alternatives",
                    "latency_ms", "before_intent", "before_confidence", "feedback_intent", "feedback_correct"])
        for e in self.transcript:
            a, b, fb = e["answer"], e.get("before") or {}, e.get("feedback") or {}
            w.writerow([
                time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["time"])), e["message"], a["intent"],
                f"{a['confidence']:.4f}", a["fallback"], a["reply"],
                "; ".join(f"{n} {p:.3f}" for n, p in a["alternatives"]), f"{a['latency_ms']:.2f}",
                b.get("intent", ""), f"{b['confidence']:.4f}" if b else "", fb.get("intent", ""),
                fb.get("correct", "") if fb else "",
            ])
        return buf.getvalue()

    def save(self, store, title: str, transcript_id: int | None = None) -> int:
        if self.run_id is None:
            raise DataError("this model is not a stored run: nothing to save the transcript with")
        return store.save_transcript(self.run_id, title, self.transcript, self.support.to_dict(), transcript_id)

    def restore(self, row: dict[str, Any]) -> None:
        """Reopen a saved transcript (a ``RunStore.transcripts`` row or an exported JSON)."""
        self.support = SupportSet.from_dict(row.get("support") or {})
        self.transcript = list(row.get("messages") or [])
        self.adaptation = None


def gradient_start(learner, n: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor | float]]:
    """Fast weights and step sizes the engine starts its inner loop from for ``n`` intents
    (``GradientLearner.head_start``)."""
    return learner.head_start(n)


# --- evaluation helpers (tests, benchmarks, the tour) ----------------------------------------------------------
def held_out_accuracy(engine: ChatEngine, items: Sequence[str], labels: Sequence[str]) -> float:
    """Accuracy of the adapted engine on messages whose intents are known."""
    if not items:
        return float("nan")
    predicted = engine.predict(list(items))
    return float(np.mean([p == y for p, y in zip(predicted, labels, strict=True)]))


def latency_stats(samples_ms: Sequence[float]) -> dict[str, float]:
    a = np.asarray(samples_ms, dtype=np.float64)
    return {"median_ms": float(np.median(a)), "p95_ms": float(np.percentile(a, 95)), "n": int(a.size)}
