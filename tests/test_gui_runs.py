"""Runs page: the table of runs (sort, filter), overlaid curves, config differences,
rename, tags, delete, CSV export, reopen, resume, and watching a run another process writes."""

from __future__ import annotations

import csv
import os
import shutil

import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtWidgets import QLineEdit

from metagui.core.presets import default_config
from metagui.core.store import RunStore
from metagui.core.trainer import Trainer, TrainingControl
from metagui.gui.pages.runs_page import COL
from tests.helpers import start_store_writer, stop_store_writer, store_call


def _train(db, algorithm: str, steps: int, stop_at: int | None = None, **hp) -> int:
    cfg = default_config(algorithm, "intents")
    cfg.training.steps, cfg.training.val_every, cfg.training.val_episodes = steps, 2, 4
    cfg.algorithm.hyperparams = hp
    control = TrainingControl()

    def on_event(ev):
        if stop_at and ev["kind"] == "metrics" and ev["step"] >= stop_at:
            control.cancel()

    store = RunStore(db)
    result = Trainer(cfg, store, on_event, control).run()
    store.close()
    return result.run_id


@pytest.fixture(scope="module")
def template_db(tmp_path_factory):
    """Three runs trained once for the module: two completed, one stopped at step 3 of 8."""
    db = tmp_path_factory.mktemp("template") / "runs.db"
    ids = {
        "proto": _train(db, "protonet", 4),
        "matching": _train(db, "matching", 4, meta_lr=0.002),
        "stopped": _train(db, "protonet", 8, stop_at=3),
    }
    return db, ids


@pytest.fixture
def runs_db(template_db, tmp_path):
    src, ids = template_db
    db = tmp_path / "runs.db"
    shutil.copy(src, db)
    shutil.copytree(src.parent / f"{src.stem}-runs", tmp_path / f"{db.stem}-runs")
    return db, ids


@pytest.fixture
def runs_window(make_window, runs_db, wait_until):
    db, ids = runs_db
    w = make_window(db=db)
    w.go("runs")
    return w, ids


def open_editor(page) -> QLineEdit:
    return [e for e in page.table.viewport().findChildren(QLineEdit) if e.isVisible()][-1]


def rows(page) -> list[int]:
    return [int(page.proxy.index(r, COL["id"]).data()) for r in range(page.proxy.rowCount())]


def test_table_lists_sorts_and_filters_runs(runs_window, qtbot):
    w, ids = runs_window
    page = w.runs_page
    assert sorted(rows(page)) == sorted(ids.values())
    statuses = {int(page.proxy.index(r, COL["id"]).data()): page.proxy.index(r, COL["status"]).data()
                for r in range(page.proxy.rowCount())}
    assert statuses[ids["proto"]] == "completed" and statuses[ids["stopped"]] == "cancelled"
    qtbot.keyClicks(page.filter, "matching")
    assert rows(page) == [ids["matching"]]
    page.filter.clear()
    page.status_filter.setCurrentIndex(page.status_filter.findData("cancelled"))
    assert rows(page) == [ids["stopped"]]
    page.status_filter.setCurrentIndex(0)
    page.project_only.setChecked(True)  # these runs came from the command line: no project
    assert rows(page) == []
    page.project_only.setChecked(False)
    page.table.sortByColumn(COL["id"], Qt.SortOrder.AscendingOrder)
    assert rows(page) == sorted(ids.values())
    header = page.table.horizontalHeader()
    qtbot.mouseClick(header.viewport(), Qt.MouseButton.LeftButton,
                     pos=QPoint(header.sectionViewportPosition(COL["best_val"]) + 5, 5))
    vals = [page.proxy.index(r, COL["best_val"]).data(Qt.ItemDataRole.UserRole) for r in range(page.proxy.rowCount())]
    assert vals == sorted(vals) or vals == sorted(vals, reverse=True)


def test_selecting_runs_overlays_curves_and_diffs_configs(runs_window):
    w, ids = runs_window
    page = w.runs_page
    page.select_runs([ids["proto"], ids["matching"]])
    assert page.metric.currentText() == "val/accuracy"
    assert page.curve_points() == {ids["proto"]: 2, ids["matching"]: 2}
    keys = page.diff_keys()
    assert "algorithm.name" in keys and "algorithm.hyperparams" in keys
    assert "task.way" not in keys  # the same in both: hidden with "differences only"
    page.diff_only.setChecked(False)
    assert "task.way" in page.diff_keys()
    page.metric.setCurrentText("train/loss")
    assert page.curve_points() == {ids["proto"]: 4, ids["matching"]: 4}


def test_rename_and_tag_by_editing_cells(runs_window, qtbot, wait_until):
    w, ids = runs_window
    page = w.runs_page
    page.select_runs([ids["proto"]])
    qtbot.mouseClick(page.buttons["rename"], Qt.MouseButton.LeftButton)
    editor = open_editor(page)
    editor.selectAll()
    qtbot.keyClicks(editor, "baseline")
    qtbot.keyClick(editor, Qt.Key.Key_Return)  # the delegate commits on the next event loop turn
    wait_until(lambda: w.state.store.run(ids["proto"])["name"] == "baseline", 5, "the rename")
    page.select_runs([ids["proto"]])
    qtbot.mouseClick(page.buttons["tag"], Qt.MouseButton.LeftButton)
    editor = open_editor(page)
    qtbot.keyClicks(editor, "paper, best")
    qtbot.keyClick(editor, Qt.Key.Key_Return)
    wait_until(lambda: w.state.store.run(ids["proto"])["tags"] == ["paper", "best"], 5, "the tags")
    page.filter.setText("paper")
    assert rows(page) == [ids["proto"]]


def test_export_csv_and_delete(runs_window, qtbot, tmp_path):
    w, ids = runs_window
    page = w.runs_page
    target = tmp_path / "metrics.csv"
    page.ask_save_path = lambda default: str(target)
    page.select_runs([ids["proto"], ids["matching"]])
    qtbot.mouseClick(page.buttons["csv"], Qt.MouseButton.LeftButton)
    with open(target, encoding="utf-8") as f:
        table = list(csv.DictReader(f))
    assert {int(r["run_id"]) for r in table} == {ids["proto"], ids["matching"]}
    assert any(r["metric"] == "val/accuracy" for r in table)
    asked = []
    page.confirm = lambda title, text: asked.append(text) or True
    page.select_runs([ids["matching"]])
    qtbot.mouseClick(page.buttons["delete"], Qt.MouseButton.LeftButton)
    assert asked and "run" in asked[0]
    assert ids["matching"] not in [r["id"] for r in w.state.store.runs()]
    assert ids["matching"] not in rows(page)
    assert not (w.state.store.runs_dir / f"run-{ids['matching']}").exists()


def test_reopen_loads_the_runs_settings(runs_window, qtbot, wait_until):
    w, ids = runs_window
    page = w.runs_page
    page.select_runs([ids["matching"]])
    qtbot.mouseClick(page.buttons["reopen"], Qt.MouseButton.LeftButton)
    assert w.current_step() == "train"
    cfg = w.state.config
    assert cfg.algorithm.name == "matching" and cfg.algorithm.hyperparams["meta_lr"] == 0.002
    assert w.train_page.steps.value() == 4
    assert w.algorithm_page.title.text() == "Matching Networks"
    wait_until(lambda: w.state.dataset_ready, 30)


def test_resume_a_stopped_run(runs_window, qtbot, wait_until):
    w, ids = runs_window
    page = w.runs_page
    page.select_runs([ids["stopped"]])
    qtbot.mouseClick(page.buttons["resume"], Qt.MouseButton.LeftButton)
    tp = w.train_page
    assert w.current_step() == "train" and tp.running
    wait_until(lambda: not tp.running, 60, "the resumed run")
    assert tp.last_result["status"] == "completed", tp.last_result
    run = w.state.store.run(ids["stopped"])
    assert run["status"] == "completed" and run["steps_done"] == 8
    assert tp.loss_plot.series["train"].buf.x[0] == 1  # history from the store, then new steps
    # a completed run is not resumed again
    w.go("runs")
    page.select_runs([ids["stopped"]])
    qtbot.mouseClick(page.buttons["resume"], Qt.MouseButton.LeftButton)
    assert not tp.running and "finished all its 8 steps" in page.banner.message()


def test_a_run_written_by_another_process_is_watched_live(runs_window, wait_until):
    w, ids = runs_window
    page = w.runs_page
    other = start_store_writer(w.state.db_path)  # a process of its own, as `metagui train` in a terminal
    try:
        rid = store_call(other, "create_run", name="from the terminal", config_toml=default_config().to_toml(),
                         algorithm="protonet", dataset="intents", task="5-way 5-shot", device="cpu")
        store_call(other, "update_run", rid, status="running", steps_done=2)
        store_call(other, "add_metrics", rid, [(1, "train/loss", 1.0), (2, "train/loss", 0.8)])
        wait_until(lambda: rid in rows(page), 5, "the poll to find the run")
        assert page.model.row_by_id(rid)["pid"] == other.pid != os.getpid()
        page.select_runs([rid])
        assert page.metric.currentText() == "train/loss" and page.curve_points() == {rid: 2}
        store_call(other, "add_metrics", rid, [(3, "train/loss", 0.7), (4, "train/loss", 0.6)])
        store_call(other, "update_run", rid, steps_done=4)
        wait_until(lambda: page.curve_points() == {rid: 4}, 5, "new metric rows")
        assert "run " + str(rid) in page.live_label.text()
        assert other.poll() is None  # all of it seen while the writer is alive, its store open
        store_call(other, "update_run", rid, status="completed")
        wait_until(lambda: page.model.row_by_id(rid)["status"] == "completed", 5)
        assert other.poll() is None
    finally:
        stop_store_writer(other)


def test_fine_tune_from_a_run_and_its_feedback_on_the_data_page(runs_window, qtbot, wait_until):
    w, ids = runs_window
    parent = ids["proto"]
    store = w.state.store
    feedback = [("lights in the attic on", "HassTurnOn"), ("attic lights off", "HassTurnOff"),
                ("switch on the porch lamp", "HassTurnOn"), ("porch lamp off please", "HassTurnOff"),
                ("open the garage door", "HassTurnOn"), ("close the garage", "HassTurnOff")]
    for text, intent in feedback:
        store.record_support(parent, {"intents": []}, "serve", {"message": text, "intent": intent})

    # Data page: "Feedback of run N" writes the table beside the store and opens it as a text table
    w.go("data")
    dp = w.data_page
    assert dp.feedback_runs.currentData() == parent and "6 messages" in dp.feedback_runs.currentText()
    path = dp.use_feedback(parent, load=False)
    assert path.read_text(encoding="utf-8").splitlines() == ["text,label"] + [f"{t},{i}" for t, i in feedback]
    assert dp.current_source() == "text_table" and dp.table_path.text() == str(path)

    # Runs page: Fine-tune loads the run's settings; the next Train starts from its weights
    w.go("runs")
    page = w.runs_page
    page.select_runs([parent])
    qtbot.mouseClick(page.buttons["finetune"], Qt.MouseButton.LeftButton)
    tp = w.train_page
    assert w.current_step() == "train" and tp.fine_tune_from == parent
    assert f"Fine-tuning from run {parent}" in tp.banner.message()
    wait_until(lambda: w.state.dataset_ready, 30)
    assert tp.start()
    wait_until(lambda: not tp.running, 60, "the fine-tuning run")
    assert tp.last_result["status"] == "completed", tp.last_result
    child = tp.last_result["run_id"]
    assert w.state.store.run(child)["parent_id"] == parent and tp.fine_tune_from is None
    assert f"Fine-tuning from run {parent}" in tp.log.toPlainText()  # the log says so

    # Parent vs child: the same held-out episodes and the parent's feedback, side by side
    w.go("runs")
    page.refresh()
    page.select_runs([child])
    page.tabs.setCurrentIndex(2)
    assert page.lineage_button.isEnabled() and f"fine-tuned from run {parent}" in page.lineage_label.text()
    qtbot.mouseClick(page.lineage_button, Qt.MouseButton.LeftButton)
    wait_until(lambda: page.lineage_result is not None and not page.lineage_task.running, 60, "the comparison")
    res = page.lineage_result
    assert (res["parent"], res["child"]) == (parent, child) and res["held_out"]["episodes"] == 200
    assert page.lineage.rowCount() == 2 and page.lineage.item(0, 0).text().startswith("Held-out accuracy")
    assert page.lineage.item(0, 1).text().startswith(f"{100 * res['held_out']['parent']:.1f}%")
    assert res["feedback"]["messages"] == 6 and page.lineage.item(1, 0).text().startswith("Feedback")
    page.select_runs([ids["matching"]])
    assert not page.lineage_button.isEnabled()  # no parent


def test_a_run_selected_before_its_first_metrics_gets_its_curves(runs_window, wait_until):
    w, ids = runs_window
    page = w.runs_page
    other = start_store_writer(w.state.db_path)  # as `metagui train --nproc 2` starting in a terminal
    try:
        rid = store_call(other, "create_run", name="starting", config_toml=default_config().to_toml(),
                         algorithm="protonet", dataset="intents", task="5-way 5-shot", device="cpu")
        store_call(other, "update_run", rid, status="running", world_size=2)
        wait_until(lambda: rid in rows(page), 5, "the poll to find the run")
        page.select_runs([rid])
        assert page.metric.count() == 0 and page.curve_points() == {}
        assert page.model._format("device", "cpu", page.model.row_by_id(rid), False) == "cpu ×2"
        store_call(other, "add_metrics", rid, [(1, "train/loss", 1.0), (2, "train/loss", 0.8)])
        wait_until(lambda: page.curve_points() == {rid: 2}, 5, "the first metrics")
        assert page.metric.currentText() == "train/loss"
    finally:
        stop_store_writer(other)
