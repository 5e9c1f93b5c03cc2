"""What an export is made from (``ModelSource``), which formats it can take, and the
episodes its parity checks and adaptation figures run on."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from metagui.core import algorithms
from metagui.core.algorithms.base import MetaLearner
from metagui.core.config import RunConfig
from metagui.core.errors import MetaGUIError
from metagui.core.models import (
    MLP,
    Conv4,
    EmbeddingAdapter,
    NgramEncoder,
    Preprocessing,
    TextEncoder,
)

FORMATS: dict[str, str] = {
    "bundle": "MetaGUI bundle (.metagui): weights, config, labels, preprocessing, metrics, model card",
    "torchscript": "TorchScript (.pt): adapt-and-predict and the backbone, for torch alone",
    "onnx": "ONNX (.onnx): the backbone (and head), for any ONNX runtime",
    "onnx-adaptive": "ONNX with adaptation inside (.onnx): support set and queries in, predictions out",
}


SUFFIXES = {"bundle": ".metagui", "torchscript": ".pt", "onnx": ".onnx", "onnx-adaptive": ".onnx"}


OPSET = 17


TOLERANCE = 1e-4


EXPORT_FAMILIES = ("metric", "optimisation")


Progress = Callable[[int, int], None]


CancelCheck = Callable[[], bool]


class ExportError(MetaGUIError):
    """An export that cannot be made, or that failed its parity check."""


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


def export_problem(config: RunConfig, fmt: str) -> str:
    """Why a model trained with ``config`` cannot be exported as ``fmt`` ("" when it can).
    Known from the config alone, so the Export page can say it before loading anything; the
    export asks the same question of its model's own config."""
    if fmt not in FORMATS:
        return f"unknown export format '{fmt}' (choose {', '.join(FORMATS)})"
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


def graph_supported(learner: MetaLearner) -> bool:
    """Whether ``ExportGraphs`` has a form for this learner."""
    return (learner.family in EXPORT_FAMILIES and isinstance(learner.backbone, Conv4 | MLP | TextEncoder | NgramEncoder | EmbeddingAdapter)
            and not getattr(learner, "shared_head", False))


def item_inputs(src: ModelSource) -> bool:
    """Whether the model takes items (images, texts, x values), as opposed to RL trials."""
    return src.pre.modality in ("image", "text", "regression")


@dataclass
class Episode:
    """One support set and its queries, as model inputs (labels as class indices)."""

    sx: torch.Tensor
    sy: torch.Tensor
    qx: torch.Tensor
    qy: torch.Tensor | None = None
    # what a graph takes when it differs from the learner's inputs: the token ids of texts
    # whose sentence embeddings are sx / qx (a graph that carries its pretrained encoder)
    graph_sx: torch.Tensor | None = None
    graph_qx: torch.Tensor | None = None

    def graph_inputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        return (self.sx if self.graph_sx is None else self.graph_sx,
                self.qx if self.graph_qx is None else self.graph_qx)


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
    if not item_inputs(src) or count < 1:
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


def metagui_version() -> str:
    from metagui import __version__

    return __version__
