"""Tasks page: episode shape, class splits, checks explained before training, previews."""

from __future__ import annotations

from PySide6.QtCore import Qt


def set_spin(qtbot, spin, value: int) -> None:
    spin.setFocus()
    spin.selectAll()
    qtbot.keyClicks(spin, str(value))
    qtbot.keyClick(spin, Qt.Key.Key_Return)


def test_impossible_way_is_explained_before_training(window, qtbot):
    page = window.go("tasks") or window.tasks_page
    set_spin(qtbot, page.way, 20)
    assert window.state.config.task.way == 20
    assert page.banner.level == "error"
    assert "20-way needs 20" in page.banner.message()
    assert not page.sample_button.isEnabled()
    assert not window.sidebar.is_done("tasks")
    # Train refuses with the same explanation
    window.go("train")
    qtbot.mouseClick(window.train_page.start_button, Qt.MouseButton.LeftButton)
    assert not window.train_page.running
    assert "20-way needs 20" in window.train_page.banner.message()
    set_spin(qtbot, page.way, 5)
    assert page.banner.level == "ok" and window.sidebar.is_done("tasks")


def test_sample_an_episode_shows_support_and_query(window, qtbot):
    page = window.tasks_page
    window.go("tasks")
    set_spin(qtbot, page.way, 3)
    set_spin(qtbot, page.shot, 2)
    set_spin(qtbot, page.query, 4)
    qtbot.mouseClick(page.sample_button, Qt.MouseButton.LeftButton)
    ep = page.last_episode
    assert len(ep["classes"]) == 3 and len(set(ep["classes"])) == 3
    assert page.support_stack.currentWidget() is page.support_text
    assert page.support_text.rowCount() == 3 * 2
    assert page.query_text.rowCount() == 3 * 4
    ds = window.state.dataset
    for row, (item, label) in enumerate(ep["support"]):
        assert page.support_text.item(row, 1).text() == ds.texts[item]
        assert ds.classes[ds.labels[item]] == ep["classes"][label]  # the label shown is the item's class
        assert page.support_text.item(row, 0).text() == f"{label}: {ep['classes'][label]}"
    # the classes come from the training split only
    from metagui.core.tasks import split_classes

    train = {ds.classes[i] for i in split_classes(ds, window.state.config.task)["train"]}
    assert set(ep["classes"]) <= train
    # another click, another episode
    first = ep["classes"]
    qtbot.mouseClick(page.sample_button, Qt.MouseButton.LeftButton)
    assert page.last_episode["classes"] != first or page.last_episode["support"] != ep["support"]


def test_ratio_split_and_validation_share(window, qtbot):
    page = window.tasks_page
    page.val_ratio.setValue(0.0)
    assert window.state.config.task.val_ratio == 0.0
    assert page.banner.level == "warning" and "No validation classes" in page.banner.message()
    page.val_ratio.setValue(0.25)
    assert "validation: " in page.split_summary.text()


def test_domain_split_on_generated_alphabets(window, qtbot, wait_until):
    data = window.data_page
    data.source.setCurrentIndex(data.source.findData("glyphs"))
    data.n_alphabets.setValue(3)
    data.chars.setValue(5)
    data.drawers.setValue(8)
    qtbot.mouseClick(data.load_button, Qt.MouseButton.LeftButton)
    wait_until(lambda: window.state.dataset_ready and not data.busy, what="glyphs")
    page = window.tasks_page
    window.go("tasks")
    set_spin(qtbot, page.shot, 1)
    page.strategy.setCurrentIndex(page.strategy.findData("domain"))
    table = page.domain_table
    domains = sorted(window.state.dataset.domains())
    assert table.table.rowCount() == 3
    for name, split in zip(domains, ("train", "val", "test"), strict=True):
        table.select_names([name])
        qtbot.mouseClick(table.buttons[split], Qt.MouseButton.LeftButton)
    t = window.state.config.task
    assert t.split == "domain"
    assert (t.train_domains, t.val_domains, t.test_domains) == ([domains[0]], [domains[1]], [domains[2]])
    assert page.banner.level == "ok", page.banner.message()
    qtbot.mouseClick(page.sample_button, Qt.MouseButton.LeftButton)
    assert page.support_stack.currentWidget() is page.support_grid
    assert page.support_grid.count() == 5
    assert all(c.startswith(domains[0]) for c in page.last_episode["classes"])
    # a 6-way task cannot come from alphabets of 5 characters: explained
    set_spin(qtbot, page.way, 6)
    assert page.banner.level == "error" and "6-way" in page.banner.message()


def test_sine_tasks_preview_points(window, qtbot):
    data = window.data_page
    data.source.setCurrentIndex(data.source.findData("sinusoid"))
    qtbot.mouseClick(data.load_button, Qt.MouseButton.LeftButton)
    assert window.state.dataset_ready and window.state.modality == "regression"
    page = window.tasks_page
    assert not page.way.isEnabled()
    set_spin(qtbot, page.shot, 7)
    qtbot.mouseClick(page.sample_button, Qt.MouseButton.LeftButton)
    assert len(page.last_episode["support"]) == 7
    assert page.support_stack.currentWidget() is page.sine_plot
