"""The contract every meta-learner implements, its hyperparameter schema, and the registry.

    learner = create("maml", backbone, n_way=5, hyperparams={...})
    metrics = learner.meta_step(batch)        # one meta-update, returns floats
    scores  = learner.evaluate(batch)         # per-task query metric after adaptation
    pred    = learner.adapt(support_x, support_y)
    probs   = pred.predict(x)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from metagui.core.errors import ConfigError
from metagui.core.tasks import EpisodeBatch

CPU_PASS_ITEMS = 64

FAMILIES = {
    "optimisation": "Optimisation-based",
    "metric": "Metric / memory-based",
    "probabilistic": "Probabilistic",
    "rl": "Reinforcement learning",
}


@dataclass(frozen=True)
class HyperParam:
    """One knob: the GUI builds its form from these, the CLI validates with them."""

    name: str
    type: type  # int | float | bool | str
    default: Any
    help: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    log: bool = False  # spin on a log scale (learning rates)
    # values older configs wrote, and what they mean now: ((old, new), ...)
    legacy: tuple[tuple[Any, Any], ...] = ()

    def validate(self, value: Any) -> Any:
        for old, new in self.legacy:
            if type(value) is type(old) and value == old:
                value = new
        t = self.type
        if t is bool:
            if not isinstance(value, bool):
                raise ConfigError(f"{self.name} must be true or false, got {value!r}")
            return value
        if t is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{self.name} must be an integer, got {value!r}")
        elif t is float:
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ConfigError(f"{self.name} must be a number, got {value!r}")
            value = float(value)
        elif t is str:
            if not isinstance(value, str) or (self.choices and value not in self.choices):
                raise ConfigError(f"{self.name} must be one of {', '.join(self.choices)}, got {value!r}")
            return value
        if self.low is not None and value < self.low:
            raise ConfigError(f"{self.name} must be at least {self.low}, got {value}")
        if self.high is not None and value > self.high:
            raise ConfigError(f"{self.name} must be at most {self.high}, got {value}")
        return value


# the preset each text-capable learner has for the built-in n-gram text encoder (chosen
# with ``metagui bench text``); new text configs start from it
TEXT_PRESET = "Text (built-in encoder)"
# ... and for a frozen pretrained sentence encoder with a meta-learned adapter (chosen with
# ``metagui bench text --encoder``); new configs on such an encoder start from it
PRETRAINED_PRESET = "Text (pretrained encoder)"

# metric learners and VERSA on a pretrained encoder (MetaLearner.guards_domain)
DOMAIN_GUARD = HyperParam(
    "domain_guard", bool, True,
    "On a pretrained text encoder: answer a support set from another domain than meta-training's (its "
    "sentences far from the training intents' mean embedding) with the frozen encoder's nearest class mean, "
    "which what was meta-learned on one business did not beat on another's (README, On a pretrained "
    "sentence encoder). Support sets of the training domain, new intents included, get the meta-learned model.",
)
COMMON = (
    HyperParam("meta_lr", float, 1e-3, "Step size of the outer (meta) optimiser (Adam).", 1e-6, 10.0, log=True),
    HyperParam("meta_batch", int, 4, "Tasks (episodes) per meta-update.", 1, 256),
)


class Predictor:
    """A model adapted to one support set. ``predict`` returns class probabilities
    [n, n_way] (classification) or values [n, 1] (regression).

    Probabilistic learners (PLATIPUS, VERSA) adapt several sampled models: they pass
    ``samples_fn`` (x -> [S, n, n_way or 1], one slice per sampled model) and ``predict``
    is then the average over the samples. ``uncertainty`` works for every learner."""

    def __init__(
        self, fn: Callable[[torch.Tensor], torch.Tensor], n_way: int, adapt_seconds: float = 0.0,
        samples_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ):
        self._fn = fn
        self._samples_fn = samples_fn
        self.n_way = n_way
        self.adapt_seconds = adapt_seconds
        self.note = ""  # how it answers, where that is not the meta-learned model (the domain guard)

    @property
    def stochastic(self) -> bool:
        """Whether the predictor holds several sampled models."""
        return self._samples_fn is not None

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self._fn(x)

    @torch.no_grad()
    def predict_samples(self, x: torch.Tensor) -> torch.Tensor:
        """The prediction of each sampled model [S, n, ...] (S = 1 for deterministic learners)."""
        return self._samples_fn(x) if self._samples_fn is not None else self._fn(x)[None]

    @torch.no_grad()
    def uncertainty(self, x: torch.Tensor) -> torch.Tensor:
        """Per-item uncertainty [n]: predictive entropy in nats (classification) or the
        standard deviation of the sampled models' values (regression; 0 if deterministic)."""
        if self.n_way == 0:
            s = self.predict_samples(x)
            return s.std(0, unbiased=False).flatten(1).mean(1)
        p = self.predict(x).clamp_min(1e-12)
        return -(p * p.log()).sum(-1)


class MetaLearner(nn.Module):
    """Base class: subclasses define ``outer_loss`` (for meta_step and evaluate) and
    ``adapt``. The meta-optimiser lives here so that checkpoints hold all of the state."""

    name: ClassVar[str]
    label: ClassVar[str]
    family: ClassVar[str]
    summary: ClassVar[str]
    paper: ClassVar[str] = ""
    hyperparams: ClassVar[tuple[HyperParam, ...]] = ()
    presets: ClassVar[dict[str, dict[str, Any]]] = {}
    modalities: ClassVar[frozenset[str]] = frozenset({"image", "text"})
    guards_domain: ClassVar[bool] = False  # has DOMAIN_GUARD: see ``domain_guard``

    def __init__(self, backbone: nn.Module, n_way: int, hyperparams: dict[str, Any] | None = None):
        super().__init__()
        self.backbone = backbone
        self.n_way = n_way
        self.regression = n_way == 0
        self.hp = self.validate_hyperparams(hyperparams or {})
        self.build()
        self.optimizer = self.make_optimizer()

    # --- schema --------------------------------------------------------------------------
    @classmethod
    def schema(cls) -> tuple[HyperParam, ...]:
        return COMMON + cls.hyperparams

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {h.name: h.default for h in cls.schema()}

    @classmethod
    def validate_hyperparams(cls, values: dict[str, Any]) -> dict[str, Any]:
        by_name = {h.name: h for h in cls.schema()}
        unknown = sorted(set(values) - set(by_name))
        if unknown:
            raise ConfigError(f"{cls.label} has no hyperparameter {', '.join(unknown)} (it has {', '.join(by_name)})")
        out = cls.defaults()
        for k, v in values.items():
            out[k] = by_name[k].validate(v)
        return out

    # --- hooks for subclasses ---------------------------------------------------------------
    def build(self) -> None:
        """Create heads and other modules (after self.hp is set)."""

    def make_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hp["meta_lr"])

    def outer_loss(self, batch: EpisodeBatch) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
        """Mean query loss (differentiable), per-task query metric [T], extra metrics."""
        raise NotImplementedError

    def adapt(self, support_x: torch.Tensor, support_y: torch.Tensor, n_way: int | None = None) -> Predictor:
        raise NotImplementedError

    def set_progress(self, fraction: float) -> None:
        """Called by the trainer before each step with the fraction of training done."""

    # --- the contract ----------------------------------------------------------------------
    def calibrate(self, batch: EpisodeBatch) -> dict | None:
        """Settle, on a batch of the run's shape, whatever the learner times before its first
        meta-step (``vectorise = "auto"``), so that the step's own time is the step's; returns
        the choice made, or None when there is nothing to settle."""
        return None

    def meta_step(self, batch: EpisodeBatch) -> dict[str, float]:
        self.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss, per_task, extra = self.outer_loss(batch)
        if loss.requires_grad:
            (loss + self.regulariser()).backward()
        self.optimizer.step()
        return {"loss": float(loss.detach()), self.metric_name: float(per_task.mean()), **extra}

    def regulariser(self) -> torch.Tensor | float:
        """Added to the meta-loss of the ``outer_loss`` just computed before the backward pass
        (the reported loss stays the query loss): the backbone's weight penalty, if it has one."""
        penalty = getattr(self.backbone, "penalty", None)
        return penalty() if penalty is not None else 0.0

    def evaluate(self, batch: EpisodeBatch) -> tuple[torch.Tensor, dict[str, float]]:
        """Per-task query metric [T] after adapting to each support set (no meta-update)."""
        self.eval()
        with torch.enable_grad():  # inner loops differentiate even at evaluation time
            loss, per_task, extra = self.outer_loss(batch, evaluating=True)  # type: ignore[call-arg]
        return self.guarded(batch, per_task.detach()), {"loss": float(loss.detach()), **extra}

    # --- the domain guard (a pretrained encoder's EmbeddingAdapter) ---------------------------
    def domain_guard(self) -> nn.Module | None:
        """The backbone, when it holds a fitted meta-training domain and this learner answers
        support sets from elsewhere with the frozen encoder's class means (``DOMAIN_GUARD``)."""
        if not self.guards_domain or not self.hp.get("domain_guard", True):
            return None
        return self.backbone if getattr(self.backbone, "guards_domain", False) else None

    @staticmethod
    def frozen_class_means(support_x: torch.Tensor, support_onehot: torch.Tensor, query_x: torch.Tensor) -> torch.Tensor:
        """Class probabilities [T, Q, N] by cosine to the class means of the frozen embeddings
        (the inputs themselves: an adapter's backbone takes the frozen encoder's output)."""
        protos = F.normalize(onehot_means(support_x, support_onehot), dim=-1)
        return (10.0 * F.normalize(query_x, dim=-1) @ protos.transpose(1, 2)).softmax(-1)

    def guarded(self, batch: EpisodeBatch, per_task: torch.Tensor) -> torch.Tensor:
        """``per_task`` accuracies, those of support sets from another domain replaced by the
        frozen encoder's nearest class mean's (what ``adapt`` answers them with)."""
        guard = self.domain_guard()
        if guard is None:
            return per_task
        outside = ~guard.in_domain(batch.support_x)
        if not bool(outside.any()):
            return per_task
        onehot = F.one_hot(batch.support_y, batch.n_way).to(batch.support_x.dtype)
        probs = self.frozen_class_means(batch.support_x, onehot, batch.query_x)
        frozen = (probs.argmax(-1) == batch.query_y).to(per_task.dtype).mean(1)
        return torch.where(outside.to(per_task.device), frozen.to(per_task.device), per_task)

    def guarded_predictor(self, support_x: torch.Tensor, support_y: torch.Tensor, n_way: int) -> Predictor | None:
        """The frozen encoder's nearest class mean, when the domain guard finds ``support_x``
        outside the meta-training domain; None otherwise (answer with the learner)."""
        guard = self.domain_guard()
        if guard is None or bool(guard.in_domain(support_x[None])[0]):
            return None
        onehot = F.one_hot(support_y, n_way).to(support_x.dtype)[None]
        pred = Predictor(lambda x: self.frozen_class_means(support_x[None], onehot, x[None])[0], n_way)
        pred.note = ("these examples look unlike the intents this model was meta-trained on, so it answers "
                     "with the pretrained encoder's class means (the domain guard)")
        return pred

    @property
    def metric_name(self) -> str:
        return "mse" if self.regression else "accuracy"

    # --- shared helpers ----------------------------------------------------------------------
    def task_loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(out, y) if self.regression else F.cross_entropy(out, y)

    def task_metric(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.regression:
            return ((out - y) ** 2).mean()
        return (out.argmax(-1) == y).float().mean()

    def embed_tasks(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone over [T, n, ...] -> [T, n, d] in flat forward passes of whole episodes
        (batch norm keeps per-episode statistics, see ``models.Conv4``). On the CPU, passes
        hold at most ``CPU_PASS_ITEMS`` items: past that, convolutions fall out of cache and
        get slower per item (``metagui bench train`` shows it); GPUs take the whole batch."""
        t, n = x.shape[:2]
        flat = x.reshape(t * n, *x.shape[2:])
        per_pass = t if x.device.type != "cpu" else max(1, CPU_PASS_ITEMS // n)
        chunks = [
            self.backbone(flat[i * n : (i + per_pass) * n], tasks=min(per_pass, t - i))
            for i in range(0, t, per_pass)
        ]
        return torch.cat(chunks).reshape(t, n, -1)


REGISTRY: dict[str, type[MetaLearner]] = {}


def register(cls: type[MetaLearner]) -> type[MetaLearner]:
    REGISTRY[cls.name] = cls
    return cls


def get(name: str) -> type[MetaLearner]:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown algorithm '{name}' (choose from {', '.join(REGISTRY)})") from None


def create(name: str, backbone: nn.Module, n_way: int, hyperparams: dict[str, Any] | None = None) -> MetaLearner:
    cls = get(name)
    modality = "regression" if n_way == 0 else None
    if modality and modality not in cls.modalities:
        raise ConfigError(f"{cls.label} does not do regression; choose one of {', '.join(n for n, c in REGISTRY.items() if 'regression' in c.modalities)}")
    return cls(backbone, n_way, hyperparams)


def one_hot_means(emb: torch.Tensor, y: torch.Tensor, n_way: int) -> torch.Tensor:
    """Class means of embeddings [T, S, d] with labels [T, S] -> [T, n_way, d] (works for
    unbalanced support sets)."""
    return onehot_means(emb, F.one_hot(y, n_way).to(emb.dtype))


def onehot_means(emb: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
    """Class means of embeddings [T, S, d] given one-hot labels [T, S, N] -> [T, N, d]; any
    sizes (the exported graphs build the one-hot with a dynamic N)."""
    return onehot.transpose(1, 2) @ emb / onehot.sum(1).clamp_min(1).unsqueeze(-1)
