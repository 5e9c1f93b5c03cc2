"""``metagui bench train``: meta-training throughput and peak memory of each algorithm on a
fixed synthetic config, against baselines measured in the same run.

Each (algorithm, implementation) runs in a fresh subprocess so that its peak resident
memory (CPU) or peak allocated memory (CUDA) is its own.

Implementations:
- ``metagui``: the learner as shipped (functional inner loops, tasks batched per pass).
- ``naive``: a per-task loop. Metric learners: one forward/backward per episode.
  Optimisation learners: the common hand-written loop, a deep copy of the network per task
  trained with torch.optim.SGD, first-order meta-gradient (what MAML code without
  functional calls can do).
- ``vmap`` (optimisation learners): the learner's torch.func.vmap path over tasks.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time

import torch

from metagui.core.errors import MetaGUIError

SYNTHETIC = {"way": 5, "shot": 1, "query": 5, "image_size": 28, "meta_batch": 8}
GRADIENT = ("maml", "fomaml", "metasgd", "reptile")


def _synthetic_batch(seed: int):
    from metagui.core.tasks import EpisodeBatch

    g = torch.Generator().manual_seed(seed)
    c = SYNTHETIC
    t, n, k, q, s = c["meta_batch"], c["way"], c["shot"], c["query"], c["image_size"]
    return EpisodeBatch(
        torch.rand(t, n * k, 1, s, s, generator=g), torch.arange(n).repeat_interleave(k).expand(t, -1),
        torch.rand(t, n * q, 1, s, s, generator=g), torch.arange(n).repeat_interleave(q).expand(t, -1), n,
    )


def _naive_step(learner, batch) -> None:
    if learner.family == "metric":
        learner.optimizer.zero_grad(set_to_none=True)
        for i in range(batch.n_tasks):
            loss, _, _ = learner.outer_loss(batch.task(i))
            (loss / batch.n_tasks).backward()
        learner.optimizer.step()
        return
    steps = learner.hp["inner_steps"]
    lr = learner.hp["inner_lr"] if isinstance(learner.hp["inner_lr"], float) else 0.1
    learner.optimizer.zero_grad(set_to_none=True)
    params = [p for n, p in learner.named_parameters() if n.startswith(("backbone.", "head."))]
    for i in range(batch.n_tasks):
        net = copy.deepcopy(learner)
        opt = torch.optim.SGD(net.parameters(), lr=lr)
        sx, sy = batch.support_x[i], batch.support_y[i]
        for _ in range(steps):
            opt.zero_grad()
            learner.task_loss(net(sx), sy).backward()
            opt.step()
        opt.zero_grad()
        qx, qy = batch.query_x[i], batch.query_y[i]
        out = net(torch.cat([sx, qx]))[sx.shape[0]:]
        learner.task_loss(out, qy).backward()
        fast = [p for n, p in net.named_parameters() if n.startswith(("backbone.", "head."))]
        for p, f in zip(params, fast, strict=True):
            p.grad = f.grad / batch.n_tasks if p.grad is None else p.grad + f.grad / batch.n_tasks
    learner.optimizer.step()


def _worker(algorithm: str, impl: str, steps: int, device: str) -> dict:
    from metagui.core import algorithms
    from metagui.core.models import Conv4

    torch.manual_seed(0)
    dev = torch.device(device)
    hp = {"meta_batch": SYNTHETIC["meta_batch"]}
    if algorithm in ("maml", "fomaml", "metasgd"):
        hp.update(inner_steps=1, inner_lr=0.4)
        if impl == "vmap":
            hp["vectorise"] = "vmap"
    learner = algorithms.create(algorithm, Conv4(1, 64, SYNTHETIC["image_size"]), SYNTHETIC["way"], hp).to(dev)
    batch = _synthetic_batch(0).to(dev)
    step = (lambda: _naive_step(learner, batch)) if impl == "naive" else (lambda: learner.meta_step(batch))
    step()  # warm-up
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    out = {"tasks_per_s": steps * batch.n_tasks / elapsed}
    if dev.type == "cuda":
        out["peak_mb"] = torch.cuda.max_memory_allocated(dev) / 2**20
    return out


# what the fresh subprocess runs: one measurement, printed as one line of JSON
_WORKER_MAIN = (
    "import json, sys\n"
    "from metagui.bench.train import _worker\n"
    "a, i, s, d = sys.argv[1:5]\n"
    "print(json.dumps(_worker(a, i, int(s), d)))\n"
)


def _measure(algorithm: str, impl: str, steps: int, device: str) -> dict:
    proc = subprocess.Popen(
        [sys.executable, "-c", _WORKER_MAIN, algorithm, impl, str(steps), device],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    out, err = proc.stdout.read(), proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise MetaGUIError(f"bench worker {algorithm}/{impl} failed: {err.strip().splitlines()[-1] if err.strip() else proc.returncode}")
    result = json.loads(out.strip().splitlines()[-1])
    result.setdefault("peak_mb", usage.ru_maxrss / 1024)  # Linux reports KiB
    return result


def bench_train(algorithms: list[str], steps: int = 10, device: str = "cpu", echo=print) -> list[dict]:
    c = SYNTHETIC
    echo(f"meta-train throughput, Conv-4 (64 filters), {c['way']}-way {c['shot']}-shot {c['query']}-query, "
         f"{c['image_size']}x{c['image_size']} synthetic images, {c['meta_batch']} tasks per step, {steps} steps, "
         f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    mem = "peak MB (CUDA alloc)" if device.startswith("cuda") else "peak MB (RSS)"
    echo(f"{'algorithm':<10} {'impl':<8} {'tasks/s':>9} {mem:>21} {'speed vs naive':>15}")
    rows = []
    for algo in algorithms:
        impls = ["naive", "metagui"] + (["vmap"] if algo in ("maml", "fomaml", "metasgd") else [])
        base = None
        for impl in impls:
            r = _measure(algo, impl, steps, device)
            base = base or r["tasks_per_s"]
            ratio = r["tasks_per_s"] / base
            rows.append({"algorithm": algo, "impl": impl, **r, "speed_vs_naive": ratio})
            echo(f"{algo:<10} {impl:<8} {r['tasks_per_s']:>9.1f} {r['peak_mb']:>21.0f} {ratio:>14.2f}x")
    return rows
