"""Algorithm page: families with explanations, a generated hyperparameter form with help,
presets, backbone and device choice."""

from __future__ import annotations

from PySide6.QtCore import Qt

from metagui.core.algorithms import REGISTRY
from metagui.core.algorithms.base import TEXT_PRESET
from metagui.gui.pages.algorithm_page import KIND_ROLE


def click_algorithm(qtbot, page, name: str) -> None:
    item = page.items[name]
    page.tree.scrollToItem(item)
    rect = page.tree.visualItemRect(item)
    qtbot.mouseClick(page.tree.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())


def test_families_algorithms_and_coming_entries(window):
    tree = window.algorithm_page.tree
    families = [tree.topLevelItem(i).text(0) for i in range(tree.topLevelItemCount())]
    assert families == ["Optimisation-based", "Metric / memory-based", "Probabilistic", "Reinforcement learning"]
    listed = {}
    for i in range(tree.topLevelItemCount()):
        top = tree.topLevelItem(i)
        for j in range(top.childCount()):
            child = top.child(j)
            listed[child.text(0)] = child
    for cls in REGISTRY.values():
        assert cls.label in listed
    labels = {cls.label.replace("²", "2").lower() for cls in REGISTRY.values()} | set(REGISTRY)
    for name in ("PLATIPUS", "VERSA", "RL²"):
        if name.replace("²", "2").lower() in labels:  # implemented: a real, selectable entry
            assert listed[name].data(0, KIND_ROLE) == "algorithm"
            assert listed[name].flags() & Qt.ItemFlag.ItemIsSelectable
        else:  # on the roadmap: shown greyed out, not selectable
            assert listed[name].data(0, KIND_ROLE) == "coming"
            assert not (listed[name].flags() & Qt.ItemFlag.ItemIsSelectable)


def test_choosing_maml_builds_its_form_with_help(window, qtbot):
    page = window.algorithm_page
    window.go("algorithm")
    click_algorithm(qtbot, page, "maml")
    assert window.state.config.algorithm.name == "maml"
    schema = REGISTRY["maml"].schema()
    assert set(page.form.editors) == {h.name for h in schema}
    for h in schema:
        tip = page.form.editors[h.name].toolTip()
        assert h.help.split(".")[0] in tip and "Default" in tip
    steps = page.form.editors["inner_steps"]
    steps.setFocus()
    steps.selectAll()
    qtbot.keyClicks(steps, "3")
    qtbot.keyClick(steps, Qt.Key.Key_Return)
    assert window.state.config.algorithm.hyperparams["inner_steps"] == 3
    assert page.banner.level == "ok"
    # a preset sets the paper's values
    index = page.preset.findData("Omniglot 5-way (paper)")
    page.preset.setCurrentIndex(index)
    page.preset.activated.emit(index)
    hp = window.state.config.algorithm.hyperparams
    assert hp["inner_lr"] == 0.4 and hp["meta_batch"] == 32
    assert page.form.editors["meta_batch"].value() == 32
    qtbot.mouseClick(page.reset_button, Qt.MouseButton.LeftButton)
    assert window.state.config.algorithm.hyperparams["meta_batch"] == REGISTRY["maml"].defaults()["meta_batch"]


def test_learning_rate_field_steps_on_a_log_scale(window, qtbot):
    page = window.algorithm_page
    lr = page.form.editors["meta_lr"]
    before = lr.value()
    lr.stepBy(1)
    assert abs(lr.value() - 2 * before) < 1e-12
    assert "e" in lr.textFromValue(1e-5)


def test_devices_and_backbones(window):
    page = window.algorithm_page
    devices = [page.device.itemData(i) for i in range(page.device.count())]
    assert devices[:2] == ["auto", "cpu"]
    backbones = [page.backbone.itemData(i) for i in range(page.backbone.count())]
    assert backbones == ["auto", "text"]  # the demo is a text dataset
    page.device.setCurrentIndex(1)
    page.device.activated.emit(1)
    assert window.state.config.training.device == "cpu"
    assert "cpu" in window.device_label.text()


def test_an_algorithm_that_cannot_learn_the_data_is_flagged(window, qtbot):
    data = window.data_page
    data.source.setCurrentIndex(data.source.findData("sinusoid"))
    qtbot.mouseClick(data.load_button, Qt.MouseButton.LeftButton)
    page = window.algorithm_page
    click_algorithm(qtbot, page, "relation")
    assert page.banner.level == "error" and "cannot learn regression" in page.banner.message()
    assert "MAML" in page.banner.message()
    assert not window.sidebar.is_done("algorithm")


def test_text_tasks_start_from_the_text_preset_and_take_a_pretrained_encoder_folder(window, qtbot, tmp_path):
    from tests.test_pretrained import save_onnx_encoder

    page = window.algorithm_page
    click_algorithm(qtbot, page, "maml")
    hp = window.state.config.algorithm.hyperparams
    assert hp["head"] == "shared" and hp["inner_lr"] == 3.0  # MAML's Text preset on the demo's intents
    assert page.preset.currentText() == TEXT_PRESET
    eval_lr = page.form.editors["eval_lr"]  # the test-time step size, halved / doubled by the arrows
    assert eval_lr.value() == hp["eval_lr"] == 0.5
    qtbot.keyClick(eval_lr, Qt.Key.Key_Down)
    assert window.state.config.algorithm.hyperparams["eval_lr"] == 0.25
    assert page.preset.currentText() == "Custom"
    qtbot.keyClick(eval_lr, Qt.Key.Key_Up)  # back to the preset's value: the preset shows again
    assert page.preset.currentText() == TEXT_PRESET
    assert not page.encoder_row.isHidden() and page.encoder_path.placeholderText().startswith("Built-in")

    qtbot.keyClicks(page.encoder_path, str(tmp_path / "nothing-here"))
    page.encoder_path.editingFinished.emit()
    assert page.banner.level == "error" and "not found" in page.banner.message()
    assert not window.sidebar.is_done("algorithm")

    save_onnx_encoder(tmp_path / "enc")
    page.encoder_path.clear()
    qtbot.keyClicks(page.encoder_path, str(tmp_path / "enc"))
    page.encoder_path.editingFinished.emit()
    assert window.state.config.algorithm.text_encoder == str(tmp_path / "enc")
    assert page.banner.level == "ok" and window.sidebar.is_done("algorithm")

    qtbot.mouseClick(page.encoder_clear, Qt.MouseButton.LeftButton)
    assert window.state.config.algorithm.text_encoder == ""
