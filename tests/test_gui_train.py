"""Train page: live training in a worker thread, end to end from the demo project."""

from __future__ import annotations

import time

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from metagui.core.config import RunConfig
from metagui.core.store import RunStore


def set_spin(qtbot, spin, value: int) -> None:
    spin.setFocus()
    spin.selectAll()
    qtbot.keyClicks(spin, str(value))
    qtbot.keyClick(spin, Qt.Key.Key_Return)


def pump(wait_until, seconds: float) -> None:
    end = time.monotonic() + seconds
    wait_until(lambda: time.monotonic() > end)


def budget(qtbot, page, steps: int, val_every: int, val_episodes: int = 10) -> None:
    set_spin(qtbot, page.steps, steps)
    set_spin(qtbot, page.val_every, val_every)
    set_spin(qtbot, page.val_episodes, val_episodes)


def test_demo_to_trained_model_with_live_curves(window, qtbot, wait_until):
    """Data (demo intents) -> task -> ProtoNet -> train a few steps -> curves -> stored run."""
    assert window.state.dataset_ready and window.state.config.algorithm.name == "protonet"
    window.go("tasks")
    qtbot.mouseClick(window.tasks_page.sample_button, Qt.MouseButton.LeftButton)
    assert window.tasks_page.last_episode is not None
    window.go("train")
    page = window.train_page
    budget(qtbot, page, 12, 6)
    qtbot.mouseClick(page.start_button, Qt.MouseButton.LeftButton)
    assert page.running and not page.start_button.isEnabled()
    wait_until(lambda: not page.running, 60, "training")
    result = page.last_result
    assert result["status"] == "completed" and result["steps"] == 12
    # the curves got every step, validation got its two points with a confidence band
    assert len(page.loss_plot.series["train"].buf) == 12
    assert len(page.metric_plot.series["train"].buf) == 12
    val = page.metric_plot.series["val"]
    assert list(val.buf.x) == [6.0, 12.0]
    lo, hi, _ = val.band_items
    assert len(lo.getData()[0]) == 2 and all(top >= bottom for top, bottom in zip(hi.getData()[1], lo.getData()[1], strict=True))
    assert len(page.speed_plot.series["speed"].buf) == 12
    # the run is in the store, completed, with metrics
    run = window.state.store.run(result["run_id"])
    assert run["status"] == "completed" and run["steps_done"] == 12
    assert run["project_id"] == window.state.project_id
    xs, _ = window.state.store.metric_series(run["id"], "val/accuracy")
    assert xs == [6, 12]
    assert window.sidebar.is_done("train")
    assert "completed" in page.banner.message()
    assert "step 6: val accuracy" in page.log.toPlainText()
    assert page.labels["stall"].text().startswith("UI max stall")
    assert page.last_stall_ms is not None and page.stall.beats > 0
    assert "UI max stall" in window.stall_label.text()


def test_pause_resume_and_stop(window, qtbot, wait_until):
    page = window.train_page
    window.go("train")
    budget(qtbot, page, 5000, 5000)
    qtbot.mouseClick(page.start_button, Qt.MouseButton.LeftButton)
    wait_until(lambda: page.step >= 3, 60, "a few steps")
    qtbot.mouseClick(page.pause_button, Qt.MouseButton.LeftButton)
    assert page.pause_button.text() == "Resume"
    wait_until(lambda: window.state.store.run(page.run_id)["status"] == "paused", 30, "the pause")
    paused_at = window.state.store.run(page.run_id)["steps_done"]
    pump(wait_until, 0.15)
    held = page.step
    pump(wait_until, 0.4)
    assert page.step == held == paused_at  # nothing moves while paused
    qtbot.mouseClick(page.pause_button, Qt.MouseButton.LeftButton)
    assert page.pause_button.text() == "Pause"
    wait_until(lambda: page.step > held + 2, 30, "training to continue")
    qtbot.mouseClick(page.stop_button, Qt.MouseButton.LeftButton)
    wait_until(lambda: not page.running, 30, "the stop")
    assert page.last_result["status"] == "cancelled"
    assert page.last_result["steps"] > paused_at
    assert window.state.store.run(page.run_id)["status"] == "cancelled"
    assert "stopped" in page.banner.message()
    assert page.start_button.isEnabled()


def test_run_config_toml_and_cli_command(window, qtbot, tmp_path):
    page = window.train_page
    window.go("train")
    set_spin(qtbot, page.steps, 77)
    toml = page.toml.toPlainText()
    assert "steps = 77" in toml
    qtbot.mouseClick(page.copy_cli_button, Qt.MouseButton.LeftButton)
    cmd = QApplication.clipboard().text()
    assert cmd.startswith("metagui train ") and str(window.state.db_path) in cmd
    path = cmd.split('"')[1]
    cfg = RunConfig.load(path)
    assert cfg.training.steps == 77 and cfg.algorithm.name == "protonet"
    assert path in page.cli_label.text() and "--nproc" not in cmd
    set_spin(qtbot, page.processes, 2)
    qtbot.mouseClick(page.copy_cli_button, Qt.MouseButton.LeftButton)
    assert QApplication.clipboard().text().endswith(" --nproc 2")


def test_smoothing_can_be_turned_off(window, qtbot):
    page = window.train_page
    window.go("train")
    series = page.loss_plot.series["train"]
    assert series.smoothing
    qtbot.mouseClick(page.smooth, Qt.MouseButton.LeftButton)
    assert not page.smooth.isChecked() and not series.smoothing
    assert not page.smooth_weight.isEnabled()
    series.add([1, 2, 3], [1.0, 0.0, 1.0])
    page.smooth.setChecked(True)
    page.smooth_weight.setValue(50)
    assert series.alpha == 0.5 and len(series._smooth) == 3


def maml_on_sines(window, qtbot, inner_steps: int, eval_steps: int):
    """As a user clicks: the sinusoid data loaded, MAML with these inner and test-time steps,
    the Train page shown (returned)."""
    data = window.data_page
    data.source.setCurrentIndex(data.source.findData("sinusoid"))
    qtbot.mouseClick(data.load_button, Qt.MouseButton.LeftButton)
    alg = window.algorithm_page
    alg.select_algorithm("maml")
    alg.form.editors["inner_steps"].setValue(inner_steps)
    alg.form.editors["eval_steps"].setValue(eval_steps)
    window.go("train")
    return window.train_page


def test_training_a_sine_regressor_with_maml_shows_mse_and_adaptation(window, qtbot, wait_until):
    page = maml_on_sines(window, qtbot, inner_steps=2, eval_steps=3)
    budget(qtbot, page, 6, 3, 4)
    qtbot.mouseClick(page.start_button, Qt.MouseButton.LeftButton)
    wait_until(lambda: not page.running, 60, "training")
    assert page.last_result["status"] == "completed", page.last_result
    assert page.metric == "mse" and "Mean squared error" in page.metric_plot._title
    assert len(page.adapt_plot.curves) == 2
    step, values = page.adapt_plot.curves[-1]
    assert step == 6 and len(values) == 4  # query loss before and after each of 3 steps


def test_closing_while_training_stops_the_worker(make_window, qtbot, wait_until):
    from metagui.gui.workers import live_threads

    w = make_window()
    page = w.train_page
    budget(qtbot, page, 100000, 100000)
    qtbot.mouseClick(page.start_button, Qt.MouseButton.LeftButton)
    wait_until(lambda: page.step >= 2, 60, "training to start")
    run_id = page.run_id
    w.close()
    assert not live_threads()
    assert RunStore(w.state.db_path).run(run_id)["status"] == "cancelled"


@pytest.mark.slow
def test_two_processes_from_the_train_page_followed_live(window, qtbot, wait_until):
    """Processes / GPUs: 2 launches `metagui train --nproc 2` (torchrun) as a child process;
    the Train page draws its curves from the store, Pause / Resume / Stop reach the ranks, and
    the Runs page lists the run with its 2 processes."""
    page = maml_on_sines(window, qtbot, inner_steps=1, eval_steps=2)
    budget(qtbot, page, 1_000_000, 1000, 4)
    set_spin(qtbot, page.processes, 2)
    qtbot.mouseClick(page.start_button, Qt.MouseButton.LeftButton)
    assert page.running and page.stop_button.isEnabled() and not page.processes.isEnabled()
    wait_until(lambda: page.step >= 3, 120, "the 2-process run's first steps on the Train page")
    assert page.metric == "mse" and len(page.loss_plot.series["train"].buf) >= 3
    store = RunStore(window.state.db_path)
    run_id = page.run_id

    qtbot.mouseClick(page.pause_button, Qt.MouseButton.LeftButton)
    wait_until(lambda: store.run(run_id)["status"] == "paused", 30, "the ranks to pause")
    held = store.run(run_id)["steps_done"]
    pump(wait_until, 1.5)
    assert store.run(run_id)["steps_done"] == held and store.checkpoints(run_id)["last"]["step"] == held
    assert page.pause_button.text() == "Resume"
    qtbot.mouseClick(page.pause_button, Qt.MouseButton.LeftButton)
    wait_until(lambda: (store.run(run_id)["steps_done"] or 0) > held + 2, 30, "the ranks to resume")

    qtbot.mouseClick(page.stop_button, Qt.MouseButton.LeftButton)
    wait_until(lambda: not page.running, 90, "the ranks to stop")
    assert page.last_result["status"] == "cancelled", (page.last_result, page.log.toPlainText())
    run = store.run(run_id)
    assert run["world_size"] == 2 and run["status"] == "cancelled"
    assert store.checkpoints(run_id)["last"]["step"] == run["steps_done"] > held
    window.go("runs")
    window.runs_page.refresh()
    row = window.runs_page.model.row_by_id(run_id)
    assert window.runs_page.model._format("device", row["device"], row, False) == "cpu ×2"
    store.close()
