"""Pick the compute device: CUDA when present, else Apple MPS, else CPU; or as forced."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from metagui.core.errors import ConfigError


@dataclass(frozen=True)
class DeviceInfo:
    name: str  # "cpu", "cuda:0", "mps"
    description: str  # for menus: "NVIDIA H200 (139.8 GiB)"


def available_devices() -> list[DeviceInfo]:
    out = [DeviceInfo("cpu", f"CPU ({torch.get_num_threads()} threads)")]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            out.append(DeviceInfo(f"cuda:{i}", f"{p.name} ({p.total_memory / 2**30:.1f} GiB)"))
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        out.append(DeviceInfo("mps", "Apple GPU (MPS)"))
    return out


def select_device(preference: str = "auto") -> torch.device:
    pref = (preference or "auto").strip().lower()
    if pref == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if pref == "cpu":
        return torch.device("cpu")
    if pref.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device '{preference}' was asked for, but this machine has no CUDA GPU (use auto or cpu)")
        dev = torch.device(pref)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"device '{preference}' does not exist: {torch.cuda.device_count()} CUDA device(s) found")
        return dev
    if pref == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ConfigError("device 'mps' was asked for, but Apple's MPS is not available here")
        return torch.device("mps")
    raise ConfigError(f"unknown device '{preference}' (use auto, cpu, cuda, cuda:N or mps)")
