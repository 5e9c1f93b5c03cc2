"""Meta-training on torch.distributed: `metagui train --nproc 2` launches torchrun, which starts
two real processes (gloo on loopback, a free port); they must train what one process trains.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from metagui.core.checkpoint import load_checkpoint
from metagui.core.distributed import share
from metagui.core.experiment import Experiment
from metagui.core.store import RunStore
from metagui.core.trainer import Trainer
from tests.helpers import small_config

ROOT = Path(__file__).resolve().parents[1]
STEPS = 5


def _env(tmp_path: Path) -> dict[str, str]:
    # one thread per process, as the 1-process reference below: thread counts change rounding
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
            "METAGUI_TEST_TAG": str(tmp_path)}


def _launch(tmp_path: Path, cfg, db: Path, *extra: str) -> subprocess.Popen:
    path = tmp_path / "run.toml"
    cfg.save(path)
    return subprocess.Popen([sys.executable, "-m", "metagui", "train", str(path), "--db", str(db), "--nproc", "2",
                             "--quiet", *extra], cwd=ROOT, env=_env(tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_share_splits_every_task_once():
    for n in range(2, 12):
        for world in range(1, n + 1):
            parts = [share(n, world, r) for r in range(world)]
            assert [i for p in parts for i in range(p.start, p.stop)] == list(range(n))
            assert max(p.stop - p.start for p in parts) - min(p.stop - p.start for p in parts) <= 1


def _one_process(cfg, tmp: Path) -> tuple[dict[str, torch.Tensor], list[float]]:
    """The weights one process trains, and its loss at each step."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    losses: list[float] = []

    def on_event(ev):
        if ev["kind"] == "metrics":
            losses.append(ev["metrics"]["loss"])

    try:
        trainer = Trainer(cfg, on_event=on_event, experiment=Experiment.prepare(cfg), run_dir=tmp)
        assert trainer.run().status == "completed"
    finally:
        torch.set_num_threads(threads)
    return trainer.learner.state_dict(), losses


def _protonet():
    # Conv-4's biases before batch norm have no gradient in exact arithmetic, so Adam follows
    # their rounding noise: episodes of 35 items make the CPU embed one episode per pass
    # (CPU_PASS_ITEMS), in one process as in each rank, so that rounding is the same
    cfg = small_config("protonet", "glyphs", steps=STEPS, meta_batch=2)
    cfg.task.shot, cfg.task.query = 1, 6
    return cfg


CASES = {
    "protonet": _protonet,
    "maml-second-order": lambda: small_config("maml", "sinusoid", steps=STEPS, meta_batch=4, inner_steps=2,
                                              vectorise="loop"),
}


@pytest.mark.parametrize("name", [pytest.param("protonet", marks=pytest.mark.slow), "maml-second-order"])
def test_two_processes_train_the_weights_of_one(tmp_path, name):
    cfg = CASES[name]()
    cfg.training.device = "cpu"
    cfg.training.val_every = 2  # validation and checkpoints on rank 0 along the way
    cfg.training.val_episodes = 4
    db = tmp_path / "runs.db"
    proc = _launch(tmp_path, cfg, db)
    single, losses = _one_process(cfg, tmp_path / "one")  # meanwhile, in this process
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["status"] == "completed" and summary["steps"] == STEPS

    store = RunStore(db)
    runs = store.runs()
    assert len(runs) == 1 and runs[0]["world_size"] == 2 and runs[0]["status"] == "completed"
    rid = runs[0]["id"]
    rows = store.db.execute("SELECT step, name, COUNT(*) FROM metrics WHERE run_id = ? GROUP BY step, name",
                            [rid]).fetchall()
    assert {r[2] for r in rows} == {1}, "a metric written twice: only rank 0 writes"
    assert sorted(s for s, n, _ in rows if n == "train/loss") == list(range(1, STEPS + 1))
    # rank 0 records the whole meta-batch's loss (the ranks' task-weighted mean), not its slice's
    assert store.metric_series(rid, "train/loss")[1] == pytest.approx(losses, abs=1e-5)
    assert sorted(s for s, n, _ in rows if n.startswith("val/") and n.endswith("ci95")) == [2, 4, 5]
    assert set(store.checkpoints(rid)) == {"best", "last"}

    learner = Experiment.prepare(cfg).build_learner()
    untrained = {k: v.clone() for k, v in learner.state_dict().items()}
    load_checkpoint(store.runs_dir / f"run-{rid}", "last", learner)
    two = learner.state_dict()
    gap = max((two[k].double() - single[k].double()).abs().max().item() for k in single)
    moved = max((two[k].double() - untrained[k].double()).abs().max().item() for k in single)
    assert moved > 1e-3, "the 2-process run did not train"
    assert gap < 1e-5, f"2 processes differ from 1 by {gap}"
    store.close()


def _rank_pid(tag: str, rank: int) -> int | None:
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            env = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"METAGUI_TEST_TAG={tag}".encode() in env and f"RANK={rank}".encode() in env:
            return int(proc.name)
    return None


def _launch_endless_maml(tmp_path: Path, val_every: int):
    """A 2-process second-order MAML run on sines that trains until stopped (100,000 steps):
    its config, store path and launcher process."""
    cfg = small_config("maml", "sinusoid", steps=100_000, meta_batch=4, inner_steps=1, vectorise="loop")
    cfg.training.device = "cpu"
    cfg.training.val_every = val_every
    cfg.training.val_episodes = 4
    db = tmp_path / "runs.db"
    return cfg, db, _launch(tmp_path, cfg, db)


def _wait_for_steps(proc, db: Path, steps: int, checkpoint: bool = False, timeout: float = 120):
    """Wait until the launched run has done ``steps`` steps (and, with ``checkpoint``, saved
    its last checkpoint); returns the store and its runs. Fails if the launcher exits first."""
    deadline = time.monotonic() + timeout
    store = None
    while time.monotonic() < deadline:
        if db.exists():
            store = store or RunStore(db)
            runs = store.runs()
            if runs and runs[0]["steps_done"] >= steps and (not checkpoint or "last" in store.checkpoints(runs[0]["id"])):
                return store, runs
        assert proc.poll() is None, proc.communicate()[1]
        time.sleep(0.2)
    pytest.fail(f"no {'checkpoint after ' if checkpoint else ''}{steps} steps within {timeout:.0f} s")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the rank's process in /proc")
def test_a_killed_rank_fails_the_run_and_keeps_the_last_checkpoint(tmp_path):
    cfg, db, proc = _launch_endless_maml(tmp_path, val_every=2)
    try:
        store, runs = _wait_for_steps(proc, db, 3, checkpoint=True)
        victim = _rank_pid(str(tmp_path), 1)
        assert victim is not None
        os.kill(victim, signal.SIGKILL)
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert f"rank 1 of 2 (pid {victim}) was killed by SIGKILL" in err
    run = store.run(runs[0]["id"])
    assert run["status"] == "failed", run
    assert "another process of this 2-process run stopped (killed or crashed)" in run["error"]
    assert "the last good checkpoint (step" in run["error"]
    last = store.checkpoints(run["id"])["last"]
    learner = Experiment.prepare(cfg).build_learner()
    meta = load_checkpoint(store.runs_dir / f"run-{run['id']}", "last", learner)
    assert meta["step"] == last["step"] >= 2
    assert f"step {last['step']})" in run["error"]
    store.close()


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the ranks' processes in /proc")
def test_sigterm_stops_every_rank_after_the_same_step(tmp_path):
    cfg, db, proc = _launch_endless_maml(tmp_path, val_every=1000)
    try:
        store, runs = _wait_for_steps(proc, db, 3)
        ranks = [_rank_pid(str(tmp_path), r) for r in (0, 1)]
        assert None not in ranks
        proc.send_signal(signal.SIGTERM)  # the launcher (torchrun) forwards it to the ranks
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert all(_rank_pid(str(tmp_path), r) is None for r in (0, 1))
    run = store.run(runs[0]["id"])
    assert run["status"] == "cancelled" and run["world_size"] == 2
    last = store.checkpoints(run["id"])["last"]
    assert last["step"] == run["steps_done"] >= 3  # rank 0 saved the step all ranks stopped after
    learner = Experiment.prepare(cfg).build_learner()
    assert load_checkpoint(store.runs_dir / f"run-{run['id']}", "last", learner)["step"] == last["step"]
    store.close()


@pytest.mark.parametrize("algorithm, source, hp, message", [
    ("maml", "sinusoid", {"meta_batch": 1}, "meta_batch 1 is smaller than the 2 processes"),
    ("rl2", "bandit", {}, "reinforcement-learning runs (bandit, mdp) train in one process"),
])
def test_what_cannot_be_split_is_refused_before_any_process_starts(tmp_path, capsys, algorithm, source, hp, message):
    from metagui.cli import main

    cfg = small_config(algorithm, source, steps=2, **hp)
    cfg.save(tmp_path / "run.toml")
    assert main(["train", str(tmp_path / "run.toml"), "--db", str(tmp_path / "runs.db"), "--nproc", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not (tmp_path / "runs.db").exists()
