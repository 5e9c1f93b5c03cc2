"""Shared test helpers: where the shared data and models are, small configs.

Tests that need data or models from outside the repository find them through
:func:`shared_file` / :func:`shared_dir` only. They look in ``../shared`` beside the
repository root (this project's machines and CI), then in the catalog's download folder
(``METAGUI_DATA_DIR``, where ``metagui datasets --download NAME`` puts them on a user's
machine). When neither has them the test is skipped with a reason that says how to get
them; every such reason starts with :data:`MISSING_DATA`, and CI (which has ``../shared``)
fails when any test is skipped that way (``tests/conftest.py``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from metagui.core.config import RunConfig
from metagui.core.data.catalog import CATALOG, datasets_dir
from metagui.core.presets import default_config

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
MISSING_DATA = "needs shared data:"

# file under ../shared  ->  the catalog entry that downloads the same file
_CATALOG_OF = {
    "data/omniglot/images_background_small1.zip": "omniglot-small1",
    "data/omniglot/images_background_small2.zip": "omniglot-small2",
    "data/banking77/train.csv": "banking77-train",
    "data/banking77/test.csv": "banking77-test",
}


def _catalog_copy(rel: str) -> Path | None:
    name = _CATALOG_OF.get(rel)
    if name is None:
        return None
    path = datasets_dir() / name / CATALOG[name].filename
    return path if path.is_file() else None


def shared_file(rel: str) -> Path | None:
    """``../shared/<rel>``, else the catalog's downloaded copy of it, else None."""
    path = SHARED / rel
    return path if path.is_file() else _catalog_copy(rel)


def shared_dir(rel: str, files: tuple[str, ...]) -> Path | None:
    """A folder holding ``files`` of ``../shared/<rel>``: that folder itself, or (on a user's
    machine) a temporary folder linking to the catalog's downloaded copies; None if any is
    missing."""
    folder = SHARED / rel
    if all((folder / f).is_file() for f in files):
        return folder
    found = {f: _catalog_copy(f"{rel}/{f}") for f in files}
    if any(p is None for p in found.values()):
        return None
    linked = Path(tempfile.mkdtemp(prefix="metagui-shared-"))
    for f, p in found.items():
        os.symlink(p, linked / f)
    return linked


def how_to_get(*rels: str) -> str:
    names = [_CATALOG_OF[r] for r in rels if r in _CATALOG_OF]
    where = f"../shared/{rels[0].rsplit('/', 1)[0]}" if rels else "../shared"
    if names:
        return f"{MISSING_DATA} run `metagui datasets --download {' '.join(names)}` (or put {where} beside the repository)"
    return f"{MISSING_DATA} put {where} beside the repository"


OMNIGLOT_SMALL1 = shared_file("data/omniglot/images_background_small1.zip")
needs_omniglot = pytest.mark.skipif(
    OMNIGLOT_SMALL1 is None, reason=how_to_get("data/omniglot/images_background_small1.zip")
)
BANKING = shared_dir("data/banking77", ("train.csv", "test.csv"))
needs_banking = pytest.mark.skipif(
    BANKING is None, reason=how_to_get("data/banking77/train.csv", "data/banking77/test.csv")
)


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
