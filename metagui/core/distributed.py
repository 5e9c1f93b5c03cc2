"""Meta-training on several processes: PyTorch's own ``torch.distributed``, launched by
``torchrun`` (``metagui train CONFIG --nproc N`` starts torchrun for you).

Every rank draws the whole meta-batch from the run's seed and the step (as one process
does) and keeps its own contiguous slice of the tasks, so the episodes never depend on the
number of processes. A learner's loss is a mean over its tasks; each rank weights its
gradients by its share of the tasks, and one ``all_reduce`` (sum) just before the
optimiser's step gives every rank the full meta-batch's mean gradient: the optimiser then
takes the same step everywhere, and 1 and N processes train the same weights (up to the
order of floating-point sums). Learners that draw random numbers inside a step (PLATIPUS's
samples, the n-gram encoder's token dropout) stay reproducible for a given number of
processes, but draw differently per slice than one process does.

Rank 0 owns the run (store, validation, checkpoints); the others train only. Stops are
agreed on: every step begins with a tiny ``all_reduce`` of each rank's stop flags, so all
ranks leave the loop at the same step.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from metagui.core.device import select_device
from metagui.core.errors import ConfigError, MetaGUIError

LOST = "stopped (killed or crashed)"


class RankLost(MetaGUIError):
    """Another process of the run stopped (killed, crashed, out of memory) mid-step."""


def launched_by_torchrun() -> bool:
    """Whether this process is one rank of a torchrun (or torch.distributed) launch."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def check_distributable(config, world: int) -> None:
    """Why ``config`` cannot train on ``world`` processes (a ConfigError), if it cannot."""
    from metagui.core import algorithms
    from metagui.core.models import RL_MODALITIES

    if config.dataset.source in RL_MODALITIES:
        raise ConfigError("reinforcement-learning runs (bandit, mdp) train in one process; start them without --nproc")
    meta_batch = config.algorithm.hyperparams.get("meta_batch",
                                                  algorithms.get(config.algorithm.name).defaults()["meta_batch"])
    if isinstance(meta_batch, int) and meta_batch < world:
        raise ConfigError(f"meta_batch {meta_batch} is smaller than the {world} processes: every process needs "
                          "at least one task of each meta-batch")


def share(n_tasks: int, world: int, rank: int) -> slice:
    """Rank ``rank``'s contiguous slice of ``n_tasks`` tasks (the first ``n % world`` ranks
    take one more)."""
    base, extra = divmod(n_tasks, world)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (1 if rank < extra else 0))


@dataclass
class Distributed:
    rank: int
    world: int
    local_rank: int
    device: torch.device
    weight: float = 1.0  # this rank's share of the current meta-batch's tasks
    reduce_s: float = 0.0  # seconds in the last gradient all_reduce
    reduce_bytes: int = 0  # its size (every gradient, and one flag per parameter)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device_preference: str = "auto") -> Distributed:
        """Join the process group torchrun set up: NCCL with one GPU per rank (the local
        rank's), gloo on the CPU."""
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local_rank = int(os.environ.get("LOCAL_RANK", rank))
        device = select_device(device_preference)
        if device.type == "cuda":
            if local_rank >= torch.cuda.device_count():
                raise ConfigError(f"rank {rank} needs GPU {local_rank}, but this machine has "
                                  f"{torch.cuda.device_count()}: start at most one process per GPU")
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        elif device.type != "cpu":
            raise ConfigError(f"distributed training runs on CUDA GPUs or the CPU, not {device.type}")
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                    **({"device_id": device} if device.type == "cuda" else {}))
        return cls(rank, world, local_rank, device)

    def close(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()

    # --- collectives, each failing as RankLost when a peer is gone -------------------------
    def _collective(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (RuntimeError, dist.DistBackendError) as exc:  # gloo / NCCL: connection closed, timeout
            raise RankLost(f"another process of this {self.world}-process run {LOST} "
                           f"while {what}; the run ends here") from exc

    def all_ok(self, error: str | None) -> str | None:
        """Every rank's start-up outcome: the first rank's error, or None when all are ready."""
        errors: list[Any] = [None] * self.world
        self._collective("starting", dist.all_gather_object, errors, error)
        return next((f"rank {r}: {e}" if r else e for r, e in enumerate(errors) if e), None)

    def sync_start(self, learner: torch.nn.Module, state: dict[str, Any]) -> dict[str, Any]:
        """Rank 0's weights, buffers, optimiser state and ``state`` (step, best...) on every rank."""
        for t in learner.state_dict().values():
            if isinstance(t, torch.Tensor):
                self._collective("starting", dist.broadcast, t.data, 0)
        box = [None]
        if self.is_main:
            opt = learner.optimizer.state_dict() if state.get("step") else None
            box = [{**state, "optimizer": _to_cpu(opt)}]
        self._collective("starting", dist.broadcast_object_list, box, 0)
        got = dict(box[0])
        opt = got.pop("optimizer")
        if opt is not None and not self.is_main:
            learner.optimizer.load_state_dict(opt)
        return got

    def take(self, batch):
        """This rank's slice of the meta-batch, and its share of the tasks as the gradient weight."""
        part = share(batch.n_tasks, self.world, self.rank)
        self.weight = (part.stop - part.start) / batch.n_tasks
        return type(batch)(batch.support_x[part], batch.support_y[part], batch.query_x[part], batch.query_y[part],
                           batch.n_way, batch.classes[part])

    def install(self, learner) -> None:
        """Sum the ranks' weighted gradients just before each step of the learner's optimiser."""
        learner.optimizer.register_step_pre_hook(lambda opt, args, kwargs: self.reduce_gradients(opt))

    def reduce_gradients(self, optimizer: torch.optim.Optimizer) -> None:
        params = [p for g in optimizer.param_groups for p in g["params"]]
        if not params:
            return
        has = torch.tensor([p.grad is not None for p in params], dtype=params[0].dtype, device=self.device)
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) * self.weight
                          for p in params] + [has])
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # time the reduction, not the backward still queued
        start = time.perf_counter()
        self._collective("averaging gradients", dist.all_reduce, flat)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.reduce_s = time.perf_counter() - start
        self.reduce_bytes = flat.numel() * flat.element_size()
        offset = 0
        for p, present in zip(params, flat[-len(params):].tolist(), strict=True):
            n = p.numel()
            p.grad = flat[offset:offset + n].view_as(p).clone() if present > 0 else None
            offset += n

    def mean_metrics(self, metrics: dict[str, float]) -> dict[str, float]:
        """Task-weighted mean of every rank's metrics: the full meta-batch's loss and metric."""
        keys = sorted(metrics)
        t = torch.tensor([float(metrics[k]) * self.weight for k in keys], dtype=torch.float64,
                         device=self.device)
        self._collective("sharing metrics", dist.all_reduce, t)
        return dict(zip(keys, t.tolist(), strict=True))

    def agree(self, *flags: bool) -> list[bool]:
        """Each flag, true if it is true on any rank (stop, diverged): all ranks act alike."""
        t = torch.tensor([float(f) for f in flags], device=self.device)
        self._collective("agreeing on the next step", dist.all_reduce, t, op=dist.ReduceOp.MAX)
        return [bool(v) for v in t.tolist()]


def gradient_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes one gradient all_reduce moves per rank: every parameter's gradient and a flag each."""
    params = [p for g in optimizer.param_groups for p in g["params"]]
    return sum(p.numel() for p in params) * params[0].element_size() + len(params) * params[0].element_size()


def _to_cpu(obj):
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj
