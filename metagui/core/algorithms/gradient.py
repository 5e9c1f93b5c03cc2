"""Optimisation-based meta-learners: MAML, FOMAML, Meta-SGD and Reptile.

Inner loops are functional: parameters live in an explicit dict that each step replaces
(``functional_call`` + ``torch.autograd.grad``), so nothing is deep-copied per task and the
second-order MAML gradient flows through the inner updates.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from metagui.core.algorithms import batching
from metagui.core.algorithms.base import (
    PRETRAINED_PRESET,
    TEXT_PRESET,
    HyperParam,
    MetaLearner,
    Predictor,
    register,
)
from metagui.core.errors import ConfigError
from metagui.core.models import linear_tasks
from metagui.core.tasks import EpisodeBatch

Params = dict[str, torch.Tensor]

VECTORISE = HyperParam(
    "vectorise", str, "auto",
    "How the tasks of a meta-batch run while meta-training: vmap (all in one torch.func.vmap call), "
    "loop (one after the other), threads (the tasks spread over the CPU's threads, one thread "
    "each), or auto: each is timed on the first meta-batch and the fastest is kept, remembered "
    "per machine and model (vmap wins several times over on small models, threads on Conv-4 on "
    "a CPU: `metagui bench train`).",
    choices=("auto", "vmap", "loop", "threads"), legacy=((True, "vmap"), (False, "loop")),
)

HEAD = HyperParam(
    "head", str, "per_class",
    "Initial classifier head: one meta-learned row per class position (the paper), or one shared row "
    "copied for every class (as in UNICORN-MAML): labels are shuffled in every episode anyway, and a "
    "shared row adapts to any number of classes.",
    choices=("per_class", "shared"),
)

INNER = (
    HyperParam("inner_lr", float, 0.1, "Step size of the inner (task adaptation) gradient steps.", 1e-5, 100.0, log=True),
    HyperParam("inner_steps", int, 5, "Gradient steps on the support set during meta-training.", 1, 100),
    HyperParam("eval_steps", int, 10, "Gradient steps on the support set when adapting at test time.", 1, 200),
    HyperParam("eval_lr", float, 0.0,
               "Step size of the test-time steps; 0 = inner_lr. More, smaller steps at test time can fit more "
               "classes than meta-training saw (a shared head on 15 intents) where big steps overshoot.", 0.0, 100.0,
               log=True),
    HEAD,
    VECTORISE,
)

PAPER_OMNIGLOT = {"inner_lr": 0.4, "inner_steps": 1, "eval_steps": 3, "meta_lr": 1e-3, "meta_batch": 32}
PAPER_SINUSOID = {"inner_lr": 0.01, "inner_steps": 1, "eval_steps": 10, "meta_lr": 1e-3, "meta_batch": 25}
TEXT = {"head": "shared", "inner_lr": 3.0, "inner_steps": 1, "eval_steps": 20, "eval_lr": 0.5, "meta_lr": 3e-3}
# on a frozen pretrained encoder: a gentler meta step, and a longer test-time fit of head and
# adapter (fewer steps fall below the frozen encoder at 15 ways: `metagui bench text --encoder`)
PRETRAINED_TEXT = {**TEXT, "eval_steps": 50, "eval_lr": 1.0, "meta_lr": 1e-3}
CUSTOMER_SERVICE = {"inner_lr": 0.01, "inner_steps": 5, "eval_steps": 5, "meta_lr": 1e-3, "meta_batch": 32}


class GradientLearner(MetaLearner):
    """Shared machinery: a linear head on the backbone and a functional inner loop."""

    family = "optimisation"
    modalities = frozenset({"image", "text", "regression"})
    first_order = False

    def build(self) -> None:
        self.head = nn.Linear(self.backbone.emb_dim, 1 if self.shared_head else self.n_way or 1)
        self._modes: dict[str, dict] = {}  # calibration key -> batching.choose's answer
        self.batching: dict = {}  # how the last meta-batch ran under vectorise = "auto"

    @property
    def shared_head(self) -> bool:
        return self.hp.get("head") == "shared" and not self.regression

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))

    def fast_params(self, n_way: int | None = None) -> Params:
        """The parameters adapted by the inner loop. A shared head row is expanded to
        ``n_way`` rows (its gradient is the sum over the rows)."""
        params = {k: v for k, v in self.named_parameters() if k.startswith(("backbone.", "head."))}
        if self.shared_head and n_way:
            params["head.weight"] = params["head.weight"].expand(n_way, -1).contiguous()  # 4x faster products
            params["head.bias"] = params["head.bias"].expand(n_way)
        return params

    def step_size(self, name: str) -> torch.Tensor | float:
        return self.hp["inner_lr"]

    def test_step_size(self, name: str) -> torch.Tensor | float:
        """The step size of test-time adaptation (``eval_lr`` where the learner has it and it
        is set, else the meta-training one)."""
        return self.hp.get("eval_lr") or self.step_size(name)

    def run(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self, params, (x,))

    def run_query(self, params: Params, sx: torch.Tensor, qx: torch.Tensor) -> torch.Tensor:
        """Query outputs; batch-norm backbones see the support items too, so that a lone
        query is normalised with its episode's statistics."""
        if getattr(self.backbone, "batch_independent", False):
            return self.run(params, qx)
        return self.run(params, torch.cat([sx, qx]))[sx.shape[0] :]

    def inner_loop(
        self, params: Params, sx: torch.Tensor, sy: torch.Tensor, steps: int, create_graph: bool,
        curve: list[float] | None = None, qx: torch.Tensor | None = None, qy: torch.Tensor | None = None,
        test_time: bool = False, step_sizes: dict[str, torch.Tensor | float] | None = None,
    ) -> Params:
        """``steps`` gradient steps on the support loss. ``step_sizes`` (by parameter name)
        replaces the learner's own, for heads whose shape differs from the meta-learned one."""
        step_size = self.test_step_size if test_time else self.step_size
        if step_sizes is not None:
            step_size = step_sizes.__getitem__
        for _ in range(steps):
            loss = self.task_loss(self.run(params, sx), sy)
            grads = torch.autograd.grad(loss, tuple(params.values()), create_graph=create_graph)
            params = {k: _step(p, step_size(k), g) for (k, p), g in zip(params.items(), grads, strict=True)}
            if curve is not None:
                with torch.no_grad():
                    curve.append(float(self.task_loss(self.run_query(params, sx, qx), qy)))
        return params

    def task_mode(self, batch: EpisodeBatch, first_order: bool) -> str:
        """How this meta-batch's tasks run (``batching``): as set, or with "auto" the fastest
        here, timed once on a batch of this shape (``self.batching`` says which)."""
        mode = self.hp.get("vectorise", "loop")
        if mode != "auto":
            return mode
        key = batching.calibration_key(self, batch, first_order)
        if key not in self._modes:
            device = next(self.parameters()).device

            def trial(m: str) -> Callable[[], None]:
                def run() -> None:
                    try:
                        self.meta_work(batch, m)
                        batching.synchronise(device)
                    finally:  # also after running out of memory: no trial's gradient is kept
                        self.zero_grad(set_to_none=True)
                return run

            # the trials draw no random numbers the run would see (token dropout does draw)
            modes = batching.modes(device, random_backbone=_draws_random(self.backbone))

            def leaner(m: str) -> tuple[str, Callable[[], None]] | None:  # vmap out of memory: fewer tasks a call
                half = batching.smaller(m, batch.n_tasks)
                return (half, trial(half)) if half else None

            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                self._modes[key] = batching.choose(key, {m: trial(m) for m in modes}, leaner=leaner)
        self.batching = self._modes[key]
        return self.batching["mode"]

    def calibrate(self, batch: EpisodeBatch) -> dict | None:
        if self.hp.get("vectorise") != "auto":
            return None
        self.train()
        self.task_mode(batch, self.meta_first_order)
        return self.batching

    @property
    def meta_first_order(self) -> bool:
        """Whether meta-training's inner loops are first order (the batching choice's key)."""
        return self.first_order

    def meta_step(self, batch: EpisodeBatch) -> dict[str, Any]:
        self.train()
        mode = self.task_mode(batch, self.meta_first_order)
        self.optimizer.zero_grad(set_to_none=True)
        loss, per_task = self.meta_work(batch, mode)
        penalty = self.regulariser()
        if isinstance(penalty, torch.Tensor) and penalty.requires_grad:
            penalty.backward()
        self.optimizer.step()
        return {"loss": float(loss), self.metric_name: float(per_task.mean())}

    def meta_work(self, batch: EpisodeBatch, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The meta-gradient of one meta-batch, into ``.grad`` (no weight is updated), and the
        mean query loss and per-task metrics. vmap backpropagates the batched graph once; the
        loop backpropagates each task as soon as it is done, so one task's graph is alive at a
        time (the sum of the tasks' gradients is the mean loss's); threads does what the loop
        does, a task per CPU thread at a time, and adds the tasks' gradients up in task order."""
        steps, first_order = self.hp["inner_steps"], self.first_order
        if mode == "vmap" or batching.chunked(mode):  # chunked: each part's graph is freed before the next
            losses, metrics = [], []
            for part in batch.chunks(batching.chunk_size(mode, batch.n_tasks)):
                loss, per_task, _ = self.outer_loss_vmapped(part, steps, first_order)
                share = part.n_tasks / batch.n_tasks  # 1.0 for a single part: the mean loss itself
                (loss * share).backward()
                losses.append(loss.detach() * share)
                metrics.append(per_task)
            return torch.stack(losses).sum(), torch.cat(metrics)
        if mode == "threads":
            _check_threads_allowed(self.backbone)
            leaves = [p for p in self.parameters() if p.requires_grad]
            twins = self.replicas(min(batch.n_tasks, torch.get_num_threads()))

            def one(t: int, worker: int) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor | None, ...]]:
                loss, metric = twins[worker].task_loss_and_metric(batch, t, steps, not first_order)
                grads = torch.autograd.grad(loss / batch.n_tasks, leaves, allow_unused=True)
                return loss.detach(), metric, grads

            done = batching.spread([lambda w, t=t: one(t, w) for t in range(batch.n_tasks)])
            for i, p in enumerate(leaves):
                parts = [grads[i] for _, _, grads in done if grads[i] is not None]
                if parts:
                    total = torch.stack(parts).sum(0) if len(parts) > 1 else parts[0]
                    p.grad = total if p.grad is None else p.grad + total
            return torch.stack([d[0] for d in done]).mean(), torch.stack([d[1] for d in done])
        losses, metrics = [], []
        for loss, metric, _ in self.task_losses(batch, steps, not first_order):
            (loss / batch.n_tasks).backward()
            losses.append(loss.detach())
            metrics.append(metric)
        return torch.stack(losses).mean(), torch.stack(metrics)

    def replicas(self, n: int) -> list[GradientLearner]:
        """``n`` learners that share this one's parameters and buffers (``batching.replica``),
        in its train/eval mode: one per thread of the threads mode."""
        key = tuple(map(id, self.parameters())) + tuple(map(id, self.buffers()))
        if getattr(self, "_replica_key", None) != key or len(self._replica_list) < n:
            self._replica_key, self._replica_list = key, [batching.replica(self) for _ in range(n)]
        for twin in self._replica_list:
            twin.train(self.training)
        return self._replica_list[:n]

    def adapt_functional(self, params: Params, sx: torch.Tensor, sy: torch.Tensor, steps: int, first_order: bool) -> Params:
        """The inner loop in torch.func form (vmap-able): ``grad`` of the support loss."""

        def support_loss(p: Params) -> torch.Tensor:
            return self.task_loss(self.run(p, sx), sy)

        for _ in range(steps):
            g = grad(support_loss)(params)
            if first_order:
                g = {k: v.detach() for k, v in g.items()}
            params = {k: p - self.step_size(k) * g[k] for k, p in params.items()}
        return params

    def run_tasks(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        """Outputs [T, n, ...] of T tasks' inputs x [T, n, ...], task t through the weights
        ``params[name][t]``: the backbone's own ``forward_tasks`` (batched matrix products)
        where it has one, else ``functional_call`` under vmap. "different": a backbone that
        draws random numbers (the n-gram encoder's token dropout) draws them per task."""
        forward_tasks = getattr(self.backbone, "forward_tasks", None)
        if forward_tasks is None or type(self).forward is not GradientLearner.forward:
            return vmap(self.run, randomness="different")(params, x)
        body = forward_tasks({k[9:]: v for k, v in params.items() if k.startswith("backbone.")}, x)
        return linear_tasks(body, params["head.weight"], params["head.bias"])

    def run_query_tasks(self, params: Params, sx: torch.Tensor, qx: torch.Tensor) -> torch.Tensor:
        """``run_query`` for T tasks at once (``run_tasks``)."""
        if getattr(self.backbone, "batch_independent", False):
            return self.run_tasks(params, qx)
        return self.run_tasks(params, torch.cat([sx, qx], 1))[:, sx.shape[1] :]

    def adapt_batched(self, params: Params, sx: torch.Tensor, sy: torch.Tensor, steps: int, first_order: bool) -> Params:
        """``steps`` inner steps of every task at once. ``params`` have a leading task
        dimension (``run_tasks``), and one ``torch.autograd.grad`` of the tasks' summed support
        losses gives each task its own gradient (the tasks share no fast weight). On the
        sinusoid MLP this is about 2.3 times faster than ``torch.func.grad`` inside vmap
        (``adapt_functional``), and the meta-gradient is the same."""
        for _ in range(steps):
            loss = self.task_losses_batched(self.run_tasks(params, sx), sy).sum()
            grads = torch.autograd.grad(loss, tuple(params.values()), create_graph=not first_order)
            params = {k: _step(p, self.step_size(k), g) for (k, p), g in zip(params.items(), grads, strict=True)}
        return params

    def task_losses_batched(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``task_loss`` of each of T tasks' outputs [T, n, ...] -> [T]."""
        if type(self).task_loss is not MetaLearner.task_loss:
            return vmap(self.task_loss)(out, y)
        if self.regression:
            return (out - y).pow(2).flatten(1).mean(1)
        return F.cross_entropy(out.flatten(0, 1), y.flatten(), reduction="none").view(y.shape).mean(1)

    def outer_loss_vmapped(self, batch: EpisodeBatch, steps: int, first_order: bool):
        n = batch.n_tasks
        base = {k: v.expand(n, *v.shape) for k, v in self.fast_params(batch.n_way).items()}
        params = self.adapt_batched(base, batch.support_x, batch.support_y, steps, first_order)
        out = self.run_query_tasks(params, batch.support_x, batch.query_x)
        losses = self.task_losses_batched(out, batch.query_y)
        return losses.mean(), vmap(self.task_metric)(out.detach(), batch.query_y), {}

    def outer_loss(self, batch: EpisodeBatch, evaluating: bool = False):
        steps = self.hp["eval_steps"] if evaluating else self.hp["inner_steps"]
        second_order = not (self.first_order or evaluating)
        if not evaluating and self.task_mode(batch, not second_order) == "vmap":
            return self.outer_loss_vmapped(batch, steps, not second_order)
        return self.outer_loss_looped(batch, steps, second_order, evaluating)

    def task_losses(self, batch: EpisodeBatch, steps: int, second_order: bool, evaluating: bool = False
                    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, list[float] | None]]:
        """Task by task, lazily: the query loss after the inner loop (with its graph), the query
        metric, and when ``evaluating`` the query loss after each inner step."""
        for t in range(batch.n_tasks):
            curve: list[float] | None = [] if evaluating else None
            loss, metric = self.task_loss_and_metric(batch, t, steps, second_order, curve)
            yield loss, metric, curve

    def task_loss_and_metric(self, batch: EpisodeBatch, t: int, steps: int, second_order: bool,
                             curve: list[float] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Task ``t``'s query loss after the inner loop (with its graph) and its query metric;
        a ``curve`` list (test time) gets the query loss before and after each inner step."""
        base = self.fast_params(batch.n_way)
        sx, sy, qx, qy = batch.support_x[t], batch.support_y[t], batch.query_x[t], batch.query_y[t]
        if curve is not None:
            with torch.no_grad():
                curve.append(float(self.task_loss(self.run_query(base, sx, qx), qy)))
        params = self.inner_loop(base, sx, sy, steps, second_order, curve, qx, qy, test_time=curve is not None)
        out = self.run_query(params, sx, qx)
        return self.task_loss(out, qy), self.task_metric(out.detach(), qy)

    def outer_loss_looped(self, batch: EpisodeBatch, steps: int, second_order: bool, evaluating: bool = False):
        losses, metrics = [], []
        curves: list[list[float]] = []
        for loss, metric, curve in self.task_losses(batch, steps, second_order, evaluating):
            losses.append(loss)
            metrics.append(metric)
            if curve:
                curves.append(curve)
        extra: dict[str, float] = {}
        if curves:
            mean_curve = torch.tensor(curves).mean(0)
            extra = {f"adapt_loss_{i}": float(v) for i, v in enumerate(mean_curve)}
        return torch.stack(losses).mean(), torch.stack(metrics), extra

    def adapt(self, support_x: torch.Tensor, support_y: torch.Tensor, n_way: int | None = None) -> Predictor:
        n_way = n_way or self.n_way
        if not self.regression and not self.shared_head and n_way != self.n_way:
            raise ValueError(f"this model was meta-trained for {self.n_way}-way tasks, not {n_way}-way")
        self.eval()
        start = time.perf_counter()
        with torch.enable_grad():
            params = self.inner_loop(self.fast_params(n_way), support_x, support_y, self.hp["eval_steps"], False,
                                     test_time=True)
        return self._adapted(params, support_x, n_way, start)

    def head_start(self, n_way: int) -> tuple[Params, dict[str, torch.Tensor | float]]:
        """Fast weights to adapt to ``n_way`` classes, whatever the head was meta-trained for,
        and their test-time step sizes: the meta-learned body, and a head of the first
        ``n_way`` meta-learned rows or, for more classes than it has, ``n_way`` identical rows
        (the mean meta-learned row; identical rows start undecided, as a zero head would)."""
        params: Params = {}
        lrs: dict[str, torch.Tensor | float] = {}
        for k, v in self.fast_params().items():
            step = self.test_step_size(k)
            if k.startswith("head."):
                if n_way <= v.shape[0]:
                    v = v.detach()[:n_way]
                    step = step.detach()[:n_way] if isinstance(step, torch.Tensor) else step
                else:
                    v = v.detach().mean(0, keepdim=True).expand(n_way, *v.shape[1:])
                    if isinstance(step, torch.Tensor):
                        step = step.detach().mean(0, keepdim=True).expand(n_way, *step.shape[1:])
            elif isinstance(step, torch.Tensor):
                step = step.detach()
            params[k] = v.detach().clone().requires_grad_(True)
            lrs[k] = step
        return params, lrs

    def adapt_head(self, support_x: torch.Tensor, support_y: torch.Tensor, n_way: int,
                   steps: int | None = None) -> Predictor:
        """Test-time adaptation to any number of classes: the inner loop from ``head_start``,
        ``steps`` steps (default ``eval_steps``; 0: the meta-learned start itself)."""
        self.eval()
        start = time.perf_counter()
        params, lrs = self.head_start(n_way)
        steps = self.hp["eval_steps"] if steps is None else steps
        with torch.enable_grad():
            params = self.inner_loop(params, support_x, support_y, steps, False, step_sizes=lrs)
        return self._adapted(params, support_x, n_way, start)

    def _adapted(self, params: Params, support_x: torch.Tensor, n_way: int, start: float) -> Predictor:
        params = {k: v.detach() for k, v in params.items()}
        elapsed = time.perf_counter() - start

        def predict(x: torch.Tensor) -> torch.Tensor:
            out = self.run_query(params, support_x, x)
            return out if self.regression else out.softmax(-1)

        return Predictor(predict, n_way, elapsed)


@register
class MAML(GradientLearner):
    name = "maml"
    label = "MAML"
    summary = "Learns an initialisation from which a few gradient steps fit a new task (second-order)."
    paper = "Finn, Abbeel, Levine 2017, Model-Agnostic Meta-Learning"
    hyperparams = INNER
    presets = {
        "Omniglot 5-way (paper)": {"hyperparams": PAPER_OMNIGLOT},
        "Sinusoid (paper)": {"hyperparams": PAPER_SINUSOID},
        "Customer-service MAML": {"hyperparams": CUSTOMER_SERVICE, "task": {"shot": 5, "query": 5}},
        TEXT_PRESET: {"hyperparams": TEXT},
        PRETRAINED_PRESET: {"hyperparams": PRETRAINED_TEXT},
    }


@register
class FOMAML(MAML):
    name = "fomaml"
    label = "FOMAML"
    summary = "MAML without second derivatives: the query gradient at the adapted weights updates the initialisation."
    paper = "Finn, Abbeel, Levine 2017 (first-order approximation)"
    first_order = True


@register
class MetaSGD(GradientLearner):
    name = "metasgd"
    label = "Meta-SGD"
    summary = "MAML that also meta-learns a step size for every weight (direction and rate of adaptation)."
    paper = "Li, Zhou, Chen, Li 2017, Meta-SGD"
    hyperparams = (
        HyperParam("inner_lr", float, 0.1, "Initial value of every learned per-weight step size.", 1e-5, 100.0, log=True),
        HyperParam("inner_steps", int, 1, "Gradient steps on the support set during meta-training.", 1, 100),
        HyperParam("eval_steps", int, 1, "Gradient steps on the support set at test time.", 1, 200),
        HyperParam("first_order", bool, False, "Drop second derivatives (faster, less exact)."),
        HEAD,
        VECTORISE,
    )
    presets = {
        "Omniglot 5-way (paper)": {"hyperparams": {"inner_lr": 0.4, "inner_steps": 1, "eval_steps": 1, "meta_lr": 1e-3, "meta_batch": 32}},
        "Sinusoid (paper)": {"hyperparams": {"inner_lr": 0.01, "inner_steps": 1, "eval_steps": 1, "meta_lr": 1e-3, "meta_batch": 25}},
        TEXT_PRESET: {"hyperparams": {"head": "shared", "inner_lr": 3.0, "inner_steps": 1, "eval_steps": 1, "meta_lr": 3e-3}},
        # one step from a shared head's identical rows is a nearest class mean by dot product, which
        # falls below the frozen encoder's by cosine at 5 shots; a 50-step fit, as MAML's preset
        PRETRAINED_PRESET: {"hyperparams": {"head": "shared", "inner_lr": 1.0, "inner_steps": 1, "eval_steps": 50,
                                            "meta_lr": 3e-3}},
    }

    def build(self) -> None:
        super().build()
        self.first_order = bool(self.hp["first_order"])
        self.lrs = nn.ParameterDict(
            {_key(k): nn.Parameter(torch.full_like(p, self.hp["inner_lr"])) for k, p in self.fast_params().items()}
        )

    def step_size(self, name: str) -> torch.Tensor:
        return self.lrs[_key(name)]


def _step(p: torch.Tensor, size: torch.Tensor | float, g: torch.Tensor) -> torch.Tensor:
    """``p - size * g``; one operation (fewer autograd nodes) where the step size is a number."""
    return p - size * g if isinstance(size, torch.Tensor) else torch.add(p, g, alpha=-size)


def _draws_random(backbone: nn.Module) -> bool:
    """Whether the backbone draws random numbers while meta-training (the n-gram encoder's
    token dropout): tasks on several threads would draw from the one global generator in an
    order that changes from run to run, so such backbones never run on threads."""
    return float(getattr(backbone, "token_dropout", 0.0)) > 0


def _check_threads_allowed(backbone: nn.Module) -> None:
    if _draws_random(backbone):
        raise ConfigError("vectorise = \"threads\" cannot run a backbone that draws random numbers while training "
                          "(token dropout): its tasks would draw them in a different order on every run; "
                          "use auto, vmap or loop")


def _key(name: str) -> str:
    return name.replace(".", "__")


@register
class Reptile(GradientLearner):
    name = "reptile"
    label = "Reptile"
    summary = "Trains on each task with plain SGD, then moves the initialisation towards the adapted weights."
    paper = "Nichol, Achiam, Schulman 2018, On First-Order Meta-Learning Algorithms"
    hyperparams = (
        HyperParam("inner_lr", float, 0.1, "Step size of the inner SGD steps.", 1e-5, 10.0, log=True),
        HyperParam("inner_steps", int, 5, "SGD steps on each task during meta-training.", 1, 200),
        HyperParam("eval_steps", int, 10, "SGD steps on the support set at test time.", 1, 500),
        HyperParam("anneal", bool, True, "Anneal the outer step size linearly to zero over training."),
        HEAD,
        VECTORISE,
    )
    presets = {
        "Omniglot 5-way (paper-like)": {"hyperparams": {"inner_lr": 0.1, "inner_steps": 5, "eval_steps": 50, "meta_lr": 1.0, "meta_batch": 5}},
        "Sinusoid (paper)": {"hyperparams": {"inner_lr": 0.02, "inner_steps": 32, "eval_steps": 32, "meta_lr": 0.1, "meta_batch": 1}},
        # the 50-step head fit of MAML's preset, from a shared head: any number of classes
        PRETRAINED_PRESET: {"hyperparams": {"head": "shared", "inner_lr": 1.0, "inner_steps": 5, "eval_steps": 50}},
    }

    @classmethod
    def schema(cls):
        common = (
            HyperParam("meta_lr", float, 1.0, "Outer step size: fraction of the way to move towards the adapted weights.", 1e-4, 1.0, log=True),
            HyperParam("meta_batch", int, 5, "Tasks averaged per meta-update.", 1, 256),
        )
        return common + cls.hyperparams

    meta_first_order = True  # Reptile's inner loops never differentiate through themselves

    def make_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.hp["meta_lr"])

    def set_progress(self, fraction: float) -> None:
        if self.hp["anneal"]:
            for g in self.optimizer.param_groups:
                g["lr"] = self.hp["meta_lr"] * max(0.0, 1.0 - fraction)

    def meta_step(self, batch: EpisodeBatch) -> dict[str, Any]:
        self.train()
        delta, losses, metrics = self.task_deltas(batch, self.task_mode(batch, self.meta_first_order))
        self.optimizer.zero_grad(set_to_none=True)
        for k, p in self.fast_params().items():
            # a shared head row moves towards the mean of the rows it was copied to
            p.grad = delta[k] if delta[k].shape == p.shape else delta[k].mean(0, keepdim=True)
        self.optimizer.step()
        return {"loss": float(losses.mean()), self.metric_name: float(metrics.mean())}

    def meta_work(self, batch: EpisodeBatch, mode: str) -> None:
        self.task_deltas(batch, mode)

    def task_deltas(self, batch: EpisodeBatch, mode: str) -> tuple[Params, torch.Tensor, torch.Tensor]:
        """The mean move from the initialisation to each task's SGD-adapted weights (Reptile's
        meta-gradient), with the per-task query losses and metrics."""
        base = {k: v.detach() for k, v in self.fast_params(batch.n_way).items()}
        steps = self.hp["inner_steps"]

        def one(sx, sy, qx, qy):
            params = self.adapt_functional(base, sx, sy, steps, first_order=True)
            out = self.run_query(params, sx, qx)
            return ({k: base[k] - params[k] for k in base}, self.task_loss(out, qy).detach(),
                    self.task_metric(out, qy).detach())

        if mode == "vmap" or batching.chunked(mode):
            parts = [vmap(one, randomness="different")(p.support_x, p.support_y, p.query_x, p.query_y)
                     for p in batch.chunks(batching.chunk_size(mode, batch.n_tasks))]
            return ({k: torch.cat([moves[k] for moves, _, _ in parts]).mean(0).detach() for k in base},
                    torch.cat([losses for _, losses, _ in parts]), torch.cat([metrics for _, _, metrics in parts]))
        if mode == "threads":
            _check_threads_allowed(self.backbone)
            twins = self.replicas(min(batch.n_tasks, torch.get_num_threads()))
            done = iter(batching.spread([lambda w, t=t: twins[w].task_move(base, batch, t, steps)
                                         for t in range(batch.n_tasks)]))
        else:  # one task's adapted weights alive at a time
            done = (self.task_move(base, batch, t, steps) for t in range(batch.n_tasks))
        delta = {k: torch.zeros_like(v) for k, v in base.items()}
        losses, metrics = [], []
        for move, loss, metric in done:  # in task order, whichever thread computed them
            for k in delta:
                delta[k] += move[k] / batch.n_tasks
            losses.append(loss)
            metrics.append(metric)
        return delta, torch.stack(losses), torch.stack(metrics)

    def task_move(self, base: Params, batch: EpisodeBatch, t: int, steps: int) -> tuple[Params, torch.Tensor, torch.Tensor]:
        """Task ``t``: the move from ``base`` to its SGD-adapted weights, its query loss and metric."""
        sx, sy, qx, qy = batch.support_x[t], batch.support_y[t], batch.query_x[t], batch.query_y[t]
        start = {k: v.clone().requires_grad_(True) for k, v in base.items()}
        params = self.inner_loop(start, sx, sy, steps, False)
        with torch.no_grad():
            out = self.run_query(params, sx, qx)
            return {k: base[k] - params[k] for k in base}, self.task_loss(out, qy), self.task_metric(out, qy)
