"""Widgets bound to config fields (gui/widgets/binding.py): an edit reaches the config once,
a config change reaches the widget, and neither comes back as the other."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QCheckBox, QComboBox, QLineEdit

from metagui.core.config import RunConfig
from metagui.gui.state import AppState
from metagui.gui.widgets.binding import ConfigDraft, bind, binding_of, spin_box


@pytest.fixture
def state(qapp, tmp_path):
    s = AppState(tmp_path / "runs.db")
    yield s
    s.close()


def announced(state) -> list[str]:
    seen: list[str] = []
    state.config_changed.connect(seen.append)
    return seen


def type_into(qtbot, spin, text: str) -> None:
    spin.setFocus()
    spin.selectAll()
    qtbot.keyClicks(spin, text)
    qtbot.keyClick(spin, Qt.Key.Key_Return)


def test_typing_in_a_bound_spin_box_writes_the_field_and_announces_it_once(qtbot, state):
    spin = spin_box(1, 1000)
    qtbot.addWidget(spin)
    bind(spin, state, "task.shot")
    assert spin.value() == state.config.task.shot == 5  # shows the config from the start
    seen = announced(state)
    type_into(qtbot, spin, "12")
    assert state.config.task.shot == 12
    assert seen == ["task", "task"]  # 1, then 12: each new value once; Return changes nothing
    assert spin.value() == 12 and spin.text() == "12"


def test_a_config_change_shows_in_the_widget_and_does_not_come_back_as_an_edit(qtbot, state):
    spin = spin_box(1, 1000)
    qtbot.addWidget(spin)
    binding = bind(spin, state, "task.shot")
    edits, values = [], []
    binding.edited.connect(edits.append)
    spin.valueChanged.connect(values.append)
    seen = announced(state)
    state.config.task.shot = 9  # a preset, say
    state.changed("task")
    assert spin.value() == 9
    assert seen == ["task"] and edits == [] and values == []  # shown with the widget's signals blocked
    reopened = RunConfig()
    reopened.task.shot = 3
    state.set_config(reopened)  # a reopened run: a new config object
    assert spin.value() == 3 and edits == []
    spin.setValue(4)  # a page setting the widget counts as an edit
    assert reopened.task.shot == 4 and edits == [4]


def test_combo_check_box_and_line_edit_bindings(qtbot, state):
    split = QComboBox()
    for key in ("ratio", "classes", "domain"):
        split.addItem(key.capitalize(), key)
    rotations = QCheckBox()
    path = QLineEdit()
    column = QComboBox()
    column.setEditable(True)
    for w in (split, rotations, path, column):
        qtbot.addWidget(w)
    bind(split, state, "task.split")
    bind(rotations, state, "dataset.rotations")
    bind(path, state, "dataset.path")
    bind(column, state, "dataset.text_column", by="text")
    assert (split.currentData(), rotations.isChecked(), path.text(), column.currentText()) == ("ratio", False, "", "text")

    split.setCurrentIndex(2)
    rotations.click()
    qtbot.keyClicks(path, "/data/faces")
    column.setCurrentText("utterance")
    d = state.config.dataset
    assert (state.config.task.split, d.rotations, d.path, d.text_column) == ("domain", True, "/data/faces", "utterance")

    state.config.task.split = "classes"
    d.rotations, d.path, d.text_column = False, "/data/other", "sentence"
    state.changed("task")
    state.changed("dataset")
    assert (split.currentData(), rotations.isChecked(), path.text(), column.currentText()) == \
        ("classes", False, "/data/other", "sentence")


def test_conversions_keep_the_users_text_while_typing(qtbot, state):
    edit = QLineEdit()
    qtbot.addWidget(edit)
    binding = bind(edit, state, "dataset.languages", to_widget=", ".join,
                   from_widget=lambda t: [x.strip() for x in t.split(",") if x.strip()])
    assert edit.text() == "en"
    seen = announced(state)
    edit.setFocus()
    edit.end(False)
    qtbot.keyClicks(edit, ", de")
    assert state.config.dataset.languages == ["en", "de"]
    assert seen == ["dataset", "dataset"]  # "en, d" and "en, de"; "en," and "en, " say nothing new
    assert edit.text() == "en, de"
    assert binding_of(edit) is binding


def test_a_draft_takes_the_edits_and_leaves_the_config_alone(qtbot, state):
    draft = ConfigDraft(RunConfig())
    spin = spin_box(1, 1000)
    qtbot.addWidget(spin)
    bind(spin, draft, "dataset.n_alphabets")
    seen = announced(state)
    spin.setValue(3)
    assert draft.config.dataset.n_alphabets == 3
    assert state.config.dataset.n_alphabets == 12 and seen == []
    draft.reset(RunConfig())
    assert spin.value() == 12


def test_pages_show_config_changes_from_elsewhere(window):
    """A preset, another page or a reopened run changes the config: every page shows it."""
    state = window.state
    state.config.task.shot, state.config.task.query = 3, 7
    state.changed("task")
    assert (window.tasks_page.shot.value(), window.tasks_page.query.value()) == (3, 7)
    state.config.algorithm.hyperparams["meta_batch"] = 8
    state.changed("algorithm")
    assert window.algorithm_page.form.editors["meta_batch"].value() == 8
    reopened = state.config.copy()
    reopened.training.steps, reopened.training.device = 77, "cpu"
    state.set_config(reopened)
    assert window.train_page.steps.value() == 77 and "steps = 77" in window.train_page.toml.toPlainText()
    assert window.algorithm_page.device.currentData() == "cpu"
    # the Data page edits a draft: the config follows only on Load
    data = window.data_page
    data.source.setCurrentIndex(data.source.findData("glyphs"))
    data.n_alphabets.setValue(4)
    assert state.config.dataset.source == "intents" and state.config.dataset.n_alphabets == 12
    assert data.dataset_config().n_alphabets == 4
