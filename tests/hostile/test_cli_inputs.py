"""Hostile inputs to `metagui eval`, `train`, `export` and `predict`: zero and out-of-range
options, a run on data of the other kind, config / episodes / predict files in other
encodings or of odd kinds, header rows. Each through the CLI: the exit code, one readable
line without a traceback, and no input file (nor the run store's runs) changed."""

from __future__ import annotations

import codecs
import json
import os
from pathlib import Path

import pytest

from metagui.core.store import RunStore
from tests.helpers import small_config
from tests.hostile.cli_kit import (
    cli,
    cli_outside_capsys,
    image_folder,
    png,
    png_claiming,
    problem_line,
    refused,
    snapshot,
)

INTENTS = {
    "lights_on": ["turn on the lights", "lights on please", "switch the lamp on"],
    "lights_off": ["turn off the lights", "lights off please", "switch the lamp off"],
    "weather": ["what is the weather", "will it rain today", "is it sunny outside"],
    "timer": ["set a timer", "start a timer for ten minutes", "timer for an hour"],
    "music": ["play some music", "put on a song", "play my playlist"],
    "volume": ["turn the volume up", "louder please", "raise the volume"],
    "shopping": ["add milk to my list", "put eggs on the shopping list", "add bread to the list"],
    "alarm": ["wake me at seven", "set an alarm", "alarm for six tomorrow"],
    "cancel": ["cancel that", "never mind", "stop it"],
}
SUPPORT = [("turn on the light", "on"), ("lights on", "on"), ("turn off the fan", "off"), ("fan off", "off")]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Inputs (a table, an image folder), a store with a text run (3-way) and an image run
    (2-way), each trained one step by `metagui train`, and a bundle of each."""
    root = tmp_path_factory.mktemp("cli-inputs")
    inputs, store = root / "inputs", root / "store"
    inputs.mkdir()
    store.mkdir()
    table = inputs / "intents.csv"
    table.write_text("text,category\n" + "".join(f"{t},{c}\n" for c, ts in INTENTS.items() for t in ts))
    images = image_folder(inputs / "images", classes=6)
    db = store / "runs.db"
    runs = {}
    for kind, source, path, way in (("text", "text_table", table, 3), ("image", "image_folder", images, 2)):
        cfg = small_config("protonet", "glyphs", steps=1)
        cfg.dataset.source, cfg.dataset.path, cfg.dataset.image_size = source, str(path), 16
        cfg.task.way, cfg.task.shot, cfg.task.query = way, 1, 1
        cfg.task.train_ratio, cfg.task.val_ratio = 0.34, 0.33
        cfg.training.val_episodes = 2
        cfg.save(inputs / f"{kind}.toml")
        rc, out, err = cli_outside_capsys(["train", inputs / f"{kind}.toml", "--db", db, "--quiet"])
        assert rc == 0, err
        runs[kind] = json.loads(out.strip().splitlines()[-1])["run"]
        rc, out, err = cli_outside_capsys(["export", runs[kind], "--db", db, "--out", store / f"{kind}.metagui",
                                           "--no-data"])
        assert rc == 0, err
    return {"root": root, "inputs": inputs, "db": db, "runs": runs, "table": table, "images": images,
            "bundles": {k: store / f"{k}.metagui" for k in runs}}


def _runs(world) -> list:
    return [(r["id"], r["status"], r["steps_done"]) for r in RunStore(world["db"]).runs()]


# --- options are checked, never replaced by the config's value ---------------------------------
INVALID = {
    "eval way 0": (["eval", "{text}", "--way", 0], "--way must be at least 2, got 0"),
    "eval way 1": (["eval", "{text}", "--way", 1], "--way must be at least 2, got 1"),
    "eval shot 0": (["eval", "{text}", "--shot", 0], "--shot must be at least 1, got 0"),
    "eval query 0": (["eval", "{text}", "--query", 0], "--query must be at least 1, got 0"),
    "eval no episodes": (["eval", "{text}", "--episodes-count", 0], "--episodes-count must be at least 1, got 0"),
    "eval negative episodes": (["eval", "{text}", "--episodes-count", -5], "--episodes-count must be at least 1"),
    "eval a million episodes": (["eval", "{text}", "--episodes-count", 1_000_000], "must be at most 100,000"),
    "train zero steps": (["train", "{inputs}/text.toml", "--steps", 0], "--steps must be at least 1, got 0"),
    "train negative steps": (["train", "{inputs}/text.toml", "--steps", -3], "--steps must be at least 1"),
    "export negative episodes": (["export", "{text}", "--out", "{root}/x.metagui", "--episodes", -1],
                                 "--episodes must be 0"),
}


def _argv(world, argv):
    fill = {"text": world["runs"]["text"], "image": world["runs"]["image"], "inputs": world["inputs"],
            "root": world["root"]}
    return [str(a).format(**fill) for a in argv] + ["--db", world["db"]]


@pytest.mark.parametrize("case", INVALID)
def test_an_invalid_option_is_one_line_and_nothing_runs(case, world, capsys):
    argv, message = INVALID[case]
    before, runs = snapshot(world["inputs"]), _runs(world)
    rc, out, err = cli(_argv(world, argv), capsys)
    refused(rc, err, message)
    assert out == "" and snapshot(world["inputs"]) == before and _runs(world) == runs
    assert not (world["root"] / "x.metagui").exists()


def test_valid_small_values_are_taken_as_given(world, capsys):
    """The text run was trained 3-way; --way 2 --shot 1 --query 1 is what gets evaluated."""
    rc, out, err = cli(_argv(world, ["eval", "{text}", "--way", 2, "--shot", 1, "--query", 1,
                                     "--episodes-count", 3]), capsys)
    assert rc == 0, err
    res = json.loads(out)
    assert (res["way"], res["shot"], res["query"], res["episodes"]) == (2, 1, 1, 3)


def test_export_with_zero_episodes_means_no_held_out_figures(world, tmp_path, capsys):
    rc, out, err = cli(_argv(world, ["export", "{text}", "--out", tmp_path / "m.metagui", "--episodes", 0]), capsys)
    assert rc == 0, err
    assert json.loads(out)["adaptation"] == {} and (tmp_path / "m.metagui").is_file()


# --- a run evaluated on data of the other kind --------------------------------------------------
MISMATCH = {
    "text run on images": ("{text}", "images", "run {text} is a text model: it needs a text dataset"),
    "image run on a table": ("{image}", "table", "is an image model: it needs an image dataset"),
    "image run on intents": ("{image}", "intents", "needs an image dataset"),
    "text run on sinusoid": ("{text}", "sinusoid", "needs a text dataset"),
    "text run on an image catalog entry": ("{text}", "omniglot-small1", "not omniglot-small1 (image)"),
}


@pytest.mark.parametrize("case", MISMATCH)
def test_a_run_on_data_of_the_other_kind_says_what_it_needs(case, world, capsys):
    run, data, message = MISMATCH[case]
    data = str(world[data]) if data in ("images", "table") else data
    before = snapshot(world["inputs"])
    rc, out, err = cli(_argv(world, ["eval", run, "--dataset", data, "--episodes-count", 2]), capsys)
    refused(rc, err, message.format(text=world["runs"]["text"]))
    assert snapshot(world["inputs"]) == before


# --- config and episodes files: any table encoding, regular files only ----------------------
def _utf16(text: str) -> bytes:
    return codecs.BOM_UTF16_LE + text.encode("utf-16-le")


def test_a_utf16_config_is_read(tmp_path, capsys):
    (tmp_path / "run.toml").write_bytes(_utf16('name = "x"\n[task]\nway = "many"\n'))
    before = snapshot(tmp_path)
    rc, _, err = cli(["train", tmp_path / "run.toml", "--db", tmp_path / "runs.db"], capsys)
    refused(rc, err, "task.way must be an integer, got 'many'")  # decoded: it got as far as the keys
    assert snapshot(tmp_path) == before


def test_a_cp1252_config_is_read_with_a_note(tmp_path, capsys):
    (tmp_path / "run.toml").write_bytes('name = "Café"\n[task]\nway = "many"\n'.encode("cp1252"))
    before = snapshot(tmp_path)
    rc, _, err = cli(["train", tmp_path / "run.toml", "--db", tmp_path / "runs.db"], capsys)
    refused(rc, err, "task.way must be an integer")
    assert "run.toml is not UTF-8; it was read as cp1252" in problem_line(err)
    assert snapshot(tmp_path) == before


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _sparse(path: Path, size: int) -> Path:
    with open(path, "wb") as f:
        f.truncate(size)
    return path


BAD_CONFIGS = {
    "a FIFO": (lambda p: _fifo(p), "is a fifo"),
    "100 MB": (lambda p: _sparse(p, 100 << 20), "more than the 64 mb"),
    "nested too deeply": (lambda p: p.write_text("a = " + "[" * 50_000 + "]" * 50_000), "nested too deeply"),
    "a broken link": (lambda p: os.symlink(p.parent / "elsewhere.toml", p), "broken link"),
}


@pytest.mark.parametrize("case", BAD_CONFIGS)
def test_a_bad_config_file_is_one_line(case, tmp_path, capsys):
    make, message = BAD_CONFIGS[case]
    make(tmp_path / "run.toml")
    before = snapshot(tmp_path)
    rc, _, err = cli(["train", tmp_path / "run.toml", "--db", tmp_path / "runs.db"], capsys, seconds=20)
    refused(rc, err, message)
    assert snapshot(tmp_path) == before


EPISODE = {"support": [{"item": "turn on the lights", "label": "on"}, {"item": "what is the weather", "label": "w"}],
           "query": [{"item": "lights on please", "label": "on"}, {"item": "will it rain, café", "label": "w"}]}


@pytest.mark.parametrize("encoding", ["utf-16", "cp1252"])
def test_episodes_files_are_read_in_table_encodings(encoding, world, tmp_path, capsys):
    text = "\n".join(json.dumps(EPISODE, ensure_ascii=False) for _ in range(2)) + "\n"
    (tmp_path / "eps.jsonl").write_bytes(_utf16(text) if encoding == "utf-16" else text.encode(encoding))
    before = snapshot(tmp_path)
    rc, out, err = cli(_argv(world, ["eval", "{text}", "--episodes", tmp_path / "eps.jsonl"]), capsys)
    assert rc == 0, err
    assert json.loads(out)["episodes"] == 2
    if encoding == "cp1252":
        assert "eps.jsonl is not UTF-8; it was read as cp1252" in problem_line(err)
    else:
        assert err == ""
    assert snapshot(tmp_path) == before


BAD_EPISODES = {
    "a FIFO": (lambda p: _fifo(p), "is a fifo"),
    "a nested line": (lambda p: p.write_text("[" * 100_000 + "]" * 100_000 + "\n"), "line 1 is not json"),
    "a device": (lambda p: os.symlink("/dev/zero", p), "is a device"),
}


@pytest.mark.parametrize("case", BAD_EPISODES)
def test_a_bad_episodes_file_is_one_line(case, world, tmp_path, capsys):
    make, message = BAD_EPISODES[case]
    make(tmp_path / "eps.jsonl")
    before = snapshot(tmp_path)
    rc, _, err = cli(_argv(world, ["eval", "{text}", "--episodes", tmp_path / "eps.jsonl"]), capsys, seconds=20)
    refused(rc, err, message)
    assert snapshot(tmp_path) == before


# --- predict: encodings and header rows -----------------------------------------------------
def _csv(rows, header="", delim=",") -> str:
    return (f"{header}\n" if header else "") + "".join(f"{t}{delim}{label}\n" for t, label in rows)


PREDICT_FILES = {
    # name: (file name, bytes, extra options, labels expected)
    "utf-16 without a header": ("s.csv", _utf16(_csv(SUPPORT)), [], ["off", "on"]),
    "header utterance,intent": ("s.csv", _csv(SUPPORT, "utterance,intent").encode(), [], ["off", "on"]),
    "header in capitals": ("s.csv", _csv(SUPPORT, "Text,Label").encode(), [], ["off", "on"]),
    "tsv header Sentence/Intent": ("s.tsv", _csv(SUPPORT, "Sentence\tIntent", "\t").encode(), [], ["off", "on"]),
    "header of other names, --header": ("s.csv", _csv(SUPPORT, "phrase,meaning").encode(), ["--header"], ["off", "on"]),
    "header-like data, --no-header": ("s.csv", _csv([("text", "greet"), *SUPPORT]).encode(), ["--no-header"],
                                      ["greet", "off", "on"]),
    "json lines in other case": ("s.jsonl", "".join(json.dumps({"Utterance": t, "Intent": c}) + "\n"
                                                    for t, c in SUPPORT).encode(), [], ["off", "on"]),
}


@pytest.mark.parametrize("case", PREDICT_FILES)
def test_predict_reads_support_files_as_tables_are(case, world, tmp_path, capsys):
    name, data, options, labels = PREDICT_FILES[case]
    (tmp_path / name).write_bytes(data)
    (tmp_path / "q.txt").write_text("please turn the lamp on\nswitch the fan off\n")
    before = snapshot(tmp_path)
    rc, out, err = cli(["predict", world["bundles"]["text"], "--support", tmp_path / name, "--query",
                        tmp_path / "q.txt", *options], capsys)
    assert rc == 0 and err == "", err
    assert json.loads(out)["labels"] == labels
    assert snapshot(tmp_path) == before


def test_predict_reports_a_cp1252_support_file(world, tmp_path, capsys):
    (tmp_path / "s.csv").write_bytes(_csv([("café au lait", "café"), ("tea", "café"), *SUPPORT]).encode("cp1252"))
    (tmp_path / "q.txt").write_text("a coffee please\n")
    rc, out, err = cli(["predict", world["bundles"]["text"], "--support", tmp_path / "s.csv", "--query",
                        tmp_path / "q.txt"], capsys)
    assert rc == 0, err
    assert json.loads(out)["labels"] == ["café", "off", "on"]
    assert "s.csv is not UTF-8; it was read as cp1252" in problem_line(err)


def test_predict_leaves_texts_that_name_files_as_texts(world, tmp_path, capsys):
    """A query 300 characters long, and one that is the name of a file beside the queries."""
    (tmp_path / "s.csv").write_text(_csv(SUPPORT))
    (tmp_path / "notes").write_text("not a query")
    long = "turn on " + "very " * 60 + "bright lights"
    (tmp_path / "q.txt").write_text(f"{long}\nnotes\n")
    before = snapshot(tmp_path)
    rc, out, err = cli(["predict", world["bundles"]["text"], "--support", tmp_path / "s.csv", "--query",
                        tmp_path / "q.txt"], capsys)
    assert rc == 0, err
    assert [p["item"] for p in json.loads(out)["predictions"]] == [long, "notes"]
    assert snapshot(tmp_path) == before


BAD_PREDICT = {
    "a row without a label": ("text", lambda d: (d / "s.csv").write_text("text,label\nturn on,on\nfan off,\n"),
                              "s.csv line 3 needs an item and a label"),
    "a FIFO as support": ("text", lambda d: _fifo(d / "s.csv"), "is a fifo"),
    "a FIFO as an image query": ("image", lambda d: _fifo(d / "q.png"), "is a fifo"),
    "a pixel bomb as an image query": ("image", lambda d: (d / "q.png").write_bytes(png_claiming(30_000, 30_000)),
                                       "megapixels"),
    "a device as an image query": ("image", lambda d: os.symlink("/dev/zero", d / "q.png"), "is a device"),
}


@pytest.mark.parametrize("case", BAD_PREDICT)
def test_bad_predict_inputs_are_one_line(case, world, tmp_path, capsys):
    kind, make, message = BAD_PREDICT[case]
    if kind == "image":
        for i, label in enumerate(("a", "b")):
            (tmp_path / f"{label}.png").write_bytes(png(i, 16))
        (tmp_path / "s.csv").write_text("item,label\na.png,a\nb.png,b\n")
        (tmp_path / "q.txt").write_text("q.png\n")
    else:
        (tmp_path / "q.txt").write_text("lamp on\n")
    make(tmp_path)
    before = snapshot(tmp_path)
    rc, out, err = cli(["predict", world["bundles"][kind], "--support", tmp_path / "s.csv", "--query",
                        tmp_path / "q.txt"], capsys, seconds=20)
    refused(rc, err, message)
    assert out == "" and snapshot(tmp_path) == before
