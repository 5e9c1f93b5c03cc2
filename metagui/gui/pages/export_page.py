"""Export: take a trained run out of the workbench as a MetaGUI bundle, TorchScript or ONNX.

One panel serves both the sidebar's Export page and the Export dialog that the Runs and Train
pages open. The export and its parity check run on a worker thread (with their own store
connection); the panel then shows the parity figures, the files written, a copyable snippet
that loads the export with onnxruntime or torch alone, and the model card.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from metagui.core.config import RunConfig
from metagui.core.errors import MetaGUIError
from metagui.core.export import (
    FORMATS,
    SUFFIXES,
    TOLERANCE,
    EncoderNeeded,
    export_problem,
    import_bundle,
)
from metagui.gui import icons, theme
from metagui.gui.state import AppState, dataset_key
from metagui.gui.widgets.common import (
    Banner,
    PageHeader,
    ProgressRow,
    human_bytes,
    page_layout,
    primary_button,
)
from metagui.gui.workers import BackgroundTask

STAGES = ("Preparing held-out episodes…", "Comparing adaptation…", "Writing the export…",
          "Checking parity with the live model…", "Writing the model card…", "Done")


class ExportPanel(QWidget):
    """Choose run, format, checkpoint and folder; export on a worker; show the parity result."""

    exported = Signal(object)  # the result as plain data

    def __init__(self, state: AppState, run_id: int | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.task: BackgroundTask | None = None
        self.result: dict | None = None
        self.ask_folder = self._ask_folder  # replaced in tests
        self.confirm_replace = self._confirm_replace

        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(8)
        lay.addLayout(self._build_choices(state))
        lay.addLayout(self._build_action_row())
        self.banner = Banner()
        lay.addWidget(self.banner)
        lay.addWidget(self._build_result_tabs(), 1)

        self.run.currentIndexChanged.connect(self._on_run)
        self.format.currentIndexChanged.connect(self._update_target)
        self.checkpoint.currentIndexChanged.connect(self._update_target)
        self.folder.textChanged.connect(self._update_target)
        self.browse.clicked.connect(self._browse)
        self.export_button.clicked.connect(self.start)
        self.progress.cancel_requested.connect(self.cancel)
        self.copy_button.clicked.connect(self.copy_snippet)
        self.refresh_runs(select=run_id)

    # --- building ----------------------------------------------------------------------------
    def _build_choices(self, state: AppState) -> QFormLayout:
        form = QFormLayout()
        self.run = QComboBox()
        self.run.setToolTip("A run with a saved checkpoint")
        self.format = QComboBox()
        for key, text in FORMATS.items():
            self.format.addItem(text, key)
        self.checkpoint = QComboBox()
        self.checkpoint.setToolTip("best: the checkpoint with the best validation score; last: the latest one")
        folder_row = QHBoxLayout()
        self.folder = QLineEdit(str(Path(state.db_path).parent / "exports"))
        self.folder.setToolTip("Folder the export is written to (created if missing)")
        self.browse = QPushButton("Browse…")
        folder_row.addWidget(self.folder, 1)
        folder_row.addWidget(self.browse)
        self.target = QLabel()
        self.target.setObjectName("Muted")
        self.target.setWordWrap(True)
        form.addRow("Run", self.run)
        form.addRow("Format", self.format)
        form.addRow("Checkpoint", self.checkpoint)
        form.addRow("Folder", folder_row)
        form.addRow("", self.target)
        return form

    def _build_action_row(self) -> QHBoxLayout:
        row = QHBoxLayout()
        self.export_button = primary_button("Export", "export")
        self.export_button.setToolTip("Write the export, then check it against the live model")
        row.addWidget(self.export_button)
        self.progress = ProgressRow()
        row.addWidget(self.progress, 1)
        row.addStretch(0)
        return row

    def _build_result_tabs(self) -> QTabWidget:
        self.tabs = QTabWidget()
        self.tabs.addTab(self._build_parity_tab(), "Parity and files")
        self.tabs.addTab(self._build_code_tab(), "Code")
        self.card = QTextBrowser()
        self.card.setOpenExternalLinks(False)
        self.tabs.addTab(self.card, "Model card")
        self.tabs.setEnabled(False)
        return self.tabs

    def _build_parity_tab(self) -> QWidget:
        self.parity = QTableWidget(0, 3)
        self.parity.setHorizontalHeaderLabels(["check", "max |difference|", ""])
        self.parity.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.parity.verticalHeader().hide()
        hh = self.parity.horizontalHeader()
        hh.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for col in (1, 2):
            hh.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.summary.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        tab = QWidget()
        sl = QVBoxLayout(tab)
        sl.addWidget(self.summary)
        sl.addWidget(self.parity, 1)
        return tab

    def _build_code_tab(self) -> QWidget:
        tab = QWidget()
        cl = QVBoxLayout(tab)
        self.snippet = QPlainTextEdit()
        self.snippet.setObjectName("Mono")
        self.snippet.setReadOnly(True)
        self.snippet.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.copy_button = QPushButton("Copy code")
        self.copy_button.setIcon(icons.icon("copy"))
        self.copy_button.setToolTip("Copy the snippet: it loads and runs the export with onnxruntime or torch alone")
        cl.addWidget(self.snippet, 1)
        cl.addWidget(self.copy_button, 0, Qt.AlignmentFlag.AlignRight)
        return tab

    # --- choices ------------------------------------------------------------------------------
    def refresh_runs(self, select: int | None = None) -> None:
        """Runs that have a checkpoint, newest first; keeps (or makes) the selection."""
        keep = select if select is not None else self.run_id
        store = self.state.store
        self.run.blockSignals(True)
        self.run.clear()
        for r in store.runs():
            kinds = store.checkpoints(r["id"])
            if not kinds:
                continue
            self.run.addItem(f"#{r['id']}  {r['name']}  ({r['algorithm']}, {r['task']}, {r['status']})", r["id"])
        idx = self.run.findData(keep) if keep is not None else -1
        self.run.setCurrentIndex(idx if idx >= 0 else (0 if self.run.count() else -1))
        self.run.blockSignals(False)
        self._on_run()

    @property
    def run_id(self) -> int | None:
        data = self.run.currentData() if hasattr(self, "run") else None
        return int(data) if data is not None else None

    @property
    def fmt(self) -> str:
        return str(self.format.currentData())

    def set_format(self, fmt: str) -> None:
        self.format.setCurrentIndex(self.format.findData(fmt))

    def _run_config(self) -> RunConfig | None:
        if self.run_id is None:
            return None
        try:
            return RunConfig.from_toml(self.state.store.run(self.run_id)["config"])
        except MetaGUIError:
            return None

    def _on_run(self, *_: object) -> None:
        current = self.checkpoint.currentData()
        self.checkpoint.blockSignals(True)
        self.checkpoint.clear()
        if self.run_id is not None:
            for kind in ("best", "last"):
                if kind in self.state.store.checkpoints(self.run_id):
                    self.checkpoint.addItem(kind, kind)
        idx = self.checkpoint.findData(current)
        self.checkpoint.setCurrentIndex(max(idx, 0))
        self.checkpoint.blockSignals(False)
        self._update_target()

    def target_path(self) -> Path | None:
        if self.run_id is None:
            return None
        stem = f"run-{self.run_id}-{self._algorithm()}" + ("-adaptive" if self.fmt == "onnx-adaptive" else "")
        if self.checkpoint.currentData() == "last":
            stem += "-last"
        return Path(self.folder.text().strip() or ".").expanduser() / (stem + SUFFIXES[self.fmt])

    def _algorithm(self) -> str:
        cfg = self._run_config()
        return cfg.algorithm.name if cfg else "model"

    def problem(self) -> str:
        """Why the current choice cannot be exported ("" if it can)."""
        if self.run_id is None:
            return "No run has a checkpoint yet: train one first (Train page), or open a bundle."
        cfg = self._run_config()
        if cfg is None:
            return f"Run {self.run_id} has an unreadable config."
        if not self.folder.text().strip():
            return "Choose a folder to write to."
        return export_problem(cfg, self.fmt)

    def _update_target(self, *_: object) -> None:
        path = self.target_path()
        problem = self.problem()
        if path is not None and not problem:
            extra = "" if self.fmt == "bundle" else f", with {path.name}.md (model card) and {path.name}.json (spec)"
            self.target.setText(f"Writes {path}{extra}.")
        else:
            self.target.setText(problem)
        self.export_button.setEnabled(not problem and not self.busy)

    def _browse(self) -> None:
        folder = self.ask_folder(self.folder.text())
        if folder:
            self.folder.setText(folder)

    def _confirm_replace(self, path: Path) -> bool:
        answer = QMessageBox.question(self, "Replace the export?", f"{path} exists already. Replace it?",
                                      QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                      QMessageBox.StandardButton.No)
        return answer == QMessageBox.StandardButton.Yes

    def _ask_folder(self, start: str) -> str:
        return QFileDialog.getExistingDirectory(self, "Export to folder", start)

    # --- the export ----------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self.task is not None and self.task.running

    def start(self) -> bool:
        if self.busy:
            return False
        problem = self.problem()
        if problem:
            self.banner.show_message("error", problem)
            return False
        out = self.target_path()
        if out.exists() and not self.confirm_replace(out):
            self.banner.show_message("info", f"{out.name} is there already: nothing was written. Choose another folder.")
            return False
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self.banner.show_message("error", f"cannot create the folder {out.parent}: {exc.strerror or exc}")
            return False
        cfg = self._run_config()
        dataset = None
        st = self.state
        if st.dataset_ready and st.dataset is not None and dataset_key(st.config.dataset) == dataset_key(cfg.dataset):
            dataset = st.dataset  # already loaded: held-out episodes come for free
        load = dataset is None and cfg.dataset.source != "catalog"  # never download from here
        db, run_id, fmt, kind = st.db_path, self.run_id, self.fmt, str(self.checkpoint.currentData())

        def work(progress, cancel):
            from metagui.core.export import export_run

            return export_run(db, run_id, fmt, out, checkpoint=kind, progress=progress, cancel=cancel,
                              dataset=dataset, load_data=load).as_dict()

        self.result = None
        self.banner.clear()
        self.tabs.setEnabled(False)
        self.progress.begin(STAGES[0])
        self.task = BackgroundTask(work, "export", self)
        self.task.progress.connect(self._on_progress)
        self.task.succeeded.connect(self._on_done)
        self.task.failed.connect(self._on_failed)
        self.task.cancelled.connect(lambda _m: self.banner.show_message("info", "Export cancelled; nothing was written."))
        self.task.finished.connect(self._on_finished)
        self.task.start()
        self._update_target()
        return True

    def cancel(self) -> None:
        if self.busy:
            self.task.cancel()
            self.progress.cancel_button.setEnabled(False)

    def _on_progress(self, done, total) -> None:
        self.progress.report(done, total, STAGES[min(int(done), len(STAGES) - 1)])

    def _on_done(self, result: dict) -> None:
        self.result = result
        n = len(result["parity"])
        where = Path(result["path"])
        size = result["files"].get(str(where), 0)
        self.banner.show_message(
            "ok" if result["passed"] else "error",
            f"Parity {'ok' if result['passed'] else 'FAILED'}: the export matches the live model within {TOLERANCE:g} "
            f"(max |difference| {result['max_abs_diff']:.1e} over {n} checks). Wrote {where.name} ({human_bytes(size)}).")
        self.parity.setRowCount(n)
        for r, (check, diff) in enumerate(result["parity"].items()):
            self.parity.setItem(r, 0, QTableWidgetItem(check))
            item = QTableWidgetItem(f"{diff:.2e}")
            item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self.parity.setItem(r, 1, item)
            self.parity.setItem(r, 2, QTableWidgetItem("ok" if diff <= result["tolerance"] else "over"))
        files = "".join(f"<li>{Path(p).name}: {human_bytes(b)}</li>" for p, b in result["files"].items())
        text = f"<b>Files</b> in {where.parent}:<ul>{files}</ul>"
        ad = result.get("adaptation") or {}
        if ad:
            text += (f"<b>Held-out {ad['metric']}</b> on {ad['episodes']} episodes: {ad['live']:.3f} in MetaGUI"
                     + (f", {ad['exported']:.3f} with the export's head-only adaptation" if ad.get("what_adapts") == "head"
                        and result["format"] in ("torchscript", "onnx-adaptive") else "") + ".<br>")
        for note in result.get("notes", []):
            text += f"<i>{note}</i><br>"
        self.summary.setText(text)
        self.snippet.setPlainText(result["snippet"])
        self.card.setMarkdown(result["card"])
        self.tabs.setEnabled(True)
        self.exported.emit(result)

    def _on_failed(self, message: str, details: str) -> None:
        self.banner.show_message("error", message)

    def _on_finished(self) -> None:
        self.progress.end()
        self._update_target()

    def copy_snippet(self) -> None:
        QGuiApplication.clipboard().setText(self.snippet.toPlainText())
        self.copy_button.setText("Copied")

    def shutdown(self, wait_ms: int = 30000) -> bool:
        if self.task is None:
            return True
        self.task.cancel()
        return self.task.wait(wait_ms)

    def apply_theme(self) -> None:
        self.export_button.setIcon(icons.icon("export", theme.current().accent_text))
        self.copy_button.setIcon(icons.icon("copy"))


class ExportPage(QWidget):
    """The sidebar's Export step: the export panel, and opening bundles made elsewhere."""

    imported = Signal(int)  # run id of an opened bundle

    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.ask_open_path = self._ask_open_path  # replaced in tests
        self.ask_encoder_folder = self._ask_encoder_folder
        outer = page_layout(self)
        self.header = PageHeader(
            "export", "Export",
            "Ship a trained model: a MetaGUI bundle that reopens here and in “metagui predict”, or TorchScript "
            "and ONNX that run with torch or onnxruntime alone, checked against the live model.")
        self.open_button = QPushButton("Open bundle…")
        self.open_button.setToolTip("Add a .metagui bundle to Runs (and Try it); it is checked, never executed")
        self.header.actions.addWidget(self.open_button)
        outer.addWidget(self.header)
        self.banner = Banner(closable=True)
        outer.addWidget(self.banner)
        self.panel = ExportPanel(state)
        outer.addWidget(self.panel, 1)
        self.open_button.clicked.connect(lambda: self.open_bundle())
        self.apply_theme()

    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        if not self.panel.busy:
            self.panel.refresh_runs()

    def open_bundle(self, path: str | None = None) -> int | None:
        path = path or self.ask_open_path()
        if not path:
            return None
        encoder = None
        while True:
            QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
            try:
                run_id = import_bundle(self.state.store, path, encoder)
                break
            except EncoderNeeded as exc:  # a sound bundle whose encoder is elsewhere: ask where
                QApplication.restoreOverrideCursor()
                encoder = self.ask_encoder_folder(str(exc))
                if not encoder:
                    self.banner.show_message("error", f"{exc}. Nothing was added.")
                    return None
            except MetaGUIError as exc:
                self.banner.show_message("error", f"{exc}. Nothing was added.")
                return None
            finally:
                QApplication.restoreOverrideCursor()
        self.banner.show_message("ok", f"Opened {Path(path).name} as run {run_id}: it is in Runs and in Try it.")
        self.panel.refresh_runs(select=run_id)
        self.imported.emit(run_id)
        return run_id

    def _ask_encoder_folder(self, why: str) -> str:
        QMessageBox.information(self, "Text encoder needed", f"{why[:1].upper()}{why[1:]}.\n\nChoose its folder next.")
        return QFileDialog.getExistingDirectory(self, "The bundle's text encoder folder")

    def _ask_open_path(self) -> str:
        path, _ = QFileDialog.getOpenFileName(self, "Open MetaGUI bundle", "", "MetaGUI bundle (*.metagui);;All files (*)")
        return path

    def apply_theme(self) -> None:
        self.header.refresh_theme()
        self.open_button.setIcon(icons.icon("folder"))
        self.panel.apply_theme()


class ExportDialog(QDialog):
    """The export panel for one run, opened from the Runs and Train pages."""

    def __init__(self, state: AppState, run_id: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Export run {run_id}")
        self.resize(820, 640)
        lay = QVBoxLayout(self)
        self.panel = ExportPanel(state, run_id)
        lay.addWidget(self.panel, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        lay.addWidget(buttons)
        self.panel.apply_theme()

    def done(self, result: int) -> None:
        self.panel.shutdown()  # a running export is cancelled and waited for
        super().done(result)

    def closeEvent(self, event) -> None:  # noqa: N802
        self.panel.shutdown()
        super().closeEvent(event)
