"""Export in the app: the dialog from the Runs and Train pages, the Export page, parity shown,
a copyable snippet, and opening bundles (a bad one is refused and adds nothing)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication

from metagui.core.export import export_run
from metagui.core.store import RunStore
from metagui.core.trainer import Trainer, TrainingControl
from tests.helpers import save_sentence_transformer, small_config, train_on_encoder


@pytest.fixture(scope="module")
def template_db(tmp_path_factory):
    """One ProtoNet run on the demo's intents, trained for two steps, once for the module."""
    db = tmp_path_factory.mktemp("export-template") / "runs.db"
    cfg = small_config("protonet", "intents", steps=2)
    cfg.training.val_episodes = 2
    store = RunStore(db)
    result = Trainer(cfg, store, None, TrainingControl()).run()
    store.close()
    assert result.status == "completed"
    return db, result.run_id


@pytest.fixture
def export_window(make_window, template_db, tmp_path):
    src, rid = template_db
    db = tmp_path / "runs.db"
    shutil.copy(src, db)
    shutil.copytree(src.parent / f"{src.stem}-runs", tmp_path / f"{db.stem}-runs")
    return make_window(db=db), rid


def test_export_dialog_from_runs_and_train_pages(export_window, qtbot, wait_until, tmp_path):
    w, rid = export_window
    w.go("runs")
    page = w.runs_page
    page.select_runs([rid])
    assert page.buttons["export"].isEnabled()
    qtbot.mouseClick(page.buttons["export"], Qt.MouseButton.LeftButton)
    dlg = w.export_dialogs[-1]
    panel = dlg.panel
    assert dlg.isVisible() and panel.run_id == rid and panel.fmt == "bundle"
    panel.folder.setText(str(tmp_path / "exports"))
    assert panel.target.text().endswith(f"run-{rid}-protonet.metagui.")
    qtbot.mouseClick(panel.export_button, Qt.MouseButton.LeftButton)
    assert panel.busy and not panel.export_button.isEnabled()
    wait_until(lambda: not panel.busy, 120, "the export")
    res = panel.result
    assert res is not None and res["passed"], panel.banner.message()
    assert panel.banner.level == "ok" and "Parity ok" in panel.banner.message()
    assert Path(res["path"]).is_file() and Path(res["path"]).parent == tmp_path / "exports"
    assert panel.parity.rowCount() == len(res["parity"]) and panel.parity.item(0, 2).text() == "ok"
    assert any("held-out" in k for k in res["parity"])  # the window's loaded dataset was used
    assert "open_bundle" in panel.snippet.toPlainText() and "Model card" in panel.card.toPlainText()
    qtbot.mouseClick(panel.copy_button, Qt.MouseButton.LeftButton)
    assert QGuiApplication.clipboard().text() == panel.snippet.toPlainText()
    dlg.close()
    assert dlg not in w.export_dialogs

    # the Train page opens the same dialog for its run
    tp = w.train_page
    tp.run_id = rid
    tp._update_buttons()
    assert tp.export_button.isEnabled()
    qtbot.mouseClick(tp.export_button, Qt.MouseButton.LeftButton)
    assert w.export_dialogs[-1].panel.run_id == rid
    w.export_dialogs[-1].close()


def test_export_page_onnx_adaptive_and_opening_bundles(export_window, qtbot, wait_until, tmp_path):
    w, rid = export_window
    w.go("export")
    page = w.export_page
    panel = page.panel
    assert panel.run_id == rid
    panel.set_format("onnx-adaptive")
    panel.folder.setText(str(tmp_path / "onnx"))
    qtbot.mouseClick(panel.export_button, Qt.MouseButton.LeftButton)
    wait_until(lambda: not panel.busy, 120, "the export")
    res = panel.result
    assert res is not None and res["passed"] and res["max_abs_diff"] <= 1e-4, panel.banner.message()
    assert res["path"].endswith("-adaptive.onnx") and Path(res["path"] + ".md").is_file()
    assert "onnxruntime" in panel.snippet.toPlainText() and "import zlib" in panel.snippet.toPlainText()

    # a damaged bundle is refused and adds nothing
    runs_before = len(w.state.store.runs())
    bad = tmp_path / "bad.metagui"
    bad.write_bytes(b"this is not a zip")
    page.ask_open_path = lambda: str(bad)
    qtbot.mouseClick(page.open_button, Qt.MouseButton.LeftButton)
    assert page.banner.level == "error" and "not a zip" in page.banner.message()
    assert len(w.state.store.runs()) == runs_before

    # a good one becomes a run in Runs (and Try it)
    good = export_run(w.state.db_path, rid, "bundle", tmp_path, load_data=False).path
    page.ask_open_path = lambda: good
    qtbot.mouseClick(page.open_button, Qt.MouseButton.LeftButton)
    assert page.banner.level == "ok", page.banner.message()
    runs = w.state.store.runs()
    assert len(runs) == runs_before + 1 and runs[0]["name"].startswith("Imported:")
    assert panel.run_id == runs[0]["id"] and "best" in w.state.store.checkpoints(runs[0]["id"])
    assert runs[0]["id"] in [r["id"] for r in w.runs_page.model.rows]


def test_opening_a_bundle_asks_for_a_private_encoder_it_cannot_find(make_window, qtbot, tmp_path, monkeypatch):

    encoder = tmp_path / "my-encoder"
    save_sentence_transformer(encoder)
    store, rid = train_on_encoder(tmp_path / "elsewhere", encoder)
    bundle = export_run(store, rid, "bundle", tmp_path, episodes=0).path
    monkeypatch.setenv("METAGUI_DATA_DIR", str(tmp_path / "this-computer"))  # never used that encoder here
    w = make_window(db=tmp_path / "runs.db")
    w.go("export")
    page = w.export_page
    page.ask_open_path = lambda: bundle
    asked = []
    page.ask_encoder_folder = lambda why: asked.append(why) or ""  # the user cancels
    qtbot.mouseClick(page.open_button, Qt.MouseButton.LeftButton)
    assert "my-encoder" in asked[0] and page.banner.level == "error" and w.state.store.runs() == []
    page.ask_encoder_folder = lambda why: asked.append(why) or str(encoder)
    qtbot.mouseClick(page.open_button, Qt.MouseButton.LeftButton)
    assert page.banner.level == "ok", page.banner.message()
    assert len(asked) == 2 and len(w.state.store.runs()) == 1


def test_exporting_over_an_existing_file_asks_first(export_window, qtbot, tmp_path):
    w, rid = export_window
    w.go("export")
    panel = w.export_page.panel
    panel.folder.setText(str(tmp_path))
    target = panel.target_path()
    target.write_bytes(b"someone else's file")
    asked = []
    panel.confirm_replace = lambda path: asked.append(path) or False
    qtbot.mouseClick(panel.export_button, Qt.MouseButton.LeftButton)
    assert asked == [target] and not panel.busy and panel.banner.level == "info"
    assert target.read_bytes() == b"someone else's file"
