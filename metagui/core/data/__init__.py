"""Data sources: one entry point, ``load_dataset(cfg)``, for every classification source.

Loaders are imported lazily so that listing sources (CLI, GUI start-up) stays fast and
does not pull in hassil or the intent data.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from metagui.core.config import DatasetConfig
from metagui.core.data.base import ImageDataset, TextDataset
from metagui.core.errors import DataError

BUILTIN_SOURCES: dict[str, str] = {
    "glyphs": "Procedurally drawn glyphs: an offline, Omniglot-like set of synthetic alphabets.",
    "intents": "Home Assistant voice commands in many languages, with reply texts (offline).",
    "sinusoid": "Sine-wave regression tasks with random amplitude and phase (MAML paper ranges).",
    "ambiguous": "Few noisy points from a sine or a line: regression tasks with more than one good answer (PLATIPUS paper).",
    "bandit": "Bernoulli multi-armed bandits: k arms with random success rates, n pulls per task (RL² paper).",
    "mdp": "Random tabular MDPs: Dirichlet transitions, Gaussian rewards, several episodes per task (RL² paper).",
    "image_folder": "Your images: a folder or .zip of class folders, optionally grouped by domain.",
    "text_table": "Your texts: a CSV, TSV or JSON Lines table with a text and a label column.",
    "catalog": "A public dataset (Omniglot, Banking77, CLINC150), downloaded once and verified.",
}

# sources that generate every task afresh (no items, no class split)
TASK_FAMILIES: dict[str, str] = {
    "sinusoid": "metagui.core.data.sinusoid",
    "ambiguous": "metagui.core.data.ambiguous",
    "bandit": "metagui.core.rl.envs",
    "mdp": "metagui.core.rl.envs",
}

Progress = Callable[[int, int], None]
CancelCheck = Callable[[], bool]


def load_dataset(
    cfg: DatasetConfig,
    progress: Progress | None = None,
    cancel: CancelCheck | None = None,
) -> ImageDataset | TextDataset:
    """Materialise the classification dataset that ``cfg`` describes."""
    source = cfg.source
    if source in TASK_FAMILIES:
        raise DataError(
            f"{source} is a task family, not a fixed dataset: use Experiment.prepare (or {TASK_FAMILIES[source]})"
        )
    if source == "glyphs":
        from metagui.core.data.glyphs import generate_glyphs
        from metagui.core.data.images import with_rotations

        glyphs = generate_glyphs(
            n_alphabets=cfg.n_alphabets,
            characters_per_alphabet=cfg.characters_per_alphabet,
            drawers=cfg.drawers,
            image_size=cfg.image_size,
            seed=cfg.seed,
            progress=progress,
            cancel=cancel,
        )
        return with_rotations(glyphs) if cfg.rotations else glyphs
    if source == "intents":
        from metagui.core.data.intents import load_intents

        return load_intents(tuple(cfg.languages) or ("en",), seed=cfg.seed)
    if source == "image_folder":
        from metagui.core.data.images import load_image_folder

        return load_image_folder(
            _existing(cfg.path, "image folder"),
            image_size=cfg.image_size,
            channels=cfg.channels,
            invert=cfg.invert,
            rotations=cfg.rotations,
            progress=progress,
            cancel=cancel,
        )
    if source == "text_table":
        from metagui.core.data.text import load_text_table

        return load_text_table(
            _existing(cfg.path, "text table"),
            text_column=cfg.text_column,
            label_column=cfg.label_column,
            domain_column=cfg.domain_column,
            delimiter=cfg.delimiter,
            encoding=cfg.encoding,
        )
    if source == "catalog":
        from metagui.core.data.catalog import get_entry, load_catalog_dataset

        if not cfg.path:
            raise DataError("choose a catalog dataset by name (dataset.path)")
        entry = get_entry(cfg.path)
        options: dict[str, object] = {}
        if entry.kind == "image_zip":
            options = dict(
                image_size=cfg.image_size,
                channels=cfg.channels,
                invert=cfg.invert,
                rotations=cfg.rotations,
            )
        return load_catalog_dataset(entry.name, progress=progress, cancel=cancel, **options)
    known = ", ".join(BUILTIN_SOURCES)
    raise DataError(f"unknown dataset source '{source}'; choose one of: {known}")


def _existing(path: str, what: str) -> Path:
    if not path:
        raise DataError(f"choose the {what} to read (dataset.path is empty)")
    p = Path(path).expanduser()
    if not p.exists() and not p.is_symlink():  # a broken link: the loader says so
        raise DataError(f"{what} not found: {p}")
    return p


__all__ = ["BUILTIN_SOURCES", "TASK_FAMILIES", "ImageDataset", "TextDataset", "load_dataset"]
