"""Fixtures for the GUI tests (pytest-qt): an offscreen platform, throwaway settings and
run store per test, and a wait helper that lets worker threads run."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# the bring-your-own-encoder tests build tiny models locally: never ask a model hub
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# new text projects start on the built-in encoder here, whatever this machine has installed;
# tests of the default set it themselves
os.environ.setdefault("METAGUI_TEXT_ENCODER", "builtin")
# embeddings of pretrained encoders are cached on disk: one throwaway cache per test session
_CACHE = tempfile.mkdtemp(prefix="metagui-test-cache-")
os.environ.setdefault("METAGUI_CACHE_DIR", _CACHE)
atexit.register(shutil.rmtree, _CACHE, True)

import gc  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from tests.helpers import MISSING_DATA  # noqa: E402

_data_skips: list[str] = []


def pytest_runtest_logreport(report):
    """Remember tests skipped for missing shared data (see tests/helpers.py)."""
    if report.skipped and isinstance(report.longrepr, tuple) and MISSING_DATA in report.longrepr[2]:
        _data_skips.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    """CI has ../shared: there, a test skipped for missing data hides a regression, so the
    run fails (METAGUI_REQUIRE_SHARED_DATA=1, set by .ci/run)."""
    if _data_skips and os.environ.get("METAGUI_REQUIRE_SHARED_DATA") == "1":
        print(f"\n{len(_data_skips)} test(s) skipped for missing shared data, which CI must have:")
        for nodeid in _data_skips:
            print(f"  {nodeid}")
        session.exitstatus = 1


@pytest.fixture
def gui_settings(tmp_path, monkeypatch):
    """Keep the app's QSettings out of the real user's folder."""
    folder = tmp_path / "settings"
    monkeypatch.setenv("METAGUI_SETTINGS_DIR", str(folder))
    monkeypatch.setenv("METAGUI_DATA_DIR", str(tmp_path / "data"))
    return folder


@pytest.fixture
def wait_until(qapp):
    """Process events until ``cond()`` holds. Unlike qtbot.waitUntil (QTest.qWait), it
    sleeps in Python, releasing the GIL, so training and loading threads make progress."""

    def wait(cond, timeout: float = 30.0, what: str = "condition") -> None:
        end = time.monotonic() + timeout
        while True:
            qapp.processEvents()
            if cond():
                return
            if time.monotonic() > end:
                raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(0.005)

    return wait


@pytest.fixture
def make_window(qapp, gui_settings, tmp_path, wait_until):
    """Build main windows on a per-test database; every one is closed at the end and must
    leave no worker thread running."""
    from metagui.gui.mainwindow import MainWindow
    from metagui.gui.workers import live_threads

    windows = []

    def make(db: Path | None = None, demo: bool = True, ready: bool = True):
        w = MainWindow(db=str(db or tmp_path / "runs.db"), demo=demo)
        w.resize(1280, 800)
        w.show()
        windows.append(w)
        if ready:
            wait_until(lambda: w.state.dataset_ready and not w.data_page.busy, 60, "the dataset to load")
        return w

    yield make
    for w in windows:
        w.close()
    qapp.processEvents()
    assert not live_threads(), "a worker thread outlived its window"
    from PySide6.QtCore import QEvent

    for w in windows:
        w.deleteLater()
    qapp.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    windows.clear()
    gc.collect()


@pytest.fixture
def window(make_window):
    return make_window()
