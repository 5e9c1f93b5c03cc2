import math
import threading

import pytest
import torch

from metagui.core.checkpoint import read_meta
from metagui.core.errors import ConfigError
from metagui.core.evaluation import checkpoint_folder, load_learner
from metagui.core.experiment import Experiment
from metagui.core.store import RunStore
from metagui.core.trainer import Trainer, TrainingControl
from tests.helpers import small_config


@pytest.fixture(scope="module")
def glyph_experiment():
    return Experiment.prepare(small_config("protonet", steps=6))


def test_run_records_metrics_checkpoints_and_status(tmp_path, glyph_experiment):
    store = RunStore(tmp_path / "runs.db")
    events = []
    cfg = small_config("protonet", steps=6)
    cfg.training.val_every = 3
    result = Trainer(cfg, store, events.append, experiment=glyph_experiment).run()
    assert result.status == "completed" and result.steps == 6
    run = store.run(result.run_id)
    assert run["status"] == "completed" and run["steps_done"] == 6 and run["best_val"] == result.best_val
    steps, values = store.metric_series(result.run_id, "train/loss")
    assert steps == [1, 2, 3, 4, 5, 6] and all(math.isfinite(v) for v in values)
    assert store.metric_series(result.run_id, "val/accuracy")[0] == [3, 6]
    assert set(store.checkpoints(result.run_id)) == {"best", "last"}
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "started" and kinds[-1] == "finished"
    assert sum(k == "validation" for k in kinds) == 2
    # the best checkpoint reloads into a working predictor without pickle
    learner, meta = load_learner(checkpoint_folder(store, result.run_id, "best"), "best", torch.device("cpu"))
    assert meta["n_way"] == 5
    assert isinstance(run["config"], str) and "[task]" in run["config"]


def test_pause_resume_and_cancel_are_cooperative(tmp_path, glyph_experiment):
    store = RunStore(tmp_path / "runs.db")
    control = TrainingControl()
    paused = threading.Event()
    statuses = []

    def on_event(ev):
        if ev["kind"] == "metrics" and ev["step"] == 2:
            control.pause()
        if ev["kind"] == "status":
            statuses.append(ev["status"])
            if ev["status"] == "paused":
                paused.set()

    cfg = small_config("protonet", steps=1000)
    result_box = []
    t = threading.Thread(target=lambda: result_box.append(Trainer(cfg, store, on_event, control, experiment=glyph_experiment).run()))
    t.start()
    assert paused.wait(30)
    run_id = store.runs()[0]["id"]
    assert RunStore(store.path).run(run_id)["status"] == "paused"  # another connection sees it
    control.resume()
    control.cancel()
    t.join(30)
    result = result_box[0]
    assert statuses[:2] == ["paused", "running"]
    assert result.status == "cancelled" and 2 <= result.steps < 1000
    assert store.run(run_id)["status"] == "cancelled"
    assert read_meta(checkpoint_folder(store, run_id, "last"), "last")["step"] == result.steps


def test_resume_continues_from_the_last_checkpoint(tmp_path, glyph_experiment):
    store = RunStore(tmp_path / "runs.db")
    cfg = small_config("protonet", steps=4)
    first = Trainer(cfg, store, experiment=glyph_experiment).run()
    cfg.training.steps = 7
    resumed = Trainer(cfg, store, resume_run=first.run_id, experiment=glyph_experiment).run()
    assert resumed.status == "completed" and resumed.run_id == first.run_id and resumed.steps == 7
    steps, _ = store.metric_series(first.run_id, "train/loss")
    assert steps == [1, 2, 3, 4, 5, 6, 7]


def test_divergence_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, glyph_experiment, monkeypatch):
    store = RunStore(tmp_path / "runs.db")
    cfg = small_config("protonet", steps=50)
    cfg.training.val_every = 2
    trainer = Trainer(cfg, store, experiment=glyph_experiment)
    learner = glyph_experiment.build_learner()
    real_step = learner.meta_step
    calls = {"n": 0}

    def poisoned(batch):
        calls["n"] += 1
        m = real_step(batch)
        return {**m, "loss": float("nan")} if calls["n"] >= 5 else m

    learner.meta_step = poisoned
    monkeypatch.setattr(glyph_experiment, "build_learner", lambda: learner)
    result = trainer.run()
    assert result.status == "diverged" and result.steps == 5
    assert "diverged at step 5" in result.error
    assert read_meta(checkpoint_folder(store, result.run_id, "last"), "last")["step"] == 4
    assert store.run(result.run_id)["status"] == "diverged"


def test_nan_weights_with_a_finite_loss_are_divergence_too(tmp_path, glyph_experiment, monkeypatch):
    """A step that leaves a NaN in the weights but reports a finite loss (the loss was computed
    before the update) stops the run at that step: no checkpoint of the broken weights."""
    store = RunStore(tmp_path / "runs.db")
    cfg = small_config("protonet", steps=50)
    cfg.training.val_every = 2
    trainer = Trainer(cfg, store, experiment=glyph_experiment)
    learner = glyph_experiment.build_learner()
    real_step = learner.meta_step
    losses = []

    def poisoned(batch):
        m = real_step(batch)
        losses.append(m["loss"])
        if len(losses) == 4:  # a validation step: it would save "best" and "last" checkpoints
            with torch.no_grad():
                next(learner.parameters()).view(-1)[0] = float("nan")
        return m

    learner.meta_step = poisoned
    monkeypatch.setattr(glyph_experiment, "build_learner", lambda: learner)
    result = trainer.run()
    assert len(losses) == 4 and math.isfinite(losses[-1])  # the step's loss looked fine
    assert result.status == "diverged" and result.steps == 4, result
    assert "diverged at step 4 (non-finite weights)" in result.error
    assert store.run(result.run_id)["status"] == "diverged"
    for kind in ("best", "last"):
        folder = checkpoint_folder(store, result.run_id, kind)
        assert read_meta(folder, kind)["step"] == 2
        saved, _ = load_learner(folder, kind, torch.device("cpu"))
        assert all(torch.isfinite(p).all() for p in saved.parameters())


def test_bad_settings_fail_with_a_readable_error(tmp_path):
    cfg = small_config("protonet")
    cfg.training.device = "cuda:3" if not torch.cuda.is_available() else "bogus"
    result = Trainer(cfg, RunStore(tmp_path / "r.db")).run()
    assert result.status == "failed" and ("no CUDA GPU" in result.error or "unknown device" in result.error)
    cfg = small_config("protonet")
    cfg.task.way = 500
    with pytest.raises(ConfigError, match="500-way needs 500 train classes"):
        Experiment.prepare(cfg)


def test_the_log_says_how_auto_batches_the_tasks(tmp_path, monkeypatch):
    """vectorise = auto's choice, with the times behind it, is in the run's log once."""
    from tests.helpers import small_config

    monkeypatch.setenv("METAGUI_DATA_DIR", str(tmp_path / "data"))
    torch.set_num_threads(2)
    cfg = small_config("maml", "glyphs", steps=2, inner_steps=1, meta_batch=2, vectorise="auto")
    cfg.dataset.image_size = 16  # 4 pools leave 1 px: a quick calibration
    events: list[dict] = []
    result = Trainer(cfg, RunStore(tmp_path / "r.db"), events.append).run()
    assert result.status == "completed"
    lines = [e["message"] for e in events if e["kind"] == "batching"]
    assert len(lines) == 1 and lines[0].startswith("Tasks run by ")
    assert all(f"{m} " in lines[0] for m in ("loop", "vmap", "threads")) and "timed on this run's first" in lines[0]
