import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from metagui.cli import main
from metagui.core.store import RunStore
from tests.helpers import small_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def trained(tmp_path, capsys):
    cfg = small_config("protonet", "intents", steps=4)
    cfg.training.val_episodes = 10
    path = tmp_path / "run.toml"
    cfg.save(path)
    db = tmp_path / "runs.db"
    assert main(["train", str(path), "--db", str(db)]) == 0
    out = capsys.readouterr().out
    summary = json.loads(out.strip().splitlines()[-1])
    return db, summary, out


def test_train_prints_run_id_progress_and_summary(trained):
    db, summary, out = trained
    assert out.startswith(f"run {summary['run']} started on cpu")
    assert "validation at step 4: accuracy" in out
    assert summary["status"] == "completed" and summary["steps"] == 4 and 0 <= summary["best_val"] <= 1
    assert RunStore(db).run(summary["run"])["status"] == "completed"


def test_eval_runs_and_episodes_file(trained, capsys, tmp_path):
    db, summary, _ = trained
    assert main(["eval", str(summary["run"]), "--db", str(db), "--episodes-count", "40", "--shot", "1"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["episodes"] == 40 and res["shot"] == 1 and 0 <= res["accuracy"] <= 1 and res["ci95"] > 0
    eps = tmp_path / "eps.jsonl"
    ep = {"support": [{"item": "turn on the kitchen light", "label": "on"}, {"item": "switch off the fan", "label": "off"}],
          "query": [{"item": "turn on the lamp", "label": "on"}, {"item": "switch the tv off", "label": "off"}]}
    eps.write_text(json.dumps(ep) + "\n" + json.dumps(ep) + "\n")
    assert main(["eval", str(summary["run"]), "--db", str(db), "--episodes", str(eps)]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["episodes"] == 2 and 0 <= res["accuracy"] <= 1
    assert main(["runs", "--db", str(db)]) == 0
    assert "completed" in capsys.readouterr().out


def test_bad_input_is_one_readable_line_and_nonzero(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[task]\nway = 'many'\n")
    assert main(["train", str(bad), "--db", str(tmp_path / "x.db")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["metagui: error: task.way must be an integer, got 'many'"]
    assert main(["eval", "99", "--db", str(tmp_path / "x.db")]) == 2
    assert "no run with id 99" in capsys.readouterr().err
    assert RunStore(tmp_path / "x.db").runs() == []  # nothing written half-way


def test_listings_and_config_template(capsys):
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    assert "intents" in out and "omniglot-small1" in out and "banking77-train" in out and "clinc150" in out
    assert main(["config", "--algorithm", "maml", "--dataset", "sinusoid", "--preset", "Sinusoid (paper)"]) == 0
    toml = capsys.readouterr().out
    assert 'name = "maml"' in toml and "inner_lr = 0.01" in toml
    assert main(["algorithms"]) == 0
    assert "Prototypical Networks" in capsys.readouterr().out


def test_ctrl_c_stops_training_cleanly(tmp_path):
    cfg = small_config("protonet", "glyphs", steps=100000)
    cfg.save(tmp_path / "long.toml")
    db = tmp_path / "r.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "metagui", "train", str(tmp_path / "long.toml"), "--db", str(db)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    first = proc.stdout.readline()
    assert first.startswith("run 1 started"), first + proc.stderr.read()
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["status"] == "cancelled" and summary["steps"] > 0
    store = RunStore(db)
    assert store.run(1)["status"] == "cancelled" and "last" in store.checkpoints(1)
