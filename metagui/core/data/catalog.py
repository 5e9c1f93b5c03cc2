"""Public datasets the app can fetch: where they live, how to check them, how to read them.

Downloads are resumable (a ``.part`` file and an HTTP Range request) and always verified
against a published checksum before use, so a flaky connection costs time, never a
silently broken dataset. Files land in the user's data folder, once.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import platformdirs

from metagui.core.data.base import ImageDataset, Problem, TextDataset
from metagui.core.data.images import load_image_folder
from metagui.core.data.text import load_text_table, records_to_dataset
from metagui.core.errors import Cancelled, DataError
from metagui.core.files import MAX_ITEM_BYTES, MAX_TABLE_BYTES, read_bytes

Progress = Callable[[int, int], None]  # (bytes done, bytes total; 0 when unknown)
CancelCheck = Callable[[], bool]
DATA_DIR_ENV = "METAGUI_DATA_DIR"
MAX_DOWNLOAD_BYTES = 4 << 30  # an entry of unknown size: a server that never stops is stopped here


@dataclass(frozen=True)
class CatalogEntry:
    """One downloadable file. ``checksum`` is ``"sha256:<hex>"`` or ``"md5:<hex>"`` ("" = none)."""

    name: str
    title: str
    url: str
    checksum: str
    size_bytes: int | None
    licence: str
    kind: Literal["image_zip", "text_table", "json"]
    description: str
    loader_options: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def filename(self) -> str:
        return self.url.rstrip("/").rsplit("/", 1)[-1]


_OMNIGLOT = "https://github.com/brendenlake/omniglot/raw/master/python/"
_BANKING = (
    "https://raw.githubusercontent.com/PolyAI-LDN/task-specific-datasets/master/banking_data/"
)
_CLINC = "https://raw.githubusercontent.com/clinc/oos-eval/master/data/"
_OMNIGLOT_OPTIONS = {"invert": True, "image_size": 28, "channels": 1}
_BANKING_OPTIONS = {"text_column": "text", "label_column": "category"}

CATALOG: dict[str, CatalogEntry] = {
    e.name: e
    for e in (
        CatalogEntry(
            "omniglot-background",
            "Omniglot background (30 alphabets)",
            _OMNIGLOT + "images_background.zip",
            "md5:68d2efa1b9178cc56df9314c21c6e718",
            None,
            "MIT",
            "image_zip",
            "964 handwritten characters of 30 alphabets, 20 drawers each: the usual training set.",
            _OMNIGLOT_OPTIONS,
        ),
        CatalogEntry(
            "omniglot-evaluation",
            "Omniglot evaluation (20 alphabets)",
            _OMNIGLOT + "images_evaluation.zip",
            "md5:6b91aef0f799c5bb55b94e3f2daec811",
            None,
            "MIT",
            "image_zip",
            "659 characters from 20 further alphabets, 20 drawers each: the usual test set.",
            _OMNIGLOT_OPTIONS,
        ),
        CatalogEntry(
            "omniglot-small1",
            "Omniglot minimal split 1 (5 alphabets)",
            _OMNIGLOT + "images_background_small1.zip",
            "sha256:f38eb80f801274ac2b4dff5b24289016bfaba4a7d5bb50deebf27104ad6cb8a4",
            1_319_022,
            "MIT",
            "image_zip",
            "A small Omniglot background split: 5 alphabets, 136 characters, 20 drawers each.",
            _OMNIGLOT_OPTIONS,
        ),
        CatalogEntry(
            "omniglot-small2",
            "Omniglot minimal split 2 (5 alphabets)",
            _OMNIGLOT + "images_background_small2.zip",
            "sha256:3ccaa407515a8778e5d0861875af38b17e418f301ad5bb3b5a6b65d901a41c7f",
            1_580_917,
            "MIT",
            "image_zip",
            "The other small Omniglot split: 5 alphabets, 156 characters, 20 drawers each.",
            _OMNIGLOT_OPTIONS,
        ),
        CatalogEntry(
            "banking77-train",
            "Banking77 (train)",
            _BANKING + "train.csv",
            "sha256:b06e26ac675513959a63135f11b94ea7786ed02da65db93a5650d8838cbc664b",
            839_073,
            "CC-BY-4.0",
            "text_table",
            "10,003 banking customer-service questions in 77 fine-grained intents.",
            _BANKING_OPTIONS,
        ),
        CatalogEntry(
            "banking77-test",
            "Banking77 (test)",
            _BANKING + "test.csv",
            "sha256:d12d6e3bc4c3103966ae786dc435913c0c563dfa328f5a3646d0e62cfeeb474d",
            239_961,
            "CC-BY-4.0",
            "text_table",
            "3,080 held-out Banking77 questions, same 77 intents.",
            _BANKING_OPTIONS,
        ),
        CatalogEntry(
            "clinc150",
            "CLINC150 intents",
            _CLINC + "data_full.json",
            "sha256:36923c3705a59e08fe9c3883d8bc2dd966ef93e22cb78ac41171782a698d56e0",
            2_495_390,
            "CC-BY-3.0",
            "json",
            "23,700 assistant queries in 150 intents from 10 domains (out-of-scope left out).",
        ),
        CatalogEntry(
            "clinc150-domains",
            "CLINC150 domains",
            _CLINC + "domains.json",
            "",
            3_818,
            "CC-BY-3.0",
            "json",
            "Which of the 10 CLINC150 domains each intent belongs to (fetched with clinc150).",
        ),
    )
}


def get_entry(name: str) -> CatalogEntry:
    try:
        return CATALOG[name]
    except KeyError:
        raise DataError(f"unknown catalog dataset '{name}'; known: {', '.join(CATALOG)}") from None


def user_data_dir() -> Path:
    """``$METAGUI_DATA_DIR`` if set, else the platform's user data folder (downloads, model
    checksums, calibrations)."""
    base = os.environ.get(DATA_DIR_ENV) or platformdirs.user_data_dir("metagui", appauthor=False)
    return Path(base).expanduser()


def datasets_dir() -> Path:
    return user_data_dir() / "datasets"


class Downloader:
    """Fetches catalog files: resumable, verified, and cancellable between chunks.

    ``mirror`` (a base URL, the file name is appended) or ``url_for`` redirect downloads,
    e.g. to a local server in tests or to an institutional mirror.
    """

    def __init__(
        self,
        *,
        mirror: str | None = None,
        url_for: Callable[[CatalogEntry], str] | None = None,
        timeout: float = 30.0,
        chunk_size: int = 1 << 16,
    ) -> None:
        # METAGUI_CATALOG_MIRROR: a base URL serving the catalog's files (a lab mirror, or a
        # loopback server in tests), used when no mirror is passed.
        self.mirror = mirror if mirror is not None else os.environ.get("METAGUI_CATALOG_MIRROR") or None
        self.url_for = url_for
        self.timeout = timeout
        self.chunk_size = chunk_size

    def url(self, entry: CatalogEntry) -> str:
        if self.url_for is not None:
            return self.url_for(entry)
        if self.mirror:
            return f"{self.mirror.rstrip('/')}/{entry.filename}"
        return entry.url

    def target(self, entry: CatalogEntry, dest_dir: str | os.PathLike[str] | None = None) -> Path:
        folder = (
            Path(dest_dir).expanduser() if dest_dir is not None else datasets_dir() / entry.name
        )
        return folder / entry.filename

    def download(
        self,
        entry: CatalogEntry,
        dest_dir: str | os.PathLike[str] | None = None,
        progress: Progress | None = None,
        cancel: CancelCheck | None = None,
    ) -> Path:
        """The verified local file; fetched (or resumed) only when it is not there yet."""
        final = self.target(entry, dest_dir)
        if final.is_file():
            if _verify(entry, final) is None:
                return final
            final.unlink()  # stale or damaged: fetch again
        final.parent.mkdir(parents=True, exist_ok=True)
        part = final.with_name(final.name + ".part")
        url = self.url(entry)
        resumed = self._fetch(entry, url, part, progress, cancel)
        error = _verify(entry, part)
        if error is not None and resumed:
            # The old partial file may not belong to this version: one clean try from zero.
            part.unlink()
            self._fetch(entry, url, part, progress, cancel)
            error = _verify(entry, part)
        if error is not None:
            part.unlink(missing_ok=True)
            raise DataError(error)
        os.replace(part, final)
        return final

    def _fetch(
        self,
        entry: CatalogEntry,
        url: str,
        part: Path,
        progress: Progress | None,
        cancel: CancelCheck | None,
    ) -> bool:
        """Write ``url`` into ``part``, continuing what is there. True if it resumed."""
        offset = part.stat().st_size if part.is_file() else 0
        if entry.size_bytes is not None and offset > entry.size_bytes:
            part.unlink()
            offset = 0
        if offset and offset == entry.size_bytes:
            return True  # complete already; the checksum decides
        headers = {"User-Agent": "metagui", "Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        request = urllib.request.Request(url, headers=headers)
        what = f"{entry.title} from {url}"
        try:
            response = urllib.request.urlopen(request, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and offset:  # nothing left to send: the part file is whole
                return True
            raise DataError(
                f"cannot download {what}: the server answered HTTP {exc.code} {exc.reason}"
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise DataError(f"cannot download {what}: {reason}") from None

        with response:
            resumed = bool(offset) and response.status == 206 and _range_start(response) == offset
            if not resumed:
                offset = 0  # the server sent the whole file (Range ignored): start over
            length = response.headers.get("Content-Length")
            total = offset + int(length) if length and length.isdigit() else (entry.size_bytes or 0)
            done = offset
            limit = entry.size_bytes or MAX_DOWNLOAD_BYTES
            if progress is not None:
                progress(done, total)
            with open(part, "ab" if resumed else "wb") as out:
                while True:
                    if cancel is not None and cancel():
                        raise Cancelled(
                            f"download of {entry.title} was cancelled; it will resume next time"
                        )
                    try:
                        chunk = response.read(self.chunk_size)
                    except (OSError, ValueError) as exc:
                        raise DataError(
                            f"download of {what} broke off ({exc}); try again to resume"
                        ) from None
                    if not chunk:
                        break
                    if done + len(chunk) > limit:
                        raise DataError(
                            f"download of {what} sent more than the {limit} bytes expected; stopped"
                        )
                    out.write(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, total)
        return resumed


def _range_start(response: Any) -> int | None:
    m = re.match(r"bytes\s+(\d+)-", response.headers.get("Content-Range", ""))
    return int(m.group(1)) if m else None


def _verify(entry: CatalogEntry, path: Path) -> str | None:
    """None if ``path`` is the file the catalog describes, else why not (one sentence)."""
    if entry.checksum:
        algorithm, _, expected = entry.checksum.partition(":")
        digest = hashlib.new(algorithm)
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        got = digest.hexdigest()
        if got != expected.lower():
            return (
                f"the download of {entry.title} is damaged (expected {algorithm} {expected}, "
                f"got {got}); it was deleted, try again"
            )
        return None
    if entry.size_bytes is not None and path.stat().st_size != entry.size_bytes:
        return (
            f"the download of {entry.title} has the wrong size (expected {entry.size_bytes} bytes, "
            f"got {path.stat().st_size}); it was deleted, try again"
        )
    return None


def load_clinc_json(
    path: str | os.PathLike[str], domains_path: str | os.PathLike[str] | None = None
) -> TextDataset:
    """CLINC150's data_full.json: train, val and test flattened; out-of-scope left out."""
    p = Path(path)
    try:
        data = json.loads(read_bytes(p, MAX_TABLE_BYTES, "CLINC150 file").decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise DataError(f"{p.name} is not a readable CLINC150 JSON file ({exc})") from None
    if not isinstance(data, dict) or not any(k in data for k in ("train", "val", "test")):
        raise DataError(f"{p.name} has no train/val/test lists of [text, intent] pairs")
    domain_of: dict[str, str] = {}
    problems: list[Problem] = []
    if domains_path is not None:
        try:
            domains = json.loads(read_bytes(domains_path, MAX_ITEM_BYTES, "domains file").decode("utf-8"))
            domain_of = {intent: d for d, intents in domains.items() for intent in intents}
        except (DataError, ValueError, AttributeError, TypeError, RecursionError) as exc:
            problems.append(Problem("other", f"domains file ignored, it is not readable ({exc})"))
    seen: set[tuple[str, str, str]] = set()
    records: list[tuple[str, str, str]] = []
    duplicates = 0
    for split in ("train", "val", "test"):
        for pair in data.get(split, []):
            if not isinstance(pair, list | tuple) or len(pair) != 2:
                continue
            text, label = " ".join(str(pair[0]).split()), str(pair[1])
            if not text or label == "oos":
                continue
            key = (domain_of.get(label, ""), label, text)
            if key in seen:
                duplicates += 1
                continue
            seen.add(key)
            records.append(key)
    if duplicates:
        problems.append(
            Problem("duplicate", f"{duplicates} repeated (text, intent) pairs were kept once")
        )
    if not records:
        raise DataError(f"{p.name} holds no in-scope examples")
    return records_to_dataset("clinc150", records, problems)


def load_catalog_dataset(
    name: str,
    *,
    downloader: Downloader | None = None,
    dest_dir: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
    cancel: CancelCheck | None = None,
    **options: Any,
) -> ImageDataset | TextDataset:
    """Download ``name`` if needed and read it; ``options`` override the entry's loader defaults.

    ``progress`` first reports bytes downloaded, then (for images) images decoded.
    """
    entry = get_entry(name)
    dl = downloader or Downloader()
    path = dl.download(entry, dest_dir, progress, cancel)
    opts = {**entry.loader_options, **options}
    ds: ImageDataset | TextDataset
    if entry.kind == "image_zip":
        ds = load_image_folder(path, progress=progress, cancel=cancel, **opts)
    elif entry.kind == "text_table":
        ds = load_text_table(path, **opts)
    elif name == "clinc150":
        domains_path: Path | None = None
        problem: Problem | None = None
        try:
            domains_path = dl.download(CATALOG["clinc150-domains"], dest_dir, None, cancel)
        except DataError as exc:
            problem = Problem("other", f"CLINC150 domains are unavailable, so none are set ({exc})")
        ds = load_clinc_json(path, domains_path)
        if problem is not None:
            ds.problems.append(problem)
    else:
        raise DataError(f"catalog entry '{name}' is not a dataset of its own")
    ds.name = entry.name
    return ds
