"""Hostile bundles, through `metagui predict` and `metagui export BUNDLE`, and export targets
that are not ours to replace. A bad bundle is one readable line and changes nothing (no
file is written, extracted or replaced); an export replaces an existing file only with
--force, and never anything that is not a regular file."""

from __future__ import annotations

import io
import json
import os
import struct
import warnings
import zipfile

import pytest
import torch
from safetensors.torch import load, save

from metagui.core.export.bundle import zip_bytes
from tests.helpers import small_config
from tests.hostile.cli_kit import (
    cli,
    cli_outside_capsys,
    flip_member_byte,
    patch_central_entry,
    refused,
    snapshot,
)

TEXTS = {c: [f"{w} {c} {i}" for i, w in enumerate(("please", "now", "quickly"))] for c in
         ("lights", "weather", "timer", "music", "volume", "alarm")}


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """A text run trained one step by `metagui train`, and its bundle: (db, run id, bundle path)."""
    root = tmp_path_factory.mktemp("bundles")
    (root / "intents.csv").write_text("text,category\n" + "".join(f"{t},{c}\n" for c, ts in TEXTS.items() for t in ts))
    cfg = small_config("protonet", "glyphs", steps=1)
    cfg.dataset.source, cfg.dataset.path = "text_table", str(root / "intents.csv")
    cfg.task.way, cfg.task.shot, cfg.task.query = 2, 1, 1
    cfg.task.train_ratio, cfg.task.val_ratio = 0.34, 0.33
    cfg.training.val_episodes = 2
    cfg.save(root / "run.toml")
    rc, out, err = cli_outside_capsys(["train", root / "run.toml", "--db", root / "runs.db", "--quiet"])
    assert rc == 0, err
    run = json.loads(out.strip().splitlines()[-1])["run"]
    rc, _, err = cli_outside_capsys(["export", run, "--db", root / "runs.db", "--out", root / "good.metagui",
                                     "--no-data"])
    assert rc == 0, err
    return root / "runs.db", run, root / "good.metagui"


def _members(path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def _raw_zip(entries: list[tuple[str, bytes]], compression=zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as zf, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a name twice is the point of one case
        for name, data in entries:
            zf.writestr(name, data)
    return buf.getvalue()


def _rebuilt(m: dict[str, bytes], **changes: bytes) -> bytes:
    """A bundle with a consistent manifest (checksums recomputed) but altered members."""
    members = {k: v for k, v in m.items() if k != "manifest.json"}
    members.update({k.replace("_", "."): v for k, v in changes.items()})
    return zip_bytes(members)


def _edit_json(m: dict[str, bytes], name: str, **values) -> bytes:
    obj = json.loads(m[name])
    obj.update(values)
    return _rebuilt(m, **{name.replace(".", "_"): json.dumps(obj).encode()})


def _weights(m: dict[str, bytes], **tensors) -> bytes:
    state = load(m["weights.safetensors"])
    state.update(tensors)
    return save(state)


def _manifest(m: dict[str, bytes], **values) -> bytes:
    manifest = json.loads(m["manifest.json"])
    manifest.update(values)
    return _raw_zip([("manifest.json", json.dumps(manifest).encode()), *((k, v) for k, v in m.items()
                                                                        if k != "manifest.json")])


def _then(path, data: bytes, forge) -> None:
    path.write_bytes(data)
    forge(path)


NESTED = ("[" * 100_000 + "]" * 100_000).encode()


def _cases(good_path) -> dict:
    """name -> (how to write the hostile bundle at a path, what the one error line says)."""
    m = _members(good_path)
    raw = good_path.read_bytes()
    rest = [(k, v) for k, v in m.items()]
    first_tensor, tensor = next((k, v) for k, v in load(m["weights.safetensors"]).items() if v.ndim)
    shape = list(tensor.shape)

    def data(b: bytes):
        return lambda p: p.write_bytes(b)

    return {
        "not a zip": (data(b"MZ\x90\x00 an executable, not a bundle"), "not a zip file"),
        "empty file": (data(b""), "not a zip file"),
        "truncated": (data(raw[: len(raw) // 2]), "not a zip file"),
        "path traversal": (data(_raw_zip([*rest, ("../../evil.py", b"import os")])), "unsafe file name"),
        "absolute path": (data(_raw_zip([("/tmp/evil.py", b"x"), *rest])), "unsafe file name"),
        "backslash path": (data(_raw_zip([*rest, ("..\\evil.py", b"x")])), "unsafe file name"),
        "drive letter": (data(_raw_zip([*rest, ("C:evil.py", b"x")])), "unsafe file name"),
        "unexpected file": (data(_raw_zip([*rest, ("setup.py", b"x")])), "unexpected file 'setup.py'"),
        "pickle inside": (data(_raw_zip([*rest, ("weights.pt", b"\x80\x04cos\nsystem\n")])), "unexpected file"),
        "member twice": (data(_raw_zip([*rest, ("labels.json", b"{}")])), "labels.json twice"),
        "missing weights": (data(_raw_zip([(k, v) for k, v in rest if k != "weights.safetensors"])),
                            "missing weights.safetensors"),
        "altered weights": (data(_raw_zip([(k, v) for k, v in rest if k != "weights.safetensors"]
                                          + [("weights.safetensors", _weights(m, **{first_tensor: torch.zeros(shape)}))])),
                            "does not match its checksum"),
        "altered card": (data(_raw_zip([(k, v) for k, v in rest if k != "model_card.md"] + [("model_card.md", b"hi")])),
                         "model_card.md does not match its checksum"),
        "manifest of another format": (data(_manifest(m, format="zip")), "not a metagui bundle (manifest format"),
        "manifest version 99": (data(_manifest(m, version=99)), "bundle version 99"),
        "manifest lists no files": (data(_manifest(m, files=None)), "does not list the bundle's files"),
        "manifest not json": (data(_raw_zip([("manifest.json", b"{nope"), *((k, v) for k, v in rest
                                                                          if k != "manifest.json")])),
                              "manifest.json is not valid json"),
        "wrong tensor shape": (data(_rebuilt(m, weights_safetensors=_weights(
            m, **{first_tensor: torch.zeros([s + 1 for s in shape])}))), f"tensor {first_tensor} is float32"),
        "extra tensor": (data(_rebuilt(m, weights_safetensors=_weights(m, evil=torch.zeros(2)))), "unexpected ['evil']"),
        "nan weights": (data(_rebuilt(m, weights_safetensors=_weights(
            m, **{first_tensor: torch.full(shape, float("nan"))}))), "nan or infinite"),
        "damaged safetensors header": (data(_rebuilt(m, weights_safetensors=struct.pack("<Q", 1 << 62) + b"{}")),
                                       "damaged header"),
        "zip bomb": (data(_raw_zip([(k, v) for k, v in rest if k != "weights.safetensors"]
                                   + [("weights.safetensors", bytes(64 << 20))])), "zip bomb"),
        "member over its limit": (data(_raw_zip([(k, v) for k, v in rest if k != "model.json"]
                                                + [("model.json", b" " * (5 << 20))], zipfile.ZIP_STORED)),
                                  "model.json is larger than a bundle allows"),
        "bad crc": (lambda p: _then(p, raw, lambda q: flip_member_byte(q, "config.toml", 5)), "cannot be read"),
        "encrypted member": (lambda p: _then(p, raw, lambda q: patch_central_entry(q, "labels.json", flags=1)),
                             "encrypted"),
        "unknown compression": (lambda p: _then(p, raw, lambda q: patch_central_entry(q, "labels.json", method=97)),
                                "cannot be read"),
        "algorithm os.system": (data(_edit_json(m, "model.json", algorithm="os.system")), "unknown algorithm 'os.system'"),
        "negative n_way": (data(_edit_json(m, "model.json", n_way=-1)), "invalid n_way -1"),
        "billion n_way": (data(_edit_json(m, "model.json", n_way=10**9)), "invalid n_way"),
        "hyperparams a list": (data(_edit_json(m, "model.json", hyperparams=["rm -rf"])), "no hyperparameters"),
        "backbone a number": (data(_edit_json(m, "model.json", backbone=42)), "names no backbone"),
        "model.json nested": (data(_rebuilt(m, model_json=NESTED)), "model.json is not valid json"),
        "huge text buckets": (data(_edit_json(m, "preprocessing.json", text_buckets=1 << 40)), "out of range"),
        "negative image size": (data(_edit_json(m, "preprocessing.json", image_size=-5)), "out of range"),
        "config not toml": (data(_rebuilt(m, config_toml=b"[[[")), "config.toml is not a valid run config"),
        "config nested": (data(_rebuilt(m, config_toml=b"a = " + NESTED)), "config.toml is not a valid run config"),
        "labels a list": (data(_rebuilt(m, labels_json=b"[1, 2]")), "labels.json must hold a json object"),
        "a fifo": (lambda p: os.mkfifo(p), "is a fifo"),
        "a folder": (lambda p: p.mkdir(), "is a folder"),
        "a device": (lambda p: os.symlink("/dev/zero", p), "is a device"),
    }


@pytest.fixture(scope="module")
def cases(good):
    return _cases(good[2])



@pytest.mark.parametrize("command", ["predict", "export"])
@pytest.mark.parametrize("case", [
    "not a zip", "empty file", "truncated", "path traversal", "absolute path", "backslash path", "drive letter",
    "unexpected file", "pickle inside", "member twice", "missing weights", "altered weights", "altered card",
    "manifest of another format", "manifest version 99", "manifest lists no files", "manifest not json",
    "wrong tensor shape", "extra tensor", "nan weights", "damaged safetensors header", "zip bomb",
    "member over its limit", "bad crc", "encrypted member", "unknown compression", "algorithm os.system",
    "negative n_way", "billion n_way", "hyperparams a list", "backbone a number", "model.json nested",
    "huge text buckets", "negative image size", "config not toml", "config nested", "labels a list", "a fifo",
    "a folder", "a device"])
def test_a_hostile_bundle_is_one_line_and_changes_nothing(case, command, cases, tmp_path, capsys):
    make, message = cases[case]
    work = tmp_path / "work"
    work.mkdir()
    bundle = work / "model.metagui"
    make(bundle)
    (work / "s.csv").write_text("item,label\nturn on,on\nturn off,off\n")
    (work / "q.txt").write_text("lamp on\n")
    before = snapshot(tmp_path)
    argv = (["predict", bundle, "--support", work / "s.csv", "--query", work / "q.txt"] if command == "predict"
            else ["export", bundle, "--format", "bundle", "--out", work / "out.metagui", "--no-data"])
    rc, out, err = cli(argv, capsys, seconds=30)
    refused(rc, err, message)
    assert out == "" and snapshot(tmp_path) == before  # nothing extracted, written or replaced
    assert not (tmp_path.parent / "evil.py").exists() and not (tmp_path / "evil.py").exists()


# --- export targets ----------------------------------------------------------------------------
def _export(good, out, *extra, fmt="bundle"):
    db, run, _ = good
    return ["export", run, "--db", db, "--format", fmt, "--out", out, "--no-data", *extra]


def test_an_unrelated_file_at_out_is_kept_without_force(good, tmp_path, capsys):
    (tmp_path / "model.metagui").write_text("my thesis, not a bundle")
    before = snapshot(tmp_path)
    rc, out, err = cli(_export(good, tmp_path / "model.metagui"), capsys)
    refused(rc, err, "model.metagui already exists; nothing was written (--force replaces it)")
    assert snapshot(tmp_path) == before


def test_force_replaces_the_file(good, tmp_path, capsys):
    (tmp_path / "model.metagui").write_text("an old export")
    (tmp_path / "notes.txt").write_text("beside it")
    rc, out, err = cli(_export(good, tmp_path / "model.metagui", "--force"), capsys)
    assert rc == 0, err
    assert zipfile.is_zipfile(tmp_path / "model.metagui") and (tmp_path / "notes.txt").read_text() == "beside it"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.metagui", "notes.txt"]  # no temporary file left


def test_a_sidecar_that_is_there_is_kept_without_force(good, tmp_path, capsys):
    (tmp_path / "model.pt.md").write_text("my own notes about model.pt")
    before = snapshot(tmp_path)
    rc, out, err = cli(_export(good, tmp_path / "model.pt", fmt="torchscript"), capsys)
    refused(rc, err, "model.pt.md already exists")
    assert snapshot(tmp_path) == before


def test_the_same_export_into_a_folder_twice_needs_force(good, tmp_path, capsys):
    rc, out, err = cli(_export(good, tmp_path), capsys)
    assert rc == 0, err
    written = json.loads(out)["path"]
    before = snapshot(tmp_path)
    rc, out, err = cli(_export(good, tmp_path), capsys)
    refused(rc, err, f"{written} already exists")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("kind", ["fifo", "link to a file elsewhere", "folder named like a sidecar"])
def test_force_never_replaces_what_is_not_a_regular_file(kind, good, tmp_path, capsys):
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "elsewhere.txt").write_text("not in the target folder")
    fmt, out = "bundle", work / "model.metagui"
    if kind == "fifo":
        os.mkfifo(out)
    elif kind == "link to a file elsewhere":
        os.symlink(tmp_path / "elsewhere.txt", out)
    else:
        fmt, out = "torchscript", work / "model.pt"
        (work / "model.pt.json").mkdir()
    before = snapshot(tmp_path)
    rc, _, err = cli(_export(good, out, "--force", fmt=fmt), capsys, seconds=30)
    refused(rc, err, "is not a regular file; it was left as it is")
    assert snapshot(tmp_path) == before


def test_a_users_partial_file_is_not_touched(good, tmp_path, capsys):
    (tmp_path / "model.metagui.partial").write_text("a download in progress")
    rc, out, err = cli(_export(good, tmp_path / "model.metagui"), capsys)
    assert rc == 0, err
    assert (tmp_path / "model.metagui.partial").read_text() == "a download in progress"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.metagui", "model.metagui.partial"]


def test_a_missing_target_folder_is_one_line(good, tmp_path, capsys):
    rc, out, err = cli(_export(good, tmp_path / "nowhere" / "model.metagui"), capsys)
    refused(rc, err, "the target folder does not exist")
    assert list(tmp_path.iterdir()) == []
