"""Damaged or odd data sources, through the CLI (`datasets --check`, `train`, `eval`,
`datasets --download`): a bad item is skipped and named in one problem line, a bad source is
one error line; nothing hangs, nothing is read past its limit, no input file changes."""

from __future__ import annotations

import json
import os
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from metagui.core.store import RunStore
from tests.helpers import small_config
from tests.hostile.cli_kit import (
    cli,
    flip_member_byte,
    image_folder,
    image_zip,
    patch_central_entry,
    png,
    png_claiming,
    problem_line,
    refused,
    snapshot,
)

MB = 1 << 20
GOOD = 12  # images in image_zip() / image_folder(): 4 classes x 3


# --- one item is bad: it is skipped and named; the rest loads --------------------------------
def _zip(tmp: Path, extra=None, **kw) -> Path:
    return image_zip(tmp / "data.zip", extra, **kw)


def _bad_crc(tmp):
    p = _zip(tmp)
    flip_member_byte(p, "c0/0.png")
    return p, "damaged (bad crc", GOOD - 1


def _forged_larger(tmp):
    p = _zip(tmp)
    patch_central_entry(p, "c0/0.png", usize=len(png(0)) + 1000)
    return p, "damaged", GOOD - 1


def _forged_smaller(tmp):
    p = _zip(tmp)
    patch_central_entry(p, "c0/0.png", usize=20)
    return p, "damaged", GOOD - 1


def _forged_gigabyte(tmp):
    p = _zip(tmp)
    patch_central_entry(p, "c0/0.png", usize=1 << 30)
    return p, "more than the 64 MB", GOOD - 1


def _deflate_bomb(tmp):
    return _zip(tmp, {"c0/bomb.png": bytes(80 * MB)}, compression=zipfile.ZIP_DEFLATED), "more than the 64 MB", GOOD


def _bomb_with_forged_size(tmp):
    p = _zip(tmp, {"c0/bomb.png": bytes(80 * MB)}, compression=zipfile.ZIP_DEFLATED)
    patch_central_entry(p, "c0/bomb.png", usize=1000)  # inflating stops at the claimed size
    return p, "damaged", GOOD


def _encrypted(tmp):
    p = _zip(tmp)
    patch_central_entry(p, "c0/0.png", flags=1)
    return p, "encrypted", GOOD - 1


def _unknown_compression(tmp):
    p = _zip(tmp)
    patch_central_entry(p, "c0/0.png", method=97)
    return p, "damaged", GOOD - 1


def _pixel_bomb(tmp):
    return _zip(tmp, {"c1/bomb.png": png_claiming(30_000, 30_000)}), "megapixels", GOOD


def _too_many_pixels(tmp):
    return _zip(tmp, {"c1/big.png": png_claiming(9000, 9000)}), "9000 x 9000 pixels", GOOD


def _truncated_png(tmp):
    return _zip(tmp, {"c1/cut.png": png(7)[:40]}), "not a readable image", GOOD


def _folder(tmp):
    return image_folder(tmp / "images")


def _fifo_in_folder(tmp):
    root = _folder(tmp)
    os.mkfifo(root / "c0" / "pipe.png")
    return root, "fifo", GOOD


def _device_in_folder(tmp):
    root = _folder(tmp)
    os.symlink("/dev/zero", root / "c0" / "zero.png")
    return root, "a device", GOOD


def _broken_link_in_folder(tmp):
    root = _folder(tmp)
    os.symlink(tmp / "gone.png", root / "c0" / "gone.png")
    return root, "broken link", GOOD


def _link_loop_in_folder(tmp):
    root = _folder(tmp)
    os.symlink("loop.png", root / "c0" / "loop.png")
    return root, "symbolic links", GOOD


def _huge_sparse_image(tmp):
    root = _folder(tmp)
    with open(root / "c0" / "huge.png", "wb") as f:
        f.truncate(100 * MB)  # 100 MB that take no disk: refused by size, never read
    return root, "more than the 64 MB", GOOD


def _latin1_table(tmp):
    p = tmp / "intents.csv"
    rows = [f"text{i} caf\xe9,{c}" for c in ("on", "off", "d\xe9j\xe0") for i in range(3)]
    p.write_bytes(("text,category\n" + "\n".join(rows) + "\n").encode("latin-1"))
    return p, "not utf-8; it was read as cp1252", 9


def _nested_json_line(tmp):
    p = tmp / "intents.jsonl"
    good = [json.dumps({"text": f"t{i}", "category": f"c{i % 2}"}) for i in range(4)]
    p.write_text("\n".join([*good, "[" * 100_000 + "]" * 100_000]) + "\n")
    return p, "not json objects", 4


SKIPPED = {f.__name__.strip("_").replace("_", " "): f for f in (
    _bad_crc, _forged_larger, _forged_smaller, _forged_gigabyte, _deflate_bomb, _bomb_with_forged_size, _encrypted,
    _unknown_compression, _pixel_bomb, _too_many_pixels, _truncated_png, _fifo_in_folder, _device_in_folder,
    _broken_link_in_folder, _link_loop_in_folder, _huge_sparse_image, _latin1_table, _nested_json_line)}


@pytest.mark.parametrize("case", SKIPPED)
def test_a_bad_item_is_skipped_and_named_in_one_line(case, tmp_path, capsys):
    path, match, items = SKIPPED[case](tmp_path)
    before = snapshot(tmp_path)
    rc, out, err = cli(["datasets", "--check", path], capsys, seconds=30)
    assert rc == 0, err
    assert f" {items} items" in out, out
    line = problem_line(err)
    assert line.startswith("metagui: 1 problem with the data: ") and match.lower() in line.lower(), line
    assert snapshot(tmp_path) == before


# --- the source itself is bad: one error line ---------------------------------------------------
def _fifo_zip(tmp):
    os.mkfifo(tmp / "data.zip")
    return tmp / "data.zip", "fifo"


def _fifo_table(tmp):
    os.mkfifo(tmp / "data.csv")
    return tmp / "data.csv", "fifo"


def _device_table(tmp):
    os.symlink("/dev/zero", tmp / "data.csv")
    return tmp / "data.csv", "a device"


def _broken_link_source(tmp):
    os.symlink(tmp / "moved.zip", tmp / "data.zip")
    return tmp / "data.zip", "broken link"


def _huge_sparse_table(tmp):
    with open(tmp / "data.csv", "wb") as f:
        f.truncate(300 * MB)
    return tmp / "data.csv", "more than the 256 MB"


def _not_a_zip(tmp):
    (tmp / "data.zip").write_bytes(b"PK\x03\x04 but not really a zip" * 10)
    return tmp / "data.zip", "neither a folder nor a readable zip"


def _every_member_damaged(tmp):
    p = image_zip(tmp / "data.zip", classes=2, per_class=1)
    for name in ("c0/0.png", "c1/0.png"):
        flip_member_byte(p, name)
    return p, "none of the 2 image files"


def _only_nested_json(tmp):
    (tmp / "data.jsonl").write_text("[" * 100_000 + "]" * 100_000 + "\n")
    return tmp / "data.jsonl", "holds no json objects"


def _one_json_object(tmp):
    (tmp / "data.json").write_text(json.dumps({"text": "turn on", "category": "on"}, indent=1))
    return tmp / "data.json", "is one json object"


def _giant_field(tmp):
    (tmp / "data.csv").write_text('text,category\n"' + "x" * 200_000 + '",on\n')
    return tmp / "data.csv", "not a readable table"


REFUSED = {f.__name__.strip("_").replace("_", " "): f for f in (
    _fifo_zip, _fifo_table, _device_table, _broken_link_source, _huge_sparse_table, _not_a_zip, _every_member_damaged,
    _only_nested_json, _one_json_object, _giant_field)}


@pytest.mark.parametrize("case", REFUSED)
def test_a_bad_source_is_one_error_line(case, tmp_path, capsys):
    path, match = REFUSED[case](tmp_path)
    before = snapshot(tmp_path)
    rc, out, err = cli(["datasets", "--check", path], capsys, seconds=30)
    refused(rc, err, match)
    assert out == "" and snapshot(tmp_path) == before


# --- the same reports on the commands that train and evaluate -----------------------------------
@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    """A run trained (one step) by `metagui train` on a folder with a FIFO and a link to a
    device among its images: (store, run id, stderr of train, the inputs' snapshot before)."""
    import io
    from contextlib import redirect_stderr, redirect_stdout

    from metagui.cli import main

    root = tmp_path_factory.mktemp("image-run")
    data = image_folder(root / "inputs" / "images", classes=6)
    os.mkfifo(data / "c0" / "pipe.png")
    os.symlink("/dev/zero", data / "c1" / "zero.png")
    cfg = small_config("protonet", "glyphs", steps=1)
    cfg.dataset.source, cfg.dataset.path, cfg.dataset.image_size = "image_folder", str(data), 16
    cfg.task.way, cfg.task.shot, cfg.task.query = 2, 1, 1
    cfg.task.train_ratio, cfg.task.val_ratio = 0.34, 0.33
    cfg.training.val_episodes = 2
    cfg.save(root / "inputs" / "run.toml")
    before = snapshot(root / "inputs")
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        rc = main(["train", str(root / "inputs" / "run.toml"), "--db", str(root / "store" / "runs.db"), "--verbose"])
    assert rc == 0, err.getvalue()
    run = json.loads(out.getvalue().strip().splitlines()[-1])["run"]
    return root, run, err.getvalue(), before


def test_train_lists_every_problem_with_verbose_and_changes_no_input(image_run):
    root, run, err, before = image_run
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert lines[0] == "metagui: 2 problems with the data:", err
    assert "FIFO" in lines[1] and "a device" in lines[2] and len(lines) == 3, err
    assert snapshot(root / "inputs") == before
    assert RunStore(root / "store" / "runs.db").run(run)["status"] == "completed"


def test_train_without_verbose_prints_one_line(image_run, tmp_path, capsys):
    root, _, _, before = image_run
    rc, out, err = cli(["train", root / "inputs" / "run.toml", "--db", tmp_path / "runs.db", "--quiet"], capsys)
    assert rc == 0, err
    line = problem_line(err)
    assert line.startswith("metagui: 2 problems with the data; the first: ") and "--verbose" in line, line
    assert snapshot(root / "inputs") == before


def test_eval_on_a_damaged_zip_names_the_skipped_member(image_run, tmp_path, capsys):
    root, run, _, _ = image_run
    data = image_zip(tmp_path / "held-out.zip")
    flip_member_byte(data, "c2/1.png")
    before = snapshot(tmp_path)
    rc, out, err = cli(["eval", run, "--db", root / "store" / "runs.db", "--dataset", data,
                        "--episodes-count", 4, "--way", 2, "--shot", 1, "--query", 1], capsys)
    assert rc == 0, err
    assert "c2/1.png is damaged" in problem_line(err)
    assert json.loads(out)["episodes"] == 4 and snapshot(tmp_path) == before


# --- a download that does not stop -------------------------------------------------------------
class _Endless(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.send_response(200)
        self.end_headers()
        chunk = b"x" * 65536
        try:
            for _ in range(64):  # 4 MB, far more than the entry's 0.8 MB
                self.wfile.write(chunk)
        except OSError:
            pass

    def log_message(self, *args: object) -> None:
        pass


def test_a_download_that_sends_too_much_is_stopped(tmp_path, capsys, monkeypatch):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Endless)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("METAGUI_CATALOG_MIRROR", f"http://127.0.0.1:{server.server_address[1]}/")
    monkeypatch.setenv("METAGUI_DATA_DIR", str(tmp_path / "data"))
    try:
        rc, out, err = cli(["datasets", "--download", "banking77-train"], capsys)
    finally:
        server.shutdown()
        server.server_close()
    refused(rc, err, "sent more than the 839073 bytes expected")
    folder = tmp_path / "data" / "datasets" / "banking77-train"
    assert not (folder / "train.csv").exists()
    assert all(p.stat().st_size <= 839_073 for p in folder.iterdir())
