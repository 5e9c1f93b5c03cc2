"""The export pipeline: check, write under temporary names, move into place."""

from __future__ import annotations

import contextlib
import io
import json
import os
import secrets
import time
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from metagui.core.errors import Cancelled, MetaGUIError
from metagui.core.export import source
from metagui.core.export.bundle import write_bundle
from metagui.core.export.card import code_snippet, export_spec, model_card
from metagui.core.export.encoder import SentenceTower, encoder_folder
from metagui.core.export.graphs import ExportGraphs, onnx_export
from metagui.core.export.parity import adaptation_summary, check_episodes, parity_graph
from metagui.core.export.source import (
    CancelCheck,
    Episode,
    ExportError,
    ModelSource,
    Progress,
    data_episodes,
    item_inputs,
    load_source,
)


@dataclass
class ExportResult:
    format: str
    path: str
    files: dict[str, int]  # path -> bytes
    parity: dict[str, float]  # check -> max absolute difference
    tolerance: float
    adaptation: dict[str, Any]
    card: str
    snippet: str
    notes: list[str]
    seconds: float

    @property
    def max_abs_diff(self) -> float:
        return max(self.parity.values(), default=0.0)

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.tolerance

    def as_dict(self) -> dict[str, Any]:
        """Plain data (crosses threads, prints as JSON)."""
        return {"format": self.format, "path": self.path, "files": self.files, "parity": self.parity,
                "max_abs_diff": self.max_abs_diff, "tolerance": self.tolerance, "passed": self.passed,
                "adaptation": self.adaptation, "card": self.card, "snippet": self.snippet,
                "notes": self.notes, "seconds": round(self.seconds, 2)}


class ExportTargetExists(ExportError):
    """A file the export would write is there already (``overwrite=False``)."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths
        names = ", ".join(str(p) for p in paths)
        super().__init__(f"{names} already exist{'s' if len(paths) == 1 else ''}; nothing was written")


def export_run(db, run_id: int, fmt: str, out: str | Path, checkpoint: str = "best",
               progress: Progress | None = None, cancel: CancelCheck | None = None,
               dataset=None, load_data: bool = True, episodes: int = 20, overwrite: bool = True) -> ExportResult:
    """Export a stored run (opens its own store connection: safe from any thread)."""
    from metagui.core.store import RunStore

    store = RunStore.for_reading(db) if not hasattr(db, "checkpoints") else db
    try:
        src = load_source(store, run_id, checkpoint)
    finally:
        if store is not db:
            store.close()
    return export_model(src, fmt, out, progress, cancel, dataset=dataset, load_data=load_data, episodes=episodes,
                        overwrite=overwrite)


def export_model(src: ModelSource, fmt: str, out: str | Path, progress: Progress | None = None,
                 cancel: CancelCheck | None = None, dataset=None, load_data: bool = True,
                 episodes: int = 20, overwrite: bool = True) -> ExportResult:
    """Write ``fmt`` to ``out`` (sidecar ``.md`` model card and ``.json`` spec beside the
    TorchScript and ONNX files), after checking it against the live model.

    ``dataset`` (or ``load_data``) supplies held-out episodes of the run's data for the parity
    check and for measuring what the export's adaptation gives; without them the check runs
    on random inputs of the right shape.

    Only regular files are ever replaced, and with ``overwrite=False`` none: an existing target
    (the file or a sidecar) raises ``ExportTargetExists`` before any work."""
    reason = source.export_problem(src.config, fmt)
    if reason:
        raise ExportError(reason)
    started = time.perf_counter()
    report = progress or (lambda done, total: None)
    stop = cancel or (lambda: False)
    total = 5
    out = Path(out)
    if out.is_dir() or not out.suffix:
        out = out / src.default_filename(fmt)
    if not out.parent.is_dir():
        raise ExportError(f"the target folder does not exist: {out.parent}")
    if episodes < 0:
        raise ExportError(f"episodes must be 0 (no held-out figures) or more, got {episodes}")
    targets = [out] if fmt == "bundle" else [out, *sidecars(out)]
    if fmt != "bundle" and src.pre.text_encoder:
        targets.append(tokenizer_sidecar(out))
    _check_targets(targets, overwrite)
    src.learner.cpu().eval()
    notes: list[str] = []

    def step(done: int) -> None:
        if stop():
            raise Cancelled("export cancelled")
        report(done, total)

    step(0)
    real: list[Episode] = []
    try:
        real = data_episodes(src, episodes, dataset=dataset, load=load_data, cancel=stop)
    except Cancelled:
        raise
    except MetaGUIError as exc:
        notes.append(f"held-out data not available ({exc}); parity was checked on random inputs only")
    if not real and not src.regression and item_inputs(src):
        notes.append("parity was checked on random inputs of the right shape (no held-out data at hand)")
    step(1)
    tower = None
    if src.pre.text_encoder and fmt != "bundle":  # the graphs carry the encoder
        tower = SentenceTower(encoder_folder(src.pre.text_encoder)).eval()
    checks = check_episodes(src, real, tower)
    adaptation = adaptation_summary(src, real) if real else {}
    step(2)
    temps: dict[Path, Path] = {}  # temporary file -> the file it becomes
    try:
        if fmt == "bundle":
            parity, data = write_bundle(src, out, checks, adaptation, notes, step)
            _temp(out, temps).write_bytes(data)
            files = {str(out): len(data)}
            card = _read_card(data)
        else:
            artifact = _temp(out, temps)
            parity = _write_graph(src, fmt, artifact, checks, step, tower)
            step(4)
            files = {str(out): artifact.stat().st_size}
            card = model_card(src, fmt, parity, adaptation, files, notes)
            card_path, spec_path = sidecars(out)
            _temp(card_path, temps).write_text(card, encoding="utf-8")
            spec = export_spec(src, fmt, parity, adaptation)
            spec_tmp = _temp(spec_path, temps)
            spec_tmp.write_text(json.dumps(spec, indent=1), encoding="utf-8")
            files[str(card_path)] = len(card.encode("utf-8"))
            files[str(spec_path)] = spec_tmp.stat().st_size
            if tower is not None:
                tokenizer = _temp(tokenizer_sidecar(out), temps)
                tower.copy_tokenizer(tokenizer)
                files[str(tokenizer_sidecar(out))] = tokenizer.stat().st_size
        worst = max(parity.values(), default=0.0)
        if not worst <= source.TOLERANCE:
            detail = ", ".join(f"{k} {v:.2e}" for k, v in parity.items())
            raise ExportError(f"parity check failed: the export differs from the live model by up to "
                              f"{worst:.2e} (more than {source.TOLERANCE:g}: {detail}); nothing was written")
        _check_targets(list(temps.values()), overwrite)  # nothing appeared there meanwhile
        for tmp, final in temps.items():
            os.replace(tmp, final)
        temps.clear()
    except OSError as exc:  # a full disk, a read-only folder: one readable line, nothing left
        raise ExportError(f"cannot write {out}: {exc.strerror or exc}") from None
    finally:
        for tmp in temps:
            with contextlib.suppress(OSError):
                tmp.unlink()
    report(total, total)
    return ExportResult(fmt, str(out), files, parity, source.TOLERANCE, adaptation, card, code_snippet(src, fmt, out),
                        notes, time.perf_counter() - started)


def sidecars(out: Path) -> tuple[Path, Path]:
    """The model card and JSON spec written beside a TorchScript or ONNX file."""
    return out.with_name(out.name + ".md"), out.with_name(out.name + ".json")


def tokenizer_sidecar(out: Path) -> Path:
    """The encoder's tokenizer, beside a TorchScript or ONNX file that carries the encoder."""
    return out.with_name(out.name + ".tokenizer.json")


def _temp(path: Path, temps: dict[Path, Path]) -> Path:
    """A new, empty temporary file beside ``path`` (a unique name: never a file of the user's)."""
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.partial")
        try:  # created here, exclusively, with the permissions a new file gets
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        temps[tmp] = path
        return tmp


def _check_targets(targets: list[Path], overwrite: bool) -> None:
    """Refuse to replace anything but a regular file, and with ``overwrite=False`` anything."""
    for path in targets:
        if (path.exists() or path.is_symlink()) and not (path.is_file() and not path.is_symlink()):
            raise ExportError(f"{path} is there and is not a regular file; it was left as it is")
    existing = [p for p in targets if p.exists()]
    if existing and not overwrite:
        raise ExportTargetExists(existing)


def _read_card(bundle: bytes) -> str:
    with zipfile.ZipFile(io.BytesIO(bundle)) as zf:
        return zf.read("model_card.md").decode("utf-8")


def _write_graph(src: ModelSource, fmt: str, path: Path, checks: list[tuple[str, Episode]], step,
                 tower: SentenceTower | None) -> dict[str, float]:
    """Trace and save ``fmt`` to ``path``; load it back and return the parity figures."""
    graphs = ExportGraphs(src.learner, tower).eval()
    trace_ep = checks[0][1]
    trace_sx, trace_qx = trace_ep.graph_inputs()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        if fmt == "torchscript":
            traced = torch.jit.trace_module(
                graphs, {"forward": (trace_sx, trace_ep.sy, trace_qx), "embed": (trace_sx,)},
                check_trace=False)
            torch.jit.save(traced, str(path))
        else:
            onnx_export(src, graphs, fmt, path, trace_ep)
    step(3)
    return parity_graph(src, graphs, fmt, path, checks)
