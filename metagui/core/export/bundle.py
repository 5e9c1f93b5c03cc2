"""MetaGUI bundles (``.metagui``): writing them, and opening them again without executing
anything from them."""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import struct
import time
import zipfile
import zlib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch

from metagui.core import algorithms
from metagui.core.algorithms.base import MetaLearner
from metagui.core.config import RunConfig
from metagui.core.errors import DataError, MetaGUIError
from metagui.core.export.card import featurizer_spec, input_spec, model_card
from metagui.core.export.encoder import (
    EncoderMismatch,
    EncoderNotFound,
    EncoderPin,
    encoder_folder,
    find_pinned,
    pin_encoder,
)
from metagui.core.export.parity import parity_bundle
from metagui.core.export.source import TOLERANCE, ModelSource, metagui_version
from metagui.core.files import check_regular, read_bytes
from metagui.core.models import Preprocessing, make_backbone

BUNDLE_FORMAT = "metagui-bundle"


BUNDLE_VERSION = 1


MIB = 1 << 20


# the only files a bundle may hold, with the most bytes each may have
BUNDLE_MEMBERS: dict[str, int] = {
    "manifest.json": 1 * MIB,
    "model.json": 4 * MIB,
    "weights.safetensors": 2048 * MIB,
    "config.toml": 1 * MIB,
    "preprocessing.json": 1 * MIB,
    "labels.json": 16 * MIB,
    "metrics.json": 4 * MIB,
    "model_card.md": 4 * MIB,
}


class BundleError(MetaGUIError):
    """A bundle that is not one, is damaged, or does not fit its own description."""


class EncoderNeeded(BundleError):
    """A sound bundle whose pinned text encoder this computer does not have: give its folder."""


def write_bundle(src: ModelSource, out: Path, checks, adaptation, notes, step) -> tuple[dict[str, float], bytes]:
    """The bundle's bytes, after reopening it as a reader would and comparing its predictions
    with the live model's (the parity figures)."""
    members = _bundle_members(src)
    # reopen the weights and description as a reader would, and compare predictions
    here = encoder_folder(src.pre.text_encoder) if src.pre.text_encoder else None
    reopened = open_bundle(zip_bytes({**members, **_bundle_docs(src, {}, adaptation, {}, notes)}), here)
    step(3)
    parity = parity_bundle(src, reopened.learner, checks)
    step(4)
    size_guess = sum(len(v) for v in members.values())
    docs = _bundle_docs(src, parity, adaptation, {str(out): size_guess}, notes)
    data = zip_bytes({**members, **docs})
    open_bundle(data, here)  # the final file opens
    return parity, data


def _bundle_members(src: ModelSource) -> dict[str, bytes]:
    from safetensors.torch import save

    learner = src.learner
    state = {k: v.detach().cpu().contiguous() for k, v in learner.state_dict().items()}
    cfg = src.config
    model = {
        "algorithm": src.algorithm, "label": learner.label, "family": learner.family, "n_way": src.n_way,
        "hyperparams": learner.hp, "backbone": cfg.algorithm.backbone, "checkpoint": src.checkpoint,
        "step": src.meta.get("step"), "run": {k: src.run.get(k) for k in ("id", "name", "dataset", "task", "created")},
        "tensors": {k: {"dtype": str(v.dtype).removeprefix("torch."), "shape": list(v.shape)} for k, v in state.items()},
    }
    if src.pre.text_encoder:  # pinned, not copied: see ``encoder``
        model["text_encoder"] = pin_encoder(src.pre.text_encoder, src.pre.text_encoder_dim,
                                            cfg.algorithm.text_encoder_why).as_dict()
    pre = {**src.pre.as_dict(), "featurizer": featurizer_spec(src.pre), "input": input_spec(src, graph=False)}
    return {
        "weights.safetensors": save(state),
        "model.json": _json(model),
        "config.toml": cfg.to_toml().encode("utf-8"),
        "preprocessing.json": _json(pre),
    }


def _bundle_docs(src: ModelSource, parity, adaptation, files, notes) -> dict[str, bytes]:
    labels = {"classes": src.classes, "n_way": src.n_way,
              "note": ("Class names of the dataset the model was meta-trained on. The model is class-agnostic: "
                       "at use time the labels are the ones of the support set you give it.")}
    metrics = {"metric": src.learner.metric_name, "best_val": src.meta.get("best_val"),
               "validation": src.meta.get("validation") or src.metrics.get("validation") or {},
               "step": src.meta.get("step"), "parity": parity, "tolerance": TOLERANCE, "adaptation": adaptation}
    return {
        "labels.json": _json(labels),
        "metrics.json": _json(metrics),
        "model_card.md": model_card(src, "bundle", parity, adaptation, files, notes).encode("utf-8"),
    }


def _json(obj: Any) -> bytes:
    return json.dumps(obj, indent=1, default=str).encode("utf-8")


def zip_bytes(members: dict[str, bytes]) -> bytes:
    manifest = {"format": BUNDLE_FORMAT, "version": BUNDLE_VERSION,
                "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
                "metagui_version": metagui_version(),
                "files": {n: {"sha256": hashlib.sha256(b).hexdigest(), "bytes": len(b)} for n, b in sorted(members.items())}}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("manifest.json", _json(manifest))
        for name in sorted(members):
            # weights are stored as they are: float tensors barely compress, and an honest
            # bundle then never looks like a zip bomb (see _read_members)
            kind = zipfile.ZIP_STORED if name.endswith(".safetensors") else zipfile.ZIP_DEFLATED
            zf.writestr(name, members[name], compress_type=kind)
    return buf.getvalue()


@dataclass
class Bundle:
    """An opened bundle: the learner (weights loaded, eval mode) and what it came with."""

    learner: MetaLearner
    model: dict[str, Any]
    config: RunConfig
    pre: Preprocessing
    labels: dict[str, Any]
    metrics: dict[str, Any]
    card: str
    manifest: dict[str, Any]

    def source(self) -> ModelSource:
        """As a ``ModelSource``, to export a bundle again (to ONNX, say)."""
        meta = {"algorithm": self.model["algorithm"], "n_way": self.model["n_way"], "hyperparams": self.learner.hp,
                "step": self.model.get("step"), "best_val": self.metrics.get("best_val"),
                "validation": self.metrics.get("validation") or {}, "config": self.config.to_dict(),
                "preprocessing": self.pre.as_dict()}
        run = {k: v for k, v in (self.model.get("run") or {}).items() if v is not None}
        return ModelSource(self.learner, meta, self.config, self.pre, run=run,
                           classes=list(self.labels.get("classes") or []),
                           checkpoint=str(self.model.get("checkpoint", "best")), metrics=self.metrics)


def open_bundle(path_or_bytes: str | Path | bytes, encoder: str | Path | None = None) -> Bundle:
    """Open a ``.metagui`` bundle safely: member names and sizes are checked, every file must
    match the manifest's checksum, and tensor names, dtypes and shapes must match the model the
    config describes before any weight is loaded. Nothing is executed and nothing is written.
    Raises ``BundleError`` with a readable reason."""
    if isinstance(path_or_bytes, bytes):
        raw, where = path_or_bytes, "the bundle"
    else:
        p = Path(path_or_bytes)
        where = p.name
        try:  # a regular file only: never a FIFO or a device
            if check_regular(p, "bundle").st_size > sum(BUNDLE_MEMBERS.values()):
                raise BundleError(f"{where} is too large to be a MetaGUI bundle")
            raw = read_bytes(p, sum(BUNDLE_MEMBERS.values()), "bundle")
        except DataError as exc:
            raise BundleError(str(exc)) from None
    files = _read_members(raw, where)
    manifest = _parse_json(files, "manifest.json", where)
    if manifest.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{where} is not a MetaGUI bundle (manifest format {manifest.get('format')!r})")
    if manifest.get("version") != BUNDLE_VERSION:
        raise BundleError(f"{where} is bundle version {manifest.get('version')!r}; this MetaGUI reads version {BUNDLE_VERSION}")
    listed = manifest.get("files")
    if not isinstance(listed, dict) or set(listed) != set(BUNDLE_MEMBERS) - {"manifest.json"}:
        raise BundleError(f"{where}: manifest.json does not list the bundle's files")
    for name, data in files.items():
        if name == "manifest.json":
            continue
        entry = listed[name]
        if not isinstance(entry, dict) or entry.get("sha256") != hashlib.sha256(data).hexdigest():
            raise BundleError(f"{where}: {name} does not match its checksum in manifest.json (damaged or altered)")
    model = _parse_json(files, "model.json", where)
    pre_raw = _parse_json(files, "preprocessing.json", where)
    labels = _parse_json(files, "labels.json", where)
    metrics = _parse_json(files, "metrics.json", where)
    try:
        config = RunConfig.from_toml(files["config.toml"].decode("utf-8"))
        card = files["model_card.md"].decode("utf-8")
    except (UnicodeDecodeError, MetaGUIError) as exc:
        raise BundleError(f"{where}: config.toml is not a valid run config ({exc})") from None
    pre = _preprocessing_from(pre_raw, where)
    if pre.text_encoder_dim:
        pre.text_encoder = config.algorithm.text_encoder = _pinned_encoder(model, pre, encoder, where)
    learner = _learner_from(model, config, pre, files["weights.safetensors"], where)
    return Bundle(learner, model, config, pre, labels, metrics, card, manifest)


def _read_members(raw: bytes, where: str) -> dict[str, bytes]:
    try:
        zf = zipfile.ZipFile(io.BytesIO(raw))
    except (zipfile.BadZipFile, OSError, ValueError):
        raise BundleError(f"{where} is not a MetaGUI bundle (not a zip file)") from None
    files: dict[str, bytes] = {}
    with zf:
        infos = zf.infolist()
        if len(infos) > 2 * len(BUNDLE_MEMBERS):
            raise BundleError(f"{where} holds too many files to be a MetaGUI bundle")
        for info in infos:
            name = info.filename
            if (name.startswith(("/", "\\")) or "\\" in name or ":" in name
                    or any(part in ("..", "") for part in name.split("/")) or info.is_dir()):
                raise BundleError(f"{where} contains an unsafe file name {name!r}; it was not opened")
            if name not in BUNDLE_MEMBERS:
                raise BundleError(f"{where} contains an unexpected file {name!r}; it was not opened")
            if name in files:
                raise BundleError(f"{where} contains {name} twice; it was not opened")
            limit = BUNDLE_MEMBERS[name]
            if info.file_size > limit:
                raise BundleError(f"{where}: {name} is larger than a bundle allows ({info.file_size} bytes)")
            if info.file_size > 16 * MIB and info.file_size > 100 * max(info.compress_size, 1):
                raise BundleError(f"{where}: {name} is compressed suspiciously well (a zip bomb?); it was not opened")
            if info.flag_bits & 0x1:
                raise BundleError(f"{where}: {name} is encrypted; it was not opened")
            try:
                with zf.open(info) as f:
                    data = f.read(limit + 1)
            except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError, RuntimeError,
                    zlib.error) as exc:
                raise BundleError(f"{where}: {name} cannot be read ({exc})") from None
            if len(data) > limit:
                raise BundleError(f"{where}: {name} is larger than a bundle allows")
            files[name] = data
    missing = [n for n in BUNDLE_MEMBERS if n not in files]
    if missing:
        raise BundleError(f"{where} is incomplete: missing {', '.join(missing)}")
    return files


def _parse_json(files: dict[str, bytes], name: str, where: str) -> dict[str, Any]:
    try:
        obj = json.loads(files[name].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BundleError(f"{where}: {name} is not valid JSON") from None
    if not isinstance(obj, dict):
        raise BundleError(f"{where}: {name} must hold a JSON object")
    return obj


# bounds on preprocessing values: a hostile bundle must not make us allocate huge tensors
_PRE_BOUNDS = {"image_size": (1, 1024), "channels": (1, 4), "text_buckets": (2, 1 << 22), "ngram_min": (1, 16),
               "ngram_max": (1, 16), "max_tokens": (1, 100_000), "states": (0, 100_000), "actions": (0, 100_000), "text_features": (1, 2),
               "text_encoder_dim": (0, 16384)}


def _preprocessing_from(raw: dict[str, Any], where: str) -> Preprocessing:
    known = {f.name: f for f in fields(Preprocessing)}
    values = {k: v for k, v in raw.items() if k in known}
    try:
        pre = Preprocessing.from_dict(values)
    except TypeError as exc:
        raise BundleError(f"{where}: preprocessing.json is incomplete ({exc})") from None
    for name, (low, high) in _PRE_BOUNDS.items():
        v = getattr(pre, name, None)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
            raise BundleError(f"{where}: preprocessing {name} = {v!r} is out of range ({low}..{high})")
    if not isinstance(pre.modality, str) or not isinstance(pre.invert, bool):
        raise BundleError(f"{where}: preprocessing.json has invalid values")
    if bool(pre.text_encoder) != bool(pre.text_encoder_dim) or (pre.text_encoder and pre.modality != "text"):
        raise BundleError(f"{where}: preprocessing.json describes a text encoder inconsistently")
    return pre


def _pinned_encoder(model: dict[str, Any], pre: Preprocessing, folder: str | Path | None, where: str) -> str:
    """The reference of the pinned encoder on this computer. The bundle's own reference (a
    path on the exporter's machine) is never followed: only the pinned model id, or a folder
    the user gives, and only when its weights have the pinned checksum."""
    try:
        pin = EncoderPin.from_dict(model.get("text_encoder"), where)
        if pin.dim != pre.text_encoder_dim:
            raise EncoderMismatch(f"{where}: the text encoder's size does not match the preprocessing")
        return find_pinned(pin, folder)
    except EncoderNotFound as exc:
        raise EncoderNeeded(str(exc)) from None
    except EncoderMismatch as exc:
        raise BundleError(str(exc)) from None


def _safetensors_header(data: bytes, where: str) -> dict[str, Any]:
    """Tensor names, dtypes and shapes from a safetensors header (read as JSON, no tensor data)."""
    if len(data) < 8:
        raise BundleError(f"{where}: weights.safetensors is truncated")
    (n,) = struct.unpack("<Q", data[:8])
    if n > min(len(data) - 8, 100 * MIB):
        raise BundleError(f"{where}: weights.safetensors has a damaged header")
    try:
        header = json.loads(data[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BundleError(f"{where}: weights.safetensors has a damaged header") from None
    if not isinstance(header, dict):
        raise BundleError(f"{where}: weights.safetensors has a damaged header")
    header.pop("__metadata__", None)
    return header


_DTYPES = {"F32": "float32", "F64": "float64", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
           "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}


def _learner_from(model: dict, config: RunConfig, pre: Preprocessing, weights: bytes, where: str) -> MetaLearner:
    from safetensors import SafetensorError
    from safetensors.torch import load

    name, n_way = model.get("algorithm"), model.get("n_way")
    if not isinstance(name, str) or name not in algorithms.REGISTRY:
        raise BundleError(f"{where}: unknown algorithm {name!r}")
    if isinstance(n_way, bool) or not isinstance(n_way, int) or not 0 <= n_way <= 10_000:
        raise BundleError(f"{where}: model.json has an invalid n_way {n_way!r}")
    if not isinstance(model.get("hyperparams"), dict):
        raise BundleError(f"{where}: model.json has no hyperparameters")
    backbone_kind = model.get("backbone", config.algorithm.backbone)
    if not isinstance(backbone_kind, str):
        raise BundleError(f"{where}: model.json names no backbone")
    try:
        # build on the meta device first: expected names and shapes, no memory, no weights
        with torch.device("meta"):
            shell = algorithms.create(name, make_backbone(backbone_kind, pre), n_way, model["hyperparams"])
    except (MetaGUIError, TypeError, ValueError) as exc:
        raise BundleError(f"{where}: its description does not make a model ({exc})") from None
    expected = {k: (str(v.dtype).removeprefix("torch."), list(v.shape)) for k, v in shell.state_dict().items()}
    header = _safetensors_header(weights, where)
    found = {}
    for k, v in header.items():
        if not isinstance(v, dict) or not isinstance(v.get("shape"), list):
            raise BundleError(f"{where}: weights.safetensors has a damaged entry {k!r}")
        found[k] = (_DTYPES.get(str(v.get("dtype")), str(v.get("dtype"))), v["shape"])
    missing, unexpected = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
    if missing or unexpected:
        raise BundleError(f"{where}: the weights do not fit the model its config describes "
                          f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    for k, (dtype, shape) in expected.items():
        if found[k] != (dtype, shape):
            raise BundleError(f"{where}: tensor {k} is {found[k][0]} {found[k][1]}; the model needs {dtype} {shape}")
    try:
        state = load(weights)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise BundleError(f"{where}: weights.safetensors cannot be read ({exc})") from None
    learner = algorithms.create(name, make_backbone(backbone_kind, pre), n_way, model["hyperparams"])
    learner.load_state_dict(state, strict=True)
    for k, v in learner.state_dict().items():
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise BundleError(f"{where}: tensor {k} holds NaN or infinite values")
    return learner.eval()


def import_bundle(store, path: str | Path, encoder: str | Path | None = None) -> int:
    """Add a bundle to the run store as a completed run with a ``best`` checkpoint, so that the
    app's Runs and Try it pages can use it. The bundle is fully checked first: a bad one raises
    ``BundleError`` and the store is not touched."""
    from metagui.core.checkpoint import save_checkpoint

    bundle = open_bundle(path, encoder)
    cfg = bundle.config
    run = bundle.model.get("run") or {}
    label = bundle.model.get("label") or bundle.model["algorithm"]
    name = f"Imported: {run.get('name') or label}"
    task = run.get("task") or (f"{cfg.task.way}-way {cfg.task.shot}-shot" if bundle.model["n_way"] else "regression")
    run_id = store.create_run(name=name, config_toml=cfg.to_toml(), algorithm=bundle.model["algorithm"],
                              dataset=str(run.get("dataset") or cfg.dataset.path or cfg.dataset.source), task=task,
                              device="cpu")
    try:
        best = bundle.metrics.get("best_val")
        best = float(best) if isinstance(best, int | float) else None
        meta = {"run_id": run_id, "step": bundle.model.get("step") or 0, "best_val": best,
                "validation": bundle.metrics.get("validation") or {}, "config": cfg.to_dict(),
                "algorithm": bundle.model["algorithm"], "n_way": bundle.model["n_way"],
                "preprocessing": bundle.pre.as_dict(), "hyperparams": bundle.learner.hp,
                "imported_from": str(path)}
        folder = store.runs_dir / f"run-{run_id}"
        ckpt = save_checkpoint(folder, "best", bundle.learner, meta)
        store.record_checkpoint(run_id, "best", str(ckpt), int(meta["step"]), best)
        store.update_run(run_id, status="completed", steps_done=int(meta["step"]), best_val=best,
                         tags=["imported"], finished=time.time(), duration_s=0.0)
    except Exception:
        store.delete_run(run_id)
        raise
    return run_id


def predict(learner: MetaLearner, pre: Preprocessing, support_items: list, support_labels: list,
            query_items: list) -> dict[str, Any]:
    """Adapt to labelled support items and predict the queries (raw items: texts, image paths,
    or numbers for regression). Returns plain data."""
    from metagui.core.evaluation import encode_items

    if pre.modality not in ("image", "text", "regression"):
        raise DataError(f"predict takes classification and regression models, not {pre.modality} policies")
    if not support_items or not query_items:
        raise DataError("give at least one support example and one query")
    if len(support_items) != len(support_labels):
        raise DataError("every support example needs a label")
    if learner.regression:
        try:
            sx = torch.tensor([[float(v)] for v in support_items])
            sy = torch.tensor([[float(v)] for v in support_labels])
            qx = torch.tensor([[float(v)] for v in query_items])
        except (TypeError, ValueError):
            raise DataError("a regression model takes numbers: x values and y labels") from None
        values = learner.adapt(sx, sy, 0).predict(qx)[:, 0]
        return {"predictions": [{"item": q, "value": float(v)} for q, v in zip(query_items, values, strict=True)]}
    names = sorted({str(label) for label in support_labels})
    if learner.family == "optimisation" and len(names) != learner.n_way:
        raise DataError(f"this {learner.label} model adapts to {learner.n_way} classes; the support set has {len(names)}")
    index = {n: i for i, n in enumerate(names)}
    xs = encode_items([*support_items, *query_items], pre)
    sx, qx = xs[: len(support_items)], xs[len(support_items):]
    sy = torch.tensor([index[str(label)] for label in support_labels])
    probs = learner.adapt(sx, sy, len(names)).predict(qx)
    preds = []
    for item, p in zip(query_items, probs, strict=True):
        preds.append({"item": item, "label": names[int(p.argmax())],
                      "probabilities": {n: round(float(v), 6) for n, v in zip(names, p, strict=True)}})
    return {"labels": names, "predictions": preds}
