"""``load_dataset``: one config, every classification source; user mistakes are DataErrors."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from metagui.core.config import DATASET_SOURCES, DatasetConfig
from metagui.core.data import BUILTIN_SOURCES, load_dataset
from metagui.core.data.base import ImageDataset, TextDataset
from metagui.core.data.catalog import CATALOG, datasets_dir
from metagui.core.errors import DataError
from tests.helpers import BANKING, needs_banking


def test_every_config_source_is_described() -> None:
    assert set(BUILTIN_SOURCES) == set(DATASET_SOURCES)
    assert all(desc.endswith(".") and "\n" not in desc for desc in BUILTIN_SOURCES.values())


def test_glyphs_and_intents_from_config() -> None:
    glyphs = load_dataset(
        DatasetConfig(
            source="glyphs", n_alphabets=2, characters_per_alphabet=3, drawers=4, image_size=24
        )
    )
    assert isinstance(glyphs, ImageDataset) and tuple(glyphs.images.shape) == (24, 1, 24, 24)
    intents = load_dataset(DatasetConfig(source="intents", languages=["en"]))
    assert isinstance(intents, TextDataset) and "HassTurnOn" in intents.classes


def test_image_folder_and_text_table_from_config(tmp_path: Path) -> None:
    for c in ("a", "b"):
        (tmp_path / "imgs" / c).mkdir(parents=True)
        for i in range(2):
            arr = np.full((10, 10), 40 * i + (100 if c == "b" else 0), dtype=np.uint8)
            Image.fromarray(arr).save(tmp_path / "imgs" / c / f"{i}.png")
    cfg = DatasetConfig(
        source="image_folder", path=str(tmp_path / "imgs"), image_size=8, invert=False
    )
    images = load_dataset(cfg)
    assert images.classes == ["a", "b"] and tuple(images.images.shape) == (4, 1, 8, 8)

    (tmp_path / "t.csv").write_text("q,intent\nhello,greet\nbye,leave\n", encoding="utf-8")
    cfg = DatasetConfig(
        source="text_table", path=str(tmp_path / "t.csv"), text_column="q", label_column="intent"
    )
    assert load_dataset(cfg).classes == ["greet", "leave"]


def test_user_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"image folder not found: .*nowhere"):
        load_dataset(DatasetConfig(source="image_folder", path=str(tmp_path / "nowhere")))
    with pytest.raises(DataError, match="text table not found"):
        load_dataset(DatasetConfig(source="text_table", path=str(tmp_path / "none.csv")))
    with pytest.raises(DataError, match="dataset.path is empty"):
        load_dataset(DatasetConfig(source="text_table", path=""))
    with pytest.raises(DataError, match="task family"):
        load_dataset(DatasetConfig(source="sinusoid"))
    with pytest.raises(DataError, match="unknown dataset source 'mnist'"):
        load_dataset(DatasetConfig(source="mnist"))
    with pytest.raises(DataError, match="unknown catalog dataset"):
        load_dataset(DatasetConfig(source="catalog", path="imagenet"))


@needs_banking
def test_catalog_source_uses_verified_local_copy(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("METAGUI_DATA_DIR", str(tmp_path))

    def no_network(*args, **kwargs):
        raise AssertionError("the verified local copy must be used without network")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    entry = CATALOG["banking77-test"]
    target = datasets_dir() / entry.name / entry.filename
    target.parent.mkdir(parents=True)
    target.write_bytes((BANKING / "test.csv").read_bytes())  # as if downloaded
    ds = load_dataset(DatasetConfig(source="catalog", path="banking77-test"))
    assert ds.name == "banking77-test" and ds.stats().n_classes == 77
