"""The one config model of a run: edited by the GUI, read by the CLI, recorded by the store.

A ``RunConfig`` round-trips through TOML (``to_toml`` / ``from_toml``), so a run started in
the GUI can be repeated with ``metagui train run.toml``.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from metagui.core.errors import ConfigError

DATASET_SOURCES = ("glyphs", "intents", "sinusoid", "ambiguous", "bandit", "mdp", "image_folder", "text_table", "catalog")


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
        return dataclasses.asdict(self)

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
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        return cls.from_toml(p.read_text(encoding="utf-8"))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_toml(), encoding="utf-8")

    def copy(self) -> RunConfig:
        return RunConfig.from_dict(self.to_dict())


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
    """Top-level scalars, then one [table] per nested dict (deeper dicts inline)."""
    lines = [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for name, table in data.items():
        if isinstance(table, dict):
            lines += ["", f"[{_toml_key(name)}]"]
            lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"
