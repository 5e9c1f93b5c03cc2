"""Data page: built-in, dropped and downloaded datasets, loaded in a worker thread, with
statistics, examples and the problems found."""

from __future__ import annotations

import http.server
import threading
import time
from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication

from metagui.core.data.catalog import Downloader
from tests.helpers import BANKING, needs_banking


def drop_file(widget, path: Path) -> None:
    """Drag ``path`` over ``widget`` and drop it, as a file manager would."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    enter = QDragEnterEvent(QPoint(50, 50), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, enter)
    assert enter.isAccepted()
    drop = QDropEvent(QPointF(50, 50), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                      Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, drop)


def test_demo_intents_statistics_examples_and_problems(window):
    page = window.data_page
    ds = window.state.dataset
    st = ds.stats()
    assert page.tiles["classes"].value.text() == f"{st.n_classes:,}"
    assert page.tiles["items"].value.text() == f"{st.n_items:,}"
    assert page.tiles["min"].value.text() == str(st.min_per_class)
    assert page.examples_stack.currentWidget() is page.text_rows
    assert page.text_rows.rowCount() > 10
    shown = page.text_rows.item(0, 1).text()
    assert shown in ds.texts
    # the intents have a class with fewer than shot + query examples: listed and explained
    assert st.min_per_class < 10
    problems = [page.problems.item(i).text() for i in range(page.problems.count())]
    assert any("is skipped" in p for p in problems)
    assert "will be skipped" in page.summary.text()
    assert page.tabs.tabText(2).startswith("Problems (")


def test_dropping_a_csv_loads_it_and_reports_small_classes(window, tmp_path, wait_until):
    rows = ["text,category"]
    for c in range(4):
        rows += [f"question {i} about topic {c},topic{c}" for i in range(12)]
    rows += ["tiny a,tiny", "tiny b,tiny", ",topic0"]
    csv_path = tmp_path / "support.csv"
    csv_path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    page = window.data_page
    drop_file(page, csv_path)
    assert page.current_source() == "text_table"
    assert page.text_column.currentText() == "text" and page.label_column.currentText() == "category"
    wait_until(lambda: window.state.dataset_ready and not page.busy, what="the CSV to load")
    ds = window.state.dataset
    assert window.state.config.dataset.source == "text_table"
    assert window.state.config.dataset.path == str(csv_path)
    assert ds.stats().n_classes == 5 and page.tiles["classes"].value.text() == "5"
    problems = " | ".join(page.problems.item(i).text() for i in range(page.problems.count()))
    assert "class 'tiny' has 2 examples" in problems
    assert "empty" in problems.lower() or "line" in problems.lower()  # the row without text


def test_dropping_something_unreadable_says_so(window, tmp_path):
    bad = tmp_path / "notes.pdf"
    bad.write_bytes(b"%PDF")
    drop_file(window.data_page, bad)
    assert window.data_page.banner.level == "error"
    assert "notes.pdf" in window.data_page.banner.message()
    assert window.state.config.dataset.source == "intents"  # nothing changed


def test_glyphs_show_a_thumbnail_grid(window, qtbot, wait_until):
    page = window.data_page
    page.source.setCurrentIndex(page.source.findData("glyphs"))
    for spin, value in ((page.n_alphabets, 2), (page.chars, 6), (page.drawers, 8)):
        spin.clear()
        qtbot.keyClicks(spin, str(value))
    qtbot.mouseClick(page.load_button, Qt.MouseButton.LeftButton)
    wait_until(lambda: window.state.dataset_ready and not page.busy, what="the glyphs")
    ds = window.state.dataset
    assert ds.modality.value == "image" and len(ds.classes) == 12
    assert page.examples_stack.currentWidget() is page.thumbs
    assert page.thumbs.count() >= 12
    assert page.tiles["domains"].value.text() == "2"
    assert window.state.config.dataset.n_alphabets == 2


def test_a_failed_load_is_a_message_not_a_crash(window, qtbot, wait_until, tmp_path):
    page = window.data_page
    page.source.setCurrentIndex(page.source.findData("text_table"))
    page.table_path.setText(str(tmp_path / "missing.csv"))
    qtbot.mouseClick(page.load_button, Qt.MouseButton.LeftButton)
    wait_until(lambda: not page.busy, what="the load to fail")
    assert page.banner.level == "error" and "not found" in page.banner.message()
    assert page.load_button.isEnabled()


class _SlowHandler(http.server.SimpleHTTPRequestHandler):
    delay = 0.0

    def copyfile(self, source, outputfile):
        try:
            while chunk := source.read(16 * 1024):
                outputfile.write(chunk)
                time.sleep(self.delay)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client cancelled

    def log_message(self, *args):
        pass


@pytest.fixture
def banking_server():
    folder = BANKING

    def serve(delay: float):
        handler = type("H", (_SlowHandler,), {"delay": delay})
        server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), lambda *a, **k: handler(*a, directory=str(folder), **k))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    servers: list = []
    yield serve
    for s in servers:
        s.shutdown()
        s.server_close()


@needs_banking
def test_catalog_download_shows_progress_and_loads(window, qtbot, wait_until, banking_server, tmp_path):
    page = window.data_page
    page.downloader = Downloader(mirror=banking_server(0.01), chunk_size=16 * 1024)
    page.source.setCurrentIndex(page.source.findData("catalog"))
    page.catalog.setCurrentIndex(page.catalog.findData("banking77-test"))
    assert page.load_button.text() == "Download and load"
    seen = []
    qtbot.mouseClick(page.load_button, Qt.MouseButton.LeftButton)
    wait_until(lambda: (seen.append(page.progress.label.text()) or True) and not page.busy, what="the download")
    assert any(t.startswith("Downloading") for t in seen)
    assert window.state.dataset_ready and window.state.dataset.stats().n_classes == 77
    assert "already downloaded" in page.catalog_info.text()


@needs_banking
def test_catalog_download_can_be_cancelled(window, qtbot, wait_until, banking_server):
    page = window.data_page
    page.downloader = Downloader(mirror=banking_server(0.2), chunk_size=16 * 1024)
    page.source.setCurrentIndex(page.source.findData("catalog"))
    page.catalog.setCurrentIndex(page.catalog.findData("banking77-test"))
    qtbot.mouseClick(page.load_button, Qt.MouseButton.LeftButton)
    wait_until(lambda: page.progress.bar.value() > 0, what="the first bytes")
    qtbot.mouseClick(page.progress.cancel_button, Qt.MouseButton.LeftButton)
    wait_until(lambda: not page.busy, what="the cancel")
    assert page.banner.level == "info" and "cancelled" in page.banner.message()
    assert not window.state.dataset_ready  # the config asks for banking77, which is not loaded


def test_a_run_reopened_while_the_demo_still_loads_gets_its_own_data(make_window, wait_until):
    """Reopening a run's settings while another dataset loads loads the run's once that is done."""
    from metagui.core.presets import default_config

    window = make_window(ready=False)
    assert window.data_page.busy  # the demo intents are still loading
    cfg = default_config("maml", "glyphs")
    cfg.dataset.n_alphabets, cfg.dataset.characters_per_alphabet, cfg.dataset.drawers = 2, 6, 8
    window.reopen_config(cfg)
    wait_until(lambda: window.state.dataset_ready and not window.data_page.busy, 60, "the run's glyphs")
    assert window.state.dataset.modality.value == "image" and len(window.state.dataset.classes) == 12
