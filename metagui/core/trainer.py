"""The meta-training loop: validation with confidence intervals, best/last checkpoints,
pause / resume / cooperative cancel, a NaN guard, and events for whoever is watching.

The trainer knows nothing of Qt: the GUI's worker thread calls ``run`` and forwards the
plain-dict events it receives through queued signals.
"""

from __future__ import annotations

import math
import os
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metagui.core.checkpoint import load_checkpoint, save_checkpoint, verify_checkpoint
from metagui.core.config import RunConfig
from metagui.core.device import select_device
from metagui.core.distributed import Distributed, check_distributable
from metagui.core.errors import Cancelled, ConfigError, DataError, MetaGUIError, TrainingFailed
from metagui.core.experiment import Experiment, evaluate
from metagui.core.store import ACTIVE_STATES, RunStore, training_process_state
from metagui.core.tasks import step_rng

Event = dict[str, Any]


class TrainingControl:
    """Thread-safe flags the trainer checks between meta-steps."""

    def __init__(self) -> None:
        self._cancel = threading.Event()
        self._running = threading.Event()
        self._running.set()

    def cancel(self) -> None:
        self._cancel.set()
        self._running.set()  # wake a paused loop so that it can stop

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def wait_while_paused(self, on_pause: Callable[[], None], on_resume: Callable[[], None]) -> None:
        if self._running.is_set():
            return
        on_pause()
        while not self._running.wait(0.1):
            pass
        on_resume()


@dataclass
class RunResult:
    run_id: int | None
    status: str  # completed | cancelled | diverged | failed
    steps: int
    best_val: float | None = None
    best_val_ci: float | None = None
    last_val: float | None = None
    duration_s: float = 0.0
    error: str = ""
    metrics: dict[str, float] = field(default_factory=dict)


class Trainer:
    def __init__(
        self,
        config: RunConfig,
        store: RunStore | None = None,
        on_event: Callable[[Event], None] | None = None,
        control: TrainingControl | None = None,
        run_dir: Path | None = None,
        resume_run: int | None = None,
        project_id: int | None = None,
        experiment: Experiment | None = None,
        init_from: int | None = None,
        distributed: Distributed | None = None,
    ) -> None:
        self.config = config
        self.init_from = init_from  # fine-tune: start from this run's best checkpoint (its parent)
        self.store = store
        self.on_event = on_event or (lambda e: None)
        self.control = control or TrainingControl()
        self.resume_run = resume_run
        self.project_id = project_id
        self.experiment = experiment
        # one rank of a torchrun launch: rank 0 alone writes (store, checkpoints), see core.distributed
        self.dist = distributed
        self.writes = distributed is None or distributed.is_main
        self.error_shared = False  # a start-up error every rank knows (rank 0 reports it)
        self._run_dir = run_dir
        self.run_id: int | None = resume_run
        self._recording = False  # the store's run row is this trainer's to update
        self._last_saved: int | None = None  # step of the newest "last" checkpoint of this run

    # --- helpers ----------------------------------------------------------------------------
    def _calibrate(self, learner, batch) -> None:
        """``vectorise = "auto"``'s timing, before the first step and outside its time; the log
        says what was chosen and why."""
        from metagui.core.algorithms.batching import describe

        if learner.hp.get("vectorise") == "auto":
            self.log("Choosing how to run a meta-batch's tasks (vectorise = auto)...")
        choice = learner.calibrate(batch)
        if choice:
            self.emit("batching", message=describe(choice))

    def emit(self, kind: str, **data: Any) -> None:
        self.on_event({"kind": kind, "run_id": self.run_id, **data})

    def log(self, message: str) -> None:
        self.emit("log", message=message)

    @property
    def run_dir(self) -> Path:
        if self._run_dir is None:
            if self.store is not None:
                self._run_dir = self.store.runs_dir / f"run-{self.run_id}"
            else:  # no store to keep it: a temporary folder, never the working directory
                self._run_dir = Path(tempfile.mkdtemp(prefix="metagui-run-"))
        return self._run_dir

    def _validate_config(self) -> None:
        t = self.config.training
        if t.steps < 1:
            raise ConfigError("training.steps must be at least 1")
        if t.val_every < 1 or t.val_episodes < 1:
            raise ConfigError("training.val_every and training.val_episodes must be at least 1")

    # --- the loop ---------------------------------------------------------------------------
    def run(self) -> RunResult:
        started = time.time()
        if self.dist is not None:
            return self._run_distributed(started)
        try:
            self._validate_config()
            device = select_device(self.config.training.device)
            if self.experiment is None:
                self.log("Loading data...")
                self.experiment = Experiment.prepare(
                    self.config,
                    progress=lambda d, n: self.emit("progress", phase="data", done=d, total=n),
                    cancel=lambda: self.control.cancelled,
                )
            exp = self.experiment
            learner = exp.build_learner().to(device)
            # The optimiser was made before .to(device); parameters move in place, so it stays valid.
            start_step = self._open_run(exp, device, learner)
        except Cancelled:
            return self._finish(RunResult(self.run_id, "cancelled", 0), started)
        except MetaGUIError as exc:
            # a run that could not be resumed keeps its status: nothing of it was touched
            self.emit("error", message=str(exc))
            return self._finish(RunResult(self.run_id, "failed", 0, error=str(exc)), started)
        return self._loop(exp, learner, device, start_step, started)

    def _run_distributed(self, started: float) -> RunResult:
        """As ``run``, on every rank: all prepare, then rank 0's outcome, weights and
        optimiser state reach all, and the loop runs in step."""
        d = self.dist
        error, status, learner = None, "failed", None
        try:
            self._validate_config()
            if self.experiment is None:
                if self.writes:
                    self.log("Loading data...")
                self.experiment = Experiment.prepare(
                    self.config,
                    progress=lambda n, t: self.emit("progress", phase="data", done=n, total=t) if self.writes else None,
                    cancel=lambda: self.control.cancelled,
                )
            exp = self.experiment
            check_distributable(self.config, d.world)
            learner = exp.build_learner().to(d.device)
            start_step = self._open_run(exp, d.device, learner) if self.writes else 0
        except Cancelled as exc:
            error, status = str(exc) or "cancelled", "cancelled"
        except MetaGUIError as exc:
            error = str(exc)
        try:
            error = d.all_ok(error)
            self.error_shared = error is not None
            if error is None:
                got = d.sync_start(learner, {"step": start_step, "best": getattr(self, "_best", None),
                                             "best_ci": getattr(self, "_best_ci", None), "run_id": self.run_id})
        except MetaGUIError as exc:
            error = str(exc)
        if error is not None:
            if status != "cancelled":
                self.emit("error", message=error)
            return self._finish(RunResult(self.run_id, status, 0, error=error), started)
        if not self.writes:
            self.run_id, self._best, self._best_ci = got["run_id"], got["best"], got["best_ci"]
        d.install(learner)
        return self._loop(exp, learner, d.device, int(got["step"]), started)

    def _open_run(self, exp: Experiment, device: torch.device, learner) -> int:
        cfg = self.config
        ds_name = exp.dataset.name if exp.dataset else cfg.dataset.source
        task = exp.task_label
        if self.init_from is not None:
            self._warm_start(learner)
            exp.fit_domain(learner.backbone)  # fine-tuned on this data: its domain, not the parent's
        if self.store is not None and self.resume_run is None:
            if exp.dataset is not None:
                self.store.record_dataset(exp.dataset_id(), ds_name, cfg.dataset.source, cfg.dataset.path,
                                          cfg.to_dict()["dataset"], exp.dataset.stats().as_dict())
            self.run_id = self.store.create_run(
                name=cfg.name or f"{cfg.algorithm.name} on {ds_name}", config_toml=cfg.to_toml(),
                algorithm=cfg.algorithm.name, dataset=ds_name, task=task, device=str(device),
                project_id=self.project_id, dataset_id=exp.dataset_id() if exp.dataset else "",
                parent_id=self.init_from,
            )
            self._recording = True
        elif self.run_id is None:
            self.run_id = 0
        start_step = 0
        if self.resume_run is not None:
            start_step = self._resume(learner)
        if self.store is not None:
            self.store.start_run(self.run_id, str(device), self.dist.world if self.dist is not None else 1)
            self._recording = True
        self.emit("started", device=str(device), steps=cfg.training.steps, start_step=start_step,
                  metric=learner.metric_name, algorithm=cfg.algorithm.name)
        self.log(f"Run {self.run_id}: {cfg.algorithm.name}, {task}, on {device}")
        if self.init_from is not None:
            self.log(self._warm_note)
        return start_step

    def _warm_start(self, learner) -> None:
        """Load the parent run's best checkpoint (its last when it has no best) into
        ``learner``: same algorithm, same model shapes; a fresh optimiser."""
        parent = self.init_from
        if self.store is None:
            raise ConfigError("fine-tuning from a run needs the run store it is in")
        if self.resume_run is not None:
            raise ConfigError("a resumed run continues its own weights: it cannot also start from another run's")
        row = self.store.run(parent)
        if row["algorithm"] != self.config.algorithm.name:
            raise ConfigError(f"run {parent} is {row['algorithm']}; this config trains {self.config.algorithm.name}: "
                              "fine-tuning keeps the algorithm (and the model) of the run it starts from")
        ckpts = self.store.checkpoints(parent)
        kind = "best" if "best" in ckpts else "last" if "last" in ckpts else None
        if kind is None:
            raise MetaGUIError(f"run {parent} has no checkpoint to fine-tune from")
        try:
            meta = load_checkpoint(self.store.runs_dir / f"run-{parent}", kind, learner, with_optimizer=False)
        except DataError as exc:
            raise ConfigError(f"run {parent}'s model does not fit this config (another backbone, encoder or "
                              f"number of classes?): {exc}") from None
        self._warm_note = f"Fine-tuning from run {parent} ({kind} checkpoint, step {meta.get('step')})"

    def _resume(self, learner) -> int:
        """Load the run's last checkpoint (weights and optimiser state) into ``learner``;
        the step it was saved at."""
        rid = self.resume_run
        if self.store is not None:
            resume_point(self.store, rid, self.config)
        meta = load_checkpoint(self.run_dir, "last", learner, repair=True)
        start_step = int(meta["step"])
        self._best = meta.get("best_val")
        self._best_ci = meta.get("best_val_ci")
        self._last_saved = start_step
        if self.store is not None:
            self.store.drop_metrics_after(rid, start_step)  # steps after the checkpoint are trained again
            self.store.update_run(rid, config=self.config.to_toml())
        self.log(f"Resumed run {rid} at step {start_step}")
        return start_step

    def _loop(self, exp: Experiment, learner, device: torch.device, start_step: int, started: float) -> RunResult:
        cfg = self.config.training
        metric = learner.metric_name
        higher_better = metric != "mse"
        best = getattr(self, "_best", None)
        best_ci = getattr(self, "_best_ci", None)
        last_val = None
        pending: list[tuple[int, str, float]] = []
        last_flush = time.perf_counter()
        loop_start = time.perf_counter()
        step = start_step
        val_batches = None
        val_diverged = ""  # a distributed run's rank 0 shares its verdict at the next step's agreement
        if not self.writes:
            pass  # rank 0 alone validates
        elif "val" in exp.samplers:
            val_batches = exp.validation_batches("val", cfg.val_episodes, max(learner.hp["meta_batch"], 16), cfg.seed)
        else:
            self.log("No validation classes: validation is skipped (set val_ratio above 0)")
        status = "completed"
        error = ""
        last_metrics: dict[str, float] = {}

        def flush() -> None:
            nonlocal last_flush
            if self.store is not None:
                self.store.add_metrics(self.run_id, pending)
                self.store.update_run(self.run_id, steps_done=step, best_val=best, best_val_ci=best_ci)
            pending.clear()
            last_flush = time.perf_counter()

        def validate() -> None:
            nonlocal best, best_ci, last_val, val_diverged
            v = evaluate(learner, val_batches, device)
            last_val = v[metric]
            pending.extend((step, f"val/{k}", val) for k, val in v.items())
            if not math.isfinite(last_val):
                if self.dist is not None and step < cfg.steps:
                    val_diverged = f"validation {metric} {last_val}"  # the other ranks learn it next step
                    return
                raise _Diverged(f"validation {metric} {last_val}")
            improved = best is None or (last_val > best if higher_better else last_val < best)
            if improved:
                best, best_ci = last_val, v["ci95"]
            # metrics first: a kill before the checkpoint then resumes earlier and retrains the
            # recorded steps (their metrics are replaced), never after steps whose metrics are lost
            flush()
            if improved:
                self._save(learner, "best", step, best, v, best_ci)
            self._save(learner, "last", step, best, v, best_ci)
            self.emit("validation", step=step, metrics=v, best=best)
            self.log(f"step {step}: val {metric} {last_val:.4f} ± {v['ci95']:.4f}")

        try:
            if val_batches is not None and step == 0 and getattr(getattr(learner, "backbone", None), "validate_start", False):
                validate()  # the untrained start (e.g. a frozen pretrained encoder) may stay the best
            while step < cfg.steps:
                if self.dist is None:
                    self.control.wait_while_paused(
                        lambda s=step, b=best, c=best_ci: self._paused(learner, s, b, c),
                        lambda s=step: self._resumed(s),
                    )
                    cancelled = self.control.cancelled
                else:  # every rank stops, pauses and resumes at the same step
                    cancelled, diverged = self._agree_between_steps(learner, step, best, best_ci, bool(val_diverged))
                    if diverged:
                        raise _Diverged(val_diverged or "validation on rank 0 was not finite")
                if cancelled:
                    status = "cancelled"
                    break
                learner.set_progress(step / cfg.steps)
                # the whole meta-batch, whatever the number of processes; each rank keeps its slice
                batch = exp.sample("train", learner.hp["meta_batch"], step_rng(cfg.seed, "train", step))
                n_tasks = batch.n_tasks
                if self.dist is not None:
                    batch = self.dist.take(batch)
                batch = batch.to(device)
                if step == start_step:
                    self._calibrate(learner, batch)
                torch.manual_seed(step_torch_seed(cfg.seed, step))  # dropout, sampling: the same on a resume
                t0 = time.perf_counter()
                m = learner.meta_step(batch)
                if self.dist is not None:
                    m = self.dist.mean_metrics(m)
                    m["allreduce_ms"] = self.dist.reduce_s * 1e3  # rank 0's wait for the gradients
                dt = time.perf_counter() - t0
                step += 1
                finite_weights = _finite(learner)  # the loss comes before the update: check both
                if not finite_weights or not all(math.isfinite(v) for v in m.values()):
                    raise _Diverged(f"loss {m.get('loss')}" if finite_weights else "non-finite weights")
                elapsed = time.perf_counter() - loop_start
                done = step - start_step
                m["tasks_per_s"] = n_tasks / max(dt, 1e-9)
                m["elapsed_s"] = elapsed
                m["eta_s"] = elapsed / done * (cfg.steps - step)
                if device.type == "cuda":
                    m["gpu_mem_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
                last_metrics = m
                pending.extend((step, f"train/{k}", v) for k, v in m.items())
                self.emit("metrics", step=step, metrics=m)
                if val_batches is not None and (step % cfg.val_every == 0 or step == cfg.steps):
                    validate()
                else:
                    if val_batches is None and step % cfg.val_every == 0 and step < cfg.steps:
                        flush()
                        self._save(learner, "last", step, best, {}, best_ci)  # something to resume from
                    if step % cfg.log_every == 0:
                        self.log(f"step {step}: loss {m['loss']:.4f}, {metric} {m[metric]:.4f}, {m['tasks_per_s']:.1f} tasks/s")
                if self.store is not None and (time.perf_counter() - last_flush > 0.5 or step == cfg.steps):
                    flush()
        except _Diverged as exc:
            status = "diverged"
            if self._last_saved is not None:
                kept = f"the last good checkpoint (step {self._last_saved}) is kept"
            else:
                kept = "no checkpoint was saved before it"
            error = f"training diverged at step {step} ({exc}); {kept}"
            self.emit("error", message=error)
        except MetaGUIError as exc:
            status, error = "failed", str(exc)
            self.emit("error", message=error)
        except Exception as exc:  # a bug or resource error: keep what was trained, report it
            status, error = "failed", f"{type(exc).__name__}: {exc}"
            self.emit("error", message=error, traceback=traceback.format_exc())
        if self.store is not None and pending:
            self.store.add_metrics(self.run_id, pending)
        if status in ("completed", "cancelled") and step > start_step and self._last_saved != step:
            self._save(learner, "last", step, best, {}, best_ci)
        if status == "completed" and val_batches is None:
            self._save(learner, "best", step, None, {})
        if status == "failed" and self.dist is not None and self._last_saved is not None:
            error += (f"; the last good checkpoint (step {self._last_saved}) is kept: "
                      f"`metagui train --resume {self.run_id}` continues it")
        result = RunResult(self.run_id, status, step, best, best_ci, last_val, error=error, metrics=last_metrics)
        self.learner = learner
        return self._finish(result, started)

    def _agree_between_steps(self, learner, step: int, best, best_ci, diverged: bool) -> tuple[bool, bool]:
        """(stop, diverged) as any rank says. A pause asked of any rank (rank 0 gets the app's)
        pauses all: they keep agreeing every 0.1 s, so that a long pause never times out a
        collective, until the pause is lifted or a stop comes."""
        c = self.control
        cancelled, paused, diverged = self.dist.agree(c.cancelled, c.paused, diverged)
        if not paused or cancelled or diverged:
            return cancelled, diverged
        self._paused(learner, step, best, best_ci)
        while paused and not cancelled:
            time.sleep(0.1)
            cancelled, paused = self.dist.agree(c.cancelled, c.paused)
        if not cancelled:
            self._resumed(step)
        return cancelled, False

    def _paused(self, learner, step: int, best, best_ci=None) -> None:
        if step > 0 and self._last_saved != step:
            self._save(learner, "last", step, best, {}, best_ci)
        if self.store is not None:
            self.store.update_run(self.run_id, status="paused", steps_done=step)
        self.emit("status", status="paused", step=step)
        self.log(f"Paused at step {step}")

    def _resumed(self, step: int) -> None:
        if self.store is not None:
            self.store.update_run(self.run_id, status="running")
        self.emit("status", status="running", step=step)
        self.log(f"Resumed at step {step}")

    def _save(self, learner, kind: str, step: int, best, val: dict, best_ci: float | None = None) -> None:
        if not self.writes:  # rank 0 keeps the run's checkpoints
            if kind == "last":
                self._last_saved = step
            return
        meta = {
            "run_id": self.run_id, "step": step, "best_val": best, "best_val_ci": best_ci, "validation": val,
            "config": self.config.to_dict(), "algorithm": self.config.algorithm.name,
            "n_way": self.experiment.n_way, "preprocessing": self.experiment.pre.as_dict(),
            "hyperparams": learner.hp,
        }
        path = save_checkpoint(self.run_dir, kind, learner, meta)
        if kind == "last":
            self._last_saved = step
        if self.store is not None:
            self.store.record_checkpoint(self.run_id, kind, str(path), step, val.get(learner.metric_name))

    def _finish(self, result: RunResult, started: float) -> RunResult:
        result.duration_s = time.time() - started
        if self.store is not None and self.run_id and self._recording:
            self.store.update_run(
                self.run_id, status=result.status, finished=time.time(), duration_s=result.duration_s,
                steps_done=result.steps, error=result.error,
            )
        self.emit("finished", status=result.status, steps=result.steps, best=result.best_val, error=result.error)
        return result


def resume_point(store: RunStore, run_id: int, config: RunConfig) -> dict[str, Any]:
    """The description of run ``run_id``'s last checkpoint, once it is known that the run can
    be resumed to ``config``'s steps: nobody else trains it, the checkpoint is whole, steps are
    left. A MetaGUIError says why not; nothing is changed but the reaping of dead runs."""
    store.reap_stale_runs()
    row = store.run(run_id)
    if row["status"] in ACTIVE_STATES and row.get("pid") != os.getpid() and training_process_state(row) != "dead":
        where = f" on {row['host']}" if row.get("host") else ""
        raise MetaGUIError(f"run {run_id} is being trained by another process (pid {row['pid']}{where}); "
                           "stop that one first")
    if "last" not in store.checkpoints(run_id):
        raise MetaGUIError(f"run {run_id} has no checkpoint to resume from: it stopped before its first one "
                           f"(one is saved every {config.training.val_every} steps); start it again instead")
    meta = verify_checkpoint(store.runs_dir / f"run-{run_id}", "last", repair=not store.readonly)
    if meta["step"] >= config.training.steps:
        raise ConfigError(f"run {run_id} has done {meta['step']} of its {config.training.steps} steps; "
                          "ask for more steps to train it further (--steps)")
    return meta


class _Diverged(Exception):
    """Raised inside the loop when a step or a validation is not finite."""


def step_torch_seed(seed: int, step: int) -> int:
    """torch's seed for one training step: what a step draws (dropout, samples) depends on the
    run's seed and the step only, so a resumed run retraces the uninterrupted one."""
    return int(np.random.default_rng([seed, 7919, step]).integers(2**62))


def _finite(learner) -> bool:
    """Whether every parameter is finite (one device sync, however many tensors)."""
    params = [p.detach() for p in learner.parameters() if p.is_floating_point()]
    return not params or bool(torch.stack([torch.isfinite(p).all() for p in params]).all())


def train_to_completion(cfg: RunConfig, experiment: Experiment, run_dir: str | Path | None = None,
                        keep: str = "last") -> tuple[Any, float]:
    """Meta-train ``cfg`` in this thread, without a run store (benchmarks, tests).

    Checkpoints go to ``run_dir`` (a temporary folder when None). ``keep="best"`` reloads
    the checkpoint that did best on validation. Returns (learner, seconds of training);
    raises TrainingFailed unless the run completed."""
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(run_dir or tmp)
        trainer = Trainer(cfg, experiment=experiment, run_dir=folder)
        result = trainer.run()
        if result.status != "completed":
            raise TrainingFailed(f"meta-training {cfg.algorithm.name} ended {result.status}: {result.error}")
        if keep == "best":
            load_checkpoint(folder, "best", trainer.learner, with_optimizer=False)
    return trainer.learner, time.perf_counter() - start
