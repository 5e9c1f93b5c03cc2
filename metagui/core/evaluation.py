"""Evaluate a trained run: on fresh episodes of its own (or another) dataset, or on a fixed
episodes file. Used by ``metagui eval``, the Runs page and benchmarks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from metagui.core import algorithms
from metagui.core.algorithms.base import MetaLearner
from metagui.core.checkpoint import load_checkpoint, read_meta
from metagui.core.config import DatasetConfig, RunConfig
from metagui.core.data.base import Problem
from metagui.core.device import select_device
from metagui.core.errors import CheckpointDamaged, ConfigError, DataError, MetaGUIError
from metagui.core.experiment import Experiment, evaluate, mean_ci95
from metagui.core.models import Preprocessing, TextFeaturizer, make_backbone
from metagui.core.store import RunStore, default_db_path
from metagui.core.tasks import episode_from_items, read_episodes_file, step_rng

TABLE_SUFFIXES = {".csv", ".tsv", ".jsonl", ".json", ".txt"}


def dataset_config_from_arg(arg: str, base: DatasetConfig | None = None) -> DatasetConfig:
    """Read ``--dataset``: a built-in name, a catalog name, or a folder / zip / table path."""
    from metagui.core.data import TASK_FAMILIES
    from metagui.core.data.catalog import CATALOG

    cfg = DatasetConfig(**{**(base.__dict__ if base else {})})
    if arg in ("glyphs", "intents", *TASK_FAMILIES):
        cfg.source, cfg.path = arg, ""
    elif arg in CATALOG:
        cfg.source, cfg.path = "catalog", arg
    else:
        p = Path(arg)
        if not p.exists() and not p.is_symlink():  # a broken link: the loader names it
            raise DataError(f"dataset not found: {arg} (not a built-in, a catalog name or a path)")
        cfg.source = "text_table" if p.suffix.lower() in TABLE_SUFFIXES else "image_folder"
        cfg.path = str(p)
    return cfg


def load_learner(folder: Path, kind: str, device: torch.device) -> tuple[MetaLearner, dict[str, Any]]:
    """Rebuild a learner from a checkpoint folder (no pickle: safetensors + JSON)."""
    meta = read_meta(folder, kind)
    try:
        pre = Preprocessing.from_dict(meta["preprocessing"])
        cfg = RunConfig.from_dict(meta["config"])
        algorithm, n_way, hyperparams = meta["algorithm"], int(meta["n_way"]), meta["hyperparams"]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointDamaged(folder / f"{kind}.json", f"its description is incomplete ({type(exc).__name__}: {exc})") from None
    backbone = make_backbone(cfg.algorithm.backbone, pre)
    learner = algorithms.create(algorithm, backbone, n_way, hyperparams)
    load_checkpoint(folder, kind, learner, with_optimizer=False)
    return learner.to(device).eval(), meta


def checkpoint_folder(store: RunStore, run_id: int, kind: str) -> Path:
    ckpts = store.checkpoints(run_id)
    if kind not in ckpts:
        have = ", ".join(ckpts) or "none"
        raise MetaGUIError(f"run {run_id} has no {kind} checkpoint (it has: {have})")
    return Path(ckpts[kind]["path"]).parent


def encode_items(items: list[str], pre: Preprocessing) -> torch.Tensor:
    """Raw items (texts, or image file paths) -> model inputs, as training saw them."""
    if pre.modality == "text":
        return TextFeaturizer(pre)([str(i) for i in items])
    if pre.modality == "image":
        from metagui.core.data.images import open_image
        from metagui.core.files import read_bytes

        mode = "L" if pre.channels == 1 else "RGB"
        arrays = []
        for item in items:
            data = read_bytes(item, what="image")  # a regular file of at most 64 MB: never a FIFO
            try:
                with open_image(data, str(item)) as im:
                    im = im.convert(mode).resize((pre.image_size, pre.image_size), Image.Resampling.LANCZOS)
                    a = np.asarray(im, dtype=np.uint8)
            except DataError:
                raise
            except Exception as exc:  # any decoder failure on a user's file is a readable error
                raise DataError(f"cannot read image {item}: {exc}") from None
            if pre.invert:
                a = 255 - a
            arrays.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
        return torch.from_numpy(np.stack(arrays)).float().div_(255.0)
    raise ConfigError(f"episodes files are for text or image models, not {pre.modality}")


def evaluate_run(
    run_id: int, db: str | None = None, dataset: str | None = None, episodes_file: str | None = None,
    way: int | None = None, shot: int | None = None, query: int | None = None, episodes: int = 600,
    split: str = "test", checkpoint: str = "best", device: str = "auto",
    problems: list[Problem] | None = None,
) -> dict[str, Any]:
    """Held-out figures of a run. ``way``, ``shot`` and ``query`` replace the run's own when
    given (None keeps them); what is wrong with the data read (skipped files or rows, an
    encoding fallback, classes too small for the task) is appended to ``problems``."""
    check_episode_counts(way=way, shot=shot, query=query, episodes=episodes)
    found: list[Problem] = [] if problems is None else problems
    path = Path(db) if db else default_db_path()
    if not path.exists():
        raise MetaGUIError(f"no run with id {run_id}: there is no run store at {path}")
    store = RunStore.for_reading(path)
    run = store.run(run_id)
    dev = select_device(device)
    learner, meta = load_learner(checkpoint_folder(store, run_id, checkpoint), checkpoint, dev)
    cfg = RunConfig.from_toml(run["config"])
    pre = Preprocessing.from_dict(meta["preprocessing"])
    out: dict[str, Any] = {"run": run_id, "algorithm": cfg.algorithm.name, "checkpoint": checkpoint,
                           "step": meta["step"]}
    if episodes_file:
        scores = []
        notes: list[str] = []
        for ep in read_episodes_file(episodes_file, notes):
            batch, names = episode_from_items(ep, lambda items: encode_items(items, pre))
            _check_way(learner, batch.n_way)
            per_task, _ = learner.evaluate(batch.to(dev))
            scores.append(float(per_task[0]))
        found += [Problem("other", note, str(episodes_file)) for note in notes]
        mean, ci = mean_ci95(np.array(scores))
        out.update({"episodes_file": episodes_file, "episodes": len(scores), learner.metric_name: mean, "ci95": ci})
        return out
    if dataset:
        cfg.dataset = dataset_config_from_arg(dataset, cfg.dataset)
        if pre.modality == "image":  # read the images as the model was trained to see them
            cfg.dataset.image_size, cfg.dataset.channels = pre.image_size, pre.channels
        _check_modality(run_id, pre.modality, cfg.dataset, dataset)
    cfg.task.way = cfg.task.way if way is None else way
    cfg.task.shot = cfg.task.shot if shot is None else shot
    cfg.task.query = cfg.task.query if query is None else query
    from metagui.core.data import TASK_FAMILIES, load_dataset

    if dataset and cfg.dataset.source not in TASK_FAMILIES:
        ds = load_dataset(cfg.dataset)
        found += ds.problems
        cfg.task.split, cfg.task.train_classes, cfg.task.val_classes, cfg.task.test_classes = "classes", list(ds.classes), [], list(ds.classes)
        exp = Experiment.prepare(cfg, dataset=ds)
    else:
        exp = Experiment.prepare(cfg)
        if exp.dataset is not None:
            found += exp.dataset.problems
    if exp.dataset is not None:
        found += exp.dataset.check_task(cfg.task.way, cfg.task.shot, cfg.task.query)
    _check_way(learner, exp.n_way)
    rng = step_rng(cfg.training.seed + 1, split, 0)
    batches, left = [], episodes
    while left > 0:
        n = min(32, left)
        batches.append(exp.sample(split, n, rng))
        left -= n
    result = evaluate(learner, batches, dev)
    out.update({"dataset": cfg.dataset.path or cfg.dataset.source, "split": split, "way": exp.n_way,
                "shot": cfg.task.shot, "query": cfg.task.query, **result})
    return out


MAX_EVAL_EPISODES = 100_000


def check_episode_counts(way: int | None = None, shot: int | None = None, query: int | None = None,
                         episodes: int | None = None, names: dict[str, str] | None = None) -> None:
    """Refuse task sizes that make no episodes (None: not given). Zero is never a valid way,
    shot, query or episode count: an episode needs two classes and an example of each.
    ``names``: what the caller calls each value (e.g. its command-line options)."""
    called = {"way": "way", "shot": "shot", "query": "query", "episodes": "episodes", **(names or {})}
    for key, value, low in (("way", way, 2), ("shot", shot, 1), ("query", query, 1), ("episodes", episodes, 1)):
        if value is not None and value < low:
            raise ConfigError(f"{called[key]} must be at least {low}, got {value}")
    if episodes is not None and episodes > MAX_EVAL_EPISODES:
        raise ConfigError(f"{called['episodes']} must be at most {MAX_EVAL_EPISODES:,}, got {episodes:,}")


_DESCRIBED = {"text": "a text dataset (a CSV/TSV/JSON Lines table, intents, or a text catalog entry)",
              "image": "an image dataset (a folder or zip of class folders, glyphs, or an image catalog entry)",
              "regression": "a regression task family (sinusoid, ambiguous)",
              "bandit": "bandit tasks", "mdp": "MDP tasks"}


def dataset_modality(d: DatasetConfig) -> str:
    """What a dataset config holds (text, image, regression, bandit, mdp), before loading it."""
    from metagui.core.config import SOURCE_MODALITY
    from metagui.core.data.catalog import get_entry

    if d.source == "catalog":
        return "image" if get_entry(d.path).kind == "image_zip" else "text"
    return SOURCE_MODALITY.get(d.source, d.source)


def _check_modality(run_id: int, model: str, d: DatasetConfig, given: str) -> None:
    data = dataset_modality(d)
    if data != model:
        need = _DESCRIBED.get(model, f"{model} data")
        article = "an" if model[0] in "aeiou" else "a"
        raise DataError(f"run {run_id} is {article} {model} model: it needs {need}, not {given} ({data})")


def _check_way(learner: MetaLearner, n_way: int) -> None:
    if learner.family == "optimisation" and not learner.regression and n_way != learner.n_way:
        raise ConfigError(f"{learner.label} was meta-trained for {learner.n_way}-way tasks; it cannot evaluate {n_way}-way episodes")
