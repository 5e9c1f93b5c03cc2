"""Backbones and the preprocessing that turns raw items into their inputs.

Every backbone maps a batch of inputs to embeddings [n, emb_dim]; learners add their own
heads. ``forward(x, tasks=T)`` takes T equal-sized episodes back to back, so a meta-batch
runs as one flat batch while batch norm still normalises each episode on its own.
``batch_independent`` says whether items influence each other's outputs at all.
"""

from __future__ import annotations

import re
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
def _under_torch_func(x: torch.Tensor) -> bool:
    """Whether ``x`` is inside a ``torch.func`` transform (vmap, grad)."""
    return torch._C._functorch.is_functorch_wrapped_tensor(x)


class EpisodeBatchNorm(nn.Module):
    """Batch norm with batch statistics only (as MAML uses it).

    Outside ``torch.func`` transforms it is torch's fused kernel, whose double backward is
    exact (second-order MAML in the per-task loop; ``metagui bench train`` checks the
    meta-gradient in float64, tests/test_algorithms.py against finite differences) and which
    makes a second-order Conv-4 meta-step about 1.4 times faster than plain tensor ops.
    Under ``torch.func.vmap`` the fused kernel's second-order gradients are wrong, so there
    (and for a meta-batch of several episodes back to back) it is written with plain tensor
    ops, which differentiate correctly at any order."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor, tasks: int = 1) -> torch.Tensor:
        """``x`` holds ``tasks`` equal-sized episodes back to back; each is normalised with
        its own statistics, so a whole meta-batch runs through one convolution call."""
        n, c, h, w = x.shape
        if tasks == 1 and n * h * w > 1 and not _under_torch_func(x):
            return F.batch_norm(x, None, None, self.weight, self.bias, training=True, eps=self.eps)
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
            # pooling before the ReLU is the same function with the same gradients at any
            # order (both are monotone; the pool keeps the first largest item either way, and
            # where that is not positive both pass no gradient), on a quarter of the items
            x = F.relu(_max_pool(norm(conv(x), tasks)))
        return x.flatten(1)


def _max_pool(x: torch.Tensor) -> torch.Tensor:
    """2x2 max-pool, differentiable at any order. On the CPU, outside ``torch.func``
    transforms, the kernel finds the largest item of each window in channels-last layout, 8-20
    times faster there than in the default layout on Conv-4's activations (the same items, the
    first of equals), and takes them with ``gather``, whose gradients are the pool's. Forward
    and backward together take 2-4 times less time than ``F.max_pool2d``'s. Exported graphs
    (traced) keep the plain pool."""
    if _under_torch_func(x) or x.device.type != "cpu" or torch.jit.is_tracing():
        return F.max_pool2d(x, 2)
    with torch.no_grad():
        _, where = F.max_pool2d(x.detach().contiguous(memory_format=torch.channels_last), 2, return_indices=True)
    n, c, h, w = where.shape
    return x.flatten(2).gather(2, where.contiguous().flatten(2)).view(n, c, h, w)


def linear_tasks(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``F.linear`` with a weight per task: x [T, n, in], weight [T, out, in], bias [T, out]."""
    if bias is None:
        return torch.bmm(x, weight.transpose(1, 2))
    return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))


class MLP(nn.Module):
    """Fully connected ReLU net (2 x 40 for the sinusoid, as in the MAML paper).

    ``forward_tasks`` runs T tasks' inputs, each through its own weights, as batched matrix
    products: about twice as fast as the same under ``torch.func.vmap`` (``metagui bench
    train``), which matters for MAML's inner loops on models this small."""

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

    def forward_tasks(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """[T, n, in] -> [T, n, emb_dim], task t through the weights ``params[name][t]``
        (names as in ``named_parameters``)."""
        for i, layer in enumerate(self.net):
            if isinstance(layer, nn.Linear):
                x = linear_tasks(x, params[f"net.{i}.weight"], params.get(f"net.{i}.bias"))
            else:
                x = layer(x)
        return x


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


class NgramEncoder(nn.Module):
    """Hashed word and character n-gram counts with learned weights -> a unit vector.

    The built-in text encoder (featurizer version 2). Each token (a word, or a character
    3-, 4- or 5-gram inside a word) adds ``exp(type_weight + token_weight)`` to one of
    ``dim`` signed hash slots; the result is L2-normalised and scaled by a learned factor.
    With all weights at zero this is plain bag-of-n-grams cosine similarity, a strong
    no-learning baseline for few-shot text; meta-training learns which kinds of tokens and
    which individual tokens tell intents apart. It has no dense layers on purpose: learned
    projections fit the training intents' vocabulary and transferred worse to new domains
    than no learning at all (measured with ``metagui bench text``, see the README).

    Inputs come from ``TextFeaturizer`` (version 2): id 0 is padding, and the id range
    splits into ``types`` equal blocks (words, then each n-gram length), so the token type
    is ``(id - 1) // block``. Any int64 ids work: out-of-range ids wrap around.
    """

    batch_independent = True

    def __init__(self, buckets: int = 1 << 18, types: int = 4, dim: int = 4096, token_dropout: float = 0.3,
                 token_decay: float = 1e-4, type_decay: float = 0.1) -> None:
        super().__init__()
        self.token_decay, self.type_decay = token_decay, type_decay
        self.buckets, self.types, self.dim = buckets, types, dim
        self.block = buckets // types
        self.token_dropout = token_dropout
        self.token_weight = nn.Parameter(torch.zeros(buckets))
        self.type_weight = nn.Parameter(torch.zeros(types))
        self.log_scale = nn.Parameter(torch.zeros(()))
        self.emb_dim = dim

    def penalty(self) -> torch.Tensor:
        """Added to the meta-training loss: L2 pulls of the token and type weights towards
        zero (no learning). Without them the weights fit the training domain and transfer
        worse to other domains (``metagui bench text --encoder unregularised``)."""
        return self.token_decay * self.token_weight.pow(2).sum() + self.type_decay * self.type_weight.pow(2).sum()

    def forward(self, ids: torch.Tensor, tasks: int = 1) -> torch.Tensor:
        ids = ids.remainder(self.buckets)
        mask = ids > 0
        if self.training and self.token_dropout > 0:
            # drop tokens at random while meta-training: no single n-gram can carry a class
            mask = mask & (torch.rand(ids.shape, device=ids.device) >= self.token_dropout)
        kind = ((ids - 1).clamp_min(0) // self.block).clamp_max(self.types - 1)
        # log-weights soft-bounded to (-6, 6): inner loops (MAML) may take large steps on them
        w = torch.exp(6.0 * torch.tanh((self.type_weight[kind] + self.token_weight[ids]) / 6.0)) * mask
        sign = (ids // self.dim).remainder(2).to(w.dtype) * 2 - 1
        v = w.new_zeros(ids.shape[0], self.dim).scatter_add(1, ids.remainder(self.dim), w * sign)
        # unit length; the epsilon keeps every derivative finite when dropout empties a text
        return v * torch.rsqrt(v.pow(2).sum(1, keepdim=True) + 1e-8) * self.log_scale.exp()


NO_DOMAIN = -2.0  # EmbeddingAdapter.domain_floor before fit_domain: every support set passes
DOMAIN_SHARE = 0.5  # a support set whose mean cosine to the training domain is below this share of the
# validation items' is from another domain (EmbeddingAdapter.fit_domain)


class EmbeddingAdapter(nn.Module):
    """On top of a frozen pretrained sentence encoder (``core.pretrained``): its embeddings
    plus a meta-learned linear correction.

    Built to add to the pretrained encoder and never subtract from it: the correction starts
    at zero (training starts from the pretrained geometry), ``decay`` times its squared size
    is added to the meta-loss (a pull back towards the pretrained geometry), and the trainer
    validates before the first step (``validate_start``), so when no step beats the frozen
    encoder on held-out classes, the kept checkpoint is the frozen encoder itself. Without
    the pull the correction fits the training domain's intents (issue 14: 10 points lost on
    another business's intents)."""

    batch_independent = True
    validate_start = True
    # checkpoints saved before the domain guard existed load without these (the guard is then off)
    optional_state = ("domain_centre", "domain_floor")

    def __init__(self, dim: int, decay: float = 0.01) -> None:
        super().__init__()
        self.linear = nn.Linear(dim, dim)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
        self.emb_dim = dim
        self.decay = decay
        # the meta-training domain (``fit_domain``): the direction of its mean embedding, and the
        # least mean cosine to it that a support set of that domain shows; below -1 (no cosine is):
        # not fitted (a finite number: bundles refuse infinite weights)
        self.register_buffer("domain_centre", torch.zeros(dim))
        self.register_buffer("domain_floor", torch.tensor(NO_DOMAIN))

    def penalty(self) -> torch.Tensor:
        return self.decay * (self.linear.weight.pow(2).sum() + self.linear.bias.pow(2).sum())

    def fit_domain(self, train: torch.Tensor, val: torch.Tensor | None = None) -> None:
        """Remember the meta-training domain from its frozen embeddings [n, dim]: the direction
        of their mean, and as the floor ``DOMAIN_SHARE`` times the mean cosine of the validation
        items (else the training items) to it. Another business's sentences sit far below it
        (all-MiniLM-L6-v2, Banking77 against Home Assistant: a median cosine of about 0.06
        against 0.3 to 0.47 for new intents of the same domain; README, The domain guard)."""
        with torch.no_grad():
            centre = F.normalize(train.float().mean(0), dim=0)
            ref = val if val is not None and len(val) else train
            self.domain_centre.copy_(centre)
            self.domain_floor.fill_(DOMAIN_SHARE * float((F.normalize(ref.float(), dim=-1) @ centre).mean()))

    @property
    def guards_domain(self) -> bool:
        return bool(self.domain_floor >= -1)

    def in_domain(self, support: torch.Tensor) -> torch.Tensor:
        """Whether each support set [T, n, dim] (frozen embeddings) looks like the meta-training
        domain: [T] booleans (all True while no domain is fitted)."""
        cos = F.normalize(support, dim=-1) @ self.domain_centre.to(support.dtype)
        return cos.mean(-1) >= self.domain_floor

    def forward(self, x: torch.Tensor, tasks: int = 1) -> torch.Tensor:
        return x + self.linear(x)


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
TEXT_FEATURES = 2
LEGACY_TEXT = {"text_buckets": 1 << 15, "ngram_min": 2, "ngram_max": 4, "max_tokens": 160}


@dataclass
class Preprocessing:
    """How raw items become inputs; saved with checkpoints and exports."""

    modality: str
    image_size: int = 28
    channels: int = 1
    invert: bool = False
    text_buckets: int = 1 << 18
    ngram_min: int = 3
    ngram_max: int = 5
    max_tokens: int = 400
    # 2: words + n-grams in type blocks, for NgramEncoder; 1: the first release's ids, for
    # TextEncoder (checkpoints saved before version 2 existed load as version 1)
    text_features: int = TEXT_FEATURES
    # a pretrained sentence encoder's folder (see core.pretrained; "" = the built-in encoder)
    text_encoder: str = ""
    text_encoder_dim: int = 0
    # reinforcement learning (modality "bandit" / "mdp"): states observed, actions available
    states: int = 0
    actions: int = 0

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> Preprocessing:
        """From a checkpoint's or bundle's JSON; text settings saved before featurizer
        version 2 existed are version 1 with that release's defaults."""
        values = dict(values)
        if values.get("modality") == "text" and "text_features" not in values:
            values["text_features"] = 1
            for k, v in LEGACY_TEXT.items():
                values.setdefault(k, v)
        return cls(**values)


class TextFeaturizer:
    """Text -> padded int64 ids of hashed tokens. crc32 keeps the hashing identical across
    processes and platforms.

    Version 2 (``NgramEncoder``): lower-cased, digits folded to 0, words are runs of
    letters, digits and underscores (any script). Per word: the word itself, then every
    character n-gram of ' ' + word + ' ' for n = ngram_min..ngram_max. Token type t (0 =
    word, 1.. = n-gram lengths) owns ids t * B + 1 .. t * B + B - 1, B = buckets // types.
    Version 1 (``TextEncoder``, the first release): whitespace words and n-grams of
    '<' + word + '>', one shared id range.
    """

    def __init__(self, pre: Preprocessing) -> None:
        self.pre = pre

    def ids(self, text: str) -> list[int]:
        p = self.pre
        if p.text_features == 1:
            return list(_text_ids_v1(text, p.text_buckets, p.ngram_min, p.ngram_max, p.max_tokens))
        return list(_text_ids(text, p.text_buckets, p.ngram_min, p.ngram_max, p.max_tokens))

    def __call__(self, texts: list[str]) -> torch.Tensor:
        if self.pre.text_encoder:  # a pretrained encoder: its (frozen) sentence embeddings
            from metagui.core.pretrained import sentence_encoder

            return torch.from_numpy(sentence_encoder(self.pre.text_encoder).encode([str(t) for t in texts]))
        rows = [self.ids(t) for t in texts]
        width = max((len(r) for r in rows), default=1) or 1
        out = np.zeros((len(rows), width), dtype=np.int64)
        for i, r in enumerate(rows):
            out[i, : len(r)] = r
        return torch.from_numpy(out)


def text_types(pre: Preprocessing) -> int:
    """Token types of featurizer version 2: words, then one per n-gram length."""
    return 1 + pre.ngram_max - pre.ngram_min + 1


_WORD = re.compile(r"\w+")
_DIGIT = re.compile(r"\d")


@lru_cache(maxsize=200_000)
def _text_ids(text: str, buckets: int, nmin: int, nmax: int, cap: int) -> tuple[int, ...]:
    block = buckets // (2 + nmax - nmin)
    ids: list[int] = []
    for word in _WORD.findall(_DIGIT.sub("0", text.lower())):
        ids.append(_bucket("w:" + word, block))
        padded = f" {word} "
        for n in range(nmin, nmax + 1):
            offset = (1 + n - nmin) * block
            ids.extend(offset + _bucket(padded[i : i + n], block) for i in range(len(padded) - n + 1))
    return tuple(ids[:cap]) if ids else (_bucket("w:", block),)


@lru_cache(maxsize=200_000)
def _text_ids_v1(text: str, buckets: int, nmin: int, nmax: int, cap: int) -> tuple[int, ...]:
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
        if pre.text_encoder:
            return EmbeddingAdapter(pre.text_encoder_dim)
        if pre.text_features == 1:
            return TextEncoder(pre.text_buckets, 64, hidden or 128)
        return NgramEncoder(pre.text_buckets, text_types(pre), hidden or 4096)
    if kind == "gru":
        if pre.modality not in RL_MODALITIES:
            raise ConfigError("the gru backbone is the recurrent core of RL² policies (bandit and MDP tasks)")
        # per step: one-hot state, one-hot previous action, previous reward, episode-done flag
        return RecurrentCore(pre.states + pre.actions + 2, hidden or 128)
    raise ConfigError(f"unknown backbone '{kind}' (choose auto, {', '.join(BACKBONES)})")
