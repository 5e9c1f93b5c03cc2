"""Image folders and zips: layouts, problems reported, Omniglot from the shared data."""

from __future__ import annotations

import shutil
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from metagui.core.data.images import load_image_folder
from metagui.core.errors import Cancelled, DataError
from tests.helpers import OMNIGLOT_SMALL1, needs_omniglot


def _png(path: Path, seed: int, size: int = 40, mode: str = "L") -> None:
    rng = np.random.default_rng(seed)
    arr = rng.integers(
        0, 256, size=(size, size, 3) if mode == "RGB" else (size, size), dtype=np.uint8
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, mode=mode).save(path)


@pytest.fixture
def class_folder(tmp_path: Path) -> Path:
    root = tmp_path / "shapes"
    for c, name in enumerate(["circle", "square", "star"]):
        for i in range(4):
            _png(root / name / f"{i}.png", seed=10 * c + i)
    (root / "star" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    shutil.copy(root / "circle" / "0.png", root / "circle" / "copy_of_0.png")
    (root / "circle" / "notes.txt").write_text("not an image, ignored")
    return root


def test_class_layout_reads_images_and_reports_problems(class_folder: Path) -> None:
    ds = load_image_folder(class_folder, image_size=16)
    assert ds.classes == ["circle", "square", "star"]
    assert ds.class_domains == ["", "", ""]
    assert ds.images.dtype == torch.uint8 and tuple(ds.images.shape) == (12, 1, 16, 16)
    assert ds.stats().per_class == {"circle": 4, "square": 4, "star": 4}
    kinds = {p.kind: p for p in ds.problems}
    assert set(kinds) == {"unreadable", "duplicate"}
    assert kinds["unreadable"].path.endswith("broken.png")
    assert kinds["duplicate"].path.endswith("copy_of_0.png")
    assert len(ds.paths) == len(ds) and all("copy_of_0" not in p for p in ds.paths)


def test_invert_and_rgb(class_folder: Path) -> None:
    plain = load_image_folder(class_folder, image_size=16)
    inverted = load_image_folder(class_folder, image_size=16, invert=True)
    assert torch.equal(inverted.images, 255 - plain.images)
    rgb = load_image_folder(class_folder, image_size=20, channels=3)
    assert tuple(rgb.images.shape) == (12, 3, 20, 20)


def test_rotations_add_three_classes_per_class(class_folder: Path) -> None:
    base = load_image_folder(class_folder, image_size=16)
    rot = load_image_folder(class_folder, image_size=16, rotations=True)
    assert len(rot.classes) == 4 * len(base.classes)
    assert len(rot) == 4 * len(base)
    assert "circle@90" in rot.classes and "star@270" in rot.classes
    i90 = rot.classes.index("circle@90")
    first_rotated = rot.images[np.nonzero(rot.labels == i90)[0][0]]
    first_plain = base.images[np.nonzero(base.labels == 0)[0][0]]
    assert torch.equal(first_rotated, torch.rot90(first_plain, 1, dims=(1, 2)))


def test_zip_with_wrapper_and_domains(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for d, dom in enumerate(["Runic", "Greek"]):
        for c in range(2):
            for i in range(3):
                _png(src / f"char{c}" / f"{dom}{i}.png", seed=100 * d + 10 * c + i)
    archive = tmp_path / "alphabets.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("images_background/", "")
        for dom in ["Runic", "Greek"]:
            for c in range(2):
                for i in range(3):
                    zf.write(
                        src / f"char{c}" / f"{dom}{i}.png",
                        f"images_background/{dom}/character0{c}/{i}.png",
                    )
        zf.writestr("images_background/Greek/readme.txt", "ignored")
    ds = load_image_folder(archive)
    assert ds.classes == [
        "Greek/character00",
        "Greek/character01",
        "Runic/character00",
        "Runic/character01",
    ]
    assert ds.class_domains == ["Greek", "Greek", "Runic", "Runic"]
    assert ds.stats().min_per_class == 3 and ds.domains() == ["Greek", "Runic"]
    assert ds.paths[0].startswith(str(archive))


def test_progress_and_cancel(class_folder: Path) -> None:
    seen: list[tuple[int, int]] = []
    load_image_folder(class_folder, progress=lambda d, t: seen.append((d, t)))
    assert seen[0] == (0, 14) and seen[-1] == (14, 14)
    with pytest.raises(Cancelled):
        load_image_folder(class_folder, cancel=lambda: True)


def test_user_errors_are_data_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        load_image_folder(tmp_path / "nowhere")
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    with pytest.raises(DataError, match="no images"):
        load_image_folder(tmp_path / "empty")
    (tmp_path / "fake.zip").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="zip"):
        load_image_folder(tmp_path / "fake.zip")
    with pytest.raises(DataError, match="channels"):
        load_image_folder(tmp_path, channels=2)


@needs_omniglot
def test_omniglot_small1_zip() -> None:
    start = time.perf_counter()
    ds = load_image_folder(OMNIGLOT_SMALL1, invert=True)
    elapsed = time.perf_counter() - start
    stats = ds.stats()
    assert stats.n_classes == 136 and stats.n_items == 2720
    assert stats.min_per_class == stats.max_per_class == 20
    assert sorted(stats.domains) == ["Balinese", "Early_Aramaic", "Greek", "Korean", "Latin"]
    assert ds.classes[0] == "Balinese/character01"
    assert tuple(ds.images.shape) == (2720, 1, 28, 28)
    # Inverted Omniglot: mostly black background, white strokes.
    assert ds.images.float().mean() < 60 and int(ds.images.max()) == 255
    assert not ds.problems
    assert elapsed < 10  # generous on a loaded CI machine; ~0.6 s measured
