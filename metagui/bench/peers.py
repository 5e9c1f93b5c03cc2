"""Second-order MAML written five ways, for ``metagui bench train``: each implementation
takes the same model (the same initial weights), the same meta-batches and the same
hyperparameters, and computes the same meta-gradient (``check_gradients`` says how far each
is from the reference).

- ``functional``: the reference, a plain loop over tasks: per task, inner SGD steps on an
  explicit parameter dict (``torch.func.functional_call``, ``torch.autograd.grad`` with
  ``create_graph=True``), the query loss; the mean over tasks; one backward pass.
- ``higher`` (PyPI ``higher``): ``innerloop_ctx`` with a differentiable SGD per task, the
  query loss's backward pass per task (as its MAML example does).
- ``learn2learn``: ``l2l.algorithms.MAML``, ``clone`` and ``adapt`` per task, backward per
  task (as its examples do).
- ``metagui``: MetaGUI's MAML as shipped (``vectorise = "auto"``: the first meta-batch times
  vmap, the loop and threads, the fastest is kept); ``metagui-loop``, ``metagui-vmap`` and
  ``metagui-threads`` force one.

Each peer owns a copy of the weights and its own Adam meta-optimiser, so a meta-step is the
same work everywhere: zero the gradients, the meta-gradient, one Adam step.

A "shared" head (the Text preset's: one meta-learned row copied for every class) is a view
in the functional reference, as in MetaGUI. higher and learn2learn adapt module parameters,
so they get ``way`` identical rows instead: the same function and the same inner updates;
their head gradient summed over the rows is the shared row's.
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from metagui.core import algorithms
from metagui.core.algorithms import batching
from metagui.core.algorithms.base import MetaLearner
from metagui.core.tasks import EpisodeBatch

IMPLS = ("functional", "higher", "learn2learn", "metagui", "metagui-loop", "metagui-vmap", "metagui-threads")
REFERENCE = "functional"
# why a peer may be missing (printed in its row instead of numbers)
ABSENT = {
    "higher": "not installed (pip install higher, or pip install 'metagui[bench]')",
    "learn2learn": "not importable (does not build on Python 3.11)",
}


@dataclass(frozen=True)
class ModelSpec:
    """One benchmark model and its tasks, as plain data (it travels to the memory worker as
    JSON). ``way`` 0 is regression."""

    name: str
    backbone: str  # "mlp" | "conv4" | "text"
    size: int  # hidden units (mlp), filters (conv4), hash slots (text)
    way: int
    shot: int
    query: int
    tasks: int
    inner_steps: int
    inner_lr: float
    meta_lr: float
    head: str = "per_class"
    image_size: int = 28
    buckets: int = 1 << 18
    width: int = 164  # text: token ids per item (the demo intents' longest item)
    tokens: tuple[int, int] = (30, 100)  # text: tokens per item, drawn uniformly (demo mean 65)

    def describe(self) -> str:
        task = (f"{self.tasks} tasks of {self.shot} support + {self.query} query points" if not self.way else
                f"{self.way}-way {self.shot}-shot {self.query} queries per class, {self.tasks} tasks")
        model = {
            "mlp": f"sinusoid MLP 1-{self.size}-{self.size}-1",
            "conv4": f"Conv-4 ({self.size} filters, batch norm on batch statistics), {self.image_size}x{self.image_size} px",
            "text": f"built-in n-gram text encoder ({self.buckets} buckets, {self.size} slots, {self.head} head), "
                    f"{self.width} ids per item, {self.tokens[0]}-{self.tokens[1]} tokens",
        }[self.backbone]
        return (f"{model}; {task}; {self.inner_steps} inner step{'s' * (self.inner_steps > 1)} of "
                f"{self.inner_lr:g}, second order, Adam {self.meta_lr:g}")

    def hyperparams(self, vectorise: str) -> dict:
        return {"inner_lr": self.inner_lr, "inner_steps": self.inner_steps, "meta_lr": self.meta_lr,
                "meta_batch": self.tasks, "head": self.head, "vectorise": vectorise}

    def make_backbone(self) -> nn.Module:
        from metagui.core.models import MLP, Conv4, NgramEncoder

        if self.backbone == "mlp":
            return MLP(1, self.size, 2)
        if self.backbone == "conv4":
            return Conv4(1, self.size, self.image_size)
        # the built-in encoder (featurizer version 2: words + three n-gram lengths); token
        # dropout off: random masks would make the implementations compute different things
        return NgramEncoder(self.buckets, 4, self.size, token_dropout=0.0)

    def make_batch(self, seed: int) -> EpisodeBatch:
        if self.backbone == "mlp":
            from metagui.core.data.sinusoid import SinusoidTasks

            return SinusoidTasks(self.shot, self.query).sample(self.tasks, np.random.default_rng(seed))
        g = torch.Generator().manual_seed(seed)
        t, n, k, q = self.tasks, self.way, self.shot, self.query

        def items(per_class: int) -> torch.Tensor:
            if self.backbone == "conv4":
                return torch.rand(t, n * per_class, 1, self.image_size, self.image_size, generator=g)
            ids = torch.randint(1, self.buckets, (t, n * per_class, self.width), generator=g)
            lengths = torch.randint(self.tokens[0], self.tokens[1] + 1, (t, n * per_class, 1), generator=g)
            return ids * (torch.arange(self.width) < lengths)  # 0 pads each item after its tokens

        labels = lambda per_class: torch.arange(n).repeat_interleave(per_class).expand(t, -1)  # noqa: E731
        return EpisodeBatch(items(k), labels(k), items(q), labels(q), n)


MODELS = {
    "mlp": ModelSpec("mlp", "mlp", 40, 0, 10, 10, 25, 5, 0.01, 1e-3),
    "conv4": ModelSpec("conv4", "conv4", 64, 5, 1, 15, 8, 5, 0.4, 1e-3),
    # the Text preset (core.algorithms.gradient.TEXT) on the intents demo's 5-way 5-shot tasks
    "text": ModelSpec("text", "text", 4096, 5, 5, 5, 4, 1, 3.0, 3e-3, head="shared"),
}


def available(impl: str) -> bool:
    """MetaGUI's own and the functional reference always; a peer when it imports (one that
    is installed but fails to import counts as absent too)."""
    if impl not in ABSENT:
        return True
    try:
        importlib.import_module(impl)
    except Exception:  # noqa: BLE001
        return False
    return True


# --- the implementations ------------------------------------------------------------------
class Net(nn.Module):
    """Backbone + linear head, the model every peer adapts (parameter names as MetaGUI's)."""

    def __init__(self, backbone: nn.Module, head: nn.Linear) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


class Peer:
    """One implementation: ``meta_backward`` leaves the meta-gradient in ``.grad``."""

    def __init__(self, model: nn.Module, spec: ModelSpec) -> None:
        self.model, self.spec = model, spec
        self.optimizer = torch.optim.Adam(model.parameters(), lr=spec.meta_lr)

    def meta_backward(self, batch: EpisodeBatch) -> None:
        raise NotImplementedError

    def step(self, batch: EpisodeBatch) -> None:
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        self.meta_backward(batch)
        self.optimizer.step()

    def gradient(self, batch: EpisodeBatch) -> dict[str, torch.Tensor]:
        """The meta-gradient at the current weights (no update), in MetaGUI's shapes."""
        self.model.train()
        self.model.zero_grad(set_to_none=True)
        self.meta_backward(batch)
        out = {k: p.grad.detach().clone() for k, p in self.model.named_parameters() if p.grad is not None}
        self.model.zero_grad(set_to_none=True)
        return self.fold(out)

    def fold(self, grads: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return grads

    # shared by the peers: the loss, batch-norm-aware query outputs, the backbone's penalty
    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(out, y) if self.spec.way == 0 else F.cross_entropy(out, y)

    def query_out(self, f: Callable[[torch.Tensor], torch.Tensor], sx: torch.Tensor, qx: torch.Tensor) -> torch.Tensor:
        """Batch-norm backbones normalise the queries with the support items (as MetaGUI)."""
        if getattr(self.model.backbone, "batch_independent", False):
            return f(qx)
        return f(torch.cat([sx, qx]))[sx.shape[0]:]

    def penalty(self) -> torch.Tensor | float:
        penalty = getattr(self.model.backbone, "penalty", None)
        return penalty() if penalty is not None else 0.0


class Functional(Peer):
    def meta_backward(self, batch: EpisodeBatch) -> None:
        s = self.spec
        base = dict(self.model.named_parameters())
        if s.head == "shared" and s.way:
            base["head.weight"] = base["head.weight"].expand(s.way, -1)
            base["head.bias"] = base["head.bias"].expand(s.way)
        losses = []
        for t in range(batch.n_tasks):
            sx, sy, qx, qy = batch.support_x[t], batch.support_y[t], batch.query_x[t], batch.query_y[t]
            params = base
            for _ in range(s.inner_steps):
                loss = self.loss(functional_call(self.model, params, (sx,)), sy)
                grads = torch.autograd.grad(loss, tuple(params.values()), create_graph=True)
                params = {k: p - s.inner_lr * g for (k, p), g in zip(params.items(), grads, strict=True)}
            losses.append(self.loss(self.query_out(lambda x, p=params: functional_call(self.model, p, (x,)), sx, qx), qy))
        (torch.stack(losses).mean() + self.penalty()).backward()


class RowsHead(Peer):
    """Peers that adapt module parameters: a shared head becomes ``way`` identical rows."""

    def fold(self, grads: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.spec.head == "shared" and self.spec.way:
            grads["head.weight"] = grads["head.weight"].sum(0, keepdim=True)
            grads["head.bias"] = grads["head.bias"].sum(0, keepdim=True)
        return grads


class Higher(RowsHead):
    def __init__(self, model: nn.Module, spec: ModelSpec) -> None:
        super().__init__(model, spec)
        self.inner = torch.optim.SGD(model.parameters(), lr=spec.inner_lr)

    def meta_backward(self, batch: EpisodeBatch) -> None:
        import higher

        for t in range(batch.n_tasks):
            sx, sy, qx, qy = batch.support_x[t], batch.support_y[t], batch.query_x[t], batch.query_y[t]
            with higher.innerloop_ctx(self.model, self.inner, copy_initial_weights=False) as (fmodel, diffopt):
                for _ in range(self.spec.inner_steps):
                    diffopt.step(self.loss(fmodel(sx), sy))
                (self.loss(self.query_out(fmodel, sx, qx), qy) / batch.n_tasks).backward()
        penalty = self.penalty()
        if isinstance(penalty, torch.Tensor):
            penalty.backward()


class Learn2Learn(RowsHead):
    def __init__(self, model: nn.Module, spec: ModelSpec) -> None:
        import learn2learn as l2l

        super().__init__(model, spec)
        self.maml = l2l.algorithms.MAML(model, lr=spec.inner_lr, first_order=False)

    def meta_backward(self, batch: EpisodeBatch) -> None:
        for t in range(batch.n_tasks):
            sx, sy, qx, qy = batch.support_x[t], batch.support_y[t], batch.query_x[t], batch.query_y[t]
            learner = self.maml.clone()
            for _ in range(self.spec.inner_steps):
                learner.adapt(self.loss(learner(sx), sy))
            (self.loss(self.query_out(learner, sx, qx), qy) / batch.n_tasks).backward()
        penalty = self.penalty()
        if isinstance(penalty, torch.Tensor):
            penalty.backward()


class MetaGUI:
    """MetaGUI's MAML through its public learner API (``meta_step`` is the timed step)."""

    def __init__(self, learner: MetaLearner) -> None:
        self.learner = learner

    def step(self, batch: EpisodeBatch) -> None:
        self.learner.meta_step(batch)

    def gradient(self, batch: EpisodeBatch) -> dict[str, torch.Tensor]:
        lr = self.learner
        lr.train()
        lr.zero_grad(set_to_none=True)
        lr.meta_work(batch, lr.task_mode(batch, lr.first_order))  # what meta_step computes; auto calibrates once
        penalty = lr.regulariser()
        if isinstance(penalty, torch.Tensor) and penalty.requires_grad:
            penalty.backward()
        out = {k: p.grad.detach().clone() for k, p in lr.named_parameters() if p.grad is not None}
        lr.zero_grad(set_to_none=True)
        return out

    @property
    def mode(self) -> str:
        """How the meta-batches run: the forced mode, or auto's choice."""
        hp = self.learner.hp["vectorise"]
        return self.learner.batching.get("mode", "?") if hp == "auto" else hp


PEERS: dict[str, type[Peer]] = {"functional": Functional, "higher": Higher, "learn2learn": Learn2Learn}
VECTORISE = {"metagui": "auto", "metagui-loop": "loop", "metagui-vmap": "vmap", "metagui-threads": "threads"}


def build(spec: ModelSpec, impls: list[str], device: torch.device, seed: int = 0) -> dict[str, Peer | MetaGUI]:
    """Every implementation in ``impls`` (available ones only) from one set of initial
    weights: a MetaGUI MAML learner made with ``seed``, copied."""
    torch.manual_seed(seed)
    first = algorithms.create("maml", spec.make_backbone(), spec.way, spec.hyperparams("auto")).to(device)
    state = first.state_dict()
    out: dict[str, Peer | MetaGUI] = {}
    for impl in impls:
        if impl in VECTORISE:
            learner = first if VECTORISE[impl] == "auto" else algorithms.create(
                "maml", spec.make_backbone(), spec.way, spec.hyperparams(VECTORISE[impl])).to(device)
            learner.load_state_dict(state)
            out[impl] = MetaGUI(learner)
            continue
        head = copy.deepcopy(first.head)
        if impl != "functional" and spec.head == "shared" and spec.way:
            rows = nn.Linear(head.in_features, spec.way).to(device)
            with torch.no_grad():
                rows.weight.copy_(head.weight.expand(spec.way, -1))
                rows.bias.copy_(head.bias.expand(spec.way))
            head = rows
        out[impl] = PEERS[impl](Net(copy.deepcopy(first.backbone), head), spec)
    return out


class Floor:
    """Not a meta-learner: one forward and one backward pass over a meta-batch's items (support
    and query of every task, no inner loop), the gradients of every weight. Any meta-step
    computes at least this much. How fast that pass runs depends on how the items are grouped
    (all at once can leave the caches, task by task pays per-call overheads), so the bench
    times each ``GROUPINGS`` and takes the fastest: the reference's time over that bounds what
    an implementation that groups its work in one of these ways could gain."""

    GROUPINGS = ("all", "tasks", "threads")  # threads: the tasks spread over torch's CPU threads

    def __init__(self, learner: MetaLearner, grouping: str = "all") -> None:
        self.learner, self.grouping = learner, grouping

    def step(self, batch: EpisodeBatch) -> None:
        lr = self.learner
        if self.grouping == "all":
            self._pass(lr, batch.support_x.flatten(0, 1), batch.query_x.flatten(0, 1),
                       batch.support_y.flatten(0, 1), batch.query_y.flatten(0, 1), batch.n_way)
        elif self.grouping == "tasks":
            for t in range(batch.n_tasks):
                self._pass(lr, batch.support_x[t], batch.query_x[t], batch.support_y[t], batch.query_y[t], batch.n_way)
        else:
            twins = lr.replicas(min(batch.n_tasks, torch.get_num_threads()))
            batching.spread([lambda w, t=t: self._pass(twins[w], batch.support_x[t], batch.query_x[t],
                                                       batch.support_y[t], batch.query_y[t], batch.n_way)
                             for t in range(batch.n_tasks)])

    @staticmethod
    def _pass(lr: MetaLearner, sx, qx, sy, qy, n_way: int) -> None:
        params = lr.fast_params(n_way or None)
        loss = lr.task_loss(lr.run(params, torch.cat([sx, qx])), torch.cat([sy, qy]))
        torch.autograd.grad(loss, tuple(params.values()))


def floors(spec: ModelSpec, device: torch.device, seed: int = 0) -> dict[str, Floor]:
    """A ``Floor`` per grouping that this device can run (threads: on a CPU with several
    torch threads; also for a backbone that draws random numbers, which MetaGUI never runs on
    threads: a lower floor only makes the bound it gives looser)."""
    torch.manual_seed(seed)
    learner = algorithms.create("maml", spec.make_backbone(), spec.way, spec.hyperparams("loop")).to(device).train()
    threads = "threads" in batching.modes(device)
    return {g: Floor(learner, g) for g in Floor.GROUPINGS if g != "threads" or threads}


def in_float64(runner: Peer | MetaGUI, batch: EpisodeBatch) -> tuple[Peer | MetaGUI, EpisodeBatch]:
    """A float64 copy of an implementation (a MetaGUI learner keeps the batching it has
    chosen) and of a batch: the gradient check's second opinion, free of float32 rounding."""
    twin = copy.deepcopy(runner)
    (twin.learner if isinstance(twin, MetaGUI) else twin.model).double()

    def f64(x: torch.Tensor) -> torch.Tensor:
        return x.double() if x.is_floating_point() else x

    return twin, EpisodeBatch(f64(batch.support_x), f64(batch.support_y), f64(batch.query_x), f64(batch.query_y),
                              batch.n_way, batch.classes)


def compare(grads: dict[str, torch.Tensor], ref: dict[str, torch.Tensor]) -> tuple[float, float]:
    """Largest absolute difference from the reference meta-gradient, and that relative to
    the reference's largest entry."""
    if set(grads) != set(ref):
        raise ValueError(f"gradients of different parameters: {sorted(set(grads) ^ set(ref))}")
    diff = max(float((grads[k] - ref[k]).abs().max()) for k in ref)
    scale = max(float(v.abs().max()) for v in ref.values())
    return diff, diff / scale if scale else diff

