"""The app shell: preflight, window, flow sidebar, menus, theme and project persistence,
the excepthook."""

from __future__ import annotations

import sys

import pytest
from PySide6.QtWidgets import QApplication, QMessageBox

from metagui.gui.app import install_excepthook, qt_preflight, run_app
from metagui.gui.compat import affected
from metagui.gui.state import DEMO_NAME

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="xcb preflight is Linux only")


@linux_only
def test_preflight_names_missing_display_and_libraries():
    no_display = qt_preflight(environ={}, find_library=lambda name: "lib.so")
    assert no_display and "DISPLAY" in no_display and "metagui train" in no_display
    missing = qt_preflight(environ={"DISPLAY": ":0"},
                           find_library=lambda name: None if name in ("xcb-cursor", "xcb-icccm") else "lib.so")
    assert "libxcb-cursor0" in missing and "libxcb-icccm4" in missing and "apt install" in missing
    assert qt_preflight(environ={"DISPLAY": ":0"}, find_library=lambda name: "lib.so") is None
    assert qt_preflight(environ={"QT_QPA_PLATFORM": "offscreen"}, find_library=lambda name: None) is None


@linux_only
def test_run_app_exits_readably_without_a_display(monkeypatch, capsys):
    monkeypatch.setenv("QT_QPA_PLATFORM", "xcb")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert run_app(db=None) == 1
    assert "no display" in capsys.readouterr().err


def test_none_refcount_guard_targets_the_broken_binding_only():
    assert affected("6.12.0", (3, 11))
    assert not affected("6.11.3", (3, 11))
    assert not affected("6.12.0", (3, 12))


def test_first_launch_opens_the_ready_demo(window):
    assert window.state.project_name == DEMO_NAME
    assert DEMO_NAME in window.windowTitle()
    assert window.state.config.algorithm.name == "protonet"
    assert window.state.config.dataset.source == "intents"
    # the flow: seven steps, the first three already done for the demo
    names = [window.sidebar.list.item(i).text() for i in range(window.sidebar.list.count())]
    assert names == ["Data", "Tasks", "Algorithm", "Train", "Try it", "Runs", "Export"]
    for key in ("data", "tasks", "algorithm"):
        assert window.sidebar.is_done(key), key
    assert not window.sidebar.is_done("train")
    assert "Device:" in window.device_label.text()
    assert window.size().width() >= 1200


def test_sidebar_and_shortcuts_navigate(window, qtbot):
    from PySide6.QtCore import Qt

    lst = window.sidebar.list
    rect = lst.visualItemRect(window.sidebar.item("runs"))
    qtbot.mouseClick(lst.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert window.current_step() == "runs"
    window.actions["go_tasks"].trigger()
    assert window.current_step() == "tasks"
    assert window.actions["go_tasks"].shortcut().toString() == "Ctrl+2"
    window.go("chat")
    assert window.stack.currentWidget() is window.chat_page
    window.go("export")
    assert window.stack.currentWidget() is window.export_page


def test_project_theme_and_page_persist_across_launches(make_window, tmp_path):
    first = make_window()
    project = first.state.project_id
    first.state.config.task.way = 4
    first.state.changed("task")
    first.set_theme("dark")
    first.go("algorithm")
    first.close()
    second = make_window(demo=False)
    assert second.state.project_id == project
    assert second.state.config.task.way == 4  # the project's config was saved in the store
    assert second.theme_name == "dark"
    assert second.actions["theme_dark"].isChecked()
    assert second.current_step() == "algorithm"
    assert QApplication.instance().palette().window().color().lightness() < 100


def test_new_project_is_stored(window, monkeypatch):
    from PySide6.QtWidgets import QInputDialog

    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: ("My experiment", True))
    window.actions["new_project"].trigger()
    names = [p["name"] for p in window.state.projects()]
    assert "My experiment" in names and DEMO_NAME in names
    assert window.state.project_name == "My experiment"
    assert "My experiment" in window.windowTitle()


def test_excepthook_shows_readable_dialog(window, monkeypatch):
    from metagui.core.errors import DataError

    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    install_excepthook(window)
    try:
        raise DataError("the file cats.zip is not a zip file")
    except DataError as exc:
        sys.excepthook(type(exc), exc, exc.__traceback__)
    try:
        raise ZeroDivisionError("division by zero")
    except ZeroDivisionError as exc:
        sys.excepthook(type(exc), exc, exc.__traceback__)
    boxes = [b for b in window.findChildren(QMessageBox) if b.isVisible()]
    texts = [b.text() for b in boxes]
    assert "the file cats.zip is not a zip file" in texts
    bug = next(b for b in boxes if "ZeroDivisionError" in b.text())
    assert "Traceback" in bug.detailedText()  # kept out of sight, in the details
    assert "Traceback" not in bug.text()
    for b in boxes:
        b.close()


def test_garbage_is_collected_on_the_gui_thread_while_a_window_is_open(make_window, qtbot):
    import gc

    w = make_window(ready=False)
    assert not gc.isenabled()  # no worker thread can start a collection (and destroy widgets there)
    junk = [[i] for i in range(5000)]  # 5000 new container objects: past the first threshold
    assert gc.get_count()[0] > gc.get_threshold()[0]
    qtbot.waitUntil(lambda: gc.get_count()[0] < gc.get_threshold()[0], timeout=5000)  # the window's timer collects
    del junk
    w.close()
    assert gc.isenabled()
