"""``metagui bench scale``: meta-training throughput on 1 and more processes (torchrun,
``metagui train --nproc N``), and a paper estimate for 8 GPUs.

Each row is a real run in its own processes, through the same launcher users run: the
config below, a throwaway store, ``N`` processes with ``cores // N`` threads each on the CPU
(gloo on loopback) or one GPU each (NCCL). Throughput is the whole meta-batch's tasks over
the wall time of the steps after ``warmup`` (``train/elapsed_s`` in the store, so sampling,
the split, the gradient all_reduce and the stop agreement are all in it). ``allreduce_ms`` is
rank 0's median time in the gradient all_reduce, its wait for the slowest rank included.

The 8-GPU line is arithmetic, not a measurement: the 1-process step time on the fastest
device here, split evenly over 8 ranks (a GPU is rarely that linear in its batch: small
slices use it less well, so this is an upper bound), plus one ring all_reduce of the
measured gradient bytes, ``2 * 7/8 * bytes / bandwidth + latency``, with the bandwidth and
latency given (defaults: 100 GB/s and 50 us, a conservative NVLink-class link).
"""

from __future__ import annotations

import math
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from metagui.core.config import RunConfig
from metagui.core.distributed import gradient_bytes
from metagui.core.errors import MetaGUIError
from metagui.core.experiment import Experiment
from metagui.core.presets import default_config
from metagui.core.store import RunStore

WORKLOADS = {
    # second-order MAML on Conv-4 (28 px glyphs, 5-way 1-shot): the heavy case the issue names
    "maml": ("maml", {"inner_steps": 1, "inner_lr": 0.4, "vectorise": "loop"}),
    "protonet": ("protonet", {}),
}


def workload_config(name: str, meta_batch: int, steps: int, device: str) -> RunConfig:
    algorithm, hp = WORKLOADS[name]
    cfg = default_config(algorithm, "glyphs")
    cfg.algorithm.hyperparams = {**hp, "meta_batch": meta_batch}
    cfg.task.shot, cfg.task.query = 1, 5
    cfg.training.steps = steps
    cfg.training.val_every = steps * 10  # no validation inside the timed steps
    cfg.training.val_episodes = 1
    cfg.training.device = device
    return cfg


def measure(cfg: RunConfig, nproc: int, warmup: int, threads: int) -> dict[str, float]:
    """One run on ``nproc`` processes; tasks per second after ``warmup`` steps."""
    with tempfile.TemporaryDirectory(prefix="metagui-bench-scale-") as tmp:
        path, db = Path(tmp) / "run.toml", Path(tmp) / "runs.db"
        cfg.save(path)
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        cmd = [sys.executable, "-m", "metagui", "train", str(path), "--db", str(db), "--quiet", "--nproc", str(nproc)]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise MetaGUIError(f"the {nproc}-process run failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
        store = RunStore(db)
        rid = store.runs()[0]["id"]
        steps, elapsed = store.metric_series(rid, "train/elapsed_s")
        _, reduce_ms = store.metric_series(rid, "train/allreduce_ms")
        store.close()
    t = dict(zip(steps, elapsed, strict=True))
    last = max(steps)
    step_s = (t[last] - t[warmup]) / (last - warmup)
    meta_batch = cfg.algorithm.hyperparams["meta_batch"]
    return {"tasks_per_s": meta_batch / step_s, "step_s": step_s,
            "allreduce_ms": statistics.median(reduce_ms[warmup:]) if reduce_ms else float("nan")}


def bench_scale(workload: str, meta_batch: int, steps: int, warmup: int, procs: list[int],
                link_gbs: float, latency_us: float, threads: int = 0) -> list[dict]:
    cores = os.cpu_count() or 1
    cfg = workload_config(workload, meta_batch, steps, "cpu")
    learner = Experiment.prepare(cfg).build_learner()
    nbytes = gradient_bytes(learner.optimizer)
    n_params = sum(p.numel() for p in learner.parameters())
    print(f"bench scale: {workload} (Conv-4, 5-way 1-shot glyphs), meta-batch {meta_batch}, {steps} steps "
          f"({warmup} untimed); {n_params:,} parameters, all_reduce of {nbytes / 1e6:.2f} MB per step; "
          f"{cores} CPU cores, torch {torch.__version__}")
    rows = []
    devices = [("cpu", n) for n in procs]
    if torch.cuda.is_available():
        devices += [("cuda", n) for n in procs if n <= torch.cuda.device_count()]
    for device, n in devices:
        per = (threads or max(1, cores // n)) if device == "cpu" else 1
        cfg = workload_config(workload, meta_batch, steps, device)
        m = measure(cfg, n, warmup, per)
        rows.append({"device": device, "processes": n, "threads": per, **m})
    base = {r["device"]: r["tasks_per_s"] for r in rows if r["processes"] == 1}
    print(f"{'device':<8}{'processes':>10}{'threads':>9}{'tasks/s':>10}{'step ms':>10}{'all_reduce ms':>15}{'speed-up':>10}")
    for r in rows:
        speed = r["tasks_per_s"] / base[r["device"]] if r["device"] in base else float("nan")
        reduce = "-" if math.isnan(r["allreduce_ms"]) or r["processes"] == 1 else f"{r['allreduce_ms']:.1f}"
        print(f"{r['device']:<8}{r['processes']:>10}{r['threads']:>9}{r['tasks_per_s']:>10.1f}"
              f"{r['step_s'] * 1e3:>10.0f}{reduce:>15}{speed:>9.2f}x")
    one = next((r for r in rows if r["device"] == "cuda" and r["processes"] == 1), None) or \
        next(r for r in rows if r["processes"] == 1)
    ring_s = 2 * 7 / 8 * nbytes / (link_gbs * 1e9) + latency_us * 1e-6
    step8 = one["step_s"] * math.ceil(meta_batch / 8) / meta_batch + ring_s
    print(f"paper estimate, 8 GPUs: ({one['step_s'] * 1e3:.1f} ms measured on 1 {one['device']} process) x "
          f"{math.ceil(meta_batch / 8)}/{meta_batch} of the tasks + all_reduce {ring_s * 1e3:.3f} ms "
          f"({nbytes / 1e6:.2f} MB at {link_gbs:g} GB/s, {latency_us:g} us) = {step8 * 1e3:.1f} ms a step, "
          f"{meta_batch / step8:.0f} tasks/s, {one['step_s'] / step8:.1f}x one {one['device']} process "
          f"(an upper bound: small slices use a GPU less well)")
    return rows
