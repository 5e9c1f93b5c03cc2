"""Try it: the chat pane on trained runs: adapt, answer, feedback that re-adapts, before /
after, a new intent typed in the pane, transcripts, demo mode, images dropped onto the
support set and into the chat, and the regression plot."""

from __future__ import annotations

import csv
import json
import re
import shutil

import numpy as np
import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtTest import QTest

from metagui.core.presets import default_config
from metagui.core.store import RunStore
from metagui.core.trainer import Trainer


def _train(db, cfg) -> int:
    store = RunStore(db)
    result = Trainer(cfg, store).run()
    store.close()
    assert result.status == "completed", result.error
    return result.run_id


@pytest.fixture(scope="module")
def template_db(tmp_path_factory):
    """A sinusoid MAML run, a glyph (image) ProtoNet run and, latest, an intents ProtoNet run."""
    db = tmp_path_factory.mktemp("chat") / "runs.db"
    sine = default_config("maml", "sinusoid")
    sine.training.steps, sine.training.val_every, sine.training.val_episodes = 3, 3, 4
    glyphs = default_config("protonet", "glyphs")
    glyphs.dataset.n_alphabets, glyphs.dataset.characters_per_alphabet, glyphs.dataset.drawers = 3, 10, 6
    glyphs.training.steps, glyphs.training.val_every, glyphs.training.val_episodes = 2, 2, 2
    intents = default_config("protonet", "intents")
    intents.training.steps, intents.training.val_every, intents.training.val_episodes = 5, 5, 4
    ids = {"sine": _train(db, sine), "glyphs": _train(db, glyphs), "intents": _train(db, intents)}
    return db, ids


@pytest.fixture
def chat(make_window, template_db, tmp_path, wait_until):
    src, ids = template_db
    db = tmp_path / "runs.db"
    shutil.copy(src, db)
    shutil.copytree(src.parent / f"{src.stem}-runs", tmp_path / f"{db.stem}-runs")
    w = make_window(db=db)
    w.go("chat")
    page = w.chat_page
    wait_until(lambda: page.engine is not None and not page.busy, 60, "the run to load and adapt")
    return w, page, ids


def ask(qtbot, page, text: str) -> dict:
    n = len(page.engine.transcript)
    page.input.setFocus()
    qtbot.keyClicks(page.input, text)
    qtbot.keyClick(page.input, Qt.Key.Key_Return)
    assert len(page.engine.transcript) == n + 1 and page.input.text() == ""
    return page.engine.transcript[-1]


def readapted(page, wait_until, before: int) -> None:
    wait_until(lambda: page.adapt_count > before and not page.busy, 30, "re-adaptation")


def test_adapts_answers_and_learns_from_feedback(chat, qtbot, wait_until):
    w, page, ids = chat
    support_panel, chat_panel = page.support_panel, page.conversation_panel
    assert page.run_id == ids["intents"]  # the latest run is the default
    assert page.run_combo.count() == 3
    eng = page.engine
    assert len(eng.support) == 9 and set(eng.support.counts().values()) == {5}  # the 9 held-out intents
    assert support_panel.tree.topLevelItemCount() == 9 and support_panel.tree.topLevelItem(0).text(1) == "5"
    assert support_panel.counts_label.text() == "9 intents, 45 examples"
    assert support_panel.adapt_label.text().startswith("Adapted in") and eng.adaptation.ms > 0
    assert all(eng.support[n].reply for n in eng.support.names)  # Home Assistant's own response texts

    chat_panel.threshold.setValue(0.0)
    e = ask(qtbot, page, "set the kitchen lights to 50 percent")
    assert e["answer"]["reply"] in chat_panel.view.toPlainText() and "✓ Right" in chat_panel.view.toPlainText()
    assert len(e["answer"]["alternatives"]) == 3

    # wrong: choose the right intent from the menu; the message joins it and the model re-adapts
    target = next(n for n in eng.support.names if n != e["answer"]["intent"])
    count, adapts = eng.support.counts()[target], page.adapt_count
    p_before = float(eng.probabilities([e["message"]])[0, eng.adaptation.names.index(target)])
    chat_panel.view.anchorClicked.emit(QUrl("fb:0:wrong"))
    action = next(a for a in chat_panel.feedback_menu.actions() if a.text() == target)
    action.trigger()
    readapted(page, wait_until, adapts)
    assert eng.support.counts()[target] == count + 1 and eng.adaptation.examples == 46
    assert support_panel.tree.intent_item(target).text(1) == str(count + 1)
    assert f"Corrected to “{target}”" in chat_panel.view.toPlainText()
    p_after = float(eng.probabilities([e["message"]])[0, eng.adaptation.names.index(target)])
    assert p_after > p_before  # the model moved towards the correction at once
    store = RunStore.for_reading(w.state.db_path)  # recorded in the run store, as `metagui serve` records it
    rows, live = store.feedback(page.run_id), store.live_support(page.run_id)
    store.close()
    assert [(r["message"], r["intent"], r["source"]) for r in rows] == [(e["message"], target, "app")]
    assert live == eng.support.to_dict()

    # right: the message is kept as an example of the predicted intent
    e = ask(qtbot, page, "start the vacuum cleaner")
    adapts = page.adapt_count
    chat_panel.view.anchorClicked.emit(QUrl("fb:1:right"))
    readapted(page, wait_until, adapts)
    assert "start the vacuum cleaner" in eng.support[e["answer"]["intent"]].examples

    # before / after, side by side
    qtbot.mouseClick(page.compare, Qt.MouseButton.LeftButton)
    e = ask(qtbot, page, "turn the volume up a bit")
    assert e["before"] is not None and "BEFORE" in chat_panel.view.toPlainText() and "AFTER" in chat_panel.view.toPlainText()
    assert eng.baseline_label in chat_panel.view.toPlainText()

    # a high threshold: the assistant asks instead of guessing
    chat_panel.threshold.setValue(1.0)
    e = ask(qtbot, page, "close the blinds")
    assert e["answer"]["fallback"] and "I'm not sure I understood" in chat_panel.view.toPlainText()


def test_new_intent_typed_in_the_pane_is_recognised(chat, qtbot, wait_until):
    w, page, _ = chat
    support_panel, chat_panel = page.support_panel, page.conversation_panel
    adapts = page.adapt_count
    qtbot.mouseClick(support_panel.add_intent_button, Qt.MouseButton.LeftButton)
    dlg = support_panel.add_dialog
    qtbot.keyClicks(dlg.name, "order_pizza")
    dlg.examples.setPlainText("order a pizza\nI want to order a pizza\nget me a large pizza\n"
                              "can I order pizza for delivery\npizza delivery please")
    qtbot.keyClicks(dlg.reply, "Your pizza is on its way.")
    dlg.buttons.button(dlg.buttons.StandardButton.Ok).click()
    readapted(page, wait_until, adapts)
    eng = page.engine
    assert eng.support.counts()["order_pizza"] == 5 and len(eng.adaptation.names) == 10
    assert support_panel.tree.selected_intent() == "order_pizza"
    chat_panel.threshold.setValue(0.0)
    e = ask(qtbot, page, "please order me a pizza")
    assert e["answer"]["intent"] == "order_pizza" and "Your pizza is on its way." in chat_panel.view.toPlainText()
    # add one more example by hand, edit the reply
    adapts = page.adapt_count
    qtbot.keyClicks(support_panel.example_edit, "pizza for dinner tonight")
    qtbot.keyClick(support_panel.example_edit, Qt.Key.Key_Return)
    readapted(page, wait_until, adapts)
    assert eng.support.counts()["order_pizza"] == 6
    support_panel.reply_edit.setText("On its way!")
    support_panel.reply_edit.editingFinished.emit()
    assert eng.support["order_pizza"].reply == "On its way!"
    # remove it again (selected intent, Remove)
    adapts = page.adapt_count
    support_panel.tree.setCurrentItem(support_panel.tree.intent_item("order_pizza"))
    qtbot.mouseClick(support_panel.remove_button, Qt.MouseButton.LeftButton)
    readapted(page, wait_until, adapts)
    assert "order_pizza" not in eng.support and len(eng.adaptation.names) == 9


def test_transcripts_save_reopen_export_and_csv_intents(chat, qtbot, tmp_path, wait_until):
    w, page, ids = chat
    support_panel, chat_panel = page.support_panel, page.conversation_panel
    ask(qtbot, page, "pause the timer")
    page.give_feedback(0, page.engine.support.names[0])
    tid = chat_panel.save_transcript("demo chat")
    row = w.state.store.transcripts(ids["intents"])[0]
    assert row["id"] == tid and row["messages"][0]["message"] == "pause the timer"
    assert row["support"]["intents"][0]["examples"][-1] == "pause the timer"
    qtbot.mouseClick(chat_panel.clear_button, Qt.MouseButton.LeftButton)
    assert page.engine.transcript == []
    support_panel.reset_support()
    chat_panel.open_transcript(tid)
    assert len(page.engine.transcript) == 1 and "pause the timer" in chat_panel.view.toPlainText()
    assert "pause the timer" in page.engine.support[page.engine.support.names[0]].examples
    chat_panel.export_transcript(str(tmp_path / "chat.json"))
    chat_panel.export_transcript(str(tmp_path / "chat.csv"))
    assert json.loads((tmp_path / "chat.json").read_text())["messages"][0]["message"] == "pause the timer"
    assert next(csv.DictReader((tmp_path / "chat.csv").open()))["message"] == "pause the timer"
    # intents from a CSV file, and the support set back out
    table = tmp_path / "intents.csv"
    table.write_text("intent,example,reply\nopening_hours,when do you open,We open at 9.\n"
                     "opening_hours,are you open on sunday,\n", encoding="utf-8")
    adapts = page.adapt_count
    support_panel.import_csv(str(table))
    readapted(page, wait_until, adapts)
    assert page.engine.support.counts()["opening_hours"] == 2 and "Imported 1 new intents" in page.banner.message()
    support_panel.export_support(str(tmp_path / "support.csv"))
    rows = list(csv.DictReader((tmp_path / "support.csv").open()))
    assert {"intent", "example", "reply"} <= set(rows[0]) and rows[-1]["intent"] == "opening_hours"


def test_demo_mode_full_screen_chat_and_escape(chat, qtbot):
    w, page, _ = chat
    support_panel, chat_panel = page.support_panel, page.conversation_panel
    w.go("runs")
    w.actions["demo_mode"].trigger()
    assert w.demo_mode and w.current_step() == "chat"
    assert not w.sidebar.isVisible() and not w.menuBar().isVisible() and not w.statusBar().isVisible()
    assert not page.header.isVisible() and not support_panel.isVisible() and page.demo_info.isVisible()
    assert page.input.font().pointSizeF() >= 20 and chat_panel.view.scale > 1.5
    assert w.windowState() & Qt.WindowState.WindowFullScreen
    e = ask(qtbot, page, "what is the temperature")
    assert e["answer"]["intent"]
    QTest.keyClick(w, Qt.Key.Key_Escape)
    assert not w.demo_mode and w.sidebar.isVisible() and not support_panel.isHidden() and w.current_step() == "runs"
    assert not (w.windowState() & Qt.WindowState.WindowFullScreen)
    w.go("chat")
    QTest.keyClick(w, Qt.Key.Key_D, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert w.demo_mode
    w.set_demo_mode(False)


def _drop(widget, paths, pos: QPoint) -> None:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    for kind in (QDropEvent.Type.DragEnter, QDropEvent.Type.Drop):
        if kind == QDropEvent.Type.DragEnter:
            from PySide6.QtGui import QDragEnterEvent

            ev = QDragEnterEvent(pos, Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
        else:
            ev = QDropEvent(QPointF(pos), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
        from PySide6.QtWidgets import QApplication

        QApplication.sendEvent(widget, ev)


def test_images_dropped_onto_classes_and_into_the_chat(chat, tmp_path, wait_until):
    from PIL import Image

    from metagui.core.chat import image_to_data_uri

    w, page, ids = chat
    support_panel, chat_panel = page.support_panel, page.conversation_panel
    page.run_combo.setCurrentIndex(page.run_combo.findData(ids["glyphs"]))
    wait_until(lambda: page.run_id == ids["glyphs"] and not page.busy, 60, "the glyph run")
    eng = page.engine
    assert eng.pre.modality == "image" and len(eng.support) >= 2 and chat_panel.image_button.isVisible()
    assert not page.input.isVisible()
    first = eng.support.names[0]
    assert not support_panel.tree.intent_item(first).child(0).icon(0).isNull()  # thumbnails
    ds = page.dataset
    # the file of the class's own (1-shot) example: whatever the weights, a model that reads the
    # dropped file as it read the example answers that class
    example = eng.support[first].examples[0]
    idx = next(int(i) for i in np.nonzero(ds.labels == ds.classes.index(first))[0]
               if image_to_data_uri(ds.images[i]) == example)
    path = tmp_path / "glyph.png"
    Image.fromarray(ds.images[idx][0].numpy()).save(path)
    # into the chat: classified, with a thumbnail of the dropped image
    _drop(chat_panel.view.viewport(), [path], QPoint(50, 50))
    assert len(eng.transcript) == 1 and eng.transcript[0]["message"] == str(path)
    shown = chat_panel.view.toPlainText()
    assert "glyph.png" in shown
    # the answer shown: the dropped glyph's own class, with its confidence as a percentage
    answer = eng.transcript[0]["answer"]
    assert answer["intent"] == first and not answer["fallback"], answer
    m = re.search(rf"class {re.escape(first)} · (\d+)%", shown)
    assert m, shown
    assert 100 / len(eng.support) < int(m.group(1)) <= 100 and int(m.group(1)) == round(100 * answer["confidence"])
    # onto a class: a new example of it
    adapts = page.adapt_count
    tree = support_panel.tree
    tree.collapseAll()
    rect = tree.visualItemRect(tree.intent_item(first))
    _drop(tree.viewport(), [path], rect.center())
    readapted(page, wait_until, adapts)
    assert eng.support[first].examples[-1] == str(path)


def test_regression_plot_clicks_add_points(chat, qtbot, wait_until):
    w, page, ids = chat
    panel = page.regression_panel
    page.run_combo.setCurrentIndex(page.run_combo.findData(ids["sine"]))
    wait_until(lambda: panel.engine is not None and not page.busy, 60, "the sinusoid run")
    assert page.stack.currentIndex() == 2
    reg = panel.engine
    assert reg.truth is not None and panel.last_fit.after is None and panel.last_fit.before is not None
    plot = panel.plot
    vb = plot.getViewBox()
    scene_pos = vb.mapViewToScene(QPointF(1.0, 2.0))
    view_pos = plot.mapFromScene(scene_pos)
    qtbot.mouseClick(plot.viewport(), Qt.MouseButton.LeftButton, pos=view_pos)
    assert len(reg.points) == 1 and reg.points[0][0] == pytest.approx(1.0, abs=0.2)
    assert panel.last_fit.after is not None and "MSE before" in panel.label.text()
    qtbot.mouseClick(panel.sample_button, Qt.MouseButton.LeftButton)
    assert len(reg.points) == 6 and len(plot.points.data) == 6
    truth = reg.truth
    qtbot.mouseClick(panel.new_sine_button, Qt.MouseButton.LeftButton)
    assert reg.truth != truth and reg.points == [] and panel.last_fit.after is None


def test_without_trained_runs_the_pane_says_what_to_do(make_window, tmp_path):
    w = make_window(db=tmp_path / "empty.db", ready=False)
    w.go("chat")
    page = w.chat_page
    assert page.stack.currentIndex() == 0 and page.run_combo.count() == 0
    page.go_train.click()
    assert w.current_step() == "train"
