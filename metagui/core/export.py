"""Export trained models, and open MetaGUI bundles again without executing anything from them.

Formats (``FORMATS``):

- ``bundle``: a ``.metagui`` zip of safetensors weights, the run's config, label names,
  preprocessing, metrics, a model card and a manifest of checksums. It reopens in the app
  (imported as a run) and in ``metagui predict``.
- ``torchscript``: one traced module; ``forward(support_x, support_y, query_x)`` adapts to the
  support set and predicts the queries, ``embed(x)`` is the backbone.
- ``onnx``: the backbone as an ONNX graph (``x -> embeddings``, plus the head's ``outputs`` for
  optimisation-based learners).
- ``onnx-adaptive``: an ONNX graph that adapts inside any ONNX runtime
  (``support_x, support_y, query_x -> probabilities | values``). Metric learners adapt exactly
  as in MetaGUI; MAML-family learners adapt their final linear layer with closed-form gradient
  steps on backbone features computed once (the model card says so and measures the gap).

Every export is checked against the live model on the same inputs (onnxruntime for ONNX,
``torch.jit.load`` for TorchScript, a reopened bundle for bundles) at two input sizes, so that
traced shapes cannot hide. Files are written under temporary names and moved into place only
when the check passes: a failed export leaves nothing behind.

The exported graphs take model inputs, not raw items: images as float32 [n, C, H, W] in
[0, 1], texts as int64 token ids [n, L] (0 = padding). The text featurizer is plain Python; its
exact specification travels as JSON and as a short stdlib snippet in the model card, never as
code inside a bundle.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import io
import json
import os
import struct
import time
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from metagui.core import algorithms
from metagui.core.algorithms.base import MetaLearner
from metagui.core.config import RunConfig
from metagui.core.errors import Cancelled, DataError, MetaGUIError
from metagui.core.models import MLP, Conv4, NgramEncoder, Preprocessing, TextEncoder, make_backbone

FORMATS: dict[str, str] = {
    "bundle": "MetaGUI bundle (.metagui): weights, config, labels, preprocessing, metrics, model card",
    "torchscript": "TorchScript (.pt): adapt-and-predict and the backbone, for torch alone",
    "onnx": "ONNX (.onnx): the backbone (and head), for any ONNX runtime",
    "onnx-adaptive": "ONNX with adaptation inside (.onnx): support set and queries in, predictions out",
}
SUFFIXES = {"bundle": ".metagui", "torchscript": ".pt", "onnx": ".onnx", "onnx-adaptive": ".onnx"}
OPSET = 17
TOLERANCE = 1e-4
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
EXPORT_FAMILIES = ("metric", "optimisation")

Progress = Callable[[int, int], None]
CancelCheck = Callable[[], bool]


class ExportError(MetaGUIError):
    """An export that cannot be made, or that failed its parity check."""


class BundleError(MetaGUIError):
    """A bundle that is not one, is damaged, or does not fit its own description."""


# --- what gets exported -----------------------------------------------------------------------
@dataclass
class ModelSource:
    """A trained learner with everything the exports and the model card say about it."""

    learner: MetaLearner
    meta: dict[str, Any]  # checkpoint metadata (step, best_val, validation, hyperparams, ...)
    config: RunConfig
    pre: Preprocessing
    run: dict[str, Any] = field(default_factory=dict)  # the store's row (name, dataset, task, ...)
    classes: list[str] = field(default_factory=list)  # the dataset's class names (when known)
    dataset_stats: dict[str, Any] = field(default_factory=dict)  # classes, items, ... from the store
    checkpoint: str = "best"
    metrics: dict[str, Any] = field(default_factory=dict)  # from a bundle's metrics.json

    @property
    def algorithm(self) -> str:
        return str(self.meta["algorithm"])

    @property
    def n_way(self) -> int:
        return int(self.meta["n_way"])

    @property
    def regression(self) -> bool:
        return self.n_way == 0

    @property
    def name(self) -> str:
        return self.run.get("name") or f"{self.learner.label} on {self.config.dataset.path or self.config.dataset.source}"

    def default_filename(self, fmt: str) -> str:
        rid = self.run.get("id")
        stem = f"run-{rid}-{self.algorithm}" if rid else f"{self.algorithm}-model"
        if fmt == "onnx-adaptive":
            stem += "-adaptive"
        return stem + SUFFIXES[fmt]


def load_source(store, run_id: int, checkpoint: str = "best") -> ModelSource:
    """The learner of a stored run's ``best`` or ``last`` checkpoint, with its metadata."""
    from metagui.core.evaluation import checkpoint_folder, load_learner

    run = store.run(run_id)
    learner, meta = load_learner(checkpoint_folder(store, run_id, checkpoint), checkpoint, torch.device("cpu"))
    return ModelSource(
        learner=learner, meta=meta, config=RunConfig.from_dict(meta["config"]),
        pre=Preprocessing.from_dict(meta["preprocessing"]), run=run, dataset_stats=_dataset_stats(store, run),
        checkpoint=checkpoint,
    )


def _dataset_stats(store, run: dict) -> dict[str, Any]:
    """What the store recorded about the run's dataset (class and item counts)."""
    ds_id = run.get("dataset_id")
    if not ds_id or "datasets" not in store.db.table_names():
        return {}
    rows = list(store.db["datasets"].rows_where("id = ?", [ds_id]))
    try:
        stats = json.loads(rows[0]["stats"] or "{}") if rows else {}
    except ValueError:
        return {}
    return stats if isinstance(stats, dict) else {}


PRETRAINED_NOT_EXPORTED = ("models on a pretrained text encoder do not export yet: the encoder is a separate "
                           "model (use them in MetaGUI, or export a model on the built-in encoder)")


def exportable(src: ModelSource, fmt: str) -> str:
    """Why ``fmt`` cannot be made from ``src`` ("" when it can)."""
    if fmt not in FORMATS:
        return f"unknown export format '{fmt}' (choose {', '.join(FORMATS)})"
    if src.pre.text_encoder:
        return PRETRAINED_NOT_EXPORTED
    if fmt == "bundle":
        return ""
    if src.learner.family not in EXPORT_FAMILIES:
        return (f"{src.learner.label} exports as a MetaGUI bundle only: TorchScript and ONNX cover "
                "metric and optimisation-based learners")
    if not _graph_supported(src.learner):
        return f"the {type(src.learner.backbone).__name__} backbone exports as a MetaGUI bundle only"
    return ""


def format_problem(config: RunConfig, fmt: str) -> str:
    """Why a run with this config cannot be exported as ``fmt`` ("" when it can), known
    without loading it (the export itself checks again with ``exportable``)."""
    if fmt not in FORMATS:
        return f"unknown export format '{fmt}' (choose {', '.join(FORMATS)})"
    if config.algorithm.text_encoder:
        return PRETRAINED_NOT_EXPORTED
    if fmt == "bundle":
        return ""
    try:
        cls = algorithms.get(config.algorithm.name)
    except MetaGUIError as exc:
        return str(exc)
    if cls.family not in EXPORT_FAMILIES:
        return (f"{cls.label} exports as a MetaGUI bundle only: TorchScript and ONNX cover "
                "metric and optimisation-based learners")
    if config.algorithm.backbone not in ("auto", "conv4", "mlp", "text") or config.dataset.source in ("bandit", "mdp"):
        return "this backbone exports as a MetaGUI bundle only"
    if config.algorithm.hyperparams.get("head") == "shared":
        return "a shared-head model exports as a MetaGUI bundle only (graphs have a fixed number of classes)"
    return ""


def _graph_supported(learner: MetaLearner) -> bool:
    """Whether ``ExportGraphs`` has a form for this learner."""
    return (learner.family in EXPORT_FAMILIES and isinstance(learner.backbone, Conv4 | MLP | TextEncoder | NgramEncoder)
            and not getattr(learner, "shared_head", False))


def _item_inputs(src: ModelSource) -> bool:
    """Whether the model takes items (images, texts, x values), as opposed to RL trials."""
    return src.pre.modality in ("image", "text", "regression")


# --- example inputs -----------------------------------------------------------------------------
@dataclass
class Episode:
    """One support set and its queries, as model inputs (labels as class indices)."""

    sx: torch.Tensor
    sy: torch.Tensor
    qx: torch.Tensor
    qy: torch.Tensor | None = None


def synthetic_episode(src: ModelSource, n_way: int, shot: int, query: int, seed: int) -> Episode:
    """Random inputs of the right kind: enough to compare an export with the live model."""
    g = torch.Generator().manual_seed(seed)
    pre = src.pre
    if src.regression:
        sx = torch.rand(shot, 1, generator=g) * 10 - 5
        qx = torch.rand(query, 1, generator=g) * 10 - 5
        return Episode(sx, torch.sin(sx) * 2, qx, torch.sin(qx) * 2)

    def items(n: int) -> torch.Tensor:
        if pre.modality == "image":
            return torch.rand(n, pre.channels, pre.image_size, pre.image_size, generator=g)
        width = 12 + seed % 5
        ids = torch.randint(1, pre.text_buckets, (n, width), generator=g)
        lengths = torch.randint(1, width + 1, (n,), generator=g)
        return ids * (torch.arange(width)[None] < lengths[:, None])

    sy = torch.arange(n_way).repeat_interleave(shot)
    qy = torch.arange(n_way).repeat_interleave(query)
    return Episode(items(n_way * shot), sy, items(n_way * query), qy)


def data_episodes(src: ModelSource, count: int, dataset=None, load: bool = True,
                  cancel: CancelCheck | None = None) -> list[Episode]:
    """``count`` held-out episodes of the run's own data (test split, else validation), or []
    when the data is not at hand (``load`` False and no ``dataset`` given). Fills in
    ``src.classes`` from the dataset on the way."""
    from metagui.core.experiment import Experiment
    from metagui.core.tasks import step_rng

    cfg = src.config
    if not _item_inputs(src) or count < 1:
        return []
    if dataset is None and not src.regression and not load:
        return []
    exp = Experiment.prepare(cfg, dataset=dataset, cancel=cancel)
    if exp.dataset is not None and not src.classes:
        src.classes = [str(c) for c in exp.dataset.classes]
    split = next((s for s in ("test", "val", "train") if s in exp.samplers), None)
    if split is None:
        return []
    batch = exp.sample(split, count, step_rng(cfg.training.seed + 7, split, 0))
    return [Episode(batch.support_x[t], batch.support_y[t], batch.query_x[t], batch.query_y[t])
            for t in range(batch.n_tasks)]


# --- the exported computations -------------------------------------------------------------------
def _one_hot(labels: torch.Tensor, n: torch.Tensor | int, dtype: torch.dtype) -> torch.Tensor:
    """One-hot rows by comparison with ``arange(n)``: traces with a dynamic ``n``."""
    return (labels.unsqueeze(1) == torch.arange(n, device=labels.device).unsqueeze(0)).to(dtype)


def _episode_norm(x: torch.Tensor, norm: nn.Module) -> torch.Tensor:
    """``models.EpisodeBatchNorm`` for one episode, with its means taken in two stages (over
    pixels, then over items). onnxruntime sums a long ReduceMean one float at a time; over a
    whole episode's pixels that drifts by ~1e-4, which this keeps at rounding level."""
    mean = x.mean((2, 3), keepdim=True).mean(0, keepdim=True)
    var = (x - mean).pow(2).mean((2, 3), keepdim=True).mean(0, keepdim=True)
    return (x - mean) * torch.rsqrt(var + norm.eps) * norm.weight.view(1, -1, 1, 1) + norm.bias.view(1, -1, 1, 1)


class ExportGraphs(nn.Module):
    """The computations that exports contain, written with shape-generic tensor ops so that a
    traced graph takes any number of items, support examples, queries and (for metric
    learners) classes. Parity checks hold them to the learner's own code."""

    def __init__(self, learner: MetaLearner) -> None:
        super().__init__()
        self.learner = learner
        self.family = learner.family
        self.batch_independent = bool(getattr(learner.backbone, "batch_independent", False))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self._backbone(x)

    def _backbone(self, x: torch.Tensor) -> torch.Tensor:
        bb = self.learner.backbone
        if not isinstance(bb, Conv4):
            return bb(x)
        for conv, norm in zip(bb.convs, bb.norms, strict=True):
            x = F.max_pool2d(F.relu(_episode_norm(conv(x), norm)), 2)
        return x.flatten(1)

    def outputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Backbone embeddings and, for optimisation-based learners, the head's outputs at the
        meta-learned initialisation (logits, or values for regression)."""
        emb = self._backbone(x)
        return emb, self.learner.head(emb)

    def _features(self, sx: torch.Tensor, qx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Support and query embeddings; batch-norm backbones see the episode together."""
        if self.batch_independent:
            return self._backbone(sx), self._backbone(qx)
        emb = self._backbone(torch.cat([sx, qx]))
        s = sx.shape[0]
        return emb[:s], emb[s:]

    def forward(self, support_x: torch.Tensor, support_y: torch.Tensor, query_x: torch.Tensor) -> torch.Tensor:
        if self.family == "metric":
            return self._metric(support_x, support_y, query_x)
        return self._head_adaptation(support_x, support_y, query_x)

    # metric learners: exactly the learner's adapt/predict
    def _metric(self, sx: torch.Tensor, sy: torch.Tensor, qx: torch.Tensor) -> torch.Tensor:
        lr = self.learner
        es, eq = self._features(sx, qx)
        oh = _one_hot(sy, sy.max() + 1, es.dtype)  # [S, N]
        means = oh.t() @ es / oh.sum(0).clamp_min(1).unsqueeze(1)  # [N, d]
        if lr.name == "protonet":
            if lr.hp["distance"] == "cosine":
                return (lr.log_scale.exp() * F.normalize(eq, dim=-1) @ F.normalize(means, dim=-1).t()).softmax(-1)
            return (-(eq.unsqueeze(1) - means.unsqueeze(0)).pow(2).sum(-1)).softmax(-1)
        if lr.name == "matching":
            if lr.hp["fce"]:
                es, eq = self._full_context(es, eq)
            sim = F.normalize(eq, dim=-1) @ F.normalize(es, dim=-1).t()
            attn = torch.softmax(lr.hp["temperature"] * sim, dim=-1)
            return (attn @ oh).clamp_min(1e-8)
        if lr.name == "relation":
            return lr.probabilities(lr.relate(means.unsqueeze(0), eq.unsqueeze(0))[0])
        raise ExportError(f"no export form for {lr.label}")

    def _full_context(self, es: torch.Tensor, eq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lr = self.learner
        d = es.shape[-1]
        out, _ = lr.support_lstm(es.unsqueeze(0))
        g = es + out[0, :, :d] + out[0, :, d:]
        h = torch.zeros_like(eq)
        c = torch.zeros_like(eq)
        for _ in range(lr.hp["fce_steps"]):
            attn = torch.softmax(h @ g.t(), dim=-1)
            h, c = lr.query_cell(eq, (h + attn @ g, c))
            h = h + eq
        return g, h

    # optimisation-based learners: closed-form gradient steps on the final linear layer
    def _head_adaptation(self, sx: torch.Tensor, sy: torch.Tensor, qx: torch.Tensor) -> torch.Tensor:
        lr = self.learner
        hs_alone = self._backbone(sx)  # the inner loop sees the support set alone, as in MetaGUI
        _, hq = self._features(sx, qx)
        w, b = lr.head.weight, lr.head.bias
        lr_w, lr_b = lr.test_step_size("head.weight"), lr.test_step_size("head.bias")
        count = torch.ones_like(hs_alone[:, :1]).sum()  # support size, traced as a tensor
        regression = lr.regression
        target = sy if regression else _one_hot(sy, w.shape[0], hs_alone.dtype)
        for _ in range(int(lr.hp["eval_steps"])):
            out = hs_alone @ w.t() + b
            # d loss / d out: softmax cross-entropy (p - y) / S; mean squared error 2 (out - y) / S
            g = 2 * (out - target) / count if regression else (out.softmax(-1) - target) / count
            w = w - lr_w * (g.t() @ hs_alone)
            b = b - lr_b * g.sum(0)
        out = hq @ w.t() + b
        return out if regression else out.softmax(-1)


def head_only_reference(learner: MetaLearner, ep: Episode) -> torch.Tensor:
    """What the in-graph adaptation of an optimisation-based learner computes, by autograd on
    the learner's own loss and step sizes: the reference its closed form is checked against."""
    with torch.no_grad():
        hs = learner.backbone(ep.sx)
        if getattr(learner.backbone, "batch_independent", False):
            hq = learner.backbone(ep.qx)
        else:
            hq = learner.backbone(torch.cat([ep.sx, ep.qx]))[ep.sx.shape[0]:]
    w = learner.head.weight.detach().clone().requires_grad_(True)
    b = learner.head.bias.detach().clone().requires_grad_(True)
    lr_w, lr_b = learner.test_step_size("head.weight"), learner.test_step_size("head.bias")
    if isinstance(lr_w, torch.Tensor):
        lr_w, lr_b = lr_w.detach(), lr_b.detach()
    with torch.enable_grad():
        for _ in range(int(learner.hp["eval_steps"])):
            loss = learner.task_loss(F.linear(hs, w, b), ep.sy)
            gw, gb = torch.autograd.grad(loss, (w, b))
            w, b = w - lr_w * gw, b - lr_b * gb
    with torch.no_grad():
        out = F.linear(hq, w, b)
        return out if learner.regression else out.softmax(-1)


def live_predict(learner: MetaLearner, ep: Episode, n_way: int | None = None) -> torch.Tensor:
    """The live model: adapt to the support set (all layers for MAML-family learners), predict."""
    torch.manual_seed(0)  # probabilistic learners sample; the same draws for both sides
    return learner.adapt(ep.sx, ep.sy, n_way or (0 if learner.regression else int(ep.sy.max()) + 1)).predict(ep.qx)


class _OnnxEmbed(nn.Module):
    def __init__(self, graphs: ExportGraphs, with_head: bool) -> None:
        super().__init__()
        self.graphs = graphs
        self.with_head = with_head

    def forward(self, x: torch.Tensor):
        return self.graphs.outputs(x) if self.with_head else self.graphs.embed(x)


# --- interface descriptions ---------------------------------------------------------------------
def input_spec(src: ModelSource) -> dict[str, Any]:
    """dtype, shape and meaning of one batch of model inputs."""
    pre = src.pre
    if not _item_inputs(src):
        return {"dtype": "float32", "shape": "[trials, steps, features]",
                "meaning": f"{pre.modality} trials as MetaGUI's reinforcement-learning tasks encode them"}
    if src.regression:
        return {"dtype": "float32", "shape": "[n, 1]", "meaning": "x values (one number per point)"}
    if pre.modality == "image":
        return {"dtype": "float32", "shape": f"[n, {pre.channels}, {pre.image_size}, {pre.image_size}]",
                "meaning": ("pixels in [0, 1]: " + ("grayscale" if pre.channels == 1 else "RGB")
                            + f", resized to {pre.image_size}x{pre.image_size} (Lanczos), divided by 255"
                            + (", inverted (255 - v) before dividing" if pre.invert else ""))}
    return {"dtype": "int64", "shape": "[n, L]",
            "meaning": "hashed character n-gram and word ids, 0 = padding (see the featurizer)"}


def featurizer_spec(pre: Preprocessing) -> dict[str, Any] | None:
    """The text featurizer, exactly, as data (``models.TextFeaturizer``)."""
    if pre.modality != "text":
        return None
    common = {"buckets": pre.text_buckets, "ngram_min": pre.ngram_min, "ngram_max": pre.ngram_max,
              "max_tokens": pre.max_tokens, "padding": "rows padded with 0 to the longest row of the batch",
              "version": pre.text_features}
    if pre.text_features == 1:
        return {
            "kind": "hashed character n-grams and words",
            "lowercase": True,
            "words": "text.lower().split() (Python whitespace split)",
            "per_word": ["word token 'w:' + word",
                         "then every character n-gram of '<' + word + '>' for n = ngram_min..ngram_max, "
                         "by n, then by position"],
            "bucket": "1 + zlib.crc32(token.encode('utf-8')) % (buckets - 1)",
            "empty_text": "the single token '<empty>'",
            **common,
        }
    return {
        "kind": "hashed words and character n-grams in type blocks",
        "lowercase": True,
        "digits": "every digit (Unicode \\d) replaced by '0' after lower-casing",
        "words": "re.findall(r'\\w+', text) (Python Unicode word characters)",
        "block": "B = buckets // (2 + ngram_max - ngram_min); type 0 = words, type t = n-grams of length ngram_min + t - 1",
        "per_word": ["word id: 1 + zlib.crc32(('w:' + word).encode('utf-8')) % (B - 1)",
                     "then for n = ngram_min..ngram_max, every n-gram g of ' ' + word + ' ' by position: "
                     "(1 + n - ngram_min) * B + 1 + zlib.crc32(g.encode('utf-8')) % (B - 1)"],
        "empty_text": "the single word id of 'w:'",
        **common,
    }


def graph_interfaces(src: ModelSource, fmt: str) -> list[dict[str, Any]]:
    """Inputs and outputs of each graph in an export, for the model card and the dialog."""
    x = input_spec(src)
    labels = ({"name": "support_y", "dtype": "float32", "shape": "[S, 1]", "meaning": "support y values"}
              if src.regression else
              {"name": "support_y", "dtype": "int64", "shape": "[S]",
               "meaning": ("class index of each support item, 0..N-1" + (f" with N = {src.n_way} (fixed)"
                           if src.learner.family == "optimisation" else " (N = max + 1, any N)"))})
    pred = ({"name": "values", "dtype": "float32", "shape": "[Q, 1]", "meaning": "predicted y"}
            if src.regression else
            {"name": "probabilities", "dtype": "float32", "shape": "[Q, N]", "meaning": "class probabilities per query"})
    adaptive = {
        "inputs": [{"name": "support_x", **x, "shape": x["shape"].replace("[n", "[S")}, labels,
                   {"name": "query_x", **x, "shape": x["shape"].replace("[n", "[Q")}],
        "outputs": [pred],
    }
    emb = {"name": "embeddings", "dtype": "float32", "shape": f"[n, {src.learner.backbone.emb_dim}]",
           "meaning": "backbone features"}
    plain_out = [emb]
    if src.learner.family == "optimisation":
        plain_out.append({"name": "outputs", "dtype": "float32", "shape": "[n, 1]" if src.regression else f"[n, {src.n_way}]",
                          "meaning": "head outputs at the meta-learned initialisation, before any adaptation "
                                     + ("(y values)" if src.regression else "(logits)")})
    plain = {"inputs": [{"name": "x", **x}], "outputs": plain_out}
    if fmt == "onnx":
        return [{"graph": "model (ONNX)", **plain}]
    if fmt == "onnx-adaptive":
        return [{"graph": "adaptive (ONNX)", **adaptive}]
    if fmt == "torchscript":
        return [{"graph": "forward(support_x, support_y, query_x)", **adaptive},
                {"graph": "embed(x)", "inputs": plain["inputs"], "outputs": [emb]}]
    return []


# --- results --------------------------------------------------------------------------------------
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


# --- the export pipeline ----------------------------------------------------------------------------
def export_run(db, run_id: int, fmt: str, out: str | Path, checkpoint: str = "best",
               progress: Progress | None = None, cancel: CancelCheck | None = None,
               dataset=None, load_data: bool = True, episodes: int = 20) -> ExportResult:
    """Export a stored run (opens its own store connection: safe from any thread)."""
    from metagui.core.store import RunStore

    store = RunStore(db) if not hasattr(db, "checkpoints") else db
    try:
        src = load_source(store, run_id, checkpoint)
    finally:
        if store is not db:
            store.close()
    return export_model(src, fmt, out, progress, cancel, dataset=dataset, load_data=load_data, episodes=episodes)


def export_model(src: ModelSource, fmt: str, out: str | Path, progress: Progress | None = None,
                 cancel: CancelCheck | None = None, dataset=None, load_data: bool = True,
                 episodes: int = 20) -> ExportResult:
    """Write ``fmt`` to ``out`` (sidecar ``.md`` model card and ``.json`` spec beside the
    TorchScript and ONNX files), after checking it against the live model.

    ``dataset`` (or ``load_data``) supplies held-out episodes of the run's data for the parity
    check and for measuring what the export's adaptation gives; without them the check runs
    on random inputs of the right shape."""
    reason = exportable(src, fmt)
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
    if not real and not src.regression and _item_inputs(src):
        notes.append("parity was checked on random inputs of the right shape (no held-out data at hand)")
    step(1)
    checks = _check_episodes(src, real)
    adaptation = _adaptation_summary(src, real) if real else {}
    step(2)
    temps: list[Path] = []
    try:
        if fmt == "bundle":
            parity, files = _export_bundle(src, out, checks, adaptation, notes, temps, step)
            card = _read_card(temps[0])
        else:
            artifact = _temp(out, temps)
            parity = _write_graph(src, fmt, artifact, checks, step)
            step(4)
            files = {str(out): artifact.stat().st_size}
            card = model_card(src, fmt, parity, adaptation, files, notes)
            card_path, spec_path = sidecars(out)
            _temp(card_path, temps).write_text(card, encoding="utf-8")
            spec = export_spec(src, fmt, parity, adaptation)
            _temp(spec_path, temps).write_text(json.dumps(spec, indent=1), encoding="utf-8")
            files[str(card_path)] = len(card.encode("utf-8"))
            files[str(spec_path)] = temps[-1].stat().st_size
        worst = max(parity.values(), default=0.0)
        if not worst <= TOLERANCE:
            detail = ", ".join(f"{k} {v:.2e}" for k, v in parity.items())
            raise ExportError(f"parity check failed: the export differs from the live model by up to "
                              f"{worst:.2e} (more than {TOLERANCE:g}: {detail}); nothing was written")
        for tmp in temps:
            os.replace(tmp, tmp.with_name(tmp.name.removesuffix(".partial")))
        temps.clear()
    finally:
        for tmp in temps:
            with contextlib.suppress(OSError):
                tmp.unlink()
    report(total, total)
    return ExportResult(fmt, str(out), files, parity, TOLERANCE, adaptation, card, code_snippet(src, fmt, out),
                        notes, time.perf_counter() - started)


def sidecars(out: Path) -> tuple[Path, Path]:
    """The model card and JSON spec written beside a TorchScript or ONNX file."""
    return out.with_name(out.name + ".md"), out.with_name(out.name + ".json")


def _temp(path: Path, temps: list[Path]) -> Path:
    tmp = path.with_name(path.name + ".partial")
    temps.append(tmp)
    return tmp


def _read_card(bundle_tmp: Path) -> str:
    with zipfile.ZipFile(bundle_tmp) as zf:
        return zf.read("model_card.md").decode("utf-8")


def _check_episodes(src: ModelSource, real: list[Episode]) -> list[tuple[str, Episode]]:
    """Inputs for parity: two random episodes of different sizes (so that a shape baked into a
    traced graph shows) and, when at hand, one episode of real held-out data."""
    if not _item_inputs(src):
        return []  # RL policies: bundles compare weights only
    way, shot, query = max(src.n_way, 2), max(src.config.task.shot, 1), max(src.config.task.query, 1)
    if src.regression:
        first, second = synthetic_episode(src, 0, shot, query, 1), synthetic_episode(src, 0, shot + 3, query + 2, 2)
    else:
        fixed = src.learner.family == "optimisation"
        first = synthetic_episode(src, way, shot, query, 1)
        second = synthetic_episode(src, way if fixed else max(2, way - 1), shot + 1, query + 2, 2)
    out = [("random", first), ("random, other sizes", second)]
    if real:
        out.append(("held-out data", real[0]))
    return out


def _reference(src: ModelSource, ep: Episode) -> torch.Tensor:
    """What an adaptive export must reproduce for this episode."""
    if src.learner.family == "optimisation":
        return head_only_reference(src.learner, ep)
    return live_predict(src.learner, ep)


def _metric_value(src: ModelSource, out: torch.Tensor, y: torch.Tensor) -> float:
    if src.regression:
        return float(((out - y) ** 2).mean())
    return float((out.argmax(-1) == y).float().mean())


def _adaptation_summary(src: ModelSource, real: list[Episode]) -> dict[str, Any]:
    """Held-out score of the live model and of the exported adaptation on the same episodes."""
    learner = src.learner
    graphs = ExportGraphs(learner).eval() if _graph_supported(learner) else None
    live, exported = [], []
    for ep in real:
        with torch.no_grad():
            live.append(_metric_value(src, live_predict(learner, ep), ep.qy))
            if graphs is not None:
                exported.append(_metric_value(src, graphs(ep.sx, ep.sy, ep.qx), ep.qy))
    name = "mse" if src.regression else "accuracy"
    summary = {"metric": name, "episodes": len(real), "live": float(np.mean(live)),
               "exported": float(np.mean(exported)) if exported else float(np.mean(live))}
    if graphs is None:
        summary["what_adapts"] = "as in MetaGUI (bundle only)"
    elif learner.family == "optimisation":
        summary["what_adapts"] = "head"
        summary["note"] = (f"In MetaGUI, {learner.label} adapts every layer with {learner.hp['eval_steps']} gradient steps; "
                           "the exported graphs adapt only the final linear layer (same steps and step sizes) "
                           "on backbone features computed once.")
    else:
        summary["what_adapts"] = "class representations from the support set (exact)"
    return summary


def _write_graph(src: ModelSource, fmt: str, path: Path, checks: list[tuple[str, Episode]], step) -> dict[str, float]:
    """Trace and save ``fmt`` to ``path``; load it back and return the parity figures."""
    graphs = ExportGraphs(src.learner).eval()
    trace_ep = checks[0][1]
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        if fmt == "torchscript":
            traced = torch.jit.trace_module(
                graphs, {"forward": (trace_ep.sx, trace_ep.sy, trace_ep.qx), "embed": (trace_ep.sx,)},
                check_trace=False)
            torch.jit.save(traced, str(path))
        else:
            _onnx_export(src, graphs, fmt, path, trace_ep)
    step(3)
    return _parity_graph(src, graphs, fmt, path, checks)


def _onnx_export(src: ModelSource, graphs: ExportGraphs, fmt: str, path: Path, ep: Episode) -> None:
    dyn_x = {0: "n", 1: "tokens"} if src.pre.modality == "text" else {0: "n"}
    if fmt == "onnx":
        with_head = src.learner.family == "optimisation"
        names = ["embeddings", "outputs"] if with_head else ["embeddings"]
        # eval(): torch.onnx.export restores the module's mode afterwards, recursively, and a
        # wrapper left in training mode would switch the live model's dropout back on
        module: nn.Module = _OnnxEmbed(graphs, with_head).eval()
        args: tuple = (ep.sx,)
        inputs = ["x"]
        axes = {"x": dyn_x, **{n: {0: "n"} for n in names}}
    else:
        out_name = "values" if src.regression else "probabilities"
        names = [out_name]
        module = graphs
        args = (ep.sx, ep.sy, ep.qx)
        inputs = ["support_x", "support_y", "query_x"]
        text = src.pre.modality == "text"
        sdyn = {0: "S", 1: "support_tokens"} if text else {0: "S"}
        qdyn = {0: "Q", 1: "query_tokens"} if text else {0: "Q"}
        axes = {"support_x": sdyn, "support_y": {0: "S"}, "query_x": qdyn,
                out_name: {0: "Q"} if src.learner.family == "optimisation" else {0: "Q", 1: "N"}}
    try:
        torch.onnx.export(module, args, str(path), dynamo=False, opset_version=OPSET, input_names=inputs,
                          output_names=names, dynamic_axes=axes, do_constant_folding=True)
    except ImportError as exc:
        raise ExportError(f"ONNX export needs the 'export' extra: pip install 'metagui[export]' ({exc})") from None


def _ort_session(path: Path):
    try:
        import onnxruntime as ort
    except ImportError:
        raise ExportError("checking ONNX exports needs onnxruntime: pip install 'metagui[export]'") from None
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _diff(a, b) -> float:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b.detach().numpy() if isinstance(b, torch.Tensor) else b, dtype=np.float64)
    if a.shape != b.shape:
        return float("inf")
    return float(np.abs(a - b).max()) if a.size else 0.0


def _parity_graph(src: ModelSource, graphs: ExportGraphs, fmt: str, path: Path,
                  checks: list[tuple[str, Episode]]) -> dict[str, float]:
    learner = src.learner
    parity: dict[str, float] = {}
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated in torch 2.10+
            loaded = torch.jit.load(str(path))
        for label, ep in checks:
            with torch.no_grad():
                parity[f"forward, {label}"] = _diff(loaded(ep.sx, ep.sy, ep.qx), _reference(src, ep))
                parity[f"embed, {label}"] = _diff(loaded.embed(ep.qx), learner.backbone(ep.qx))
        return parity
    sess = _ort_session(path)
    for label, ep in checks:
        with torch.no_grad():
            if fmt == "onnx":
                outs = sess.run(None, {"x": ep.qx.numpy()})
                parity[f"embeddings, {label}"] = _diff(outs[0], learner.backbone(ep.qx))
                if learner.family == "optimisation":
                    parity[f"outputs, {label}"] = _diff(outs[1], learner.head(learner.backbone(ep.qx)))
            else:
                feed = {"support_x": ep.sx.numpy(), "support_y": ep.sy.numpy(), "query_x": ep.qx.numpy()}
                parity[label] = _diff(sess.run(None, feed)[0], _reference(src, ep))
    return parity


# --- bundles ----------------------------------------------------------------------------------------
def _export_bundle(src: ModelSource, out: Path, checks, adaptation, notes, temps, step) -> tuple[dict[str, float], dict[str, int]]:
    members = _bundle_members(src)
    # reopen the weights and description as a reader would, and compare predictions
    reopened = open_bundle(_zip_bytes({**members, **_bundle_docs(src, {}, adaptation, {}, notes)}))
    step(3)
    parity = _parity_bundle(src, reopened.learner, checks)
    step(4)
    size_guess = sum(len(v) for v in members.values())
    docs = _bundle_docs(src, parity, adaptation, {str(out): size_guess}, notes)
    data = _zip_bytes({**members, **docs})
    open_bundle(data)  # the final file opens
    tmp = _temp(out, temps)
    tmp.write_bytes(data)
    return parity, {str(out): len(data)}


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
    pre = {**src.pre.as_dict(), "featurizer": featurizer_spec(src.pre), "input": input_spec(src)}
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


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    manifest = {"format": BUNDLE_FORMAT, "version": BUNDLE_VERSION,
                "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
                "metagui_version": _version(),
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


def _version() -> str:
    from metagui import __version__

    return __version__


def _parity_bundle(src: ModelSource, learner: MetaLearner, checks) -> dict[str, float]:
    a, b = src.learner.state_dict(), learner.state_dict()
    parity = {"weights": max((float((a[k].float() - b[k].float()).abs().max()) if a[k].numel() else 0.0) for k in a)}
    if src.learner.family in ("metric", "optimisation", "probabilistic") and src.pre.modality in ("image", "text", "regression"):
        learner.eval()
        for label, ep in checks:
            with torch.no_grad():
                parity[f"predictions, {label}"] = _diff(live_predict(learner, ep), live_predict(src.learner, ep))
    return parity


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


def open_bundle(path_or_bytes: str | Path | bytes) -> Bundle:
    """Open a ``.metagui`` bundle safely: member names and sizes are checked, every file must
    match the manifest's checksum, and tensor names, dtypes and shapes must match the model the
    config describes before any weight is loaded. Nothing is executed and nothing is written.
    Raises ``BundleError`` with a readable reason."""
    if isinstance(path_or_bytes, bytes):
        raw, where = path_or_bytes, "the bundle"
    else:
        p = Path(path_or_bytes)
        where = p.name
        if not p.is_file():
            raise BundleError(f"bundle not found: {p}")
        if p.stat().st_size > sum(BUNDLE_MEMBERS.values()):
            raise BundleError(f"{where} is too large to be a MetaGUI bundle")
        raw = p.read_bytes()
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
            try:
                with zf.open(info) as f:
                    data = f.read(limit + 1)
            except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
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
    except (UnicodeDecodeError, ValueError):
        raise BundleError(f"{where}: {name} is not valid JSON") from None
    if not isinstance(obj, dict):
        raise BundleError(f"{where}: {name} must hold a JSON object")
    return obj


# bounds on preprocessing values: a hostile bundle must not make us allocate huge tensors
_PRE_BOUNDS = {"image_size": (1, 1024), "channels": (1, 4), "text_buckets": (2, 1 << 22), "ngram_min": (1, 16),
               "ngram_max": (1, 16), "max_tokens": (1, 100_000), "states": (0, 100_000), "actions": (0, 100_000), "text_features": (1, 2)}


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
    if pre.text_encoder or pre.text_encoder_dim:
        raise BundleError(f"{where}: bundles of models on a pretrained text encoder are not supported")
    return pre


def _safetensors_header(data: bytes, where: str) -> dict[str, Any]:
    """Tensor names, dtypes and shapes from a safetensors header (read as JSON, no tensor data)."""
    if len(data) < 8:
        raise BundleError(f"{where}: weights.safetensors is truncated")
    (n,) = struct.unpack("<Q", data[:8])
    if n > min(len(data) - 8, 100 * MIB):
        raise BundleError(f"{where}: weights.safetensors has a damaged header")
    try:
        header = json.loads(data[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
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


def import_bundle(store, path: str | Path) -> int:
    """Add a bundle to the run store as a completed run with a ``best`` checkpoint, so that the
    app's Runs and Try it pages can use it. The bundle is fully checked first: a bad one raises
    ``BundleError`` and the store is not touched."""
    from metagui.core.checkpoint import save_checkpoint

    bundle = open_bundle(path)
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


# --- predicting with a bundle (``metagui predict``) ------------------------------------------------
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


def read_labelled_items(path: str | Path) -> tuple[list[str], list[str]]:
    """Support examples from CSV/TSV (columns item|text|path|x and label|y|category, or the
    first two columns) or JSON Lines ({"item": ..., "label": ...})."""
    p = Path(path)
    rows = _read_rows(p)
    items, labels = [], []
    for n, row in enumerate(rows, 1):
        item = _pick(row, ("item", "text", "path", "x"), 0)
        label = _pick(row, ("label", "y", "category", "class"), 1)
        if item is None or label is None:
            raise DataError(f"{p.name} row {n} needs an item and a label")
        items.append(_resolve(str(item), p))
        labels.append(str(label))
    if not items:
        raise DataError(f"{p.name} has no support examples")
    return items, labels


def read_items(path: str | Path) -> list[str]:
    """Queries: one per line (.txt), or the item column of a CSV/TSV/JSON Lines file."""
    p = Path(path)
    if p.suffix.lower() in (".csv", ".tsv", ".jsonl", ".json"):
        items = [_pick(row, ("item", "text", "path", "x"), 0) for row in _read_rows(p)]
        out = [_resolve(str(i), p) for i in items if i is not None]
    else:
        if not p.is_file():
            raise DataError(f"file not found: {p}")
        out = [_resolve(line.strip(), p) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not out:
        raise DataError(f"{p.name} has no queries")
    return out


def _read_rows(p: Path) -> list:
    import csv

    if not p.is_file():
        raise DataError(f"file not found: {p}")
    text = p.read_text(encoding="utf-8-sig")
    if p.suffix.lower() in (".jsonl", ".json"):
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    raise DataError(f"{p.name} line {n} is not JSON") from None
        return rows
    delim = "\t" if p.suffix.lower() == ".tsv" else ","
    table = [r for r in csv.reader(io.StringIO(text), delimiter=delim) if r]
    if table and {c.strip().lower() for c in table[0]} & {"item", "text", "path", "x", "label", "y", "category", "class"}:
        head = [c.strip().lower() for c in table[0]]
        return [dict(zip(head, r, strict=False)) for r in table[1:]]
    return table


def _pick(row, keys: tuple[str, ...], position: int):
    if isinstance(row, dict):
        return next((row[k] for k in keys if k in row), None)
    if isinstance(row, list) and len(row) > position:
        return row[position]
    return None


def _resolve(item: str, source: Path) -> str:
    """Image paths relative to the file that lists them (texts and existing paths unchanged)."""
    candidate = source.parent / item
    if not Path(item).exists() and candidate.exists():
        return str(candidate)
    return item


# --- documentation: model card, spec, snippet --------------------------------------------------------
def export_spec(src: ModelSource, fmt: str, parity: dict[str, float], adaptation: dict[str, Any]) -> dict[str, Any]:
    """The JSON sidecar of a TorchScript or ONNX export: everything a program needs to feed it."""
    return {
        "format": fmt, "opset": OPSET if fmt.startswith("onnx") else None, "algorithm": src.algorithm,
        "family": src.learner.family, "n_way": src.n_way, "hyperparams": src.learner.hp,
        "preprocessing": src.pre.as_dict(), "input": input_spec(src), "featurizer": featurizer_spec(src.pre),
        "graphs": graph_interfaces(src, fmt), "classes": src.classes, "parity": parity,
        "tolerance": TOLERANCE, "adaptation": adaptation, "run": {k: src.run.get(k) for k in ("id", "name")},
    }


def _fmt_metric(v: Any, ci: Any = None) -> str:
    if not isinstance(v, int | float):
        return "not measured"
    return f"{v:.4f}" + (f" ± {ci:.4f}" if isinstance(ci, int | float) and ci == ci else "")


def model_card(src: ModelSource, fmt: str, parity: dict[str, float], adaptation: dict[str, Any],
               files: dict[str, int], notes: list[str]) -> str:
    """A Markdown model card: data, task, algorithm, results, interface, intended use, limits."""
    lr, cfg, pre = src.learner, src.config, src.pre
    task = (f"{cfg.task.shot}-shot regression (x -> y)" if src.regression
            else f"{src.n_way}-way {cfg.task.shot}-shot classification of {pre.modality}s" if _item_inputs(src)
            else f"{pre.modality} tasks ({src.run.get('task') or 'reinforcement learning'})")
    ds = cfg.dataset.path or cfg.dataset.source
    val = src.meta.get("validation") or {}
    metric = lr.metric_name
    lines = [
        f"# Model card: {src.name}", "",
        f"Exported by MetaGUI {_version()} on {_dt.date.today().isoformat()} as **{fmt}** ({FORMATS[fmt].split(':')[0]}).", "",
        "## Model", "",
        f"- Algorithm: **{lr.label}** ({algorithms.FAMILIES.get(lr.family, lr.family)}). {lr.summary}",
    ]
    if lr.paper:
        lines.append(f"- Reference: {lr.paper}")
    lines += [
        f"- Backbone: {type(lr.backbone).__name__}, {lr.backbone.emb_dim}-dimensional embeddings; "
        f"{sum(p.numel() for p in lr.parameters()):,} parameters in all.",
        f"- Hyperparameters: {', '.join(f'{k} = {v}' for k, v in lr.hp.items())}",
        f"- Checkpoint: {src.checkpoint}, after {src.meta.get('step', '?')} meta-training steps"
        + (f" (run {src.run['id']})" if src.run.get("id") else "") + ".",
        "", "## Data and task", "",
        f"- Meta-trained on: {ds}" + (f" ({cfg.dataset.source})" if ds != cfg.dataset.source else "")
        + _dataset_counts(src) + ".",
        f"- Task: {task}"
        + ("" if src.regression or not _item_inputs(src) else f", {cfg.task.query} queries per class while training") + ".",
    ]
    if not src.regression and _item_inputs(src):
        lines.append(f"- Class split: {cfg.task.split}"
                     + (f" (train {cfg.task.train_ratio:.0%}, validation {cfg.task.val_ratio:.0%}, the rest test)"
                        if cfg.task.split == "ratio" else "") + ".")
    if src.classes:
        shown = ", ".join(src.classes[:12]) + (", …" if len(src.classes) > 12 else "")
        shown = shown.removesuffix(".")
        lines.append(f"- Class names (all in labels.json or the spec): {shown}; at use time the classes are "
                     "whatever the support set labels say.")
    lines += ["", "## Results", "",
              f"- Best validation {metric}: {_fmt_metric(src.meta.get('best_val'), val.get('ci95'))}"
              + (f" over {val.get('episodes')} episodes (95% confidence half-width)" if val.get("episodes") else "") + "."]
    if adaptation:
        line = (f"- Held-out {adaptation['metric']} on {adaptation['episodes']} test episodes at export time: "
                f"{adaptation['live']:.4f}")
        if fmt in ("torchscript", "onnx-adaptive") and lr.family == "optimisation":
            line += f" in MetaGUI; {adaptation['exported']:.4f} with this export's head-only adaptation"
        lines.append(line + ".")
    lines += ["", "## How it adapts", ""]
    lines += _adaptation_text(src, fmt, adaptation)
    lines += ["", "## Inputs and outputs", ""]
    lines += _interface_text(src, fmt)
    lines += ["", "## Parity with the live model", ""]
    if parity:
        lines += [f"Checked with {'onnxruntime' if fmt.startswith('onnx') else 'torch.jit.load' if fmt == 'torchscript' else 'a reopened bundle'} "
                  f"on the same inputs; tolerance {TOLERANCE:g} (max absolute difference).", "",
                  "| check | max abs difference | |", "|---|---|---|"]
        lines += [f"| {k} | {v:.2e} | {'ok' if v <= TOLERANCE else 'FAILED'} |" for k, v in parity.items()]
    else:
        lines.append("Measured when the file is written (see metrics.json).")
    lines += ["", "## Intended use", "",
              ("Few-shot regression: give a handful of (x, y) points of a new function and predict y elsewhere, "
               "for functions like the ones it was meta-trained on." if src.regression else
               f"A policy that learns new {pre.modality} tasks from its own experience within a trial, for tasks "
               "like the ones it was meta-trained on; for study and teaching." if not _item_inputs(src) else
               f"Few-shot classification of {pre.modality}s like the meta-training data: give a few labelled examples "
               "of each new class (the support set) and classify new items among those classes. Suited to prototyping, "
               "teaching and research; evaluate on your own data before relying on it."),
              "", "## Limits", ""]
    lines += [f"- {x}" for x in _limits(src)]
    lines += [f"- {n}" for n in notes]
    if files:
        lines += ["", "## Files", ""]
        lines += [f"- {Path(k).name}: {v:,} bytes" for k, v in files.items()]
    lines += ["", "## Loading it", "", "```python", code_snippet(src, fmt, Path(next(iter(files), src.default_filename(fmt)))).rstrip(), "```", ""]
    return "\n".join(lines)


def _dataset_counts(src: ModelSource) -> str:
    n_classes = len(src.classes) or src.dataset_stats.get("classes")
    items = src.dataset_stats.get("items")
    out = f", {n_classes} classes" if n_classes else ""
    return out + (f", {items:,} items" if isinstance(items, int) else "")


def _adaptation_text(src: ModelSource, fmt: str, adaptation: dict[str, Any]) -> list[str]:
    lr = src.learner
    outside = {"bundle": "The bundle adapts inside MetaGUI, exactly as the live model does.",
               "onnx": "This ONNX file holds the backbone" + (" and head" if lr.family == "optimisation" else "")
                       + ": adaptation happens in your code on its outputs, or use the onnx-adaptive export, which does it in the graph."}
    if lr.family not in EXPORT_FAMILIES:
        how = {"probabilistic": "it adapts several sampled models to the support set and averages their predictions "
                                "(the spread is its uncertainty)",
               "rl": "it adapts within a trial, through the recurrent state its policy carries from step to step"}
        text = [f"{lr.label} adapts as MetaGUI runs it: {how.get(lr.family, 'with its own procedure')}. "
                "It exports as a MetaGUI bundle only, which keeps that behaviour exactly."]
        if adaptation:
            text.append(f"Held-out {adaptation['metric']} on {adaptation['episodes']} episodes at export time: "
                        f"{adaptation['live']:.4f}.")
        return text
    if lr.family == "metric":
        how = {"protonet": "each class becomes the mean of its support embeddings (prototype); a query's probabilities "
                           + ("are the softmax of its cosine similarities to the prototypes times a learned scale."
                              if lr.hp.get("distance") == "cosine" else
                              "are the softmax of minus its squared distances to the prototypes."),
               "matching": "each query attends to the support items by cosine similarity (softmax with temperature "
                           f"{lr.hp.get('temperature')}) and sums their one-hot labels"
                           + (", after full-context embeddings (bidirectional LSTM over the support set, attention LSTM for queries)." if lr.hp.get("fce") else "."),
               "relation": "each class becomes the mean of its support embeddings; the learned relation module scores "
                           "every (class, query) pair"
                           + (" (plus their cosine similarity times a learned gain, before the sigmoid)" if lr.hp.get("cosine_skip") else "")
                           + " and the scores are normalised to sum to one."}.get(lr.name, "")
        return [f"Adaptation needs no gradient steps: {how} The adaptive exports (TorchScript forward, ONNX adaptive) "
                "do exactly this inside the graph, with any number of classes and support examples."] + (
                    [outside[fmt]] if fmt in outside else [])
    text = ([outside[fmt], ""] if fmt in outside else []) + [f"In MetaGUI, {lr.label} adapts **all layers** with {lr.hp['eval_steps']} gradient steps on the support set "
            "(step size " + ("learned per weight" if lr.name == "metasgd" else f"{lr.test_step_size('head.weight')}") + ").",
            "",
            f"The exported graphs (TorchScript forward, ONNX adaptive) adapt **only the final linear layer**: the backbone "
            f"features of the support set are computed once, then {lr.hp['eval_steps']} gradient steps with the same step "
            "sizes update the head's weight W and bias b in closed form"
            + (": with G = 2 (h W^T + b - y) / S, W -= lr_W * G^T h and b -= lr_b * sum(G) (mean squared error)."
               if src.regression else
               ": with P = softmax(h W^T + b) and Y the one-hot support labels, G = (P - Y) / S, W -= lr_W * G^T h, "
               "b -= lr_b * sum(G) (softmax cross-entropy)."),
            "Queries then go through the adapted head."]
    if adaptation:
        gap = adaptation["exported"] - adaptation["live"]
        text.append(f"On {adaptation['episodes']} held-out episodes, head-only adaptation gave {adaptation['metric']} "
                    f"{adaptation['exported']:.4f} against {adaptation['live']:.4f} for full adaptation "
                    f"(difference {gap:+.4f}).")
    else:
        text.append("The gap between head-only and full adaptation was not measured (no held-out data at export time).")
    return text


def _interface_text(src: ModelSource, fmt: str) -> list[str]:
    lines: list[str] = []
    graphs = graph_interfaces(src, fmt)
    if not graphs:
        lines.append("The bundle holds weights and descriptions, not graphs: MetaGUI rebuilds the model "
                     "(`metagui predict`, or the Export page's \"Open bundle…\", which adds it to Runs and Try it). Model inputs:")
        spec = input_spec(src)
        lines.append(f"- x: {spec['dtype']} {spec['shape']}, {spec['meaning']}.")
    for g in graphs:
        lines += [f"**{g['graph']}**", "", "| name | dtype | shape | meaning |", "|---|---|---|---|"]
        for kind in ("inputs", "outputs"):
            for io_ in g[kind]:
                lines.append(f"| {'in' if kind == 'inputs' else 'out'}: `{io_['name']}` | {io_['dtype']} | {io_['shape']} | {io_['meaning']} |")
        lines.append("")
    pre = src.pre
    if pre.modality == "image" and not getattr(src.learner.backbone, "batch_independent", True):
        lines.append("Batch norm uses the statistics of the batch it is given (no running averages, as in MAML): "
                     "`embed`/`x` normalises the items with the batch they come in, so embed a whole episode at once. "
                     "The adaptive graphs feed support and queries together, exactly as MetaGUI does.")
    spec = featurizer_spec(pre)
    if spec:
        lines += ["", "Text featurizer (token ids from raw text), exactly:", ""]
        lines += [f"- {k}: {v if not isinstance(v, list) else '; '.join(v)}" for k, v in spec.items()]
        lines.append("- The snippet below implements it in plain Python (zlib and numpy only).")
    return lines


def _limits(src: ModelSource) -> list[str]:
    lr, cfg = src.learner, src.config
    out = [f"Meta-trained for {src.meta.get('step', '?')} steps on {cfg.dataset.path or cfg.dataset.source}; "
           "accuracy drops on data unlike it (other domains, scripts, languages, image styles)."]
    if lr.family == "optimisation" and not src.regression:
        out.append(f"Adapts to exactly {src.n_way} classes (its head has {src.n_way} outputs).")
    if src.pre.modality == "text":
        out.append("Texts are lower-cased and split on whitespace; hashed n-grams can collide; "
                   f"only the first {src.pre.max_tokens} ids of a text count.")
    if src.pre.modality == "image":
        out.append(f"Images are resized to {src.pre.image_size}x{src.pre.image_size}; fine detail is lost.")
    out.append("Validation figures come from sampled episodes of held-out classes; the confidence interval "
               "covers episode sampling, not a change of data.")
    return out


def _text_inputs_code(pre: Preprocessing) -> list[str]:
    """Imports and an ``inputs(texts)`` function that compute ``TextFeaturizer``'s ids:
    version 2 (words and n-grams in type blocks) or the first release's version 1."""
    v2 = pre.text_features != 1
    if v2:
        head = ["import re", "import zlib", "",
                f"BUCKETS, NMIN, NMAX, CAP = {pre.text_buckets}, {pre.ngram_min}, {pre.ngram_max}, {pre.max_tokens}",
                "BLOCK = BUCKETS // (2 + NMAX - NMIN)"]
        words = ["        for word in re.findall(r\"\\w+\", re.sub(r\"\\d\", \"0\", text.lower())):",
                 "            ids.append(bucket(\"w:\" + word))",
                 "            padded = \" \" + word + \" \"",
                 "            for n in range(NMIN, NMAX + 1):",
                 "                offset = (1 + n - NMIN) * BLOCK",
                 "                ids += [offset + bucket(padded[i:i + n]) for i in range(len(padded) - n + 1)]"]
    else:
        head = ["import zlib", "",
                f"BUCKETS, NMIN, NMAX, CAP = {pre.text_buckets}, {pre.ngram_min}, {pre.ngram_max}, {pre.max_tokens}"]
        words = ["        for word in text.lower().split():",
                 "            ids.append(bucket(\"w:\" + word))",
                 "            padded = \"<\" + word + \">\"",
                 "            for n in range(NMIN, NMAX + 1):",
                 "                ids += [bucket(padded[i:i + n]) for i in range(len(padded) - n + 1)]"]
    return head + ["", "",
                   "def bucket(token):",
                   f"    return 1 + zlib.crc32(token.encode(\"utf-8\")) % ({'BLOCK' if v2 else 'BUCKETS'} - 1)",
                   "", "",
                   "def inputs(texts):",
                   "    \"\"\"Texts -> int64 ids [n, L] (0 = padding), as MetaGUI's TextFeaturizer.\"\"\"",
                   "    rows = []",
                   "    for text in texts:",
                   "        ids = []",
                   *words,
                   f"        rows.append(ids[:CAP] or [bucket(\"{'w:' if v2 else '<empty>'}\")])",
                   "    out = np.zeros((len(rows), max(len(r) for r in rows)), dtype=np.int64)",
                   "    for i, r in enumerate(rows):",
                   "        out[i, :len(r)] = r",
                   "    return out"]


def code_snippet(src: ModelSource, fmt: str, path: Path) -> str:
    """Plain Python that loads and runs the export with onnxruntime or torch alone (bundles:
    with MetaGUI). Copyable from the dialog and the model card."""
    name = path.name
    pre = src.pre
    if fmt == "bundle":
        return (
            "# MetaGUI bundles open in MetaGUI (weights are safetensors; nothing in them is executed).\n"
            f"#   metagui predict {name} --support support.csv --query queries.txt\n"
            "from metagui.core.export import open_bundle, predict\n\n"
            f'bundle = open_bundle("{name}")\n'
            + ("print(predict(bundle.learner, bundle.pre, [-2.0, 0.0, 2.0], [0.5, 1.0, 0.2], [1.0]))\n"
               if src.regression else
               _example_items(src) + "\nprint(predict(bundle.learner, bundle.pre, SUPPORT_ITEMS, SUPPORT_LABELS, QUERY_ITEMS))\n"))
    parts = ["import numpy as np"]
    if fmt.startswith("onnx"):
        parts.append("import onnxruntime as ort")
    else:
        parts.append("import torch")
    if pre.modality == "text":
        parts += _text_inputs_code(pre)
    elif pre.modality == "image":
        mode = "L" if pre.channels == 1 else "RGB"
        parts += ["from PIL import Image", "",
                  f"SIZE, MODE, INVERT = {pre.image_size}, \"{mode}\", {pre.invert}", "", "",
                  "def inputs(paths):",
                  "    \"\"\"Image files -> float32 [n, C, H, W] in [0, 1], as MetaGUI prepares them.\"\"\"",
                  "    arrays = []",
                  "    for p in paths:",
                  "        with Image.open(p) as im:",
                  "            a = np.asarray(im.convert(MODE).resize((SIZE, SIZE), Image.Resampling.LANCZOS), dtype=np.float32)",
                  "        a = 255 - a if INVERT else a",
                  "        arrays.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))",
                  "    return np.stack(arrays) / np.float32(255)"]
    else:
        parts += ["", "",
                  "def inputs(xs):",
                  "    \"\"\"Numbers -> float32 [n, 1].\"\"\"",
                  "    return np.asarray(xs, dtype=np.float32).reshape(-1, 1)"]
    parts += ["", ""]
    if fmt == "onnx":
        out_names = "[\"embeddings\", \"outputs\"]" if src.learner.family == "optimisation" else "[\"embeddings\"]"
        parts += [f"session = ort.InferenceSession(\"{name}\", providers=[\"CPUExecutionProvider\"])", "", "",
                  "def embed(items):",
                  "    \"\"\"Backbone embeddings" + (" and head outputs" if src.learner.family == "optimisation" else "")
                  + (" (batch-norm statistics: embed a whole episode at once)" if pre.modality == "image" else "") + ".\"\"\"",
                  f"    return session.run({out_names}, {{\"x\": inputs(items)}})"]
        example = "print(embed(QUERY_ITEMS)[0].shape)"
    else:
        if fmt == "onnx-adaptive":
            parts += [f"session = ort.InferenceSession(\"{name}\", providers=[\"CPUExecutionProvider\"])", "", ""]
            call = "session.run(None, {\"support_x\": sx, \"support_y\": sy, \"query_x\": qx})[0]"
        else:
            parts += [f"model = torch.jit.load(\"{name}\")", "", ""]
            call = "model(torch.from_numpy(sx), torch.from_numpy(sy), torch.from_numpy(qx)).detach().numpy()"
        if src.regression:
            parts += ["def predict(support_x, support_y, query_x):",
                      "    \"\"\"Adapt to (x, y) support points, predict y at the query xs.\"\"\"",
                      "    sx, sy, qx = inputs(support_x), inputs(support_y), inputs(query_x)",
                      f"    return {call}[:, 0].tolist()"]
            example = "print(predict([-2.0, 0.0, 2.0, 4.0], [-1.8, 0.0, 1.8, -1.5], [1.0, 3.0]))"
        else:
            parts += ["def predict(support_items, support_labels, query_items):",
                      "    \"\"\"Adapt to labelled support items; one {label: probability} dict per query.\"\"\"",
                      "    names = sorted(set(support_labels))"]
            if src.learner.family == "optimisation":
                parts.append(f"    assert len(names) == {src.n_way}, \"this model adapts to exactly {src.n_way} classes\"")
            parts += ["    sx, qx = inputs(support_items), inputs(query_items)",
                      "    sy = np.array([names.index(label) for label in support_labels], dtype=np.int64)",
                      f"    probs = {call}",
                      "    return [dict(zip(names, p.tolist())) for p in probs]"]
            example = "print(predict(SUPPORT_ITEMS, SUPPORT_LABELS, QUERY_ITEMS))"
    parts += ["", "", "if __name__ == \"__main__\":"]
    if not src.regression or fmt == "onnx":
        parts.append("    " + _example_items(src))
    parts.append("    " + example)
    return "\n".join(parts) + "\n"


def _example_items(src: ModelSource) -> str:
    if src.regression:
        return "QUERY_ITEMS = [1.0, 3.0]"
    if src.pre.modality == "text":
        n = max(src.n_way, 2) if src.learner.family == "optimisation" else 2
        words = ["turn on the kitchen light", "switch off the fan", "what is the weather", "play some music",
                 "set a timer", "lock the front door", "open the blinds", "call mum"]
        texts = [words[i % len(words)] for i in range(n)]
        return (f"SUPPORT_ITEMS, SUPPORT_LABELS = {texts!r}, {[f'class {i}' for i in range(n)]!r}; "
                f"QUERY_ITEMS = {texts[:1]!r}")
    n = max(src.n_way, 2) if src.learner.family == "optimisation" else 2
    return (f"SUPPORT_ITEMS, SUPPORT_LABELS = {[f'support/{i}.png' for i in range(n)]!r}, "
            f"{[f'class {i}' for i in range(n)]!r}; QUERY_ITEMS = ['query.png']")
