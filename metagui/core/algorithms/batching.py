"""How the tasks of a meta-batch run: ``vmap`` (all tasks in one ``torch.func.vmap`` call per
step) or ``loop`` (one task after the other). Which is faster depends on the model, the batch
shape, the device and the machine: vmap wins by several times on small models (the sinusoid
MLP, the text encoders), the loop can win on convolutional ones on the CPU (``metagui bench
train``). ``vectorise = "auto"`` times both on the run's first meta-batch, without updating
any weight, and keeps the faster; the choice is remembered per machine, model, batch shape,
device, thread count and torch version (``calibration.json`` in the user data folder), so it
is measured once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import torch

from metagui.core.files import save_cache_json

MODES = ("vmap", "loop")
REPEATS = 4  # per mode; the first of each is a warm-up and does not count


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


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def choose(key: str, trials: dict[str, Callable[[], None]], path: Path | None = None,
           clock: Callable[[], float] = time.perf_counter) -> dict:
    """The faster of ``trials`` (mode -> one meta-step's work, no weight update), remembered
    under ``key``: ``{"mode", "ms": {mode: fastest ms}, "measured": bool}``."""
    path = path or calibration_path()
    known = _read(path).get(key)
    if isinstance(known, dict) and known.get("mode") in trials:
        return {**known, "measured": False}
    times: dict[str, list[float]] = {m: [] for m in trials}
    order = list(trials)
    for rep in range(REPEATS):
        for mode in (order if rep % 2 == 0 else order[::-1]):  # alternate, so drift hits both
            start = clock()
            trials[mode]()
            if rep:
                times[mode].append(clock() - start)
    # the fastest repeat: other work on the machine only ever adds time to a measurement
    ms = {m: round(1000 * min(t), 3) for m, t in times.items()}
    result = {"mode": min(ms, key=ms.__getitem__), "ms": ms}
    data = _read(path)
    data[key] = result
    save_cache_json(path, data)  # unwritable: the next run measures again
    return {**result, "measured": True}


def synchronise(device: torch.device) -> None:
    """Wait for queued GPU work, so that a timing covers it (nothing to wait for on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
