"""Checkpoints as safetensors (weights, optimiser tensors) plus JSON (everything else).

Loading never unpickles: a checkpoint folder cannot execute code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from metagui.core.errors import DataError


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def save_checkpoint(folder: Path, kind: str, learner: torch.nn.Module, meta: dict[str, Any]) -> Path:
    """Write ``{kind}.safetensors``, ``{kind}.optim.safetensors`` and ``{kind}.json``."""
    folder.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().cpu().contiguous() for k, v in learner.state_dict().items()}
    optim_tensors, optim_meta = _flatten_optimizer(learner.optimizer.state_dict())
    _atomic_write(folder / f"{kind}.safetensors", lambda p: save_file(weights, str(p)))
    _atomic_write(folder / f"{kind}.optim.safetensors", lambda p: save_file(optim_tensors, str(p)))
    body = json.dumps({**meta, "optimizer": optim_meta}, indent=1, default=str)
    _atomic_write(folder / f"{kind}.json", lambda p: p.write_text(body, encoding="utf-8"))
    return folder / f"{kind}.safetensors"


def read_meta(folder: Path, kind: str) -> dict[str, Any]:
    path = folder / f"{kind}.json"
    if not path.is_file():
        raise DataError(f"no {kind} checkpoint in {folder}")
    return json.loads(path.read_text(encoding="utf-8"))


def load_checkpoint(folder: Path, kind: str, learner: torch.nn.Module, with_optimizer: bool = True) -> dict[str, Any]:
    meta = read_meta(folder, kind)
    state = load_file(str(folder / f"{kind}.safetensors"))
    missing, unexpected = learner.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise DataError(f"checkpoint does not fit this model (missing {missing[:3]}, unexpected {unexpected[:3]})")
    if with_optimizer and (folder / f"{kind}.optim.safetensors").is_file():
        tensors = load_file(str(folder / f"{kind}.optim.safetensors"))
        learner.optimizer.load_state_dict(_unflatten_optimizer(tensors, meta["optimizer"]))
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
