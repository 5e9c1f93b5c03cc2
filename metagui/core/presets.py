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
# (README, "On a pretrained encoder"), per episode against the frozen encoder's nearest class mean:
# on new intents of the business meta-trained on, the metric learners and VERSA add to it; on a
# new business's intents (Banking77 -> Home Assistant and back) nothing meta-learned beats it.
# There the metric learners and VERSA answer with it (their domain guard; without it Relation,
# VERSA and Matching fell below it), MAML, FOMAML and Meta-SGD stay level or gain what their
# test-time fit gains without meta-learning, and Reptile's gain is that fit alone (validation kept
# its untouched start). The app warns before each is picked for such a run, and `metagui train`
# prints it.
_GUARDED = (
    "{label} on a pretrained encoder adds to the frozen encoder itself (nearest class mean) on new intents of "
    "the business it was meta-trained on (1.7 to 2.3 points at 5-way 1-shot on Banking77), but not on a new "
    "business's intents: there its domain guard answers with the frozen encoder's class means, and you get the frozen "
    "encoder's accuracy (metagui bench text --encoder: Banking77 <-> Home Assistant). With domain_guard off, "
    "Relation Networks, VERSA and Matching Networks fell below it there"
)
_LEVEL = (
    "{label} on a pretrained encoder stayed level with the frozen encoder itself (nearest class mean) on "
    "intents of a new business: nothing gained at 1 shot, and at 5 shots no more than a head fitted to the "
    "support set gains without meta-learning (metagui bench text --encoder: Banking77 <-> Home Assistant). "
    "For a new domain, expect about the frozen encoder's accuracy"
)
_REPTILE = (
    "{label} on a pretrained encoder scored up to 1.4 points above the frozen encoder itself (nearest class "
    "mean) on intents of a new business (metagui bench text --encoder: Banking77 <-> Home Assistant), but "
    "not through meta-learning: its meta-training lowered validation accuracy, so the kept model is the "
    "untouched encoder, and the gain is its test-time fit of a head to the support set"
)
PRETRAINED_CAVEATS: dict[str, str] = {
    "protonet": _GUARDED,
    "matching": _GUARDED,
    "relation": _GUARDED,
    "versa": _GUARDED,
    "maml": _LEVEL,
    "fomaml": _LEVEL,
    "metasgd": _LEVEL,
    "reptile": _REPTILE,
}


def pretrained_caveat(algorithm: str) -> str:
    """A warning for ``algorithm`` meta-trained on a pretrained text encoder ("" if none)."""
    note = PRETRAINED_CAVEATS.get(algorithm, "")
    return note.format(label=algorithms.get(algorithm).label, name=algorithm) if note else ""
