"""An experiment: a run config made concrete (data loaded, split, encoded, sampler ready).

Training, evaluation, the chat pane and benchmarks all start here, so they see the same
episodes for the same config.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from metagui.core import algorithms
from metagui.core.algorithms.base import MetaLearner
from metagui.core.config import RunConfig
from metagui.core.data.ambiguous import AmbiguousTasks
from metagui.core.data.base import ClassificationDataset
from metagui.core.data.sinusoid import SinusoidTasks
from metagui.core.errors import ConfigError
from metagui.core.models import (
    RL_MODALITIES,
    Preprocessing,
    encode_dataset,
    make_backbone,
    preprocessing_for,
)
from metagui.core.rl.envs import BanditTasks, MDPTasks, TrialBatch
from metagui.core.tasks import (
    SPLITS,
    EpisodeBatch,
    EpisodeSampler,
    check_task,
    split_classes,
    step_rng,
)

TaskFamily = SinusoidTasks | AmbiguousTasks | BanditTasks | MDPTasks


@dataclass
class Experiment:
    config: RunConfig
    pre: Preprocessing
    dataset: ClassificationDataset | None = None  # None for task families (sinusoid, bandit, ...)
    inputs: torch.Tensor | None = None
    splits: dict[str, list[int]] = field(default_factory=dict)
    samplers: dict[str, EpisodeSampler | TaskFamily] = field(default_factory=dict)

    @classmethod
    def prepare(
        cls,
        config: RunConfig,
        progress: Callable[[int, int], None] | None = None,
        cancel: Callable[[], bool] | None = None,
        dataset: ClassificationDataset | None = None,
    ) -> Experiment:
        """Load (or reuse) the dataset, split the classes, check the task, encode items."""
        algorithms.get(config.algorithm.name)  # fail early on an unknown algorithm
        task = config.task
        source = config.dataset.source
        if source in ("sinusoid", "ambiguous"):
            fam = (SinusoidTasks if source == "sinusoid" else AmbiguousTasks)(task.shot, task.query)
            return cls(config, Preprocessing(modality="regression"), samplers={s: fam for s in SPLITS})
        if source in RL_MODALITIES:
            d = config.dataset
            rl = BanditTasks(d.arms, d.pulls) if source == "bandit" else MDPTasks(d.states, d.actions, d.horizon, d.trial_episodes)
            pre = Preprocessing(modality=source, states=rl.n_states, actions=rl.n_actions)
            return cls(config, pre, samplers={s: rl for s in SPLITS})
        if dataset is None:
            from metagui.core.data import load_dataset

            dataset = load_dataset(config.dataset, progress=progress, cancel=cancel)
        splits = split_classes(dataset, task)
        check_task(dataset, task, splits)
        pre = preprocessing_for(dataset)
        if config.dataset.source in ("image_folder", "catalog"):
            pre.invert = config.dataset.invert
        if config.algorithm.text_encoder:
            if pre.modality != "text":
                raise ConfigError("a pretrained text encoder needs a text dataset")
            from metagui.core.encoder_source import encoder_reference
            from metagui.core.pretrained import sentence_encoder

            # a model id stays an id (each machine finds its own copy), a folder becomes absolute
            pre.text_encoder = encoder_reference(config.algorithm.text_encoder)
            pre.text_encoder_dim = sentence_encoder(pre.text_encoder, cancel=cancel).dim
        inputs = encode_dataset(dataset, pre)
        samplers = {
            split: EpisodeSampler(inputs, dataset.labels, ids, task.way, task.shot, task.query)
            for split, ids in splits.items()
            if ids and _enough(dataset, ids, task)
        }
        return cls(config, pre, dataset, inputs, splits, samplers)

    @property
    def modality(self) -> str:
        return self.pre.modality

    @property
    def n_way(self) -> int:
        if self.modality in RL_MODALITIES:
            return self.pre.actions  # an RL learner's "ways" are its actions
        return 0 if self.modality == "regression" else self.config.task.way

    @property
    def task_label(self) -> str:
        """How the store and the logs name the task."""
        if self.modality in RL_MODALITIES:
            return self.samplers["train"].describe()
        if self.modality == "regression":
            return f"{self.config.task.shot}-shot regression"
        return f"{self.config.task.way}-way {self.config.task.shot}-shot"

    def build_learner(self) -> MetaLearner:
        algo = self.config.algorithm
        cls = algorithms.get(algo.name)
        if self.modality not in cls.modalities:
            raise ConfigError(f"{cls.label} cannot learn {self.modality} tasks")
        torch.manual_seed(self.config.training.seed)
        backbone = make_backbone(algo.backbone, self.pre)
        self.fit_domain(backbone)
        return algorithms.create(algo.name, backbone, self.n_way, algo.hyperparams)

    def fit_domain(self, backbone: torch.nn.Module) -> None:
        """A pretrained encoder's adapter remembers this experiment's meta-training domain (the
        domain guard: ``models.EmbeddingAdapter.fit_domain``); other backbones have none."""
        fit = getattr(backbone, "fit_domain", None)
        if fit is not None and self.inputs is not None and self.splits.get("train"):
            fit(self.split_inputs("train"), self.split_inputs("val") if self.splits.get("val") else None)

    def split_inputs(self, split: str) -> torch.Tensor:
        """The model inputs of every item of ``split``'s classes."""
        return self.inputs[torch.from_numpy(np.isin(self.dataset.labels, self.splits[split]))]

    def sample(self, split: str, n_tasks: int, rng: np.random.Generator) -> EpisodeBatch | TrialBatch:
        if split not in self.samplers:
            raise ConfigError(f"the {split} split is empty: no {split} episodes can be drawn")
        return self.samplers[split].sample(n_tasks, rng)

    def validation_batches(self, split: str, episodes: int, batch: int, seed: int) -> list[EpisodeBatch | TrialBatch]:
        """The same ``episodes`` episodes every time (seeded), in batches of ``batch``."""
        rng = step_rng(seed, split, 0)
        out, left = [], episodes
        while left > 0:
            n = min(batch, left)
            out.append(self.sample(split, n, rng))
            left -= n
        return out

    def dataset_id(self) -> str:
        """A stable id of the dataset config (for the store)."""
        return hashlib.sha1(json.dumps(self.config.to_dict()["dataset"], sort_keys=True).encode()).hexdigest()[:16]

    def class_names(self, episode_classes: list[int]) -> list[str]:
        return [self.dataset.classes[c] for c in episode_classes] if self.dataset else []


def _enough(ds: ClassificationDataset, ids: list[int], task) -> bool:
    counts = np.bincount(ds.labels, minlength=len(ds.classes))
    return sum(counts[i] >= task.shot + task.query for i in ids) >= task.way


def mean_ci95(values: torch.Tensor | np.ndarray) -> tuple[float, float]:
    """Mean and half-width of the normal 95% confidence interval."""
    v = np.asarray(values, dtype=np.float64)
    if v.size < 2:
        return float(v.mean()) if v.size else float("nan"), float("nan")
    return float(v.mean()), float(1.96 * v.std(ddof=1) / np.sqrt(v.size))


def evaluate(learner: MetaLearner, batches: list[EpisodeBatch], device: torch.device) -> dict[str, float]:
    """Mean and 95% CI of the per-episode metric, the mean query loss, and the mean
    adaptation curve (optimisation learners)."""
    per_task, extras = [], []
    for b in batches:
        pt, extra = learner.evaluate(b.to(device))
        per_task.append(pt.cpu())
        extras.append(extra)
    mean, ci = mean_ci95(torch.cat(per_task))
    out = {learner.metric_name: mean, "ci95": ci, "episodes": int(sum(len(p) for p in per_task))}
    if all("loss" in e for e in extras):
        out["loss"] = float(np.average([e["loss"] for e in extras], weights=[len(p) for p in per_task]))
    keys = [k for k in extras[0] if k.startswith("adapt_loss_")] if extras else []
    for k in keys:
        out[k] = float(np.mean([e[k] for e in extras]))
    return out
