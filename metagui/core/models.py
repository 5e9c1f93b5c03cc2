"""Backbones and the preprocessing that turns raw items into their inputs.

Every backbone maps a batch of inputs to embeddings [n, emb_dim]; learners add their own
heads. ``forward(x, tasks=T)`` takes T equal-sized episodes back to back, so a meta-batch
runs as one flat batch while batch norm still normalises each episode on its own.
``batch_independent`` says whether items influence each other's outputs at all.
"""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from metagui.core.data.base import ClassificationDataset, ImageDataset, Modality, TextDataset
from metagui.core.errors import ConfigError


# --- backbones -----------------------------------------------------------------------------
class EpisodeBatchNorm(nn.Module):
    """Batch norm with batch statistics only (as MAML uses it), written with plain tensor
    ops. torch's fused batch-norm kernel gives wrong second-order gradients under
    ``torch.func.vmap`` (checked against finite differences in tests/test_algorithms.py);
    these ops differentiate correctly at any order, with or without vmap."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor, tasks: int = 1) -> torch.Tensor:
        """``x`` holds ``tasks`` equal-sized episodes back to back; each is normalised with
        its own statistics, so a whole meta-batch runs through one convolution call."""
        n, c, h, w = x.shape
        g = x.view(tasks, n // tasks, c, h, w)
        dims = (1, 3, 4)
        mean = g.mean(dims, keepdim=True)
        var = (g - mean).pow(2).mean(dims, keepdim=True)
        shape = (1, 1, -1, 1, 1)
        out = (g - mean) * torch.rsqrt(var + self.eps) * self.weight.view(shape) + self.bias.view(shape)
        return out.view(n, c, h, w)


class Conv4(nn.Module):
    """Four blocks of 3x3 conv (``hidden`` filters), batch norm, ReLU, 2x2 max-pool.

    Batch norm always normalises with the statistics of the batch it sees (no running
    averages), as in MAML; learners feed support and query items together so that a single
    query is normalised like the episode it belongs to.
    """

    batch_independent = False

    def __init__(self, channels: int = 1, hidden: int = 64, image_size: int = 28) -> None:
        super().__init__()
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        c = channels
        for _ in range(4):
            self.convs.append(nn.Conv2d(c, hidden, 3, padding=1))
            self.norms.append(EpisodeBatchNorm(hidden))
            c = hidden
        side = image_size
        for _ in range(4):
            side //= 2
        self.emb_dim = hidden * max(side, 1) ** 2

    def forward(self, x: torch.Tensor, tasks: int = 1) -> torch.Tensor:
        for conv, norm in zip(self.convs, self.norms, strict=True):
            x = F.max_pool2d(F.relu(norm(conv(x), tasks)), 2)
        return x.flatten(1)


class MLP(nn.Module):
    """Fully connected ReLU net (2 x 40 for the sinusoid, as in the MAML paper)."""

    batch_independent = True

    def __init__(self, in_dim: int = 1, hidden: int = 40, layers: int = 2) -> None:
        super().__init__()
        mods: list[nn.Module] = []
        d = in_dim
        for _ in range(layers):
            mods += [nn.Linear(d, hidden), nn.ReLU()]
            d = hidden
        self.net = nn.Sequential(*mods)
        self.emb_dim = d

    def forward(self, x: torch.Tensor, tasks: int = 1) -> torch.Tensor:
        return self.net(x)


class TextEncoder(nn.Module):
    """Hashed character n-grams and words -> mean of learned embeddings -> MLP.

    Trained from scratch, no vocabulary and no downloads: any language's text maps to
    bucket ids (see ``TextFeaturizer``). Padding id 0 is ignored by the mean.
    """

    batch_independent = True

    def __init__(self, buckets: int = 1 << 15, dim: int = 64, hidden: int = 128) -> None:
        super().__init__()
        # A plain embedding + masked mean rather than nn.EmbeddingBag: EmbeddingBag has no
        # second derivative (second-order MAML) and no vmap rule.
        self.embedding = nn.Embedding(buckets, dim, padding_idx=0)
        nn.init.normal_(self.embedding.weight, std=0.1)
        with torch.no_grad():
            self.embedding.weight[0].zero_()
        self.net = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden))
        self.emb_dim = hidden

    def forward(self, ids: torch.Tensor, tasks: int = 1) -> torch.Tensor:
        mask = (ids > 0).unsqueeze(-1).to(self.embedding.weight.dtype)
        summed = (self.embedding(ids) * mask).sum(1)
        return self.net(summed / mask.sum(1).clamp_min(1.0))


class RecurrentCore(nn.Module):
    """GRU over per-step inputs [T, L, in_dim] -> features [T, L, hidden] (RL² policies).

    The hidden state is returned and passed back in, so a rollout can run step by step and a
    policy update can rerun whole trials in one call."""

    batch_independent = True

    def __init__(self, in_dim: int, hidden: int = 128) -> None:
        super().__init__()
        self.gru = nn.GRU(in_dim, hidden, batch_first=True)
        self.in_dim, self.emb_dim = in_dim, hidden

    def forward(self, x: torch.Tensor, h: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.gru(x, h)


# --- preprocessing --------------------------------------------------------------------------
@dataclass
class Preprocessing:
    """How raw items become inputs; saved with checkpoints and exports."""

    modality: str
    image_size: int = 28
    channels: int = 1
    invert: bool = False
    text_buckets: int = 1 << 15
    ngram_min: int = 2
    ngram_max: int = 4
    max_tokens: int = 160
    # reinforcement learning (modality "bandit" / "mdp"): states observed, actions available
    states: int = 0
    actions: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


class TextFeaturizer:
    """Text -> padded int64 ids of hashed character n-grams (within word boundaries) and
    words. crc32 keeps the hashing identical across processes and platforms."""

    def __init__(self, pre: Preprocessing) -> None:
        self.pre = pre

    def ids(self, text: str) -> list[int]:
        return list(_text_ids(text, self.pre.text_buckets, self.pre.ngram_min, self.pre.ngram_max, self.pre.max_tokens))

    def __call__(self, texts: list[str]) -> torch.Tensor:
        rows = [self.ids(t) for t in texts]
        width = max((len(r) for r in rows), default=1) or 1
        out = np.zeros((len(rows), width), dtype=np.int64)
        for i, r in enumerate(rows):
            out[i, : len(r)] = r
        return torch.from_numpy(out)


@lru_cache(maxsize=200_000)
def _text_ids(text: str, buckets: int, nmin: int, nmax: int, cap: int) -> tuple[int, ...]:
    ids: list[int] = []
    for word in text.lower().split():
        ids.append(_bucket("w:" + word, buckets))
        padded = f"<{word}>"
        for n in range(nmin, nmax + 1):
            for i in range(len(padded) - n + 1):
                ids.append(_bucket(padded[i : i + n], buckets))
    return tuple(ids[:cap]) if ids else (_bucket("<empty>", buckets),)


def _bucket(token: str, buckets: int) -> int:
    return 1 + zlib.crc32(token.encode("utf-8")) % (buckets - 1)


def preprocessing_for(ds: ClassificationDataset) -> Preprocessing:
    if isinstance(ds, ImageDataset):
        c, h, _ = ds.image_shape
        return Preprocessing(modality=Modality.IMAGE.value, image_size=h, channels=c)
    if isinstance(ds, TextDataset):
        return Preprocessing(modality=Modality.TEXT.value)
    raise TypeError(type(ds))


def encode_dataset(ds: ClassificationDataset, pre: Preprocessing) -> torch.Tensor:
    """All items of a dataset as model inputs, once, so sampling is indexing."""
    if isinstance(ds, ImageDataset):
        return ds.images.float().div_(255.0)
    if isinstance(ds, TextDataset):
        return TextFeaturizer(pre)(ds.texts)
    raise TypeError(type(ds))


BACKBONES = ("conv4", "mlp", "text", "gru")
RL_MODALITIES = ("bandit", "mdp")


def make_backbone(kind: str, pre: Preprocessing, hidden: int | None = None) -> nn.Module:
    """The backbone for ``kind`` ("auto" picks by modality)."""
    if kind == "auto":
        kind = {"image": "conv4", "text": "text", "regression": "mlp", "bandit": "gru", "mdp": "gru"}.get(pre.modality, "")
    if kind == "conv4":
        if pre.modality != "image":
            raise ConfigError("the conv4 backbone needs an image dataset")
        return Conv4(pre.channels, hidden or 64, pre.image_size)
    if kind == "mlp":
        if pre.modality != "regression":
            raise ConfigError("the mlp backbone is for vector (regression) inputs")
        return MLP(1, hidden or 40, 2)
    if kind == "text":
        if pre.modality != "text":
            raise ConfigError("the text backbone needs a text dataset")
        return TextEncoder(pre.text_buckets, 64, hidden or 128)
    if kind == "gru":
        if pre.modality not in RL_MODALITIES:
            raise ConfigError("the gru backbone is the recurrent core of RL² policies (bandit and MDP tasks)")
        # per step: one-hot state, one-hot previous action, previous reward, episode-done flag
        return RecurrentCore(pre.states + pre.actions + 2, hidden or 128)
    raise ConfigError(f"unknown backbone '{kind}' (choose auto, {', '.join(BACKBONES)})")
