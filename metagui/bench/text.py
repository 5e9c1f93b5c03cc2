"""``metagui bench text``: does meta-learned text transfer beat no learning?

Two transfer settings, three settings in all (each meta-trains its own models):

- ``unseen-intents``: Banking77, meta-train on 40 intents (10 more for validation), test
  on the other 27 intents' test.csv sentences;
- ``banking-to-ha``: meta-train on all of Banking77 train.csv, test on the Home Assistant
  intents in English;
- ``ha-to-banking``: meta-train on the Home Assistant intents of every language but
  English (validation on a few of them), test on Banking77 test.csv.
- ``ha-en-to-banking`` (the default with an English pretrained encoder, ``--encoder``):
  meta-train on Home Assistant's English intents (34, 8 more for validation), test on
  Banking77 test.csv.

With a pretrained encoder the no-learning rows include ``frozen-ncm``: the frozen encoder's
embeddings, nearest class mean by cosine, on the same episodes; and ``frozen-fit``: the same
embeddings with a cosine softmax head that starts at the class means and is fitted to the
support set by 50 gradient steps of 1.0 (scale 10; MAML's test-time fit in its preset, chosen
before this row existed). Neither learns anything across tasks.

Every method answers the same fixed, seeded test episodes (5-way 1-shot, 5-way 5-shot,
15-way 5-shot; 10 queries per class). The no-learning baselines are computed in the same
run: TF-IDF nearest centroid, character n-grams 2-4 within word boundaries (scikit-learn's
``char_wb``) or words (``\\b\\w\\w+\\b``), fitted on each episode's support set (smooth idf,
L2-normalised rows), queries to the class whose mean support vector is nearest by cosine.
A learner "beats" the best baseline (the one with the highest mean in that column) when the
95% CI of the per-episode difference, learner minus baseline on the same episodes, lies wholly
above zero; it is "below" when that CI lies wholly below zero.

``lexical_ceiling`` (``--ceiling``) asks how far the built-in encoder's tokens go with no
learning: 252 re-weightings (tf or support-set tf-idf; one vector, or unit-length parts per
token type with hand-set shares), one chosen on the meta-training data, one on the test
episodes themselves.
"""

from __future__ import annotations

import itertools
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from metagui.core.data.base import TextDataset
from metagui.core.errors import ConfigError
from metagui.core.experiment import mean_ci95

SHAPES: tuple[tuple[int, int], ...] = ((5, 1), (5, 5), (15, 5))
QUERY = 10
LEARNERS = ("protonet", "matching", "relation", "maml", "versa")
PRETRAINED_LEARNERS = (*LEARNERS, "fomaml", "metasgd", "reptile")  # issue 14's text learners, and Reptile
SETTINGS = ("unseen-intents", "banking-to-ha", "ha-to-banking")
# with an English pretrained encoder the reverse domain is Home Assistant's English intents
PRETRAINED_SETTINGS = ("unseen-intents", "banking-to-ha", "ha-en-to-banking")
ENCODERS = ("built-in", "first-release", "unregularised")  # else: a pretrained encoder's folder or id
BASELINES = ("tfidf-char", "tfidf-word")
FROZEN = "frozen-ncm"  # the pretrained encoder, frozen: nearest class mean by cosine
FROZEN_FIT = "frozen-fit"  # the same embeddings, a cosine head started at the class means and fitted to the support set
FIT_STEPS, FIT_STEP, FIT_SCALE = 50, 1.0, 10.0  # MAML's test-time fit in its pretrained-encoder preset
ENGLISH = "en"

TEXT_STEPS = 600  # meta-steps of 4 episodes each


# --- data ------------------------------------------------------------------------------------
@dataclass
class TransferSetting:
    name: str
    title: str
    train: TextDataset
    target: TextDataset
    target_classes: list[int]
    split: dict = field(default_factory=dict)  # TaskConfig fields for meta-training


def banking_tables(folder: str | Path) -> tuple[TextDataset, TextDataset]:
    from metagui.core.data.text import load_text_table

    folder = Path(folder)
    if not (folder / "train.csv").is_file() or not (folder / "test.csv").is_file():
        raise ConfigError(f"no Banking77 train.csv and test.csv in {folder}")
    return load_text_table(folder / "train.csv"), load_text_table(folder / "test.csv")


def make_setting(name: str, banking: str | Path, languages: Sequence[str] | None = None, seed: int = 0) -> TransferSetting:
    """The data of one setting. ``languages``: the Home Assistant languages to meta-train on
    for ``ha-to-banking`` (default: every one but English)."""
    from metagui.core.data.intents import available_languages, load_intents

    train, test = banking_tables(banking)
    if name == "unseen-intents":
        order = np.random.default_rng(seed).permutation(len(train.classes))
        tr, va, te = order[:40], order[40:50], order[50:]
        names = train.classes
        held = {names[i] for i in te}
        target_ids = [test.classes.index(c) for c in sorted(held)]
        return TransferSetting(
            name, "Banking77: 27 unseen intents (meta-trained on 40, validated on 10; test.csv sentences)",
            train, test, target_ids,
            {"split": "classes", "train_classes": [names[i] for i in tr], "val_classes": [names[i] for i in va]},
        )
    if name == "banking-to-ha":
        return _whole_domain(name, "unseen domain: Banking77 (77 intents) -> Home Assistant intents, English",
                             train, load_intents([ENGLISH]), 65, seed)
    if name == "ha-en-to-banking":
        return _whole_domain(name, "unseen domain: Home Assistant intents, English (42) -> Banking77",
                             load_intents([ENGLISH]), test, 34, seed)
    if name == "ha-to-banking":
        langs = [lang for lang in (languages or available_languages()) if lang != ENGLISH]
        if len(langs) < 2:
            raise ConfigError("ha-to-banking needs at least two non-English Home Assistant languages")
        ha = load_intents(langs, max_per_intent=60, seed=seed)
        order = list(np.random.default_rng(seed).permutation(langs))
        val = order[: max(1, len(langs) // 8)]
        return TransferSetting(
            name, f"unseen domain and language: Home Assistant intents in {len(langs)} languages (not English) -> Banking77",
            ha, test, list(range(len(test.classes))),
            {"split": "domain", "train_domains": [d for d in langs if d not in val], "val_domains": list(val)},
        )
    raise ConfigError(f"unknown setting '{name}' (choose {', '.join(dict.fromkeys(SETTINGS + PRETRAINED_SETTINGS))})")


def _whole_domain(name: str, title: str, train: TextDataset, target: TextDataset, n_train: int,
                  seed: int) -> TransferSetting:
    """Meta-train on ``n_train`` seeded classes of ``train`` (its other classes validate), test
    on every class of ``target``."""
    order = np.random.default_rng(seed).permutation(len(train.classes))
    names = train.classes
    return TransferSetting(
        name, title, train, target, list(range(len(target.classes))),
        {"split": "classes", "train_classes": [names[i] for i in order[:n_train]],
         "val_classes": [names[i] for i in order[n_train:]]},
    )


def fixed_episodes(ds: TextDataset, classes: Sequence[int], way: int, shot: int, episodes: int,
                   seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``episodes`` seeded (support, query) index arrays, class-major, ``QUERY`` per class."""
    from metagui.core.tasks import EpisodeSampler

    sampler = EpisodeSampler(torch.zeros(len(ds.labels)), ds.labels, list(classes), way, shot, QUERY)
    rng = np.random.default_rng([seed, way, shot])
    return [sampler.sample_indices(rng)[:2] for _ in range(episodes)]


# --- no-learning baselines ----------------------------------------------------------------------
_WORD_TOKEN = re.compile(r"(?u)\b\w\w+\b")
_SPACES = re.compile(r"\s\s+")


def char_wb_ngrams(text: str, nmin: int = 2, nmax: int = 4) -> list[str]:
    """scikit-learn's ``analyzer="char_wb"``: n-grams of ' ' + word + ' ', lower-cased."""
    out: list[str] = []
    for word in _SPACES.sub(" ", text.lower()).split():
        w = f" {word} "
        for n in range(nmin, nmax + 1):
            if len(w) < n:
                break
            out.extend(w[i : i + n] for i in range(len(w) - n + 1))
    return out


def word_tokens(text: str) -> list[str]:
    """scikit-learn's default word analyzer: lower-cased ``\\b\\w\\w+\\b`` tokens."""
    return _WORD_TOKEN.findall(text.lower())


ANALYZERS: dict[str, Callable[[str], list[str]]] = {"tfidf-char": char_wb_ngrams, "tfidf-word": word_tokens}


def _count_rows(rows: list[Counter], vocab: dict) -> np.ndarray:
    """Term counts as a matrix over ``vocab`` (terms outside it are dropped)."""
    m = np.zeros((len(rows), len(vocab)))
    for r, c in enumerate(rows):
        for t, k in c.items():
            j = vocab.get(t)
            if j is not None:
                m[r, j] = k
    return m


def _unit_rows(m: np.ndarray) -> np.ndarray:
    return m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)


def _support_idf(support: list[Counter]) -> tuple[dict, np.ndarray]:
    """The support set's vocabulary and smooth idf, ``log((1 + n) / (1 + df)) + 1``."""
    df: Counter = Counter()
    for c in support:
        df.update(c.keys())
    vocab = {t: j for j, t in enumerate(df)}
    n = len(support)
    return vocab, np.log((1 + n) / (1 + np.array([df[t] for t in vocab], dtype=np.float64))) + 1


def _token_counts(texts: Sequence[str], analyzer: Callable[[str], list]) -> Callable[[int], Counter]:
    """Item index -> its token counts, computed once per item."""
    counts: dict[int, Counter] = {}

    def tokens(i: int) -> Counter:
        if i not in counts:
            counts[i] = Counter(analyzer(texts[i]))
        return counts[i]

    return tokens


def tfidf_centroid_accuracy(texts: Sequence[str], episodes: Sequence[tuple[np.ndarray, np.ndarray]], way: int,
                            analyzer: Callable[[str], list[str]]) -> np.ndarray:
    """Per-episode query accuracy of TF-IDF nearest centroid, fitted on each support set."""
    tokens = _token_counts(texts, analyzer)
    out = np.empty(len(episodes))
    for e, (sup, qry) in enumerate(episodes):
        support = [tokens(int(i)) for i in sup]
        vocab, idf = _support_idf(support)
        xs = _unit_rows(_count_rows(support, vocab) * idf)
        xq = _unit_rows(_count_rows([tokens(int(i)) for i in qry], vocab) * idf)
        centroids = _unit_rows(xs.reshape(way, len(sup) // way, -1).mean(1))
        pred = (xq @ centroids.T).argmax(1)
        out[e] = (pred == np.repeat(np.arange(way), len(qry) // way)).mean()
    return out


def centroid_accuracy(x: np.ndarray, episodes: Sequence[tuple[np.ndarray, np.ndarray]], way: int) -> np.ndarray:
    """Per-episode query accuracy of nearest class mean by cosine on fixed vectors ``x``
    (a frozen encoder's embeddings): no learning at all."""
    unit = _unit_rows(np.asarray(x, dtype=np.float64))
    out = np.empty(len(episodes))
    for e, (sup, qry) in enumerate(episodes):
        centroids = _unit_rows(unit[sup].reshape(way, len(sup) // way, -1).mean(1))
        pred = (unit[qry] @ centroids.T).argmax(1)
        out[e] = (pred == np.repeat(np.arange(way), len(qry) // way)).mean()
    return out


def support_fit_accuracy(x: np.ndarray, episodes: Sequence[tuple[np.ndarray, np.ndarray]], way: int,
                         steps: int = FIT_STEPS, step: float = FIT_STEP, scale: float = FIT_SCALE,
                         chunk: int = 100) -> np.ndarray:
    """Per-episode query accuracy of a cosine softmax head fitted to each support set on fixed
    vectors ``x``: the head's rows start at the unit class means (so zero steps is
    ``centroid_accuracy``) and take ``steps`` plain gradient steps of ``step`` on the support
    cross-entropy of ``scale`` x cosine + a bias. No learning across tasks."""
    unit = torch.nn.functional.normalize(torch.as_tensor(np.asarray(x), dtype=torch.float32), dim=-1)
    out = []
    for i in range(0, len(episodes), chunk):
        part = episodes[i : i + chunk]
        sup = unit[torch.from_numpy(np.stack([s for s, _ in part]))]
        qry = unit[torch.from_numpy(np.stack([q for _, q in part]))]
        b, n, d = sup.shape
        sy = torch.arange(way).repeat_interleave(n // way).repeat(b)
        qy = torch.arange(way).repeat_interleave(qry.shape[1] // way)
        w = torch.nn.functional.normalize(sup.reshape(b, way, -1, d).mean(2), dim=-1).requires_grad_(True)
        bias = torch.zeros(b, 1, way, requires_grad=True)
        for _ in range(steps):
            logits = scale * sup @ w.transpose(1, 2) + bias
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, way), sy, reduction="sum") / n
            gw, gb = torch.autograd.grad(loss, (w, bias))
            with torch.no_grad():
                w -= step * gw
                bias -= step * gb
        with torch.no_grad():
            pred = (qry @ w.transpose(1, 2) + bias / scale).argmax(-1)
        out.append((pred == qy).float().mean(1).numpy())
    return np.concatenate(out).astype(np.float64)


def paired(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Mean and 95% CI half-width of the per-episode difference ``a - b`` (same episodes).
    Accuracies are rounded to 1e-6 first: one computed in float32 (0.800000012) and the same
    one in float64 (0.8) are the same accuracy, not a difference whose CI excludes zero."""
    return mean_ci95(np.round(np.asarray(a, dtype=np.float64), 6) - np.round(np.asarray(b, dtype=np.float64), 6))


def is_pretrained(encoder: str) -> bool:
    return encoder not in ENCODERS


# --- how far can re-weighting the encoder's features go without learning? -----------------------
TYPE_NAMES = ("word", "c3", "c4", "c5")
MIX_STEPS = (-1.0, -0.5, 0.0, 0.5, 1.0)


@dataclass(frozen=True)
class Reweighting:
    """A no-learning nearest-centroid classifier on the built-in encoder's tokens.

    ``idf``: weight each token by the support set's smooth idf (as the TF-IDF baselines do).
    ``mix``: None = one vector over all tokens (the built-in encoder with all weights at zero,
    plus idf if set); otherwise every token type's part of the vector is scaled to unit length
    and then by ``exp(mix[type])``, so the types' shares are set by hand."""

    idf: bool
    mix: tuple[float, ...] | None = None

    def label(self, names: Sequence[str] = TYPE_NAMES) -> str:
        kind = "tf-idf" if self.idf else "tf"
        if self.mix is None:
            return f"{kind}, one vector"
        return f"{kind}, per type " + " ".join(f"{n}{m:+.1f}" for n, m in zip(names, self.mix, strict=True))


def reweightings(types: int = len(TYPE_NAMES), steps: Sequence[float] = MIX_STEPS) -> list[Reweighting]:
    """The family searched by ``lexical_ceiling``: tf or tf-idf, one vector or per-type parts
    with every mix of ``steps`` (``types`` >= 2; the second type's share fixed at 0: only
    ratios matter)."""
    out = [Reweighting(idf) for idf in (False, True)]
    for idf in (False, True):
        out += [Reweighting(idf, (m[0], 0.0, *m[1:])) for m in itertools.product(steps, repeat=types - 1)]
    return out


def reweighting_accuracy(texts: Sequence[str], episodes: Sequence[tuple[np.ndarray, np.ndarray]], way: int,
                         analyzer: Callable[[str], list], type_of: Callable[[object], int], types: int,
                         variants: Sequence[Reweighting]) -> np.ndarray:
    """Per-episode query accuracy [episodes, variants] of each ``Reweighting``. A query's
    tokens that no support item has still count in its per-type lengths, as in the encoder
    (with the idf of a token in no support item)."""
    tokens = _token_counts(texts, analyzer)
    out = np.empty((len(episodes), len(variants)))
    for e, (sup, qry) in enumerate(episodes):
        support = [tokens(int(i)) for i in sup]
        queries = [tokens(int(i)) for i in qry]
        vocab, idf = _support_idf(support)
        kind = np.array([type_of(t) for t in vocab], dtype=np.int64)
        s, q = _count_rows(support, vocab), _count_rows(queries, vocab)
        unseen = np.zeros((len(queries), types))  # squared counts of tokens outside the support set
        for r, c in enumerate(queries):
            for t, k in c.items():
                if t not in vocab:
                    unseen[r, type_of(t)] += k * k
        truth = np.repeat(np.arange(way), len(qry) // way)
        onehot = np.eye(types)[kind]  # [V, types]
        for use_idf in (False, True):
            w = idf if use_idf else np.ones_like(idf)
            unseen_w = (np.log(1 + len(sup)) + 1) ** 2 if use_idf else 1.0
            sw, qw = s * w, q * w
            idx = [j for j, v in enumerate(variants) if v.idf == use_idf and v.mix is None]
            if idx:
                centroids = _unit_rows(_unit_rows(sw).reshape(way, -1, len(vocab)).mean(1))
                out[e, idx] = ((qw @ centroids.T).argmax(1) == truth).mean()
            idx = [j for j, v in enumerate(variants) if v.idf == use_idf and v.mix is not None]
            if not idx:
                continue
            s_norm = np.sqrt((sw**2) @ onehot)  # [S, types]
            q_norm = np.sqrt((qw**2) @ onehot + unseen * unseen_w)
            s_unit = sw / np.maximum(s_norm, 1e-12)[:, kind]
            q_unit = qw / np.maximum(q_norm, 1e-12)[:, kind]
            means = s_unit.reshape(way, -1, len(vocab)).mean(1)  # per class, per-type parts at unit length
            pair = np.einsum("qv,nv,vt->qnt", q_unit, means, onehot)  # each type's share of query . class
            size = (means**2) @ onehot  # [N, types]
            scale = np.exp(2 * np.array([variants[j].mix for j in idx]))  # [M, types]
            scores = np.einsum("qnt,mt->mqn", pair, scale) / np.sqrt(scale @ size.T)[:, None, :]
            out[e, idx] = (scores.argmax(2) == truth).mean(1)
    return out


def source_episodes(setting: TransferSetting, way: int, shot: int, episodes: int,
                    seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Fixed episodes of a setting's meta-training data (its training and validation
    classes; for a domain split, one domain per episode, skipping domains too small for the
    shape): what a choice may look at without touching the test data."""
    from metagui.core.errors import DataError

    ds, split = setting.train, setting.split
    if split.get("split") == "domain":
        domains = sorted({*split["train_domains"], *split["val_domains"]})
        groups = [[i for i, d in enumerate(ds.class_domains) if d == dom] for dom in domains]
    else:
        groups = [[ds.classes.index(c) for c in (*split["train_classes"], *split["val_classes"])]]
    out: list[tuple[np.ndarray, np.ndarray]] = []
    per_group = max(1, episodes // len(groups))
    for g, classes in enumerate(groups):
        try:
            out += fixed_episodes(ds, classes, way, shot, per_group, seed + 1000 * g)
        except DataError:
            continue
    if not out:
        raise ConfigError(f"no {way}-way {shot}-shot episodes fit the meta-training data of {setting.name}")
    return out


def lexical_ceiling(banking: str | Path, settings: Sequence[str] = SETTINGS, episodes: int = 1000,
                    languages: Sequence[str] | None = None, shapes: Sequence[tuple[int, int]] = SHAPES,
                    seed: int = 0, source: int = 300, echo=print) -> dict:
    """How far re-weighting the built-in encoder's tokens can go without learning, per column:
    the ``reweightings`` variant best on ``source`` episodes of the meta-training data (a
    fair choice: what meta-training could find at best) and the one best on the test
    episodes themselves (optimistic: it peeks), against the margin the bar asks for."""
    from metagui.core.models import Preprocessing, TextFeaturizer, text_types

    pre = Preprocessing(modality="text")
    featurizer = TextFeaturizer(pre)  # the built-in encoder's token ids (featurizer version 2)
    types = text_types(pre)
    block = pre.text_buckets // types

    def analyzer(text: str) -> list[int]:
        return featurizer.ids(text)

    def type_of(token: object) -> int:
        return min((int(token) - 1) // block, types - 1)

    variants = reweightings(types)
    echo(f"re-weighting ceiling: {len(variants)} no-learning variants of the built-in encoder's tokens (tf or "
         f"support-set tf-idf; one vector, or unit-length parts per token type with hand-set shares), scored on the "
         f"bench's {episodes} test episodes per column; one is chosen on {source} episodes of the meta-training "
         f"data, one on the test episodes themselves")
    report: dict = {"episodes": episodes, "source_episodes": source, "variants": len(variants), "settings": {}}
    for name in settings:
        setting = make_setting(name, banking, languages, seed)
        echo(f"\n{setting.title}")
        echo(f"{'column':<15}{'best baseline':>21}{'no learning':>18}{'chosen on training data':>26}"
             f"{'chosen on test':>23}{'bar':>9}")
        rows = {}
        for w, k in shapes:
            eps = fixed_episodes(setting.target, setting.target_classes, w, k, episodes, seed + 1)
            base = max(((b, mean_ci95(tfidf_centroid_accuracy(setting.target.texts, eps, w, ANALYZERS[b])))
                        for b in BASELINES), key=lambda r: r[1][0])
            acc = reweighting_accuracy(setting.target.texts, eps, w, analyzer, type_of, types, variants)
            src = reweighting_accuracy(setting.train.texts, source_episodes(setting, w, k, source, seed + 2), w,
                                       analyzer, type_of, types, variants)
            fair, peek = int(src.mean(0).argmax()), int(acc.mean(0).argmax())
            cells = {"no learning": mean_ci95(acc[:, 0]), "training data": mean_ci95(acc[:, fair]),
                     "test": mean_ci95(acc[:, peek])}
            key = f"{w}-way {k}-shot"
            rows[key] = {"baseline": base[0], "baseline_score": base[1],
                         **{c: {"score": v, "margin": v[0] - base[1][0], "bar": base[1][1] + v[1],
                                "clears_bar": v[0] - v[1] > base[1][0] + base[1][1]} for c, v in cells.items()},
                         "variant_training_data": variants[fair].label(), "variant_test": variants[peek].label()}
            r = rows[key]
            echo(f"{key:<15}{_fmt(base[1]) + ' ' + base[0][6:]:>21}{_margin(r['no learning']):>18}"
                 f"{_margin(r['training data']):>26}{_margin(r['test']):>23}{'>' + format(r['test']['bar'], '+.3f'):>9}")
        for key, r in rows.items():
            echo(f"  {key}: chosen on training data: {r['variant_training_data']}; on test: {r['variant_test']}")
        report["settings"][name] = {"title": setting.title, "columns": rows}
    echo("\n(margin over the best baseline in brackets; * = 95% CI wholly above the baseline's; bar = the margin "
         "at which the test choice's CI stops overlapping the baseline's)")
    return report


# --- meta-learners -------------------------------------------------------------------------------
def text_config(algorithm: str, setting: TransferSetting, steps: int = TEXT_STEPS, shot: int = 5, seed: int = 0,
                encoder: str = "built-in"):
    """The run config that meta-trains ``algorithm`` for ``setting`` (the GUI and
    ``metagui train`` accept the same): the learner's text preset, or for the first
    release's encoder the learner's defaults (what that release trained with)."""
    from metagui.core import algorithms
    from metagui.core.config import RunConfig
    from metagui.core.presets import default_hyperparams

    cfg = RunConfig(name=f"bench text {setting.name} {algorithm}")
    cfg.dataset.source = "text_table"
    cfg.algorithm.name = algorithm
    cfg.algorithm.hyperparams = (algorithms.get(algorithm).defaults() if encoder == "first-release"
                                 else default_hyperparams(algorithm, "text", is_pretrained(encoder)))
    if is_pretrained(encoder):
        cfg.algorithm.text_encoder = encoder
    cfg.task.way, cfg.task.shot, cfg.task.query = 5, shot, QUERY
    for k, v in setting.split.items():
        setattr(cfg.task, k, v)
    cfg.training.steps = steps
    cfg.training.val_every = max(1, steps // 4)
    cfg.training.val_episodes = 100
    cfg.training.seed = seed
    return cfg


def meta_train(cfg, dataset: TextDataset, encoder: str = "built-in"):
    """Meta-train in-process and keep the checkpoint that did best on the validation
    classes; returns (learner, preprocessing, seconds). For comparison, ``encoder`` may be
    "first-release" (MetaGUI's first text encoder: learned n-gram embeddings and an MLP) or
    "unregularised" (the built-in encoder without its weight penalties and token dropout)."""
    from metagui.core.experiment import Experiment
    from metagui.core.models import Preprocessing, encode_dataset
    from metagui.core.tasks import EpisodeSampler
    from metagui.core.trainer import train_to_completion

    exp = Experiment.prepare(cfg, dataset=dataset)
    if encoder == "first-release":  # the same split and episodes, the first release's featurizer
        exp.pre = Preprocessing.from_dict({"modality": "text"})
        exp.inputs = encode_dataset(dataset, exp.pre)
        t = cfg.task
        exp.samplers = {k: EpisodeSampler(exp.inputs, dataset.labels, [c for c, _ in s.class_items], t.way, t.shot, t.query)
                        for k, s in exp.samplers.items()}
    elif encoder == "unregularised":
        build = exp.build_learner

        def build_unregularised():
            learner = build()
            learner.backbone.token_decay = learner.backbone.type_decay = learner.backbone.token_dropout = 0.0
            return learner

        exp.build_learner = build_unregularised  # type: ignore[method-assign]
    elif encoder != "built-in" and not is_pretrained(encoder):
        raise ConfigError(f"unknown encoder '{encoder}' ({', '.join(ENCODERS)}, or a pretrained encoder)")
    learner, seconds = train_to_completion(cfg, exp, keep="best")
    return learner.eval(), exp.pre, seconds


def learner_accuracy(learner, inputs: torch.Tensor, episodes: Sequence[tuple[np.ndarray, np.ndarray]], way: int,
                     batch: int = 20) -> np.ndarray:
    """Per-episode query accuracy of ``learner`` (its own adaptation) on fixed episodes."""
    from metagui.core.tasks import EpisodeBatch

    out = []
    for i in range(0, len(episodes), batch):
        part = episodes[i : i + batch]
        sup = torch.from_numpy(np.stack([s for s, _ in part]))
        qry = torch.from_numpy(np.stack([q for _, q in part]))
        shot, query = sup.shape[1] // way, qry.shape[1] // way
        sy = torch.arange(way).repeat_interleave(shot).expand(len(part), -1).contiguous()
        qy = torch.arange(way).repeat_interleave(query).expand(len(part), -1).contiguous()
        per_task, _ = learner.evaluate(EpisodeBatch(inputs[sup], sy, inputs[qry], qy, way))
        out.append(per_task.cpu().numpy())
    return np.concatenate(out)


# --- the benchmark -------------------------------------------------------------------------------
def bench_text(banking: str | Path, settings: Sequence[str] = SETTINGS, learners: Sequence[str] = LEARNERS,
               steps: int = TEXT_STEPS, episodes: int = 1000, languages: Sequence[str] | None = None,
               shapes: Sequence[tuple[int, int]] = SHAPES, seed: int = 0, encoder: str = "built-in",
               echo=print) -> dict:
    """Run the benchmark; prints one table per setting and returns every figure."""
    from metagui.core.models import TextFeaturizer

    echo(f"text transfer: mean query accuracy ± 95% CI over {episodes} fixed test episodes per column "
         f"({QUERY} queries per class); meta-learners: {encoder} text encoder, {steps} meta-steps x 4 episodes "
         f"(5-way 5-shot) on {torch.get_num_threads()} CPU threads, torch {torch.__version__}")
    report: dict = {"episodes": episodes, "steps": steps, "query": QUERY, "encoder": encoder, "settings": {}}
    baselines = BASELINES
    if is_pretrained(encoder):
        from metagui.core.pretrained import sentence_encoder

        frozen = sentence_encoder(encoder)
        baselines = (*BASELINES, FROZEN, FROZEN_FIT)
    for name in settings:
        t0 = time.perf_counter()
        setting = make_setting(name, banking, languages, seed)
        eps = {(w, k): fixed_episodes(setting.target, setting.target_classes, w, k, episodes, seed + 1) for w, k in shapes}
        rows: dict[str, dict] = {}
        per_episode: dict[tuple[str, str], np.ndarray] = {}  # (method, column) -> accuracy per episode
        if FROZEN in baselines:
            x = frozen.encode(list(setting.target.texts))
        for b in baselines:
            rows[b] = {"kind": "baseline", "scores": {}}
            for (w, k), e in eps.items():
                key = f"{w}-way {k}-shot"
                acc = (centroid_accuracy(x, e, w) if b == FROZEN else support_fit_accuracy(x, e, w) if b == FROZEN_FIT
                       else tfidf_centroid_accuracy(setting.target.texts, e, w, ANALYZERS[b]))
                per_episode[b, key] = acc
                rows[b]["scores"][key] = mean_ci95(acc)
        echo(f"\n{setting.title}  [data ready in {time.perf_counter() - t0:.0f} s; "
             f"{len(setting.target_classes)} target classes]")
        header = f"{'method':<12}" + "".join(f"{f'{w}-way {k}-shot':>18}" for w, k in shapes) + "   train"
        echo(header)
        for b in baselines:
            echo(f"{b:<12}" + "".join(f"{_fmt(rows[b]['scores'][f'{w}-way {k}-shot']):>18}" for w, k in shapes) + "   none")
        for algo in learners:
            cfg = text_config(algo, setting, steps, seed=seed, encoder=encoder)
            learner, pre, seconds = meta_train(cfg, setting.train, encoder)
            inputs = TextFeaturizer(pre)(setting.target.texts)
            rows[algo] = {"kind": "meta-learner", "train_seconds": seconds, "scores": {}, "beats_best_baseline": {},
                          "below_best_baseline": {}, "difference": {}}
            cells = []
            for (w, k), e in eps.items():
                key = f"{w}-way {k}-shot"
                if not getattr(learner, "shared_head", True) and w != learner.n_way:
                    cells.append(f"{'n/a (' + str(learner.n_way) + '-way head)':>18} ")
                    continue
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(seed)
                    acc = learner_accuracy(learner, inputs, e, w)
                per_episode[algo, key] = acc
                rows[algo]["scores"][key] = score = mean_ci95(acc)
                rows[algo]["difference"][key] = {b: paired(acc, per_episode[b, key]) for b in baselines}
                best = max(baselines, key=lambda b: rows[b]["scores"][key][0])
                diff, half = rows[algo]["difference"][key][best]
                rows[algo]["beats_best_baseline"][key] = beats = diff - half > 0
                rows[algo]["below_best_baseline"][key] = below = diff + half < 0
                cells.append(f"{_fmt(score):>18}{'*' if beats else ('-' if below else ' ')}")
            echo(f"{algo:<12}" + "".join(c[1:] for c in cells) + f"  {seconds:.0f} s")
        if FROZEN in baselines:
            echo(f"  minus {FROZEN}, same episodes (mean ± 95% CI of the difference):")
            rows[FROZEN_FIT]["difference"] = {key: {FROZEN: paired(per_episode[FROZEN_FIT, key], per_episode[FROZEN, key])}
                                              for key in rows[FROZEN_FIT]["scores"]}
            for method in (FROZEN_FIT, *learners):
                cells = []
                for w, k in shapes:
                    d = rows[method]["difference"].get(f"{w}-way {k}-shot", {}).get(FROZEN)
                    cells.append(f"{d[0]:+.3f} ± {d[1]:.3f}" if d else "n/a")
                echo(f"  {method:<10}" + "".join(f"{c:>18}" for c in cells))
        report["settings"][name] = {"title": setting.title, "rows": rows}
    echo("\n* = the 95% CI of (learner - best no-learning row), per episode on the same episodes, wholly above 0 "
         "in that column; - = wholly below 0")
    return report


def _margin(cell: dict) -> str:
    """A ``lexical_ceiling`` cell: accuracy, (margin over the best baseline), * if it clears the bar."""
    return f"{cell['score'][0]:.3f} ({cell['margin']:+.3f}){'*' if cell['clears_bar'] else ' '}"


def _fmt(score: tuple[float, float]) -> str:
    return f"{score[0]:.3f} ± {score[1]:.3f}"
