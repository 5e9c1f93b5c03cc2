"""Shared test helpers (paths to the shared data, small configs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from metagui.core.config import RunConfig
from metagui.core.presets import default_config

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
OMNIGLOT_SMALL1 = SHARED_DATA / "omniglot" / "images_background_small1.zip"
BANKING = SHARED_DATA / "banking77"
needs_banking = pytest.mark.skipif(not ((BANKING / "train.csv").is_file() and (BANKING / "test.csv").is_file()),
                                   reason="needs ../shared/data/banking77 (train.csv and test.csv)")


def small_config(algorithm: str = "protonet", source: str = "glyphs", steps: int = 5, **hp) -> RunConfig:
    """A config that trains in seconds: few steps, few validation episodes."""
    cfg = default_config(algorithm, source)
    cfg.training.steps = steps
    cfg.training.val_every = steps
    cfg.training.val_episodes = 20
    cfg.training.log_every = 1
    if source == "glyphs":
        cfg.dataset.n_alphabets = 6
        cfg.dataset.characters_per_alphabet = 10
        cfg.dataset.drawers = 10
    cfg.algorithm.hyperparams = dict(hp)
    return cfg
