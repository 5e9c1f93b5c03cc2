"""A catalogue of hostile and faulty cases for the run store, killed runs, damaged
checkpoints and divergence, each through the CLI.

Every case checks the exit code, that the user reads one line and no traceback, and that
nothing outside the target was changed: the sha256 of every file around it before and after
(a file that is not MetaGUI's stays byte for byte as it was, no -wal/-shm/-journal appears).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

from metagui.cli import main
from metagui.core.checkpoint import read_meta
from metagui.core.store import APPLICATION_ID, SCHEMA_VERSION, RunStore, process_identity
from tests.helpers import small_config

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


# --- helpers -------------------------------------------------------------------------------------
def snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (their names too: a new file shows)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


DATA_NOTE = re.compile(r"metagui: \d+ problems? with ")


def one_line(err: str) -> str:
    """The single line the user reads on stderr (no traceback), besides a note on the data's
    problems (the demo intents have a class too small for some tasks)."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip() and not DATA_NOTE.match(line)]
    assert len(lines) == 1, err
    return lines[0]


def write_config(path: Path, steps: int = 4, algorithm: str = "protonet", source: str = "intents", **hp) -> Path:
    cfg = small_config(algorithm, source, steps=steps, **hp)
    cfg.training.val_every = 2
    cfg.training.val_episodes = 4
    cfg.training.device = "cpu"
    cfg.save(path)
    return path


# The first release's store, as its sqlite-utils calls created it (no application_id, user
# version 0). Written out here, not taken from the store module, so that a change to what the
# store recognises as a first-release store shows up as a failing adoption test.
V1_SQL = [
    'CREATE TABLE "datasets" ("id" TEXT PRIMARY KEY, "name" TEXT, "source" TEXT, "path" TEXT, "config" TEXT, '
    '"stats" TEXT, "created" REAL)',
    'CREATE TABLE "projects" ("id" INTEGER PRIMARY KEY, "name" TEXT, "config" TEXT, "created" REAL, "updated" REAL)',
    'CREATE TABLE "runs" ("id" INTEGER PRIMARY KEY, "name" TEXT, "project_id" INTEGER, "dataset_id" TEXT, '
    '"config" TEXT, "algorithm" TEXT, "dataset" TEXT, "task" TEXT, "status" TEXT, "device" TEXT, "created" REAL, '
    '"started" REAL, "finished" REAL, "duration_s" REAL, "steps_done" INTEGER, "best_val" REAL, '
    '"best_val_ci" REAL, "error" TEXT, "tags" TEXT, "pid" INTEGER)',
    'CREATE TABLE "metrics" ("run_id" INTEGER, "step" INTEGER, "name" TEXT, "value" REAL, "time" REAL)',
    'CREATE INDEX "idx_metrics_run_id_name_step" ON "metrics" ("run_id", "name", "step")',
    'CREATE TABLE "checkpoints" ("run_id" INTEGER, "kind" TEXT, "path" TEXT, "step" INTEGER, "metric" REAL, '
    '"created" REAL, PRIMARY KEY ("run_id", "kind"))',
    'CREATE TABLE "transcripts" ("id" INTEGER PRIMARY KEY, "run_id" INTEGER, "title" TEXT, "created" REAL, '
    '"updated" REAL, "messages" TEXT, "support" TEXT)',
]
V1_ROWS = [
    "INSERT INTO projects VALUES (1, 'old project', 'name = \"old\"', 1.0, 2.0)",
    "INSERT INTO runs VALUES (1, 'an old run', 1, 'abc', '[training]\nsteps = 4\n', 'protonet', 'glyphs', "
    "'5-way 1-shot', 'completed', 'cpu', 1.0, 1.5, 4.0, 2.5, 4, 0.5, 0.1, '', '[]', 1)",
    "INSERT INTO metrics VALUES (1, 1, 'train/loss', 1.5, 1.0), (1, 2, 'train/loss', 1.25, 2.0)",
    "INSERT INTO transcripts VALUES (1, 1, 'chat', 1.0, 1.0, '[{\"role\": \"user\", \"text\": \"hi\"}]', '{}')",
]


def sqlite_file(path: Path, *sql: str, wal: bool = False) -> Path:
    conn = sqlite3.connect(path)
    if wal:
        conn.execute("PRAGMA journal_mode=WAL")
    for statement in sql:
        conn.execute(statement)
    conn.commit()
    conn.close()
    return path


def v1_store(path: Path) -> Path:
    return sqlite_file(path, *V1_SQL, *V1_ROWS, wal=True)


def pragma(path: Path, name: str) -> int:
    conn = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
    try:
        return conn.execute(f"PRAGMA {name}").fetchone()[0]
    finally:
        conn.close()


# --- files that are not (usable) run stores ---------------------------------------------------------
def _text(d: Path) -> Path:
    (d / "scores.db").write_text("name,score\nada,3\n")
    return d / "scores.db"


def _binary(d: Path) -> Path:
    (d / "blob.db").write_bytes(bytes(range(256)) * 16)
    return d / "blob.db"


def _truncated_sqlite(d: Path) -> Path:
    whole = sqlite_file(d / "whole.tmp", "CREATE TABLE t (x)")
    (d / "cut.db").write_bytes(whole.read_bytes()[:60])
    whole.unlink()
    return d / "cut.db"


def _foreign_runs_table(d: Path) -> Path:
    return sqlite_file(d / "other.db", "CREATE TABLE runs (id INTEGER PRIMARY KEY, what TEXT)",
                       "INSERT INTO runs VALUES (1, 'theirs')")


def _foreign_wal(d: Path) -> Path:
    return sqlite_file(d / "other.db", "CREATE TABLE runs (id INTEGER PRIMARY KEY)",
                       "CREATE TABLE metrics (run_id INTEGER, value REAL)", wal=True)


def _foreign_application_id(d: Path) -> Path:  # MetaGUI's very tables, but marked as another program's
    return sqlite_file(d / "other.db", "PRAGMA application_id = 251941138", *V1_SQL)


def _v1_plus_a_table(d: Path) -> Path:
    return sqlite_file(d / "other.db", *V1_SQL, "CREATE TABLE notes (x TEXT)")


def _v1_minus_a_table(d: Path) -> Path:
    return sqlite_file(d / "other.db", *[s for s in V1_SQL if "transcripts" not in s])


def _v1_other_columns(d: Path) -> Path:
    return sqlite_file(d / "other.db", *V1_SQL, 'ALTER TABLE "runs" ADD COLUMN "owner" TEXT')


def _v1_with_a_user_version(d: Path) -> Path:
    return sqlite_file(d / "other.db", *V1_SQL, "PRAGMA user_version = 7")


def _empty_sqlite(d: Path) -> Path:
    return sqlite_file(d / "other.db", "PRAGMA journal_mode=WAL", "CREATE TABLE t (x)", "DROP TABLE t")


def _newer_metagui(d: Path) -> Path:
    return sqlite_file(d / "future.db", f"PRAGMA application_id = {APPLICATION_ID}",
                       f"PRAGMA user_version = {SCHEMA_VERSION + 1}", *V1_SQL)


def _damaged_store(d: Path) -> Path:
    path = d / "damaged.db"
    store = RunStore(path)
    store.create_run(name="r", config_toml="", algorithm="protonet", dataset="d", task="t", device="cpu")
    store.close()
    data = bytearray(path.read_bytes())
    data[100:] = bytes((i * 7 + 3) % 256 for i in range(len(data) - 100))
    path.write_bytes(bytes(data))
    return path


def _folder(d: Path) -> Path:
    (d / "store.db").mkdir()
    return d / "store.db"


BAD_STORES = {
    "text-file": (_text, "not a SQLite database"),
    "binary-file": (_binary, "not a SQLite database"),
    "truncated-sqlite": (_truncated_sqlite, "truncated SQLite file"),
    "foreign-runs-table": (_foreign_runs_table, "another program's SQLite database (tables: runs)"),
    "foreign-wal": (_foreign_wal, "another program's SQLite database (tables: metrics, runs)"),
    "foreign-application-id": (_foreign_application_id, "application id 0x0f045112"),
    "v1-plus-a-table": (_v1_plus_a_table, "another program's SQLite database"),
    "v1-minus-a-table": (_v1_minus_a_table, "another program's SQLite database"),
    "v1-other-columns": (_v1_other_columns, "another program's SQLite database"),
    "v1-with-a-user-version": (_v1_with_a_user_version, "another program's SQLite database"),
    "empty-sqlite-of-another-program": (_empty_sqlite, "empty SQLite database that MetaGUI did not create"),
    "newer-metagui": (_newer_metagui, "written by a newer MetaGUI"),
    "damaged-store": (_damaged_store, "is damaged"),
    "folder": (_folder, "is a folder"),
}


@pytest.mark.parametrize("command", ["train", "runs", "eval"])
@pytest.mark.parametrize("case", list(BAD_STORES))
def test_a_bad_store_is_refused_in_one_line_and_left_unchanged(case, command, tmp_path, capsys):
    make, expected = BAD_STORES[case]
    here = tmp_path / "here"
    here.mkdir()
    db = make(here)
    config = write_config(tmp_path / "run.toml")
    before = snapshot(here)
    argv = {"train": ["train", config], "runs": ["runs"], "eval": ["eval", "1"]}[command]
    code, out, err = cli(capsys, *argv, "--db", db)
    assert code == 2, out + err
    line = one_line(err)
    assert line.startswith("metagui: error: ") and expected in line, line
    assert snapshot(here) == before  # byte for byte, and no -wal, -shm or -journal beside it
    assert not (here / f"{db.stem}-runs").exists()


# --- first-release stores are adopted ------------------------------------------------------------
def test_a_first_release_store_is_adopted_with_its_runs(tmp_path, capsys):
    db = v1_store(tmp_path / "metagui.db")
    code, out, err = cli(capsys, "runs", "--db", db)
    assert code == 0 and err == ""
    assert "an old run" in out and "completed" in out
    assert pragma(db, "application_id") == APPLICATION_ID and pragma(db, "user_version") == SCHEMA_VERSION
    store = RunStore(db)
    assert store.metric_series(1, "train/loss") == ([1, 2], [1.5, 1.25])
    assert store.projects()[0]["name"] == "old project"
    assert store.transcripts(1)[0]["messages"] == [{"role": "user", "text": "hi"}]


def test_training_into_a_first_release_store_keeps_its_runs(tmp_path, capsys):
    db = v1_store(tmp_path / "metagui.db")
    code, out, err = cli(capsys, "train", write_config(tmp_path / "run.toml", steps=2), "--db", db)
    assert code == 0, err
    assert [r["name"] for r in RunStore(db).runs()] == ["protonet on intents", "an old run"]


# --- no store at all ------------------------------------------------------------------------------
def test_listing_a_missing_store_creates_nothing(tmp_path, capsys):
    db = tmp_path / "nowhere" / "runs.db"
    code, out, err = cli(capsys, "runs", "--db", db)
    assert code == 0 and "no runs yet" in out and err == ""
    assert not db.parent.exists()


def test_evaluating_in_a_missing_store_creates_nothing(tmp_path, capsys):
    db = tmp_path / "nowhere" / "runs.db"
    code, out, err = cli(capsys, "eval", "1", "--db", db)
    assert code == 2
    assert "no run with id 1: there is no run store at" in one_line(err)
    assert not db.parent.exists()


# --- a trained store to damage, lock and kill things in -------------------------------------------------
@pytest.fixture(scope="module")
def trained_template(tmp_path_factory):
    """A store with run 1: protonet on intents, 4 steps, completed, best and last checkpoints."""
    folder = tmp_path_factory.mktemp("template")
    assert main(["train", str(write_config(folder / "run.toml")), "--db", str(folder / "runs.db")]) == 0
    return folder


def copy_store(template: Path, to: Path) -> Path:
    """A copy of the template's store whose checkpoint paths point into the copy."""
    shutil.copytree(template, to)
    conn = sqlite3.connect(to / "runs.db")
    conn.execute("UPDATE checkpoints SET path = replace(path, ?, ?)", [str(template), str(to)])
    conn.commit()
    conn.close()
    return to / "runs.db"


@pytest.fixture()
def trained(trained_template, tmp_path):
    return copy_store(trained_template, tmp_path / "store")


def set_run(db: Path, run_id: int, **fields) -> None:
    store = RunStore(db)
    store.update_run(run_id, **fields)
    store.close()


def finished_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


@pytest.fixture()
def live_process():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield proc
    proc.kill()
    proc.wait()


def test_a_run_whose_process_died_is_listed_failed(trained, capsys):
    set_run(trained, 1, status="running", pid=finished_pid())
    code, out, err = cli(capsys, "runs", "--db", trained, "--json")
    assert code == 0 and err == ""
    row = json.loads(out)[0]
    assert row["status"] == "failed" and "ended without finishing it" in row["error"]
    assert "metagui train --resume 1" in row["error"]  # it has a checkpoint to continue from


def test_a_run_whose_pid_was_reused_is_listed_failed(trained, capsys, live_process):
    set_run(trained, 1, status="running", pid=live_process.pid, pid_start="another process's start")
    code, out, _ = cli(capsys, "runs", "--db", trained, "--json")
    assert code == 0 and json.loads(out)[0]["status"] == "failed"


def test_a_run_on_another_machine_is_left_alone(trained, capsys):
    set_run(trained, 1, status="running", pid=finished_pid(), host="elsewhere.example")
    code, out, _ = cli(capsys, "runs", "--db", trained, "--json")
    assert code == 0 and json.loads(out)[0]["status"] == "running"


@pytest.mark.skipif(process_identity(os.getpid()) is None, reason="process start times are read from /proc")
def test_a_run_being_trained_elsewhere_is_not_resumed(trained, capsys, live_process):
    set_run(trained, 1, status="running", pid=live_process.pid, pid_start=process_identity(live_process.pid))
    before = snapshot(trained.parent / "runs-runs")
    code, out, err = cli(capsys, "train", "--resume", "1", "--steps", "6", "--db", trained)
    assert code == 2
    assert f"run 1 is being trained by another process (pid {live_process.pid}" in one_line(err)
    assert RunStore(trained).run(1)["status"] == "running"
    assert snapshot(trained.parent / "runs-runs") == before


# --- resuming what cannot be resumed ------------------------------------------------------------------
def test_resume_refusals(trained, capsys, tmp_path):
    store = RunStore(trained)
    bare = store.create_run(name="bare", config_toml=store.run(1)["config"], algorithm="protonet", dataset="d",
                            task="t", device="cpu")
    store.update_run(bare, status="failed")
    store.close()
    cases = [
        (["train", "--resume", "1"], "run 1 has done 4 of its 4 steps; ask for more steps"),
        (["train", "--resume", str(bare)], f"run {bare} has no checkpoint to resume from"),
        (["train", "--resume", "9"], "no run with id 9"),
        (["train", write_config(tmp_path / "c.toml"), "--resume", "1"], "give a run config (TOML) to start a run, or"),
        (["train"], "give a run config (TOML) to start a run, or --resume RUN"),
    ]
    before = snapshot(trained.parent)
    for argv, expected in cases:
        code, out, err = cli(capsys, *argv, "--db", trained)
        assert code == 2, (argv, out, err)
        assert expected in one_line(err), (argv, err)
    assert {k: v for k, v in snapshot(trained.parent).items() if not k.startswith("runs.db")} == \
        {k: v for k, v in before.items() if not k.startswith("runs.db")}
    assert RunStore(trained).run(1)["status"] == "completed"


def test_resume_replaces_the_metrics_recorded_after_the_checkpoint(trained, capsys):
    """Killed after recording steps 5 and 6 but before checkpointing them: resuming trains
    them again, and each step keeps one row per metric."""
    store = RunStore(trained)
    store.add_metrics(1, [(5, "train/loss", 9.0), (6, "train/loss", 9.0)])
    store.update_run(1, status="running", pid=finished_pid(), steps_done=6)
    store.close()
    code, out, err = cli(capsys, "train", "--resume", "1", "--steps", "6", "--db", trained)
    assert code == 0, err
    steps, losses = RunStore(trained).metric_series(1, "train/loss")
    assert steps == [1, 2, 3, 4, 5, 6] and 9.0 not in losses


# --- damaged checkpoints ------------------------------------------------------------------------------
def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _garble(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 16] = bytes(255 - b for b in data[middle:middle + 16])
    path.write_bytes(bytes(data))


def _not_json(path: Path) -> None:
    path.write_text('{"step": 4, "config": ')


def _no_step(path: Path) -> None:
    path.write_text("{}")


def _incomplete_description(path: Path) -> None:
    meta = json.loads(path.read_text())
    del meta["preprocessing"]
    path.write_text(json.dumps(meta))


DAMAGE = {
    "resume-truncated-weights": ("resume", "last.safetensors", _truncate),
    "resume-garbled-weights": ("resume", "last.safetensors", _garble),
    "resume-truncated-optimiser": ("resume", "last.optim.safetensors", _truncate),
    "resume-missing-optimiser": ("resume", "last.optim.safetensors", Path.unlink),
    "resume-description-not-json": ("resume", "last.json", _not_json),
    "resume-description-without-step": ("resume", "last.json", _no_step),
    "eval-truncated-weights": ("eval", "best.safetensors", _truncate),
    "eval-garbled-weights": ("eval", "best.safetensors", _garble),
    "eval-description-not-json": ("eval", "best.json", _not_json),
    "eval-description-incomplete": ("eval", "best.json", _incomplete_description),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_a_damaged_checkpoint_is_one_line_and_the_run_is_untouched(case, trained, capsys):
    command, name, damage = DAMAGE[case]
    folder = trained.parent / "runs-runs" / "run-1"
    damage(folder / name)
    before_files = snapshot(folder)
    before_run = RunStore(trained).run(1)
    argv = ["train", "--resume", "1", "--steps", "6"] if command == "resume" else ["eval", "1", "--episodes-count", "4"]
    code, out, err = cli(capsys, *argv, "--db", trained)
    assert code == 2, out + err
    line = one_line(err)
    assert line.startswith(f"metagui: error: checkpoint damaged: {folder / name}"), line
    assert snapshot(folder) == before_files
    assert RunStore(trained).run(1) == before_run


def test_a_save_killed_between_its_renames_is_completed_on_resume(trained, capsys, monkeypatch):
    """A kill after the new weights are in place but before the description: eval (which
    repairs nothing) reports the mismatch, --resume finishes the save and continues from it."""
    from metagui.core import checkpoint
    from metagui.core.evaluation import load_learner

    folder = trained.parent / "runs-runs" / "run-1"
    learner, meta = load_learner(folder, "last", torch.device("cpu"))
    with torch.no_grad():
        for p in learner.parameters():
            p.add_(0.01)
    real_replace, renames = os.replace, []

    def killed_after_first(src, dst):
        if renames:
            raise KeyboardInterrupt  # the process dies here
        renames.append(dst)
        real_replace(src, dst)

    monkeypatch.setattr(checkpoint.os, "replace", killed_after_first)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save_checkpoint(folder, "last", learner, {**meta, "step": 5})
    monkeypatch.undo()
    code, out, err = cli(capsys, "eval", "1", "--checkpoint", "last", "--episodes-count", "4", "--db", trained)
    assert code == 2 and "checkpoint damaged" in one_line(err) and "from another save" in err
    code, out, err = cli(capsys, "train", "--resume", "1", "--steps", "6", "--db", trained)
    assert code == 0, err
    assert out.startswith("run 1 resumed at step 5 ")
    assert read_meta(folder, "last")["step"] == 6 and not list(folder.glob("*.tmp"))


# --- divergence -----------------------------------------------------------------------------------------
def test_a_nan_validation_is_divergence_and_the_last_good_checkpoint_is_kept(tmp_path, capsys, monkeypatch):
    from metagui.core import trainer

    real, calls = trainer.evaluate, []

    def nan_at_second(learner, batches, device):
        calls.append(1)
        v = real(learner, batches, device)
        return {**v, "accuracy": float("nan")} if len(calls) == 2 else v

    monkeypatch.setattr(trainer, "evaluate", nan_at_second)
    db = tmp_path / "runs.db"
    code, out, err = cli(capsys, "train", write_config(tmp_path / "run.toml", steps=6), "--db", db)
    assert code == 3
    assert one_line(err) == ("metagui: error: training diverged at step 4 (validation accuracy nan); "
                             "the last good checkpoint (step 2) is kept")
    store = RunStore(db)
    assert store.run(1)["status"] == "diverged"
    assert {k: c["step"] for k, c in store.checkpoints(1).items()} == {"best": 2, "last": 2}
    assert read_meta(tmp_path / "runs-runs" / "run-1", "last")["validation"]["accuracy"] == pytest.approx(
        store.checkpoints(1)["last"]["metric"])


def test_divergence_before_any_checkpoint_says_so(tmp_path, capsys, monkeypatch):
    from metagui.core.experiment import Experiment

    real_build = Experiment.build_learner

    def poisoned(self):
        learner = real_build(self)
        step = learner.meta_step
        learner.meta_step = lambda batch: {**step(batch), "loss": float("nan")}
        return learner

    monkeypatch.setattr(Experiment, "build_learner", poisoned)
    db = tmp_path / "runs.db"
    code, out, err = cli(capsys, "train", write_config(tmp_path / "run.toml"), "--db", db)
    assert code == 3
    assert one_line(err) == "metagui: error: training diverged at step 1 (loss nan); no checkpoint was saved before it"
    assert RunStore(db).checkpoints(1) == {}


# --- read-only and unreadable stores (as a user who cannot write them) ---------------------------------------
needs_posix = pytest.mark.skipif(not hasattr(os, "geteuid"), reason="file modes are POSIX")


@pytest.fixture()
def shared_dir():
    """A folder another user can read (pytest's tmp_path is private to its owner)."""
    folder = Path(tempfile.mkdtemp(prefix="metagui-hostile-"))
    folder.chmod(0o755)
    yield folder
    for p in [folder, *folder.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    shutil.rmtree(folder)


def as_reader(*argv) -> subprocess.CompletedProcess:
    """``python -m metagui ARGV`` as a user who may read but not write the store: nobody (via
    setpriv) when these tests run as root, who may write anything; else this user."""
    prefix: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: no user here lacks write access")
        prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        if not _nobody_can_run(tuple(prefix)):
            pytest.skip("user nobody cannot run this checkout's Python (it lies in a folder only root may "
                        "read, as a fresh clone in a private temporary folder does)")
    return subprocess.run([*prefix, sys.executable, "-m", "metagui", *map(str, argv)], capture_output=True,
                          text=True, cwd=ROOT, env={**ENV, "HOME": "/nonexistent"}, timeout=240)


@functools.cache
def _nobody_can_run(prefix: tuple[str, ...]) -> bool:
    probe = subprocess.run([*prefix, sys.executable, "-c", "import metagui.core.store"], capture_output=True,
                           cwd="/", env={**ENV, "HOME": "/nonexistent"}, timeout=120)
    return probe.returncode == 0


def read_only(folder: Path, file_mode: int = 0o444) -> None:
    for p in folder.rglob("*"):
        p.chmod(0o555 if p.is_dir() else file_mode)
    folder.chmod(0o555)


@pytest.fixture()
def read_only_store(trained_template, shared_dir):
    db = copy_store(trained_template, shared_dir / "store")
    (shared_dir / "run.toml").write_text((trained_template / "run.toml").read_text())
    return db


@needs_posix
def test_a_read_only_store_lists_its_runs_and_stays_unchanged(read_only_store):
    read_only(read_only_store.parent)
    before = snapshot(read_only_store.parent)
    done = as_reader("runs", "--db", read_only_store)
    assert done.returncode == 0, done.stderr
    assert "completed" in done.stdout and done.stderr == ""
    assert snapshot(read_only_store.parent) == before


@needs_posix
def test_a_read_only_store_evaluates_and_stays_unchanged(read_only_store):
    read_only(read_only_store.parent)
    before = snapshot(read_only_store.parent)
    done = as_reader("eval", "1", "--episodes-count", "4", "--device", "cpu", "--db", read_only_store)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["episodes"] == 4
    assert snapshot(read_only_store.parent) == before


@needs_posix
def test_a_read_only_store_shows_a_dead_run_failed_without_writing(read_only_store):
    set_run(read_only_store, 1, status="running", pid=finished_pid())
    read_only(read_only_store.parent)
    before = snapshot(read_only_store.parent)
    done = as_reader("runs", "--db", read_only_store, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)[0]["status"] == "failed"
    assert snapshot(read_only_store.parent) == before


@needs_posix
def test_training_into_a_read_only_store_is_refused(read_only_store):
    read_only(read_only_store.parent)
    before = snapshot(read_only_store.parent)
    done = as_reader("train", read_only_store.parent.parent / "run.toml", "--db", read_only_store)
    assert done.returncode == 2
    assert "is read-only" in one_line(done.stderr)
    assert snapshot(read_only_store.parent) == before


@needs_posix
def test_an_unreadable_store_is_refused(read_only_store):
    read_only(read_only_store.parent, file_mode=0o000)
    before = snapshot(read_only_store.parent)
    for argv in (["runs"], ["eval", "1"]):
        done = as_reader(*argv, "--db", read_only_store)
        assert done.returncode == 2, done.stderr
        assert "cannot read the run store" in one_line(done.stderr) and "permission denied" in done.stderr
    assert snapshot(read_only_store.parent) == before


@needs_posix
def test_a_read_only_first_release_store_is_listed_not_adopted(shared_dir):
    db = v1_store(shared_dir / "metagui.db")
    read_only(shared_dir)
    before = snapshot(shared_dir)
    done = as_reader("runs", "--db", db)
    assert done.returncode == 0, done.stderr
    assert "an old run" in done.stdout
    assert snapshot(shared_dir) == before and pragma(db, "application_id") == 0


# --- the app says it too ------------------------------------------------------------------------------
def test_the_app_shows_a_refused_store_in_a_window(tmp_path, gui_settings, qapp, monkeypatch, capsys):
    from PySide6.QtWidgets import QMessageBox

    from metagui.gui.app import run_app

    (tmp_path / "here").mkdir()
    db = _foreign_runs_table(tmp_path / "here")
    before = snapshot(tmp_path / "here")
    shown = []
    monkeypatch.setattr(QMessageBox, "exec", lambda box: shown.append((box.text(), box.informativeText())) or 0)
    assert run_app(db=str(db)) == 2
    assert len(shown) == 1 and "is not a MetaGUI run store" in shown[0][0] and "--db" in shown[0][1]
    assert "is not a MetaGUI run store" in one_line(capsys.readouterr().err)
    assert snapshot(tmp_path / "here") == before


# --- killed runs ----------------------------------------------------------------------------------------
def start_training(config: Path, db: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "metagui", "train", str(config), "--db", str(db)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=ENV)


def wait_for_checkpoint(proc: subprocess.Popen, folder: Path, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while not (folder / "last.json").is_file():
        if proc.poll() is not None:
            raise AssertionError(f"training ended early ({proc.returncode}): {proc.stderr.read()}")
        assert time.monotonic() < end, "no checkpoint in time"
        time.sleep(0.05)


def test_sigterm_stops_training_like_ctrl_c(tmp_path):
    db = tmp_path / "runs.db"
    proc = start_training(write_config(tmp_path / "run.toml", steps=100_000), db)
    wait_for_checkpoint(proc, tmp_path / "runs-runs" / "run-1")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["status"] == "cancelled" and summary["steps"] >= 2
    assert err.strip().splitlines()[-1] == (f"metagui: run 1 stopped at step {summary['steps']}; its checkpoint is "
                                            "kept: `metagui train --resume 1` continues it")
    store = RunStore(db)
    assert store.run(1)["status"] == "cancelled" and store.run(1)["steps_done"] == summary["steps"]
    assert read_meta(tmp_path / "runs-runs" / "run-1", "last")["step"] == summary["steps"]


def test_sigkill_then_runs_then_resume_gives_the_uninterrupted_weights(tmp_path, capsys):
    """Killed after its first checkpoint, the run is listed failed; resumed to S steps it has
    each step's metrics once and the weights of an uninterrupted S-step run (ProtoNet does not
    depend on the planned number of steps, so the killed run's larger plan does not matter)."""
    from metagui.core.evaluation import load_learner

    db = tmp_path / "runs.db"
    proc = start_training(write_config(tmp_path / "long.toml", steps=100_000), db)
    folder = tmp_path / "runs-runs" / "run-1"
    wait_for_checkpoint(proc, folder)
    proc.kill()
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL

    code, out, err = cli(capsys, "runs", "--db", db, "--json")
    assert code == 0 and err == ""
    row = json.loads(out)[0]
    assert row["status"] == "failed" and "ended without finishing it" in row["error"]

    resumed_from = read_meta(folder, "last")["step"]
    target = resumed_from + 3
    code, out, err = cli(capsys, "train", "--resume", "1", "--steps", target, "--db", db)
    assert code == 0, err
    assert out.startswith(f"run 1 resumed at step {resumed_from} ")
    store = RunStore(db)
    assert store.run(1)["status"] == "completed" and store.run(1)["steps_done"] == target
    assert store.metric_series(1, "train/loss")[0] == list(range(1, target + 1))

    code, _, err = cli(capsys, "train", write_config(tmp_path / "short.toml", steps=target), "--db", tmp_path / "u.db")
    assert code == 0, err
    resumed, _ = load_learner(folder, "last", torch.device("cpu"))
    straight, _ = load_learner(tmp_path / "u-runs" / "run-1", "last", torch.device("cpu"))
    a, b = resumed.state_dict(), straight.state_dict()
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-6


# --- a resumed run retraces the uninterrupted one ---------------------------------------------------------
@pytest.mark.parametrize("algorithm,source,hp", [
    ("protonet", "intents", {}),  # token dropout draws from torch's generator each step
    ("maml", "sinusoid", {"meta_batch": 2, "inner_steps": 1}),  # Adam's moments must come back
])
def test_stopped_and_resumed_training_gives_the_uninterrupted_weights(algorithm, source, hp, tmp_path):
    from metagui.core.experiment import Experiment
    from metagui.core.trainer import Trainer, TrainingControl

    cfg = small_config(algorithm, source, steps=6, **hp)
    cfg.training.val_every, cfg.training.val_episodes = 2, 4
    exp = Experiment.prepare(cfg)
    straight = Trainer(cfg, RunStore(tmp_path / "a.db"), experiment=exp)
    assert straight.run().status == "completed"

    store, control = RunStore(tmp_path / "b.db"), TrainingControl()
    stop_at_3 = lambda ev: ev["kind"] == "metrics" and ev["step"] == 3 and control.cancel()  # noqa: E731
    first = Trainer(cfg, store, stop_at_3, control, experiment=exp).run()
    assert first.status == "cancelled" and first.steps == 3
    resumed = Trainer(cfg, store, resume_run=first.run_id, experiment=exp)
    assert resumed.run().status == "completed"

    a, b = straight.learner.state_dict(), resumed.learner.state_dict()
    diff = max(float((a[k].double() - b[k].double()).abs().max()) for k in a)
    print(f"{algorithm}: max abs weight difference {diff:.3g}")
    assert diff <= 1e-6
    assert store.metric_series(first.run_id, "train/loss") == RunStore(tmp_path / "a.db").metric_series(1, "train/loss")
