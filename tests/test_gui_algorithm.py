"""Algorithm page: families with explanations, a generated hyperparameter form with help,
presets, backbone, text encoder and device choice."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from metagui.core.algorithms import REGISTRY
from metagui.core.algorithms.base import TEXT_PRESET
from metagui.core.presets import pretrained_caveat
from metagui.gui.pages.algorithm_page import KIND_ROLE
from tests.test_encoder_source import loopback_only  # noqa: F401  (a fixture)


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
    assert window.sidebar.is_done("algorithm")
    # ready, with what bench text measured for this learner on a pretrained encoder: level with the
    # frozen encoder on a new business's intents
    assert page.banner.level == "warning" and pretrained_caveat("maml") in page.banner.message(), page.banner.message()
    assert "new business" in page.banner.message()

    qtbot.mouseClick(page.encoder_clear, Qt.MouseButton.LeftButton)
    assert window.state.config.algorithm.text_encoder == ""


def ready_but_level_on_new_domains(page) -> bool:
    """The page is ready, and warns what bench text measured for ProtoNet on a pretrained
    encoder: level with the frozen encoder on a new business's intents."""
    msg = page.banner.message()
    return page.banner.level == "warning" and msg.startswith("Ready, but") and "new business" in msg


def pick_encoder(qtbot, page, label_start: str) -> None:
    """Open the Text encoder list and click the entry whose label starts with ``label_start``."""
    pick = page.encoder_pick
    labels = [pick.itemText(i) for i in range(pick.count())]
    index = next(i for i, text in enumerate(labels) if text.startswith(label_start))
    pick.showPopup()
    view = pick.view()
    qtbot.waitUntil(view.isVisible)
    rect = view.visualRect(view.model().index(index, 0))
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())


def enter_encoder(qtbot, page, text: str) -> None:
    page.encoder_path.setFocus()
    page.encoder_path.selectAll()
    qtbot.keyClick(page.encoder_path, Qt.Key.Key_Delete)
    qtbot.keyClicks(page.encoder_path, text)
    qtbot.keyClick(page.encoder_path, Qt.Key.Key_Return)


def install_tiny_package(tmp_path, monkeypatch, only: bool = False):
    """A tiny sentence-transformers model as an installed model package, as `pip install` would
    leave it, registered as a known encoder (``only``: the only known one); its folder."""
    import hashlib
    import importlib
    import sys

    from metagui.core import encoder_source as es
    from tests.test_encoder_source import tiny_repo

    tiny = tiny_repo(tmp_path / "pkg-model")
    site = tmp_path / "site"
    (site / "metagui_test_tiny_pkg").mkdir(parents=True)
    (site / "metagui_test_tiny_pkg" / "__init__.py").write_text(
        f"from pathlib import Path\n\n\ndef get_model_path():\n    return Path({str(tiny)!r})\n")
    monkeypatch.syspath_prepend(str(site))
    # imported here so that the test's end forgets it (monkeypatch restores sys.modules)
    monkeypatch.setitem(sys.modules, "metagui_test_tiny_pkg", importlib.import_module("metagui_test_tiny_pkg"))
    known = es.KnownEncoder(
        id="tester/tiny-st", package="metagui-test-tiny-pkg", module="metagui_test_tiny_pkg",
        sha256=hashlib.sha256((tiny / "model.safetensors").read_bytes()).hexdigest(), licence="MIT",
        languages="en", dim=8, size=4096)
    if only:
        monkeypatch.setattr(es, "KNOWN_ENCODERS", {known.id: known})
    else:
        monkeypatch.setitem(es.KNOWN_ENCODERS, known.id, known)
    return tiny


def test_english_project_starts_on_the_installed_pretrained_encoder_and_says_why(
        make_window, qtbot, wait_until, tmp_path, monkeypatch):
    from metagui.core.encoder_source import DEFAULT_ENV, USER_CHOICE

    monkeypatch.setenv(DEFAULT_ENV, "auto")
    install_tiny_package(tmp_path, monkeypatch, only=True)
    window = make_window()  # the demo: English Home Assistant intents
    a = window.state.config.algorithm
    assert a.text_encoder == "tester/tiny-st" and a.text_encoder_why.startswith("English texts")
    window.go("algorithm")
    page = window.algorithm_page
    assert page.encoder_path.text() == "tester/tiny-st"
    assert page.encoder_note.text().startswith("Default for this project: English texts")
    wait_until(lambda: ready_but_level_on_new_domains(page), 30, "the encoder to be checked")
    assert a.hyperparams["meta_lr"] == 1e-3  # ProtoNet's preset for a pretrained encoder
    click_algorithm(qtbot, page, "reptile")  # its gain on new domains is its test-time fit alone: warned
    assert page.banner.level == "warning" and "not through meta-learning" in page.banner.message()
    click_algorithm(qtbot, page, "matching")  # on a new domain, its domain guard answers: warned
    assert page.banner.level == "warning" and "domain guard" in page.banner.message()
    click_algorithm(qtbot, page, "protonet")
    assert ready_but_level_on_new_domains(page)
    qtbot.mouseClick(page.encoder_clear, Qt.MouseButton.LeftButton)  # the user's choice stays
    assert (a.text_encoder, a.text_encoder_why) == ("", USER_CHOICE)
    window.state.set_dataset(window.state.dataset, window.state.config.dataset)
    assert (a.text_encoder, a.text_encoder_why) == ("", USER_CHOICE)
    a.text_encoder, a.text_encoder_why = str(tmp_path / "my-encoder"), ""  # a config from before the default
    window.state.set_dataset(window.state.dataset, window.state.config.dataset)
    assert (a.text_encoder, a.text_encoder_why) == (str(tmp_path / "my-encoder"), "")


@pytest.mark.usefixtures("loopback_only")
def test_text_encoder_from_a_package_a_download_or_a_folder(make_window, qtbot, wait_until, tmp_path, monkeypatch):
    from tests.test_encoder_source import FakeHub, tiny_repo

    tiny = install_tiny_package(tmp_path, monkeypatch)
    # a model hub on loopback, an empty Hugging Face cache, online
    hub = FakeHub({"tester/tiny-remote": tiny_repo(tmp_path / "remote", weights=12 << 20)})
    monkeypatch.setenv("METAGUI_HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    try:
        window = make_window()
        window.go("algorithm")
        page = window.algorithm_page
        labels = [page.encoder_pick.itemText(i) for i in range(page.encoder_pick.count())]
        assert labels[0] == "Built-in n-gram encoder (works offline)" and "tester/tiny-st — installed package" in labels
        assert any(t.startswith("sentence-transformers/all-MiniLM-L6-v2 — download (") for t in labels)

        # the installed package: checked off the GUI thread, then ready
        pick_encoder(qtbot, page, "tester/tiny-st")
        assert window.state.config.algorithm.text_encoder == "tester/tiny-st"
        assert page.encoder_path.text() == "tester/tiny-st"
        wait_until(lambda: not page._encoder_tasks, 20, "the package check")
        assert ready_but_level_on_new_domains(page) and window.sidebar.is_done("algorithm")
        assert "installed package metagui-test-tiny-pkg" in page.encoder_note.text()

        # a model id: downloaded with a progress bar, then listed as cached
        shown: list[tuple[int, int]] = []
        page.encoder_progress.bar.valueChanged.connect(lambda v: shown.append((v, page.encoder_progress.bar.maximum())))
        enter_encoder(qtbot, page, "tester/tiny-remote")
        assert window.state.config.algorithm.text_encoder == "tester/tiny-remote"
        assert page.encoder_progress.isVisible() and not window.sidebar.is_done("algorithm")
        wait_until(lambda: not page._encoder_tasks, 30, "the download")
        assert ready_but_level_on_new_domains(page), page.banner.message()
        assert shown and shown[-1][0] == shown[-1][1] > 0
        assert not page.encoder_progress.isVisible()
        assert (tmp_path / "hf" / "models--tester--tiny-remote" / "refs" / "main").is_file()
        labels = [page.encoder_pick.itemText(i) for i in range(page.encoder_pick.count())]
        assert "tester/tiny-remote — Hugging Face cache" in labels

        # a download the user cancels
        hub.files["tester/slow"] = hub.files["tester/tiny-remote"]
        hub.delay = 1.0
        enter_encoder(qtbot, page, "tester/slow")
        qtbot.mouseClick(page.encoder_progress.cancel_button, Qt.MouseButton.LeftButton)
        wait_until(lambda: not page._encoder_tasks, 20, "the cancelled download")
        assert page.banner.level == "error" and "cancelled" in page.banner.message()
        assert not (tmp_path / "hf" / "models--tester--slow" / "refs").exists()
        hub.delay = 0.0

        # no hub: one clear line in the banner
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        enter_encoder(qtbot, page, "tester/elsewhere")
        wait_until(lambda: not page._encoder_tasks, 20, "the failed download")
        assert page.banner.level == "error" and not window.sidebar.is_done("algorithm")
        assert page.banner.message().startswith("cannot download tester/elsewhere from the model hub (offline")
        assert "choose a local folder" in page.banner.message()

        # a local folder, chosen in the folder dialog; then the built-in encoder again
        from PySide6.QtWidgets import QFileDialog

        monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(tiny))
        qtbot.mouseClick(page.encoder_browse, Qt.MouseButton.LeftButton)
        assert window.state.config.algorithm.text_encoder == str(tiny)
        assert ready_but_level_on_new_domains(page) and page.encoder_note.text() == "A local folder."
        qtbot.mouseClick(page.encoder_clear, Qt.MouseButton.LeftButton)
        assert window.state.config.algorithm.text_encoder == "" and page.encoder_path.text() == ""
        assert page.banner.level == "ok"
    finally:
        hub.close()
