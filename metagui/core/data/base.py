"""What every data source produces: items grouped into classes, classes into domains.

Classification sources (images, texts) materialise into one in-memory dataset object, so
that episode sampling is plain indexing. Regression and bandit built-ins are task
*families* instead (every task is freshly drawn), see ``metagui.core.data.sinusoid``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import torch


class Modality(StrEnum):
    IMAGE = "image"
    TEXT = "text"
    REGRESSION = "regression"
    BANDIT = "bandit"


@dataclass(frozen=True)
class Problem:
    """Something wrong with the data that the user should see.

    kind: "unreadable" (file could not be decoded), "small_class" (fewer examples than a
    task needs), "duplicate" (same content twice), "empty" (nothing usable), "other".
    """

    kind: str
    message: str
    path: str | None = None


@dataclass
class DatasetStats:
    n_classes: int
    n_items: int
    per_class: dict[str, int]
    domains: dict[str, int]  # domain -> number of classes

    @property
    def min_per_class(self) -> int:
        return min(self.per_class.values(), default=0)

    @property
    def max_per_class(self) -> int:
        return max(self.per_class.values(), default=0)

    def as_dict(self) -> dict:
        return {
            "classes": self.n_classes,
            "items": self.n_items,
            "min_per_class": self.min_per_class,
            "max_per_class": self.max_per_class,
            "domains": self.domains,
        }


@dataclass
class ClassificationDataset:
    """Items with integer labels into ``classes``; each class has a domain ("" if none).

    Subclasses hold the payload: ``ImageDataset.images`` (uint8 [N, C, H, W]) or
    ``TextDataset.texts`` (list of str).
    """

    name: str
    classes: list[str]
    labels: np.ndarray  # int64 [N], index into classes
    class_domains: list[str]
    problems: list[Problem] = field(default_factory=list)
    modality: Modality = Modality.IMAGE

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if len(self.class_domains) != len(self.classes):
            raise ValueError("class_domains must have one entry per class")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def items_by_class(self) -> list[np.ndarray]:
        """Item indices for each class, in class order."""
        order = np.argsort(self.labels, kind="stable")
        counts = np.bincount(self.labels, minlength=len(self.classes))
        return np.split(order, np.cumsum(counts)[:-1])

    def stats(self) -> DatasetStats:
        counts = np.bincount(self.labels, minlength=len(self.classes))
        return DatasetStats(
            n_classes=len(self.classes),
            n_items=len(self),
            per_class={c: int(n) for c, n in zip(self.classes, counts, strict=True)},
            domains=dict(Counter(self.class_domains)),
        )

    def domains(self) -> list[str]:
        return sorted(set(self.class_domains))

    def check_task(self, n_way: int, k_shot: int, n_query: int) -> list[Problem]:
        """Classes too small for a K-shot, Q-query task (they will be skipped)."""
        need = k_shot + n_query
        return [
            Problem("small_class", f"class '{c}' has {n} examples, the task needs {need}; it is skipped")
            for c, n in self.stats().per_class.items()
            if n < need
        ]


@dataclass
class ImageDataset(ClassificationDataset):
    images: torch.Tensor = None  # uint8 [N, C, H, W]
    paths: list[str] = field(default_factory=list)  # where each item came from, for display

    def __post_init__(self) -> None:
        super().__post_init__()
        self.modality = Modality.IMAGE
        if self.images is None or self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError("images must be a uint8 tensor [N, C, H, W]")
        if self.images.shape[0] != len(self.labels):
            raise ValueError("one label per image")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]


@dataclass
class TextDataset(ClassificationDataset):
    texts: list[str] = field(default_factory=list)
    replies: dict[str, str] = field(default_factory=dict)  # class -> reply text (chat pane)
    language: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.modality = Modality.TEXT
        if len(self.texts) != len(self.labels):
            raise ValueError("one label per text")


def subset(ds: ClassificationDataset, class_names: list[str]) -> ClassificationDataset:
    """A new dataset holding only ``class_names`` (relabelled 0..n-1 in that order)."""
    index = {c: i for i, c in enumerate(ds.classes)}
    keep_old = [index[c] for c in class_names]
    remap = np.full(len(ds.classes), -1, dtype=np.int64)
    remap[keep_old] = np.arange(len(keep_old))
    mask = remap[ds.labels] >= 0
    idx = np.nonzero(mask)[0]
    common = dict(
        name=ds.name,
        classes=list(class_names),
        labels=remap[ds.labels[idx]],
        class_domains=[ds.class_domains[i] for i in keep_old],
        problems=list(ds.problems),
    )
    if isinstance(ds, ImageDataset):
        return ImageDataset(
            **common,
            images=ds.images[torch.from_numpy(idx)],
            paths=[ds.paths[i] for i in idx] if ds.paths else [],
        )
    if isinstance(ds, TextDataset):
        return TextDataset(
            **common,
            texts=[ds.texts[i] for i in idx],
            replies={c: r for c, r in ds.replies.items() if c in set(class_names)},
            language=ds.language,
        )
    raise TypeError(type(ds))
