"""``metagui bench text``: does meta-learned text transfer beat no learning?

Two transfer settings, three settings in all (each meta-trains its own models):

- ``unseen-intents``: Banking77, meta-train on 40 intents (10 more for validation), test
  on the other 27 intents' test.csv sentences;
- ``banking-to-ha``: meta-train on all of Banking77 train.csv, test on the Home Assistant
  intents in English;
- ``ha-to-banking``: meta-train on the Home Assistant intents of every language but
  English (validation on a few of them), test on Banking77 test.csv.

Every method answers the same fixed, seeded test episodes (5-way 1-shot, 5-way 5-shot,
15-way 5-shot; 10 queries per class). The no-learning baselines are computed in the same
run: TF-IDF nearest centroid, character n-grams 2-4 within word boundaries (scikit-learn's
``char_wb``) or words (``\\b\\w\\w+\\b``), fitted on each episode's support set (smooth idf,
L2-normalised rows), queries to the class whose mean support vector is nearest by cosine.
A learner "beats" the best baseline when its 95% CI lies wholly above that baseline's.
"""

from __future__ import annotations

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
SETTINGS = ("unseen-intents", "banking-to-ha", "ha-to-banking")
ENCODERS = ("built-in", "first-release", "unregularised")
BASELINES = ("tfidf-char", "tfidf-word")
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
        ha = load_intents([ENGLISH])
        order = np.random.default_rng(seed).permutation(len(train.classes))
        names = train.classes
        return TransferSetting(
            name, "unseen domain: Banking77 (77 intents) -> Home Assistant intents, English",
            train, ha, list(range(len(ha.classes))),
            {"split": "classes", "train_classes": [names[i] for i in order[:65]],
             "val_classes": [names[i] for i in order[65:]]},
        )
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
    raise ConfigError(f"unknown setting '{name}' (choose {', '.join(SETTINGS)})")


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


def _tfidf_rows(rows: list[Counter], vocab: dict[str, int], idf: np.ndarray) -> np.ndarray:
    """Term counts -> TF-IDF rows of unit length (terms outside ``vocab`` are dropped)."""
    m = np.zeros((len(rows), len(vocab)))
    for r, c in enumerate(rows):
        for t, k in c.items():
            j = vocab.get(t)
            if j is not None:
                m[r, j] = k
    m *= idf
    return m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)


def tfidf_centroid_accuracy(texts: Sequence[str], episodes: Sequence[tuple[np.ndarray, np.ndarray]], way: int,
                            analyzer: Callable[[str], list[str]]) -> np.ndarray:
    """Per-episode query accuracy of TF-IDF nearest centroid, fitted on each support set."""
    counts: dict[int, Counter] = {}

    def tokens(i: int) -> Counter:
        if i not in counts:
            counts[i] = Counter(analyzer(texts[i]))
        return counts[i]

    out = np.empty(len(episodes))
    for e, (sup, qry) in enumerate(episodes):
        support = [tokens(int(i)) for i in sup]
        df: Counter = Counter()
        for c in support:
            df.update(c.keys())
        vocab = {t: j for j, t in enumerate(df)}
        n = len(support)
        idf = np.log((1 + n) / (1 + np.array([df[t] for t in vocab], dtype=np.float64))) + 1  # smooth idf
        xs = _tfidf_rows(support, vocab, idf)
        xq = _tfidf_rows([tokens(int(i)) for i in qry], vocab, idf)
        centroids = xs.reshape(way, n // way, -1).mean(1)
        centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
        pred = (xq @ centroids.T).argmax(1)
        out[e] = (pred == np.repeat(np.arange(way), len(qry) // way)).mean()
    return out


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
                                 else default_hyperparams(algorithm, "text"))
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
    elif encoder != "built-in":
        raise ConfigError(f"unknown encoder '{encoder}' ({', '.join(ENCODERS)})")
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
    for name in settings:
        t0 = time.perf_counter()
        setting = make_setting(name, banking, languages, seed)
        eps = {(w, k): fixed_episodes(setting.target, setting.target_classes, w, k, episodes, seed + 1) for w, k in shapes}
        rows: dict[str, dict] = {}
        for b in BASELINES:
            rows[b] = {"kind": "baseline", "scores": {}}
            for (w, k), e in eps.items():
                rows[b]["scores"][f"{w}-way {k}-shot"] = mean_ci95(tfidf_centroid_accuracy(setting.target.texts, e, w, ANALYZERS[b]))
        echo(f"\n{setting.title}  [data ready in {time.perf_counter() - t0:.0f} s; "
             f"{len(setting.target_classes)} target classes]")
        header = f"{'method':<12}" + "".join(f"{f'{w}-way {k}-shot':>18}" for w, k in shapes) + "   train"
        echo(header)
        for b in BASELINES:
            echo(f"{b:<12}" + "".join(f"{_fmt(rows[b]['scores'][f'{w}-way {k}-shot']):>18}" for w, k in shapes) + "   none")
        for algo in learners:
            cfg = text_config(algo, setting, steps, seed=seed, encoder=encoder)
            learner, pre, seconds = meta_train(cfg, setting.train, encoder)
            inputs = TextFeaturizer(pre)(setting.target.texts)
            rows[algo] = {"kind": "meta-learner", "train_seconds": seconds, "scores": {}, "beats_best_baseline": {}}
            cells = []
            for (w, k), e in eps.items():
                key = f"{w}-way {k}-shot"
                if not getattr(learner, "shared_head", True) and w != learner.n_way:
                    cells.append(f"{'n/a (' + str(learner.n_way) + '-way head)':>18} ")
                    continue
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(seed)
                    score = mean_ci95(learner_accuracy(learner, inputs, e, w))
                rows[algo]["scores"][key] = score
                best = max((rows[b]["scores"][key] for b in BASELINES), key=lambda s: s[0])
                beats = score[0] - score[1] > best[0] + best[1]
                rows[algo]["beats_best_baseline"][key] = beats
                cells.append(f"{_fmt(score):>18}{'*' if beats else ' '}")
            echo(f"{algo:<12}" + "".join(c[1:] for c in cells) + f"  {seconds:.0f} s")
        report["settings"][name] = {"title": setting.title, "rows": rows}
    echo("\n* = 95% CI wholly above the best no-learning baseline's 95% CI in that column")
    return report


def _fmt(score: tuple[float, float]) -> str:
    return f"{score[0]:.3f} ± {score[1]:.3f}"
