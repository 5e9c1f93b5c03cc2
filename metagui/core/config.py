"""The one config model of a run: edited by the GUI, read by the CLI, recorded by the store.

A ``RunConfig`` round-trips through TOML (``to_toml`` / ``from_toml``), so a run started in
the GUI can be repeated with ``metagui train run.toml``. It is written with only the fields
that apply to its data source, task type and algorithm (``applicable_fields``), so a text
run's file says nothing about bandit arms or glyph alphabets; a file with every field (as
older versions wrote) still reads unchanged.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from metagui.core.errors import ConfigError

DATASET_SOURCES = ("glyphs", "intents", "sinusoid", "ambiguous", "bandit", "mdp", "image_folder", "text_table", "catalog")

# What each source reads besides ``source``: the fields its loader or task family uses, as an
# algorithm declares its hyperparameters. A catalog entry of images also reads IMAGE_OPTIONS.
IMAGE_OPTIONS = ("image_size", "channels", "invert", "rotations")
SOURCE_FIELDS: dict[str, tuple[str, ...]] = {
    "intents": ("languages", "seed"),
    "glyphs": ("n_alphabets", "characters_per_alphabet", "drawers", "image_size", "rotations", "seed"),
    "sinusoid": (),
    "ambiguous": (),
    "bandit": ("arms", "pulls"),
    "mdp": ("states", "actions", "horizon", "trial_episodes"),
    "image_folder": ("path", *IMAGE_OPTIONS),
    "text_table": ("path", "text_column", "label_column", "domain_column", "delimiter", "encoding"),
    "catalog": ("path",),
}
SOURCE_MODALITY = {"intents": "text", "glyphs": "image", "sinusoid": "regression", "ambiguous": "regression",
                   "bandit": "bandit", "mdp": "mdp", "image_folder": "image", "text_table": "text"}
# the task type of each modality, and the [task] fields it uses (classification: all of them)
TASK_TYPES = {"text": "classification", "image": "classification", "regression": "regression",
              "bandit": "rl", "mdp": "rl"}
TASK_FIELDS: dict[str, tuple[str, ...] | None] = {"classification": None, "regression": ("shot", "query", "seed"),
                                                  "rl": ()}
TEXT_ONLY_ALGORITHM_FIELDS = ("text_encoder", "text_encoder_why")


@dataclass
class DatasetConfig:
    """Where the data comes from and how it is read.

    source: one of DATASET_SOURCES. ``path`` is a folder / zip / table for image_folder and
    text_table, a catalog entry name for catalog, unused for the other built-ins.
    """

    source: str = "intents"
    path: str = ""
    # images
    image_size: int = 28
    channels: int = 1
    invert: bool = False  # Omniglot draws black strokes on white: invert gives white-on-black
    rotations: bool = False  # add 90/180/270-degree rotations as new classes (Omniglot protocol)
    # text tables
    text_column: str = "text"
    label_column: str = "category"
    domain_column: str = ""
    delimiter: str = ""  # "" = detect
    encoding: str = ""  # "" = detect
    # built-ins
    languages: list[str] = field(default_factory=lambda: ["en"])  # intents
    n_alphabets: int = 12  # glyphs
    characters_per_alphabet: int = 20  # glyphs
    drawers: int = 20  # glyphs: examples per character
    seed: int = 0  # for generated built-ins
    # reinforcement-learning task families (bandit, mdp)
    arms: int = 5  # bandit: arms per bandit
    pulls: int = 10  # bandit: pulls per task
    states: int = 10  # mdp
    actions: int = 5  # mdp
    horizon: int = 10  # mdp: steps per episode
    trial_episodes: int = 10  # mdp: episodes per task (the policy's memory spans them)

    def modality(self) -> str:
        """The modality this source produces, known before loading it."""
        if self.source == "catalog":
            entry = _catalog_entry(self.path)
            return "image" if entry is not None and entry.kind == "image_zip" else "text"
        return SOURCE_MODALITY.get(self.source, "text")

    def fields_used(self) -> tuple[str, ...]:
        """``source`` and the fields that its loader or task family reads (SOURCE_FIELDS)."""
        used = SOURCE_FIELDS.get(self.source)
        if used is None:  # a source this version does not know: keep everything
            return tuple(f.name for f in fields(self))
        if self.source == "catalog":
            entry = _catalog_entry(self.path)
            if entry is None or entry.kind == "image_zip":
                used = used + IMAGE_OPTIONS
        return ("source", *used)

    def to_dict(self) -> dict[str, Any]:
        """The fields that apply to this source (what a run's file and the store record)."""
        used = self.fields_used()
        return {k: v for k, v in dataclasses.asdict(self).items() if k in used}


def source_modality(cfg: DatasetConfig) -> str:
    """The modality a dataset config will produce, known before loading it."""
    return cfg.modality()


def _catalog_entry(name: str):
    from metagui.core.data.catalog import CATALOG  # lazily: the catalog imports the loaders

    return CATALOG.get(name)


@dataclass
class TaskConfig:
    """N-way K-shot episodes with Q queries per class, drawn from a split of the classes."""

    way: int = 5
    shot: int = 5
    query: int = 5
    split: str = "ratio"  # "ratio" | "classes" | "domain"
    train_ratio: float = 0.6
    val_ratio: float = 0.2
    train_classes: list[str] = field(default_factory=list)
    val_classes: list[str] = field(default_factory=list)
    test_classes: list[str] = field(default_factory=list)
    train_domains: list[str] = field(default_factory=list)
    val_domains: list[str] = field(default_factory=list)
    test_domains: list[str] = field(default_factory=list)
    seed: int = 0


@dataclass
class AlgorithmConfig:
    name: str = "protonet"
    backbone: str = "auto"  # "auto" | "conv4" | "mlp" | "text"
    # text: a pretrained sentence encoder (a model id, or a folder with a sentence-transformers
    # or ONNX model) in place of the built-in n-gram encoder; "" = built-in
    text_encoder: str = ""
    # why the run uses that encoder (core.encoder_source.default_text_encoder, or the user's
    # choice): shown in the GUI and the model card
    text_encoder_why: str = ""
    hyperparams: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainingConfig:
    steps: int = 1000
    val_every: int = 100
    val_episodes: int = 200
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N" | "mps"
    seed: int = 0
    log_every: int = 10


@dataclass
class RunConfig:
    name: str = ""
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)

    # --- (de)serialisation -------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Every section, each with only the fields that apply (``applicable_fields``)."""
        keep = applicable_fields(self)
        return {name: {k: v for k, v in value.items() if k in keep[name]} if name in keep else value
                for name, value in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        return _build(cls, data, "")

    def to_toml(self) -> str:
        return dumps_toml(self.to_dict())

    @classmethod
    def from_toml(cls, text: str) -> RunConfig:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config is not valid TOML: {exc}") from None
        except RecursionError:
            raise ConfigError("config is not valid TOML: it is nested too deeply") from None
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str | Path, notes: list[str] | None = None) -> RunConfig:
        """Read a TOML file as tables are read (UTF-8, UTF-16 with a BOM, else cp1252; a note in
        ``notes`` says which), a regular file of at most 64 MB."""
        from metagui.core.errors import DataError
        from metagui.core.files import read_text

        try:
            text = read_text(path, what="config file", notes=notes)
        except DataError as exc:
            raise ConfigError(str(exc)) from None
        return cls.from_toml(text)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_toml(), encoding="utf-8")

    def copy(self) -> RunConfig:
        """A copy as its file would read back: fields that do not apply are at their defaults."""
        return RunConfig.from_dict(self.to_dict())


def applicable_fields(cfg: RunConfig) -> dict[str, tuple[str, ...]]:
    """Per section, the fields that the run's data source, task type and algorithm use.

    dataset: ``source`` and what SOURCE_FIELDS declares for it; task: all for classification,
    K and Q (and the preview seed) for regression, none for reinforcement learning; algorithm:
    the text encoder only for text; training: everything. Hyperparameters are already the
    algorithm's own (its schema rejects others), so they are written as they are.
    """
    modality = cfg.dataset.modality()
    task_fields = TASK_FIELDS.get(TASK_TYPES.get(modality, "classification"))
    algorithm = tuple(f.name for f in fields(AlgorithmConfig))
    if modality != "text":
        algorithm = tuple(k for k in algorithm if k not in TEXT_ONLY_ALGORITHM_FIELDS)
    return {
        "dataset": cfg.dataset.fields_used(),
        "task": tuple(f.name for f in fields(TaskConfig)) if task_fields is None else task_fields,
        "algorithm": algorithm,
        "training": tuple(f.name for f in fields(TrainingConfig)),
    }


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"[{where or 'config'}] must be a table")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"unknown key{'s' if len(unknown) > 1 else ''} in [{where or 'config'}]: {', '.join(unknown)}")
    kwargs: dict[str, Any] = {}
    defaults = cls()
    for name, value in data.items():
        key = f"{where}.{name}" if where else name
        current = getattr(defaults, name)
        if dataclasses.is_dataclass(current):
            kwargs[name] = _build(type(current), value, key)
        else:
            kwargs[name] = _coerce(value, current, key)
    return cls(**kwargs)


def _coerce(value: Any, default: Any, key: str) -> Any:
    """Check ``value`` against the type of the field's default value."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return value
    if isinstance(default, list):
        if not isinstance(value, list):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        return list(value)
    if isinstance(default, dict):
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a table, got {value!r}")
        return dict(value)
    return value


# --- a small TOML writer for the config's shape (tables of scalars, lists, sub-tables) ----
def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        escaped = v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
        return f'"{escaped}"'
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _toml_key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() else _toml_value(k)


def dumps_toml(data: dict[str, Any]) -> str:
    """Top-level scalars, then one [table] per nested dict (deeper dicts inline; empty ones left out)."""
    lines = [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for name, table in data.items():
        if isinstance(table, dict) and table:
            lines += ["", f"[{_toml_key(name)}]"]
            lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"
