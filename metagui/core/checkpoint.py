"""Checkpoints as safetensors (weights, optimiser tensors) plus JSON (everything else).

Loading never unpickles: a checkpoint folder cannot execute code. The JSON is written last
and holds the sha256 of both tensor files, so a truncated or garbled file, or a set torn by
a kill between two writes, is reported as damaged instead of loading wrong weights.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from metagui.core.errors import CheckpointDamaged, DataError


def save_checkpoint(folder: Path, kind: str, learner: torch.nn.Module, meta: dict[str, Any]) -> Path:
    """Write ``{kind}.safetensors``, ``{kind}.optim.safetensors`` and ``{kind}.json``.

    All three are written in full as ``.tmp`` files first, then renamed into place, the
    description last: a process killed while saving leaves the previous checkpoint, or a new
    one that :func:`finish_interrupted_save` completes."""
    folder.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().cpu().contiguous() for k, v in learner.state_dict().items()}
    optim_tensors, optim_meta = _flatten_optimizer(learner.optimizer.state_dict())
    files = {f"{kind}.safetensors": weights, f"{kind}.optim.safetensors": optim_tensors}
    for name, tensors in files.items():
        save_file(tensors, str(_tmp(folder / name)))
    sums = {name: _sha256(_tmp(folder / name)) for name in files}
    body = json.dumps({**meta, "optimizer": optim_meta, "sha256": sums}, indent=1, default=str)
    _tmp(folder / f"{kind}.json").write_text(body, encoding="utf-8")
    for name in (*files, f"{kind}.json"):
        os.replace(_tmp(folder / name), folder / name)
    return folder / f"{kind}.safetensors"


def _tmp(path: Path) -> Path:
    return path.with_name(path.name + ".tmp")


def finish_interrupted_save(folder: Path, kind: str) -> bool:
    """Complete the renames of a save that was killed between two of them (its ``.tmp``
    description is whole and its checksums match the files in place or waiting beside them).
    Whether there was one to finish."""
    pending = _tmp(folder / f"{kind}.json")
    try:
        sums = json.loads(pending.read_text(encoding="utf-8"))["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return False  # no save got as far as its renames: the checkpoint in place is the last one
    moves = []
    for name, digest in sums.items():
        target, waiting = folder / name, _tmp(folder / name)
        if waiting.is_file() and _sha256(waiting) == digest:
            moves.append((waiting, target))
        elif not (target.is_file() and _sha256(target) == digest):
            return False
    for src, dst in [*moves, (pending, folder / f"{kind}.json")]:
        os.replace(src, dst)
    return True


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_meta(folder: Path, kind: str) -> dict[str, Any]:
    path = folder / f"{kind}.json"
    if not path.is_file():
        raise DataError(f"no {kind} checkpoint in {folder}")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CheckpointDamaged(path, f"unreadable ({exc})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("step"), int):
        raise CheckpointDamaged(path, "its description lacks the step it was saved at")
    return meta


def _checked(folder: Path, name: str, meta: dict[str, Any], read: Callable[[str], Any]) -> Any:
    """``read(path)`` of a checkpoint file that exists and matches the checksum saved with it."""
    path = folder / name
    if not path.is_file():
        raise CheckpointDamaged(path, "the file is missing")
    expected = (meta.get("sha256") or {}).get(name)  # absent in checkpoints of earlier versions
    try:
        if expected is not None and _sha256(path) != expected:
            raise CheckpointDamaged(path, "its contents do not match the checksum saved with it "
                                          "(truncated, garbled, or from another save)")
        return read(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointDamaged(path, f"unreadable ({exc})") from None


def _headers(path: str) -> None:
    with safe_open(path, "pt") as f:
        f.keys()


def verify_checkpoint(folder: Path, kind: str, repair: bool = False) -> dict[str, Any]:
    """Check a checkpoint's files without loading them into a model; its description.
    ``repair`` first completes a save that a kill interrupted (it renames files)."""
    if repair:
        finish_interrupted_save(folder, kind)
    meta = read_meta(folder, kind)
    for name in (f"{kind}.safetensors", f"{kind}.optim.safetensors"):
        _checked(folder, name, meta, _headers)
    return meta


def load_checkpoint(folder: Path, kind: str, learner: torch.nn.Module, with_optimizer: bool = True,
                    repair: bool = False) -> dict[str, Any]:
    """Load weights (and the optimiser state) into ``learner``; the checkpoint's description.
    Damaged files raise :class:`CheckpointDamaged`; nothing is loaded then. ``repair`` as in
    :func:`verify_checkpoint`."""
    if repair:
        finish_interrupted_save(folder, kind)
    meta = read_meta(folder, kind)
    state = _checked(folder, f"{kind}.safetensors", meta, load_file)
    optim = None
    if with_optimizer:
        tensors = _checked(folder, f"{kind}.optim.safetensors", meta, load_file)
        try:
            optim = _unflatten_optimizer(tensors, meta["optimizer"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CheckpointDamaged(folder / f"{kind}.json", f"the optimiser state is incomplete ({exc})") from None
    own = learner.state_dict()
    for name, module in learner.named_modules():  # state a newer MetaGUI added, which older checkpoints lack
        for key in getattr(module, "optional_state", ()):
            full = f"{name}.{key}" if name else key
            if full in own and full not in state:
                state[full] = own[full]
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    misshapen = [k for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or misshapen:
        raise DataError(f"checkpoint {folder / kind} does not fit this model (missing {missing[:3]}, "
                        f"unexpected {unexpected[:3]}, other shapes {misshapen[:3]})")
    if optim is not None:
        before = learner.optimizer.state_dict()
        try:
            learner.optimizer.load_state_dict(optim)
        except (KeyError, ValueError, TypeError, RuntimeError) as exc:
            learner.optimizer.load_state_dict(before)
            raise CheckpointDamaged(folder / f"{kind}.optim.safetensors", f"does not fit this model ({exc})") from None
    learner.load_state_dict(state)
    return meta


def _flatten_optimizer(sd: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"{idx}.{k}"] = v.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[k] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = v
    for idx, sc in meta.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(sc)
    return {"state": state, "param_groups": meta["param_groups"]}
