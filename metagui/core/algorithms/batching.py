"""How the tasks of a meta-batch run: ``vmap`` (all tasks in one ``torch.func.vmap`` call per
step), ``loop`` (one task after the other) or, on the CPU, ``threads`` (the loop's tasks spread
over torch's CPU threads, each task on one thread). Which is faster depends on the model, the
batch shape, the device and the machine: vmap wins by several times on small models (the
sinusoid MLP), threads on convolutional ones on the CPU, whose small per-task convolutions
gain little from several threads each (``metagui bench train``). ``vectorise = "auto"`` times
each on the run's first meta-batch, without updating any weight, and keeps the fastest (of
modes within ``TIE`` of it, the leanest); where vmap runs out of memory, vmap over half as many
tasks a call (``vmap/N``) is tried in its place, and so on. The choice is remembered per
machine, model, batch shape, device, thread count and torch version (``calibration.json`` in
the user data folder), so it is measured once.
"""

from __future__ import annotations

import copy
import gc
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import torch
from torch import nn

from metagui.core.errors import MetaGUIError
from metagui.core.files import save_cache_json

MODES = ("vmap", "loop", "threads")
REPEATS = 4  # per mode; the first of each is a warm-up and does not count
PRUNE = 1.5  # after one timed repeat, modes this many times slower than the fastest are not timed again
TIE = 0.05  # modes within 5% of the fastest are a tie: the one that holds the least memory is kept
LEAN = ("loop", "threads", "vmap")  # by peak memory (`metagui bench train`): one task's graph, one per thread, all
T = TypeVar("T")


def modes(device: torch.device, random_backbone: bool = False) -> tuple[str, ...]:
    """The modes worth timing here: threads only on a CPU with several torch threads, for a
    backbone that draws no random numbers (their order would change from run to run)."""
    threads = device.type == "cpu" and torch.get_num_threads() > 1 and not random_backbone
    return MODES if threads else tuple(m for m in MODES if m != "threads")


def replica(module: nn.Module) -> nn.Module:
    """A copy of ``module``'s structure that holds the very same parameters and buffers (no
    tensor is copied). ``torch.func.functional_call`` swaps a module's parameters for the
    length of a call, so tasks on several threads each need their own module objects."""
    twin = copy.copy(module)
    twin._parameters = dict(module._parameters)
    twin._buffers = dict(module._buffers)
    twin._modules = {k: None if m is None else replica(m) for k, m in module._modules.items()}
    return twin


def spread(work: list[Callable[[int], T]]) -> list[T]:
    """Each of ``work`` on one of torch's CPU threads, their results in order; each is given
    its worker's number (0 up to the number of workers), for a per-worker ``replica``.

    For the call, torch runs one intra-op thread (on each worker; the setting is
    process-wide, and is restored after): small per-task operations spend more on handing
    work between threads than they gain from it, while whole tasks side by side keep every
    core busy. The workers end with the call: OpenMP throttles the spin-waiting of torch's
    own threads for as long as more threads that ran OpenMP work are alive than there are
    cores, which made every later multi-threaded operation up to three times slower."""
    workers = min(len(work), torch.get_num_threads())
    if workers < 2:
        return [w(0) for w in work]
    numbers = iter(range(workers))
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(workers, "metagui-task", initializer=_number, initargs=(numbers,)) as pool:
            return [f.result() for f in [pool.submit(lambda w=w: w(_worker.number)) for w in work]]
    finally:
        torch.set_num_threads(previous)


_worker = threading.local()


def _number(numbers) -> None:
    _worker.number = next(numbers)


def calibration_path() -> Path:
    from metagui.core.data.catalog import user_data_dir

    return user_data_dir() / "calibration.json"


def calibration_key(learner, batch, first_order: bool) -> str:
    """What the choice depends on: a different value of any part measures again."""
    params = sum(p.numel() for p in learner.parameters())
    device = next(learner.parameters()).device
    return "|".join(str(v) for v in (
        learner.name, type(learner.backbone).__name__, params, tuple(batch.support_x.shape),
        tuple(batch.query_x.shape), device.type, torch.get_num_threads(), torch.__version__,
        "first-order" if first_order else "second-order"))


def remembered() -> dict:
    """Every choice remembered on this machine, by ``calibration_key``."""
    return _read(calibration_path())


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def choose(key: str, trials: dict[str, Callable[[], None]], path: Path | None = None,
           clock: Callable[[], float] = time.perf_counter,
           leaner: Callable[[str], tuple[str, Callable[[], None]] | None] | None = None) -> dict:
    """The faster of ``trials`` (mode -> one meta-step's work, no weight update), remembered
    under ``key``: ``{"mode", "ms": {mode: fastest ms}, "measured": bool}``, and
    ``"out_of_memory": [modes]`` where a mode's trial ran out of memory (vmap holds every
    task's graph at once: on a GPU with a big meta-batch it may not fit where the loop does).
    Such a mode is left out, and ``leaner(mode)`` may offer one to try in its place (vmap over
    half as many tasks at a time: ``smaller``), timed from the next repeat on; if every mode
    runs out, ``OutOfMemory`` says so. Modes within ``TIE`` of the fastest count as equally
    fast, and the leanest of them is kept: a tie is within the noise of a few timed repeats,
    and vmap can hold twice the loop's memory."""
    path = path or calibration_path()
    known = _read(path).get(key)
    # remembered for these very modes (a newer MetaGUI may bring one more to time)
    if (isinstance(known, dict) and str(known.get("mode")).split("/")[0] in trials
            and set(known.get("ms") or ()) | set(known.get("out_of_memory") or ()) >= set(trials)):
        return {**known, "measured": False}
    trials = dict(trials)
    times: dict[str, list[float]] = {m: [] for m in trials}
    failed: list[str] = []
    order = list(trials)

    def timed(mode: str, count: bool) -> str | None:
        """Run ``mode``'s trial (or, out of memory, its leaner stand-ins in turn): the mode
        that ran, or None."""
        while True:
            start = clock()
            if _fits(trials[mode]):
                if count:
                    times[mode].append(clock() - start)
                return mode
            failed.append(mode)
            release_memory()  # here, where the error and the frames that held its tensors are gone
            offer = leaner(mode) if leaner else None
            if offer is None:
                return None
            mode = offer[0]
            trials[mode], times[mode], count = offer[1], [], False  # its first run is a warm-up

    for rep in range(REPEATS):
        ran = [timed(m, rep > 0) for m in (order if rep % 2 == 0 else order[::-1])]  # alternate: drift hits both
        order = [m for m in dict.fromkeys(ran) if m is not None]
        if not order:
            raise OutOfMemory(f"a meta-batch does not fit in memory however its tasks run ({', '.join(map(label, failed))} "
                              "tried): use a smaller meta-batch, fewer ways or queries, or smaller images")
        firsts = [times[m][0] for m in order if times[m]]
        if rep == 1 and firsts:  # a mode far behind after its first timed repeat cannot win: stop timing it
            order = [m for m in order if not times[m] or times[m][0] <= PRUNE * min(firsts)]
    for m in order:
        if not times[m]:  # a stand-in that joined in the last repeat
            timed(m, True)
    # the fastest repeat: other work on the machine only ever adds time to a measurement
    ms = {m: round(1000 * min(t), 3) for m, t in times.items() if t}
    fastest = min(ms.values())
    tied = [m for m in ms if ms[m] <= fastest * (1 + TIE)]
    result: dict = {"mode": min(tied, key=lambda m: (_leanness(m), ms[m])), "ms": ms}
    if failed:
        result["out_of_memory"] = failed
    data = _read(path)
    data[key] = result
    save_cache_json(path, data)  # unwritable: the next run measures again
    return {**result, "measured": True}


def _fits(trial: Callable[[], None]) -> bool:
    """Run ``trial``: False where it ran out of memory (any other error is raised)."""
    try:
        trial()
    except Exception as err:
        if not out_of_memory(err):
            raise
        return False
    return True


def _leanness(mode: str) -> float:
    """``LEAN``'s order; vmap over part of the tasks at a time sits just below vmap."""
    if chunked(mode):
        return LEAN.index("vmap") - 0.5
    return LEAN.index(mode) if mode in LEAN else len(LEAN)


def chunked(mode: str) -> bool:
    """Whether ``mode`` is vmap over part of the tasks at a time ("vmap/8": 8 tasks a call)."""
    return mode.startswith("vmap/")


def chunk_size(mode: str, tasks: int) -> int:
    """How many tasks one vmap call of ``mode`` takes ("vmap": all ``tasks``)."""
    return int(mode.split("/")[1]) if chunked(mode) else tasks


def smaller(mode: str, tasks: int) -> str | None:
    """The vmap mode that takes half as many tasks a call as ``mode`` (at least 2: one at a
    time is the loop), or None."""
    if mode != "vmap" and not chunked(mode):
        return None
    size = chunk_size(mode, tasks)
    half = (size + 1) // 2
    return f"vmap/{half}" if 2 <= half < size else None


CPU_OUT_OF_MEMORY = ("can't allocate memory", "could not create a primitive", "can't start new thread")


class OutOfMemory(MetaGUIError):
    """No batching mode fits a meta-batch in memory."""


def out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` is torch running out of memory: ``torch.OutOfMemoryError`` (CUDA), or on
    the CPU, where the system refuses rather than kills, the allocator's RuntimeError or
    oneDNN's, whose convolutions say only that they "could not create a primitive" when their
    workspace cannot be had, and Python's when a thread's stack cannot be had (threads; each
    seen under ``ulimit -v``)."""
    return isinstance(err, torch.OutOfMemoryError) or (
        isinstance(err, RuntimeError) and any(m in str(err) for m in CPU_OUT_OF_MEMORY))



def release_memory() -> None:
    """Hand what a failed trial held back (its tensors are gone with its frames)."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def describe(choice: dict) -> str:
    """One line on what ``vectorise = "auto"`` chose (``choose``'s answer), for the run's log."""
    times = ", ".join([f"{label(m)} {ms:,.0f} ms" for m, ms in sorted(choice["ms"].items(), key=lambda kv: kv[1])]
                      + [f"{label(m)} out of memory" for m in choice.get("out_of_memory", ())])
    how = "timed on this run's first meta-batch" if choice.get("measured") else "remembered from an earlier run here"
    return f"Tasks run by {label(choice['mode'])} (vectorise = auto; per meta-step {times}; {how})"


def label(mode: str) -> str:
    """A mode as the log names it ("vmap/8": "vmap of 8 tasks at a time")."""
    return f"vmap of {chunk_size(mode, 0)} tasks at a time" if chunked(mode) else mode


def synchronise(device: torch.device) -> None:
    """Wait for queued GPU work, so that a timing covers it (nothing to wait for on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
