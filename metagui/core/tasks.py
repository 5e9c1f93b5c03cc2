"""Few-shot tasks: class splits, seeded episode sampling, fixed episode files.

An episode holds N classes, K support and Q query items per class, with labels remapped to
0..N-1. A meta-batch stacks T episodes of the same shape into one ``EpisodeBatch``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from metagui.core.config import TaskConfig
from metagui.core.data.base import ClassificationDataset
from metagui.core.errors import ConfigError, DataError

SPLITS = ("train", "val", "test")


@dataclass
class EpisodeBatch:
    """T episodes stacked: support_x [T, S, ...], support_y [T, S] (or [T, S, 1] for
    regression), query_x [T, Q, ...], query_y likewise. ``classes`` holds each episode's
    dataset class indices in label order (empty for regression)."""

    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor
    n_way: int
    classes: list[list[int]] = field(default_factory=list)

    @property
    def n_tasks(self) -> int:
        return int(self.support_x.shape[0])

    def to(self, device: torch.device | str) -> EpisodeBatch:
        return EpisodeBatch(
            self.support_x.to(device, non_blocking=True),
            self.support_y.to(device, non_blocking=True),
            self.query_x.to(device, non_blocking=True),
            self.query_y.to(device, non_blocking=True),
            self.n_way,
            self.classes,
        )

    def chunks(self, size: int) -> list[EpisodeBatch]:
        """The episodes in batches of ``size`` (the last may hold fewer), in order."""
        return [EpisodeBatch(self.support_x[i:i + size], self.support_y[i:i + size], self.query_x[i:i + size],
                             self.query_y[i:i + size], self.n_way, self.classes[i:i + size])
                for i in range(0, self.n_tasks, size)]

    def task(self, i: int) -> EpisodeBatch:
        """The i-th episode as a batch of one."""
        s = slice(i, i + 1)
        return EpisodeBatch(
            self.support_x[s], self.support_y[s], self.query_x[s], self.query_y[s],
            self.n_way, self.classes[s],
        )


# --- class splits --------------------------------------------------------------------------
def split_classes(ds: ClassificationDataset, task: TaskConfig) -> dict[str, list[int]]:
    """Class indices for train / val / test, as the task config asks.

    ratio: a seeded shuffle of the classes cut by train_ratio and val_ratio (the rest is
    test); classes: explicit name lists; domain: whole domains (alphabets, languages, ...)
    per split, so that meta-testing happens on domains never seen in meta-training.
    """
    names = {c: i for i, c in enumerate(ds.classes)}
    if task.split == "ratio":
        if not (0 < task.train_ratio <= 1 and 0 <= task.val_ratio < 1):
            raise ConfigError("train_ratio must be in (0, 1] and val_ratio in [0, 1)")
        if task.train_ratio + task.val_ratio > 1 + 1e-9:
            raise ConfigError("train_ratio + val_ratio must not exceed 1")
        order = np.random.default_rng(task.seed).permutation(len(ds.classes))
        n_train = int(round(task.train_ratio * len(order)))
        n_val = int(round(task.val_ratio * len(order)))
        parts = {
            "train": order[:n_train],
            "val": order[n_train : n_train + n_val],
            "test": order[n_train + n_val :],
        }
        return {k: sorted(int(i) for i in v) for k, v in parts.items()}
    if task.split == "classes":
        out = {}
        for split in SPLITS:
            wanted = getattr(task, f"{split}_classes")
            missing = [c for c in wanted if c not in names]
            if missing:
                raise ConfigError(f"{split} classes not in the dataset: {', '.join(missing[:5])}")
            out[split] = sorted(names[c] for c in wanted)
        return out
    if task.split == "domain":
        domains = set(ds.class_domains)
        out = {}
        for split in SPLITS:
            wanted = getattr(task, f"{split}_domains")
            missing = [d for d in wanted if d not in domains]
            if missing:
                raise ConfigError(f"{split} domains not in the dataset: {', '.join(missing[:5])}")
            out[split] = [i for i, d in enumerate(ds.class_domains) if d in set(wanted)]
        if not out["train"]:
            raise ConfigError("the domain split has no training domains")
        return out
    raise ConfigError(f"unknown split strategy '{task.split}' (use ratio, classes or domain)")


def check_task(ds: ClassificationDataset, task: TaskConfig, splits: dict[str, list[int]]) -> None:
    """Raise a readable ConfigError when a split cannot make the task's episodes."""
    if task.way < 2:
        raise ConfigError("a classification task needs at least 2 ways")
    if task.shot < 1 or task.query < 1:
        raise ConfigError("shot and query must be at least 1")
    counts = np.bincount(ds.labels, minlength=len(ds.classes))
    need = task.shot + task.query
    for split in SPLITS:
        if split != "train" and not splits[split]:
            continue
        usable = [c for c in splits[split] if counts[c] >= need]
        if len(usable) < task.way:
            raise ConfigError(
                f"{task.way}-way needs {task.way} {split} classes with at least {need} examples "
                f"({task.shot} shot + {task.query} query), but the {split} split has "
                f"{len(usable)} (of {len(splits[split])} classes)"
            )


class EpisodeSampler:
    """Draws N-way K-shot Q-query episodes from a set of classes.

    ``inputs`` is the dataset already turned into model inputs ([N_items, ...]), so an
    episode is two index operations. Classes with fewer than K+Q items are skipped.
    """

    def __init__(
        self,
        inputs: torch.Tensor,
        labels: np.ndarray,
        class_ids: Sequence[int],
        way: int,
        shot: int,
        query: int,
    ) -> None:
        self.inputs = inputs
        self.way, self.shot, self.query = way, shot, query
        by_class = {c: np.nonzero(labels == c)[0] for c in class_ids}
        self.class_items = [(c, idx) for c, idx in sorted(by_class.items()) if len(idx) >= shot + query]
        if len(self.class_items) < way:
            raise DataError(
                f"only {len(self.class_items)} classes have {shot + query} examples; "
                f"a {way}-way task needs {way}"
            )

    def sample_indices(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, list[int]]:
        chosen = rng.choice(len(self.class_items), size=self.way, replace=False)
        support, query, classes = [], [], []
        for c in chosen:
            cls, items = self.class_items[c]
            pick = rng.choice(items, size=self.shot + self.query, replace=False)
            support.append(pick[: self.shot])
            query.append(pick[self.shot :])
            classes.append(int(cls))
        # class-major order: labels are [0]*K + [1]*K + ...
        return np.concatenate(support), np.concatenate(query), classes

    def sample(self, n_tasks: int, rng: np.random.Generator) -> EpisodeBatch:
        sup, qry, classes = [], [], []
        for _ in range(n_tasks):
            s, q, c = self.sample_indices(rng)
            sup.append(s)
            qry.append(q)
            classes.append(c)
        sup_idx = torch.from_numpy(np.stack(sup))
        qry_idx = torch.from_numpy(np.stack(qry))
        sy = torch.arange(self.way).repeat_interleave(self.shot).expand(n_tasks, -1).contiguous()
        qy = torch.arange(self.way).repeat_interleave(self.query).expand(n_tasks, -1).contiguous()
        return EpisodeBatch(self.inputs[sup_idx], sy, self.inputs[qry_idx], qy, self.way, classes)


def step_rng(seed: int, split: str, step: int) -> np.random.Generator:
    """The generator for one step of one split: resuming at step s redraws the same episodes."""
    return np.random.default_rng([seed, SPLITS.index(split), step])


# --- fixed benchmark episodes ---------------------------------------------------------------
def read_episodes_file(path: str | Path, notes: list[str] | None = None) -> list[dict]:
    """Read a JSONL episodes file: one {"support": [...], "query": [...]} per line, each item
    {"item": <file path or text>, "label": <name>}. Checks shape and consistency. The file is
    read as tables are (UTF-8, UTF-16 with a BOM, else cp1252: a note in ``notes`` says so)."""
    from metagui.core.files import read_text

    p = Path(path)
    episodes = []
    for n, line in enumerate(read_text(p, what="episodes file", notes=notes).splitlines(), 1):
        if not line.strip():
            continue
        try:
            ep = json.loads(line)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise DataError(f"{p.name} line {n} is not JSON: {getattr(exc, 'msg', 'nested too deeply')}") from None
        if not isinstance(ep, dict) or not ep.get("support") or not ep.get("query"):
            raise DataError(f"{p.name} line {n} needs non-empty 'support' and 'query' lists")
        for part in ("support", "query"):
            for item in ep[part]:
                if not isinstance(item, dict) or "item" not in item or "label" not in item:
                    raise DataError(f"{p.name} line {n}: every {part} entry needs 'item' and 'label'")
        s_labels = {str(i["label"]) for i in ep["support"]}
        unknown = {str(i["label"]) for i in ep["query"]} - s_labels
        if unknown:
            raise DataError(f"{p.name} line {n}: query labels not in the support set: {sorted(unknown)}")
        episodes.append(ep)
    if not episodes:
        raise DataError(f"episodes file {p.name} holds no episodes")
    return episodes


def episode_from_items(
    ep: dict, encode: Callable[[list], torch.Tensor]
) -> tuple[EpisodeBatch, list[str]]:
    """Turn one episodes-file entry into a batch of one; ``encode`` maps raw items (paths
    or texts) to model inputs. Returns the batch and the label names in label order."""
    names = sorted({str(i["label"]) for i in ep["support"]})
    index = {n: i for i, n in enumerate(names)}
    # one call, so that padded inputs (texts) share one width
    xs = encode([i["item"] for i in ep["support"]] + [i["item"] for i in ep["query"]])
    sx, qx = xs[: len(ep["support"])], xs[len(ep["support"]) :]
    sy = torch.tensor([index[str(i["label"])] for i in ep["support"]])
    qy = torch.tensor([index[str(i["label"])] for i in ep["query"]])
    return EpisodeBatch(sx[None], sy[None], qx[None], qy[None], len(names)), names
