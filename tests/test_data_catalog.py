"""Catalog downloads against a loopback HTTP server that serves the shared data files.

Nothing here touches the internet: urlopen is wrapped to refuse any non-loopback host.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from metagui.core.data import catalog
from metagui.core.data.catalog import (
    CATALOG,
    CatalogEntry,
    Downloader,
    datasets_dir,
    load_catalog_dataset,
    load_clinc_json,
)
from metagui.core.errors import Cancelled, DataError
from tests.helpers import how_to_get, shared_file

# Where each catalog entry lives under the shared data folder (the server's URL paths).
LOCAL = {
    "omniglot-small1": "omniglot/images_background_small1.zip",
    "omniglot-small2": "omniglot/images_background_small2.zip",
    "banking77-train": "banking77/train.csv",
    "banking77-test": "banking77/test.csv",
}
FILES = {rel: shared_file("data/" + rel) for rel in LOCAL.values()}
pytestmark = pytest.mark.skipif(
    None in FILES.values(), reason=how_to_get(*("data/" + rel for rel in LOCAL.values()))
)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.server.requests.append((self.path, self.headers.get("Range")))
        target = FILES.get(urllib.parse.unquote(self.path.lstrip("/")))
        if target is None:
            self.send_error(404)
            return
        data = target.read_bytes()
        start = 0
        range_header = self.headers.get("Range")
        if range_header and self.server.ranges:
            start = int(range_header.removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.server.bytes_sent += len(body)  # before writing: the client may finish first
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    ranges = True
    requests: list[tuple[str, str | None]]
    bytes_sent = 0


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server(("127.0.0.1", 0), _Handler)
    srv.requests = []
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real = urllib.request.urlopen

    def guarded(request, *args, **kwargs):
        url = request.full_url if isinstance(request, urllib.request.Request) else request
        host = urllib.parse.urlsplit(url).hostname
        assert host in ("127.0.0.1", "localhost"), f"test tried to reach {url}"
        return real(request, *args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", guarded)
    monkeypatch.setenv(catalog.DATA_DIR_ENV, str(tmp_path / "userdata"))


def _downloader(srv: _Server, **kwargs) -> Downloader:
    base = f"http://127.0.0.1:{srv.server_address[1]}/"
    return Downloader(url_for=lambda e: base + LOCAL.get(e.name, e.filename), **kwargs)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_entries_match_the_shared_files() -> None:
    for name, rel in LOCAL.items():
        entry = CATALOG[name]
        assert entry.size_bytes == FILES[rel].stat().st_size
        assert entry.checksum == "sha256:" + _sha256(FILES[rel])
        assert entry.filename == Path(rel).name
    assert CATALOG["omniglot-background"].checksum.startswith("md5:")
    assert CATALOG["omniglot-background"].size_bytes is None
    assert CATALOG["clinc150"].size_bytes == 2_495_390
    assert all(e.kind in ("image_zip", "text_table", "json") for e in CATALOG.values())


def test_download_with_progress_lands_in_user_data_dir(server: _Server, tmp_path: Path) -> None:
    entry = CATALOG["banking77-test"]
    seen: list[tuple[int, int]] = []
    path = _downloader(server, chunk_size=16_384).download(
        entry, progress=lambda d, t: seen.append((d, t))
    )
    assert path == tmp_path / "userdata" / "datasets" / "banking77-test" / "test.csv"
    assert path == datasets_dir() / entry.name / entry.filename
    assert "sha256:" + _sha256(path) == entry.checksum
    assert not path.with_name("test.csv.part").exists()
    assert seen[-1] == (entry.size_bytes, entry.size_bytes)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen) and len(seen) > 5
    # Already there and verified: no network at all.
    n = len(server.requests)
    assert _downloader(server).download(entry) == path
    assert len(server.requests) == n


def test_checksum_mismatch_is_refused_and_deleted(server: _Server, tmp_path: Path) -> None:
    bad = dataclasses.replace(CATALOG["banking77-test"], checksum="sha256:" + "0" * 64)
    with pytest.raises(DataError, match=r"expected sha256 0{64}, got d12d6e3b"):
        _downloader(server).download(bad, dest_dir=tmp_path / "dl")
    assert list((tmp_path / "dl").iterdir()) == []


def test_resume_from_part_file_uses_range(server: _Server, tmp_path: Path) -> None:
    entry = CATALOG["banking77-train"]
    dest = tmp_path / "dl"
    dest.mkdir()
    whole = FILES[LOCAL[entry.name]].read_bytes()
    (dest / "train.csv.part").write_bytes(whole[:300_000])
    path = _downloader(server).download(entry, dest_dir=dest)
    assert path.read_bytes() == whole
    assert server.requests == [("/banking77/train.csv", "bytes=300000-")]
    assert server.bytes_sent == len(whole) - 300_000


def test_server_without_range_restarts_cleanly(server: _Server, tmp_path: Path) -> None:
    server.ranges = False
    entry = CATALOG["banking77-test"]
    dest = tmp_path / "dl"
    dest.mkdir()
    whole = FILES[LOCAL[entry.name]].read_bytes()
    (dest / "test.csv.part").write_bytes(whole[:50_000])
    path = _downloader(server).download(entry, dest_dir=dest)
    assert path.read_bytes() == whole  # not 50,000 bytes twice
    assert server.bytes_sent == len(whole)


def test_stale_part_file_is_retried_from_zero(server: _Server, tmp_path: Path) -> None:
    entry = CATALOG["banking77-test"]
    dest = tmp_path / "dl"
    dest.mkdir()
    (dest / "test.csv.part").write_bytes(b"x" * 1000)  # not the start of this file
    path = _downloader(server).download(entry, dest_dir=dest)
    assert "sha256:" + _sha256(path) == entry.checksum
    assert [r for _, r in server.requests] == ["bytes=1000-", None]


def test_cancel_keeps_part_for_resume(server: _Server, tmp_path: Path) -> None:
    entry = CATALOG["omniglot-small1"]
    dest = tmp_path / "dl"
    calls = {"n": 0}

    def cancel_after_a_few_chunks() -> bool:
        calls["n"] += 1
        return calls["n"] > 5

    with pytest.raises(Cancelled):
        _downloader(server, chunk_size=8192).download(
            entry, dest_dir=dest, cancel=cancel_after_a_few_chunks
        )
    part = dest / "images_background_small1.zip.part"
    assert part.stat().st_size == 5 * 8192
    assert not (dest / "images_background_small1.zip").exists()
    path = _downloader(server).download(entry, dest_dir=dest)
    assert "sha256:" + _sha256(path) == entry.checksum
    assert server.requests[-1][1] == f"bytes={5 * 8192}-"


def test_network_errors_are_one_sentence_data_errors(server: _Server, tmp_path: Path) -> None:
    missing = CatalogEntry(
        "nothing", "Nothing", "http://127.0.0.1/none.csv", "", None, "-", "text_table", "-"
    )
    with pytest.raises(DataError, match="HTTP 404"):
        _downloader(server).download(missing, dest_dir=tmp_path)
    # A port nobody listens on.
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    port = srv.server_address[1]
    srv.server_close()
    closed = Downloader(mirror=f"http://127.0.0.1:{port}", timeout=2)
    with pytest.raises(DataError, match="cannot download Banking77"):
        closed.download(CATALOG["banking77-test"], dest_dir=tmp_path)


def test_load_catalog_datasets(server: _Server, tmp_path: Path) -> None:
    dl = _downloader(server)
    omniglot = load_catalog_dataset("omniglot-small2", downloader=dl, dest_dir=tmp_path / "o")
    assert omniglot.name == "omniglot-small2"
    assert omniglot.stats().n_classes == 156 and omniglot.stats().min_per_class == 20
    assert omniglot.images.float().mean() < 60  # inverted by the entry's defaults
    banking = load_catalog_dataset("banking77-test", downloader=dl, dest_dir=tmp_path / "b")
    assert banking.stats().n_classes == 77 and len(banking) > 3000
    with pytest.raises(DataError, match="unknown catalog dataset 'nope'"):
        load_catalog_dataset("nope", downloader=dl)


def test_clinc_json_loader(tmp_path: Path) -> None:
    data = {
        "train": [
            ["what's my balance", "balance"],
            ["play some jazz", "play_music"],
            ["hi", "oos"],
        ],
        "val": [["how much money do i have", "balance"], ["what's my balance", "balance"]],
        "test": [["put on a song", "play_music"]],
        "oos_train": [["tell me about sharks", "oos"]],
    }
    (tmp_path / "data_full.json").write_text(json.dumps(data), encoding="utf-8")
    (tmp_path / "domains.json").write_text(
        json.dumps({"banking": ["balance"], "music": ["play_music"]}), encoding="utf-8"
    )
    ds = load_clinc_json(tmp_path / "data_full.json", tmp_path / "domains.json")
    assert ds.classes == ["balance", "play_music"]
    assert ds.class_domains == ["banking", "music"]
    assert len(ds) == 4 and "hi" not in ds.texts
    assert [p.kind for p in ds.problems] == ["duplicate"]
    assert load_clinc_json(tmp_path / "data_full.json").class_domains == ["", ""]


def test_datasets_download_command_puts_files_where_the_tests_look(
    server: _Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """The skip reason of a data test says `metagui datasets --download NAME`: after it, the
    tests' helper finds the file without ../shared."""
    from metagui import cli
    from tests import helpers

    monkeypatch.setenv("METAGUI_CATALOG_MIRROR", f"http://127.0.0.1:{server.server_address[1]}/banking77/")
    monkeypatch.setattr(helpers, "SHARED", tmp_path / "no-shared")
    assert helpers.shared_file("data/banking77/test.csv") is None
    assert cli.main(["datasets", "--download", "banking77-train", "banking77-test"]) == 0
    for name in ("train.csv", "test.csv"):
        found = helpers.shared_file(f"data/banking77/{name}")
        assert found == datasets_dir() / f"banking77-{name[:-4]}" / name
        assert found.read_bytes() == FILES[f"banking77/{name}"].read_bytes()
    folder = helpers.shared_dir("data/banking77", ("train.csv", "test.csv"))
    assert (folder / "test.csv").read_bytes() == FILES["banking77/test.csv"].read_bytes()
    assert "banking77-test:" in capsys.readouterr().err
    assert cli.main(["datasets", "--download", "imagenet"]) == 2
    assert "unknown catalog dataset 'imagenet'" in capsys.readouterr().err
