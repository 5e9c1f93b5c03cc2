"""Image classification datasets from a folder or a zip of class folders.

Reading straight from the zip (no extraction) keeps downloaded archives such as Omniglot's
usable as they are, and nothing is left behind in the user's folders.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from PIL import Image

from metagui.core.data.base import ImageDataset, Problem
from metagui.core.errors import Cancelled, DataError
from metagui.core.files import MAX_ITEM_BYTES, check_regular, read_bytes, read_member

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif"})
ROTATIONS = (90, 180, 270)
_PROGRESS_EVERY = 64  # images between progress reports
# the most pixels an image may have (PIL's own bomb warning starts at about 89 megapixels):
# a small file can decode into gigabytes, so larger images are skipped before decoding
MAX_IMAGE_PIXELS = 64_000_000

Progress = Callable[[int, int], None]
CancelCheck = Callable[[], bool]


@dataclass(frozen=True)
class _Member:
    """One image file: its path parts below the dataset root and how to read its bytes."""

    parts: tuple[str, ...]
    display: str
    key: str  # file path or zip member name


def load_image_folder(
    path: str | os.PathLike[str],
    *,
    image_size: int = 28,
    channels: int = 1,
    invert: bool = False,
    rotations: bool = False,
    progress: Progress | None = None,
    cancel: CancelCheck | None = None,
) -> ImageDataset:
    """Read ``root/class/*`` or ``root/domain/class/*`` images (folder or .zip) into memory.

    Class names are ``"domain/class"`` when the layout has domains (e.g. Omniglot
    alphabets), so that equal character names in different alphabets stay apart.
    """
    if channels not in (1, 3):
        raise DataError(f"images can have 1 (grayscale) or 3 (RGB) channels, not {channels}")
    if image_size < 4 or image_size > 1024:
        raise DataError(f"image size must be between 4 and 1024 pixels, not {image_size}")
    root = Path(path).expanduser()
    if not root.is_dir():
        check_regular(root, "image folder or zip")  # never open a FIFO or a device

    zf: zipfile.ZipFile | None = None
    try:
        if root.is_dir():
            members = list(_folder_members(root))
        else:
            try:
                zf = zipfile.ZipFile(root)
            except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
                raise DataError(
                    f"{root.name} is neither a folder nor a readable zip file ({exc})"
                ) from None
            members = _strip_wrapper(list(_zip_members(zf, root)))

        problems: list[Problem] = []
        loose = [m for m in members if len(m.parts) < 2]
        if loose:
            problems.append(
                Problem(
                    "other",
                    f"{len(loose)} image(s) directly in the top folder were ignored: "
                    "images must sit in class folders",
                    str(root),
                )
            )
        members = sorted((m for m in members if len(m.parts) >= 2), key=lambda m: m.parts)
        if not members:
            raise DataError(
                f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in class folders found in {root}"
            )

        def read(m: _Member) -> bytes:
            if zf is not None:
                return read_member(zf, zf.getinfo(m.key), m.display, MAX_ITEM_BYTES)
            return read_bytes(m.key, MAX_ITEM_BYTES, "image")

        return _decode_all(
            root, members, read, image_size, channels, invert, rotations, problems, progress, cancel
        )
    finally:
        if zf is not None:
            zf.close()


def _is_image_name(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return not base.startswith(".") and os.path.splitext(base)[1].lower() in IMAGE_SUFFIXES


def _folder_members(root: Path) -> Iterator[_Member]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith((".", "__MACOSX"))]
        rel = Path(dirpath).relative_to(root).parts
        for fn in filenames:
            if _is_image_name(fn):
                full = os.path.join(dirpath, fn)
                yield _Member(parts=(*rel, fn), display=full, key=full)


def _zip_members(zf: zipfile.ZipFile, root: Path) -> Iterator[_Member]:
    for info in zf.infolist():
        if info.is_dir() or not _is_image_name(info.filename):
            continue
        parts = tuple(p for p in PurePosixPath(info.filename).parts if p not in ("", "."))
        if any(p.startswith((".", "__MACOSX")) for p in parts[:-1]):
            continue
        yield _Member(parts=parts, display=f"{root}!/{info.filename}", key=info.filename)


def _strip_wrapper(members: list[_Member]) -> list[_Member]:
    """Drop one folder that wraps everything in a zip (``images_background/...``)."""
    if not members:
        return members
    first = {m.parts[0] for m in members}
    if len(first) == 1 and all(len(m.parts) >= 3 for m in members):
        return [_Member(m.parts[1:], m.display, m.key) for m in members]
    return members


def _decode_all(
    root: Path,
    members: list[_Member],
    read: Callable[[_Member], bytes],
    image_size: int,
    channels: int,
    invert: bool,
    rotations: bool,
    problems: list[Problem],
    progress: Progress | None,
    cancel: CancelCheck | None,
) -> ImageDataset:
    total = len(members)
    mode = "L" if channels == 1 else "RGB"
    out = np.empty((total, image_size, image_size, channels), dtype=np.uint8)
    class_index: dict[tuple[str, ...], int] = {}
    labels: list[int] = []
    paths: list[str] = []
    seen: dict[tuple[int, bytes], str] = {}
    n = 0
    for i, m in enumerate(members):
        if cancel is not None and cancel():
            raise Cancelled("loading images was cancelled")
        if progress is not None and i % _PROGRESS_EVERY == 0:
            progress(i, total)
        try:
            data = read(m)
        except DataError as exc:  # not a regular file, too large, damaged in its zip
            problems.append(Problem("unreadable", f"{exc}; skipped", m.display))
            continue
        key = m.parts[:-1]
        label = class_index.setdefault(key, len(class_index))
        digest = hashlib.blake2b(data, digest_size=16).digest()
        if (label, digest) in seen:
            problems.append(
                Problem(
                    "duplicate",
                    f"{m.display} is an exact copy of {seen[(label, digest)]} and was skipped",
                    m.display,
                )
            )
            continue
        try:
            arr = _decode(data, mode, image_size, m.display)
        except DataError as exc:
            problems.append(Problem("unreadable", f"{exc}; skipped", m.display))
            continue
        except Exception as exc:  # any decoder failure on a user's file is a Problem, not a crash
            problems.append(
                Problem("unreadable", f"{m.display} is not a readable image ({exc})", m.display)
            )
            continue
        seen[(label, digest)] = m.display
        out[n] = arr.reshape(image_size, image_size, channels)
        labels.append(label)
        paths.append(m.display)
        n += 1
    if progress is not None:
        progress(total, total)
    if n == 0:
        raise DataError(f"none of the {total} image files in {root} could be read")

    # Classes that lost all their files (all unreadable) disappear; keep labels dense.
    used = sorted(set(labels))
    keys_by_label = {v: k for k, v in class_index.items()}
    order = sorted(used, key=lambda lab: keys_by_label[lab])
    remap = {old: new for new, old in enumerate(order)}
    class_keys = [keys_by_label[old] for old in order]
    classes = ["/".join(k) for k in class_keys]
    domains = [k[0] if len(k) >= 2 else "" for k in class_keys]
    label_arr = np.array([remap[x] for x in labels], dtype=np.int64)

    images = torch.from_numpy(out[:n]).permute(0, 3, 1, 2).contiguous()
    if invert:
        images = 255 - images
    if rotations:
        images, label_arr, classes, domains, paths = _add_rotations(
            images, label_arr, classes, domains, paths
        )
    return ImageDataset(
        name=root.stem,
        classes=classes,
        labels=label_arr,
        class_domains=domains,
        problems=problems,
        images=images,
        paths=paths,
    )


def open_image(data: bytes, display: str) -> Image.Image:
    """An image opened from bytes, its header read but no pixels decoded yet; one with more than
    ``MAX_IMAGE_PIXELS`` pixels (a decompression bomb, or just too large) is a ``DataError``."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            im = Image.open(io.BytesIO(data))
        except (Image.DecompressionBombWarning, Image.DecompressionBombError):
            raise DataError(f"{display} has more than the {MAX_IMAGE_PIXELS // 1_000_000} megapixels "
                            "an image may have") from None
    width, height = im.size
    if width * height > MAX_IMAGE_PIXELS:
        im.close()
        raise DataError(f"{display} is {width} x {height} pixels, more than the "
                        f"{MAX_IMAGE_PIXELS // 1_000_000} megapixels an image may have")
    return im


def _decode(data: bytes, mode: str, size: int, display: str = "image") -> np.ndarray:
    with open_image(data, display) as im:
        im.draft(mode, (size, size))  # JPEG: decode at reduced scale, much faster
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            rgba = im.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            img = Image.alpha_composite(background, rgba).convert(mode)
        else:
            img = im.convert(mode)
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.LANCZOS, reducing_gap=2.0)
    return np.asarray(img, dtype=np.uint8)


def with_rotations(ds: ImageDataset) -> ImageDataset:
    """``ds`` plus its 90/180/270-degree rotations as new classes (Omniglot protocol)."""
    images, labels, classes, domains, paths = _add_rotations(
        ds.images, ds.labels, ds.classes, ds.class_domains, ds.paths or [""] * len(ds)
    )
    return ImageDataset(
        name=ds.name, classes=classes, labels=labels, class_domains=domains,
        problems=list(ds.problems), images=images, paths=paths,
    )


def _add_rotations(
    images: torch.Tensor,
    labels: np.ndarray,
    classes: list[str],
    domains: list[str],
    paths: list[str],
) -> tuple[torch.Tensor, np.ndarray, list[str], list[str], list[str]]:
    """Each 90/180/270-degree rotation of a class becomes a new class (Omniglot protocol)."""
    n_classes = len(classes)
    all_images = [images]
    all_labels = [labels]
    all_classes = list(classes)
    all_domains = list(domains)
    all_paths = list(paths)
    for r, degrees in enumerate(ROTATIONS, start=1):
        all_images.append(torch.rot90(images, k=r, dims=(2, 3)))
        all_labels.append(labels + r * n_classes)
        all_classes += [f"{c}@{degrees}" for c in classes]
        all_domains += domains
        all_paths += [f"{p}@{degrees}" for p in paths]
    return (
        torch.cat(all_images).contiguous(),
        np.concatenate(all_labels),
        all_classes,
        all_domains,
        all_paths,
    )
