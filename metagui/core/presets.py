"""Starting configs per built-in dataset, and algorithm presets applied to a config."""

from __future__ import annotations

from metagui.core import algorithms
from metagui.core.algorithms.base import PRETRAINED_PRESET, TEXT_PRESET
from metagui.core.config import SOURCE_MODALITY, RunConfig
from metagui.core.errors import ConfigError

# task and training settings that suit each built-in on a laptop CPU
SOURCE_DEFAULTS: dict[str, dict] = {
    "intents": {"task": {"way": 5, "shot": 5, "query": 5}, "training": {"steps": 300, "val_every": 50}},
    "glyphs": {"task": {"way": 5, "shot": 1, "query": 5}, "training": {"steps": 300, "val_every": 50},
               "dataset": {"image_size": 28}},
    "sinusoid": {"task": {"way": 0, "shot": 10, "query": 10}, "training": {"steps": 2000, "val_every": 200}},
    "ambiguous": {"task": {"way": 0, "shot": 5, "query": 10}, "training": {"steps": 2000, "val_every": 200}},
    "bandit": {"dataset": {"arms": 5, "pulls": 10}, "training": {"steps": 1000, "val_every": 100, "val_episodes": 500}},
    "mdp": {"dataset": {"states": 10, "actions": 5, "horizon": 10, "trial_episodes": 10},
            "training": {"steps": 1000, "val_every": 100, "val_episodes": 200}},
}


def default_hyperparams(algorithm: str, modality: str, pretrained: bool = False) -> dict:
    """Where a new config of ``algorithm`` starts: its defaults, with its text preset for
    text tasks (the settings ``metagui bench text`` measured with the built-in encoder, or
    with a pretrained one when ``pretrained``)."""
    cls = algorithms.get(algorithm)
    if modality == "text":
        for name in (PRETRAINED_PRESET, TEXT_PRESET) if pretrained else (TEXT_PRESET,):
            if name in cls.presets:
                return cls.validate_hyperparams(dict(cls.presets[name]["hyperparams"]))
    return cls.defaults()


def default_config(algorithm: str = "protonet", source: str = "intents", preset: str | None = None) -> RunConfig:
    """A ready-to-run config for a built-in dataset source."""
    if source not in SOURCE_DEFAULTS:
        raise ConfigError(f"no default config for dataset '{source}' (choose {', '.join(SOURCE_DEFAULTS)})")
    cls = algorithms.get(algorithm)
    modality = SOURCE_MODALITY[source]
    if modality not in cls.modalities:
        raise ConfigError(f"{cls.label} cannot learn {modality} tasks")
    cfg = RunConfig(name="")
    cfg.dataset.source = source
    for section, values in SOURCE_DEFAULTS[source].items():
        for k, v in values.items():
            setattr(getattr(cfg, section), k, v)
    cfg.algorithm.name = algorithm
    cfg.algorithm.hyperparams = default_hyperparams(algorithm, modality)
    if modality == "text":
        from metagui.core.encoder_source import default_text_encoder

        choice = default_text_encoder([], cfg.dataset.languages)
        cfg.algorithm.text_encoder, cfg.algorithm.text_encoder_why = choice.spec, choice.why
        cfg.algorithm.hyperparams = default_hyperparams(algorithm, modality, bool(choice.spec))
    if preset:
        apply_preset(cfg, preset)
    return cfg


def apply_preset(cfg: RunConfig, preset: str) -> RunConfig:
    """Set the preset's hyperparameters (and task settings, if it has any) on ``cfg``."""
    cls = algorithms.get(cfg.algorithm.name)
    if preset not in cls.presets:
        raise ConfigError(f"{cls.label} has no preset '{preset}' (it has: {', '.join(cls.presets) or 'none'})")
    p = cls.presets[preset]
    cfg.algorithm.hyperparams = cls.validate_hyperparams({**cfg.algorithm.hyperparams, **p.get("hyperparams", {})})
    for k, v in p.get("task", {}).items():
        setattr(cfg.task, k, v)
    return cfg


def matching_preset(cfg: RunConfig) -> str:
    """The first preset of ``cfg``'s algorithm whose settings ``cfg`` has ("" if none): what
    the Algorithm page shows as the current preset. Text configs try the text presets first
    (the pretrained encoder's, then the built-in's), since another preset's few settings may
    equal theirs (Matching Networks' Omniglot preset is its pretrained-encoder one's meta step
    plus two defaults)."""
    cls = algorithms.get(cfg.algorithm.name)
    hp = cfg.algorithm.hyperparams
    first: tuple[str, ...] = ()
    if cfg.dataset.modality() == "text":
        first = (PRETRAINED_PRESET, TEXT_PRESET) if cfg.algorithm.text_encoder else (TEXT_PRESET,)
    for name in sorted(cls.presets, key=lambda n: first.index(n) if n in first else len(first)):
        p = cls.presets[name]
        if all(hp.get(k) == v for k, v in p.get("hyperparams", {}).items()) and all(
                getattr(cfg.task, k, None) == v for k, v in p.get("task", {}).items()):
            return name
    return ""


# What `metagui bench text --encoder ../shared/models/all-MiniLM-L6-v2 --episodes 300` found
# (README, "On a pretrained encoder"), per episode against the frozen encoder's nearest class mean
# on intents of a new business (Banking77 -> Home Assistant and back): none gains at 1 shot;
# ProtoNet, MAML, FOMAML and Meta-SGD stay level with it or gain up to 1.4 points at 5 shots
# (about what fitting a head to the support set gains without meta-learning); Relation and VERSA
# gain from Banking77 to Home Assistant but fall below it the other way; Matching falls below it at
# 5 shots, as its classifier does on the untrained encoder; Reptile is level or above through its
# test-time fit alone (validation kept its untouched start). The
# app warns before each is picked for such a run, and `metagui train` prints it.
_LEVEL = (
    "{label} on a pretrained encoder stayed level with the frozen encoder itself (nearest class mean) on "
    "intents of a new business: nothing gained at 1 shot, and at 5 shots no more than a head fitted to the "
    "support set gains without meta-learning (metagui bench text --encoder: Banking77 <-> Home Assistant). "
    "For a new domain, expect about the frozen encoder's accuracy"
)
_ONE_WAY = (
    "{label} on a pretrained encoder added to the frozen encoder itself (nearest class mean) when "
    "meta-trained on Banking77's 77 intents, on new Banking77 intents and on Home Assistant's, but fell "
    "below it by up to 0.7 points when meta-trained on Home Assistant's 42 short commands and used on "
    "Banking77 (metagui bench text --encoder): meta-train it on many varied intents, or for a new domain "
    "prefer Prototypical Networks, MAML, FOMAML or Meta-SGD, which stay level with it or a little above"
)
_MATCHING = (
    "{label} on a pretrained encoder scored below the frozen encoder itself (nearest class mean) at 5 shots "
    "on Home Assistant intents, by 1.2 to 2.2 points: its attention over single support sentences does so "
    "already before any meta-training, at every temperature from 1 to 20 (metagui bench text --encoder). "
    "For a new domain prefer Prototypical Networks, MAML, FOMAML or Meta-SGD"
)
_REPTILE = (
    "{label} on a pretrained encoder scored up to 1.4 points above the frozen encoder itself (nearest class "
    "mean) on intents of a new business (metagui bench text --encoder: Banking77 <-> Home Assistant), but "
    "not through meta-learning: its meta-training lowered validation accuracy, so the kept model is the "
    "untouched encoder, and the gain is its test-time fit of a head to the support set"
)
PRETRAINED_CAVEATS: dict[str, str] = {
    "protonet": _LEVEL,
    "maml": _LEVEL,
    "fomaml": _LEVEL,
    "metasgd": _LEVEL,
    "relation": _ONE_WAY,
    "versa": _ONE_WAY,
    "matching": _MATCHING,
    "reptile": _REPTILE,
}


def pretrained_caveat(algorithm: str) -> str:
    """A warning for ``algorithm`` meta-trained on a pretrained text encoder ("" if none)."""
    note = PRETRAINED_CAVEATS.get(algorithm, "")
    return note.format(label=algorithms.get(algorithm).label, name=algorithm) if note else ""
