"""``metagui bench train``: MetaGUI's MAML against its peers, side by side.

For each model (the sinusoid MLP, Conv-4 on 28 px images, the built-in text encoder), every
implementation (``metagui.bench.peers``: a plain ``torch.func.functional_call`` loop as the
reference, ``higher``, ``learn2learn``, MetaGUI as shipped and with its batching forced to
the loop or vmap) starts from the same weights and meets the same meta-batches:

1. gradient check: each one's meta-gradient on the first batch against the reference's
   (largest absolute difference, and that relative to the reference's largest entry), in
   float32 as trained and again on float64 copies. The float64 check is the verdict: float32
   rounding grows through second-order inner loops (Conv-4's vmap path lands ~1e-4 from the
   loop there, while the two agree to ~1e-16 in float64), and a different computation
   stands out by orders of magnitude;
2. one untimed meta-step each (MetaGUI's ``vectorise = "auto"`` calibrates before that, in
   step 1, into a throwaway folder, so every bench run measures it);
3. ``rounds`` rounds, each one timed meta-step per implementation, the order rotating from
   round to round, in this one process: interleaving spreads load from other work over all
   of them. The table gives the median. A compute floor is timed in the same rounds: one
   forward and backward pass over a meta-batch's items, no inner loop (``peers.Floor``),
   grouped all at once, task by task, and tasks spread over the CPU threads; the fastest
   grouping's median is the floor. A meta-step that groups its tasks in one of these ways
   cannot undercut it, so the reference over it bounds what such an implementation can
   gain on that model and machine.

Peak memory comes from a fresh process per (model, implementation): on the CPU, the peak
resident set (Linux ``VmHWM``, reset through ``/proc/self/clear_refs`` just before) over
``MEMORY_STEPS`` meta-steps minus the resident set before the first; on CUDA, the peak
allocated memory over the allocated memory before. It includes the meta-optimiser's state,
which every implementation has, and, for MetaGUI (auto), not the calibration: the memory
workers find the choice the timing run remembered, as every run after a machine's first does.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time

import torch

from metagui.bench.peers import (
    ABSENT,
    IMPLS,
    MODELS,
    REFERENCE,
    MetaGUI,
    ModelSpec,
    available,
    build,
    compare,
    floors,
    in_float64,
)
from metagui.core.algorithms.batching import synchronise
from metagui.core.errors import ConfigError, MetaGUIError

ROUNDS = 5
FLOOR = "floor"  # peers.Floor in each of its groupings, timed in the rounds beside the implementations
MEMORY_STEPS = 2
TOLERANCE = 1e-8  # float64 meta-gradients: largest difference / largest reference entry
F32_NOTE = 1e-4  # float32 differences above this are flagged (rounding, not a verdict)


def bench_train(models: list[str], impls: list[str] | None = None, rounds: int = ROUNDS, device: str = "cpu",
                memory: bool = True, seed: int = 0, threads: int | None = None, echo=print,
                specs: dict[str, ModelSpec] | None = None) -> list[dict]:
    """The peer table of each model in ``models``; one dict per (model, implementation).
    ``threads``: torch's CPU threads (default: torch's own choice, what the app runs with)."""
    specs = specs or MODELS
    impls = list(impls or IMPLS)
    unknown = [m for m in models if m not in specs] + [i for i in impls if i not in IMPLS]
    if unknown:
        raise ConfigError(f"bench train: unknown {', '.join(unknown)} (models: {', '.join(specs)}; "
                          f"implementations: {', '.join(IMPLS)})")
    if REFERENCE not in impls:
        impls.insert(0, REFERENCE)  # the ratios and the gradient check are against it
    if rounds < 1:
        raise ConfigError("bench train: --rounds must be at least 1")
    if threads:
        torch.set_num_threads(threads)
    dev = torch.device(device)
    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    echo(f"MAML meta-step, second order: torch {torch.__version__}, Python {platform.python_version()}, "
         f"device {device}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs{load}; "
         f"median of {rounds} interleaved rounds")
    busy = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if dev.type == "cpu" and torch.get_num_threads() > 1 and busy + torch.get_num_threads() > (os.cpu_count() or 1) + 0.5:
        echo(f"note: other work is running (load {busy:.1f} on {os.cpu_count()} CPUs); where torch's {torch.get_num_threads()} "
             "threads do not each get a core they wait on one another and a step can take ten times longer "
             "(the q1-q3 column shows it): --threads 1 measures steadily")
    for impl in impls:
        if not available(impl):
            echo(f"{impl}: {ABSENT[impl]}")
    mem_label = "peak +MB (CUDA)" if dev.type == "cuda" else "peak +MB (RSS)"
    rows: list[dict] = []
    with _calibration_folder():
        for name in models:
            spec = specs[name]
            echo("")
            echo(f"{name}: {spec.describe()}")
            model_rows = time_model(spec, impls, rounds, dev, seed)
            if memory:
                for r in model_rows:
                    if r["available"]:
                        r["peak_mb"] = measure_memory(spec, r["impl"], device, seed)
            _print_table(model_rows, mem_label if memory else None, echo)
            rows += model_rows
    echo("")
    echo(f"ms/step: median wall time of one meta-step (meta-gradient + Adam step), q1-q3 its quartiles; "
         f"vs {REFERENCE}: its median / this one's (above 1 = faster). grad f32: largest |meta-gradient - "
         f"{REFERENCE}'s| on the first batch (relative to its largest entry; ! above {F32_NOTE:g}); f64: the "
         f"same in float64, where rounding cannot hide a different computation (agrees within {TOLERANCE:g}).")
    if memory:
        echo(f"{mem_label}: peak over {MEMORY_STEPS} meta-steps minus before them, a fresh process each"
             + (" (Linux VmHWM - VmRSS)." if dev.type != "cuda" else " (max_memory_allocated - memory_allocated)."))
    return rows


def time_model(spec: ModelSpec, impls: list[str], rounds: int, device: torch.device, seed: int = 0) -> list[dict]:
    """Gradient check, warm-up and timed rounds of one model (see the module docstring)."""
    present = [i for i in impls if available(i)]
    built = build(spec, present, device, seed)
    batches = [spec.make_batch(seed + r).to(device) for r in range(rounds)]
    first, grads, grads64 = {}, {}, {}
    for impl in present:
        start = time.perf_counter()
        grads[impl] = built[impl].gradient(batches[0])  # MetaGUI auto calibrates here
        synchronise(device)
        first[impl] = time.perf_counter() - start
    for impl in present:
        twin, batch64 = in_float64(built[impl], batches[0])
        grads64[impl] = twin.gradient(batch64)
        del twin
    lows = {f"{FLOOR}-{g}": f for g, f in floors(spec, device, seed).items()}
    timed = {**built, **lows}  # the floors are timed in the same rotation
    for impl in timed:
        timed[impl].step(batches[0])  # warm-up
    synchronise(device)
    times: dict[str, list[float]] = {i: [] for i in timed}
    names = list(timed)
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for impl in order:
            synchronise(device)
            start = time.perf_counter()
            timed[impl].step(batches[r])
            synchronise(device)
            times[impl].append(time.perf_counter() - start)
    ref_ms = 1000 * statistics.median(times[REFERENCE])
    floor_by = {f.removeprefix(f"{FLOOR}-"): 1000 * statistics.median(times[f]) for f in lows}
    lowest = min(floor_by, key=floor_by.__getitem__)
    rows = []
    for impl in impls:
        row: dict = {"model": spec.name, "impl": impl, "available": impl in present}
        if impl in present:
            ms_all = [1000 * t for t in times[impl]]
            ms = statistics.median(ms_all)
            q1, _, q3 = statistics.quantiles(ms_all, n=4, method="inclusive") if len(ms_all) > 1 else (ms, ms, ms)
            diff, rel = compare(grads[impl], grads[REFERENCE])
            diff64, rel64 = compare(grads64[impl], grads64[REFERENCE])
            row.update(ms=ms, q1=q1, q3=q3, tasks_per_s=spec.tasks / (ms / 1000), vs_reference=ref_ms / ms,
                       grad_diff=diff, grad_rel=rel, grad_diff64=diff64, grad_rel64=rel64, agrees=rel64 <= TOLERANCE,
                       first_s=first[impl], times_ms=ms_all)
            if isinstance(built[impl], MetaGUI):
                row["mode"] = built[impl].mode
                row["calibration"] = dict(built[impl].learner.batching)
            if impl == REFERENCE:
                row.update(floor_ms=floor_by[lowest], floor_ratio=ref_ms / floor_by[lowest], floor_grouping=lowest,
                           floor_all_ms=floor_by)
        rows.append(row)
    return rows


def _print_table(rows: list[dict], mem_label: str | None, echo) -> None:
    head = f"  {'implementation':<22} {'ms/step':>9} {'q1-q3':>13} {'tasks/s':>8} {'vs ' + REFERENCE:>14}"
    head += f" {mem_label:>15}" if mem_label else ""
    echo(head + f"  {'grad f32 max|diff| (rel)':<26} {'f64 (rel)':<9}")
    for r in rows:
        label = r["impl"] + (f" (auto: {r['mode']})" if r["impl"] == "metagui" and "mode" in r else "")
        if not r["available"]:
            echo(f"  {label:<22} {ABSENT[r['impl']]}")
            continue
        spread = f"{r['q1']:.0f}-{r['q3']:.0f}"
        line = f"  {label:<22} {r['ms']:>9.1f} {spread:>13} {r['tasks_per_s']:>8.1f} {r['vs_reference']:>13.2f}x"
        if mem_label:
            mb = r.get("peak_mb")
            line += f" {mb:>15.1f}" if mb is not None else f" {'n/a':>15}"
        if r["impl"] == REFERENCE:
            grad = "reference"
        else:
            f32 = f"{r['grad_diff']:.1e} ({r['grad_rel']:.1e}){'!' if r['grad_rel'] > F32_NOTE else ''}"
            grad = f"{f32:<26} {r['grad_rel64']:.0e} {'agrees' if r['agrees'] else 'DIFFERS'}"
        echo(line + f"  {grad}")
    ref = next(r for r in rows if r["impl"] == REFERENCE)
    ways = ", ".join(f"{g} {ms:.1f}" for g, ms in ref["floor_all_ms"].items())
    echo(f"  floor: one forward and backward over the meta-batch's items, no inner loop, grouped {ways} ms: "
         f"a meta-step grouped in one of these ways beats {REFERENCE} by at most {ref['floor_ratio']:.1f}x here")
    cal = next((r["calibration"] for r in rows if r["impl"] == "metagui" and r.get("calibration")), None)
    if cal:
        ms = ", ".join(f"{m} {v:.1f} ms" for m, v in cal["ms"].items())
        first = next(r["first_s"] for r in rows if r["impl"] == "metagui")
        echo(f"  metagui auto: timed {ms} per meta-step on the first batch and kept {cal['mode']} "
             f"(first meta-gradient with calibration: {first:.1f} s)")


@contextlib.contextmanager
def _calibration_folder():
    """auto's choice goes to a throwaway data folder (the memory workers inherit it), so the
    bench measures the calibration rather than reuse this machine's remembered one."""
    from metagui.core.data.catalog import DATA_DIR_ENV

    before = os.environ.get(DATA_DIR_ENV)
    with tempfile.TemporaryDirectory(prefix="metagui-bench-") as folder:
        os.environ[DATA_DIR_ENV] = folder
        try:
            yield folder
        finally:
            if before is None:
                os.environ.pop(DATA_DIR_ENV, None)
            else:
                os.environ[DATA_DIR_ENV] = before


# --- peak memory: one fresh process per (model, implementation) -----------------------------
def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            m = re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.M)
    except OSError:
        return None
    return int(m.group(1)) if m else None


def _reset_peak_rss() -> bool:
    """Linux: set the peak resident set (VmHWM) to the current one."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
    except OSError:
        return False
    return True


def memory_worker(spec: dict, impl: str, device: str, seed: int = 0, threads: int = 0) -> dict:
    """In a fresh process: the peak memory increase over ``MEMORY_STEPS`` meta-steps (MB)."""
    import gc

    if threads:
        torch.set_num_threads(threads)  # as the timing process (auto's remembered choice depends on it)
    spec_ = ModelSpec(**{**spec, "tokens": tuple(spec["tokens"])})
    dev = torch.device(device)
    runner = build(spec_, [impl], dev, seed)[impl]
    batch = spec_.make_batch(seed).to(dev)
    if isinstance(runner, MetaGUI):  # auto looks up its remembered choice once per run, not per step
        runner.learner.task_mode(batch, first_order=False)
    gc.collect()
    if dev.type == "cuda":
        synchronise(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        base = torch.cuda.memory_allocated(dev)
    else:
        base = _status_kib("VmRSS")
        if base is None or not _reset_peak_rss():
            return {"peak_mb": None}
    for _ in range(MEMORY_STEPS):
        runner.step(batch)
    synchronise(dev)
    out = {"peak_mb": (torch.cuda.max_memory_allocated(dev) - base) / 2**20 if dev.type == "cuda" else
           (_status_kib("VmHWM") - base) / 1024}
    if isinstance(runner, MetaGUI):
        out["mode"], out["measured"] = runner.mode, runner.learner.batching.get("measured", False)
    return out


def child_env() -> dict[str, str]:
    """The environment of a worker process: it imports this very metagui (a checkout run in
    place, not another copy that the interpreter may have installed) and runs as many torch
    threads as this process."""
    import metagui

    root = os.path.dirname(os.path.dirname(os.path.abspath(metagui.__file__)))
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": root + (os.pathsep + path if path else ""),
            "OMP_NUM_THREADS": str(torch.get_num_threads())}


_MEMORY_MAIN = (
    "import json, sys\n"
    "from metagui.bench.train import memory_worker\n"
    "print(json.dumps(memory_worker(json.loads(sys.argv[1]), sys.argv[2], sys.argv[3], *map(int, sys.argv[4:6]))))\n"
)


def measure_memory(spec: ModelSpec, impl: str, device: str, seed: int = 0) -> float | None:
    proc = subprocess.run([sys.executable, "-c", _MEMORY_MAIN, json.dumps(dataclasses.asdict(spec)), impl, device,
                           str(seed), str(torch.get_num_threads())], capture_output=True, text=True, env=child_env())
    if proc.returncode != 0:
        err = proc.stderr.strip().splitlines()
        raise MetaGUIError(f"bench memory worker {spec.name}/{impl} failed: {err[-1] if err else proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])["peak_mb"]


# --- the older table: each algorithm vs a naive deep-copy loop (--algorithms) ---------------
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
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env(),
    )
    out, err = proc.stdout.read(), proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise MetaGUIError(f"bench worker {algorithm}/{impl} failed: {err.strip().splitlines()[-1] if err.strip() else proc.returncode}")
    result = json.loads(out.strip().splitlines()[-1])
    result.setdefault("peak_mb", usage.ru_maxrss / 1024)  # Linux reports KiB
    return result


def bench_algorithms(algorithms: list[str], steps: int = 10, device: str = "cpu", echo=print) -> list[dict]:
    """The older table (``--algorithms``): each algorithm's learner vs a naive per-task loop
    (deep copy + torch.optim.SGD, first order), Conv-4 on random images, lifetime peak RSS of
    a fresh process per row."""
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
