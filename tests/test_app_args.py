"""`metagui --version`, and `metagui BUNDLE.metagui` (how a desktop opens a file with the app:
the .desktop entry's `Exec=metagui %F`, the Windows and macOS file associations)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from metagui import __version__
from metagui.cli import build_parser, main, split_bundles
from metagui.core.export import export_run
from metagui.core.store import RunStore
from metagui.core.trainer import Trainer, TrainingControl
from tests.helpers import small_config

ROOT = Path(__file__).resolve().parents[1]


def test_version(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"metagui {__version__}"


@pytest.mark.parametrize("argv, rest, bundles", [
    (["a.metagui"], [], ["a.metagui"]),
    (["--db", "x.db", "a.metagui", "B.METAGUI"], ["--db", "x.db"], ["a.metagui", "B.METAGUI"]),
    (["--demo"], ["--demo"], []),
    ([], [], []),
    # a subcommand's own .metagui arguments stay its own
    (["predict", "a.metagui", "--support", "s.csv"], ["predict", "a.metagui", "--support", "s.csv"], []),
    (["export", "1", "--out", "a.metagui"], ["export", "1", "--out", "a.metagui"], []),
    # not a bundle, not a command: argparse says so
    (["notes.txt"], ["notes.txt"], []),
])
def test_bundles_on_the_command_line_are_told_from_commands(argv, rest, bundles):
    assert split_bundles(argv, build_parser()) == (rest, bundles)


def test_a_bundle_given_on_the_command_line_opens_in_the_app(tmp_path):
    store = RunStore(tmp_path / "train.db")
    cfg = small_config("maml", "sinusoid", steps=2)
    cfg.training.val_episodes = 2
    result = Trainer(cfg, store, None, TrainingControl()).run()
    assert result.status == "completed", result.error
    bundle = export_run(store, result.run_id, "bundle", tmp_path, load_data=False).path
    store.close()

    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "METAGUI_FIRST_WINDOW_EXIT": "1",
           "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "config"),
           "XDG_DATA_HOME": str(tmp_path / "data"), "PYTHONPATH": str(ROOT)}
    env.pop("METAGUI_DB", None)
    proc = subprocess.run([sys.executable, "-m", "metagui", "--db", str(tmp_path / "app.db"), str(bundle)],
                          env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("first window at "), proc.stdout
    runs = RunStore(tmp_path / "app.db").runs()
    assert len(runs) == 1 and runs[0]["algorithm"] == "maml", runs


def test_a_reader_that_left_is_no_error_message(tmp_path):
    """`metagui config | head -0` with Python's usual block-buffered stdout (a frozen app's
    always is: it ignores PYTHONUNBUFFERED): exit 141, nothing on stderr."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    env["PYTHONPATH"] = str(ROOT)
    try:
        proc = subprocess.run([sys.executable, "-m", "metagui", "config"], stdout=write_end, stderr=subprocess.PIPE,
                              text=True, env=env, timeout=120, cwd=tmp_path)
    finally:
        os.close(write_end)
    assert (proc.returncode, proc.stderr) == (141, "")
