"""The main window: a sidebar with the flow's steps, one page per step, menus, shortcuts
and a status bar (device, current run, UI responsiveness, project)."""

from __future__ import annotations

import logging

from PySide6.QtCore import QByteArray, Qt, QTimer
from PySide6.QtGui import QAction, QActionGroup, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QApplication,
    QFileDialog,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QStackedWidget,
    QWidget,
)

from metagui.core.config import RunConfig
from metagui.core.errors import MetaGUIError
from metagui.gui import icons, theme
from metagui.gui.pages.algorithm_page import AlgorithmPage
from metagui.gui.pages.chat_page import ChatPage
from metagui.gui.pages.data_page import DataPage
from metagui.gui.pages.export_page import ExportDialog, ExportPage
from metagui.gui.pages.runs_page import RunsPage
from metagui.gui.pages.tasks_page import TasksPage
from metagui.gui.pages.train_page import TrainPage
from metagui.gui.settings import make_settings
from metagui.gui.state import DEMO_NAME, AppState
from metagui.gui.widgets.sidebar import Sidebar

log = logging.getLogger("metagui")

STEPS = [
    ("data", "Data", "data", "Choose and inspect the dataset"),
    ("tasks", "Tasks", "tasks", "Define N-way K-shot tasks and preview an episode"),
    ("algorithm", "Algorithm", "algorithm", "Pick the meta-learner and its hyperparameters"),
    ("train", "Train", "train", "Meta-train with live curves"),
    ("chat", "Try it", "chat", "Adapt to a few examples and chat with the model"),
    ("runs", "Runs", "runs", "Compare, resume and manage runs"),
    ("export", "Export", "export", "Export a trained model: bundle, TorchScript or ONNX"),
]


def demo_config() -> RunConfig:
    from metagui.core.presets import default_config

    return default_config("protonet", "intents")


class MainWindow(QMainWindow):
    def __init__(self, db: str | None = None, demo: bool = False, settings=None, autoload: bool = True) -> None:
        super().__init__()
        self.settings = settings or make_settings()
        self.state = AppState(db, self)
        app = QApplication.instance()
        self.theme_name = str(self.settings.value("ui/theme", "light"))
        theme.apply_theme(app, self.theme_name)
        self.setWindowIcon(icons.app_icon())
        self.resize(1280, 800)
        self.setMinimumSize(980, 640)

        central = QWidget()
        lay = QHBoxLayout(central)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        self.sidebar = Sidebar(STEPS)
        lay.addWidget(self.sidebar)
        self.stack = QStackedWidget()
        lay.addWidget(self.stack, 1)
        self.setCentralWidget(central)

        s = self.state
        self.data_page = DataPage(s)
        self.tasks_page = TasksPage(s)
        self.algorithm_page = AlgorithmPage(s)
        self.train_page = TrainPage(s)
        self.chat_page = ChatPage(s)
        self.runs_page = RunsPage(s)
        self.export_page = ExportPage(s)
        self.export_dialogs: list[ExportDialog] = []
        self.pages = {"data": self.data_page, "tasks": self.tasks_page, "algorithm": self.algorithm_page,
                      "train": self.train_page, "chat": self.chat_page, "runs": self.runs_page,
                      "export": self.export_page}
        for key in (k for k, *_ in STEPS):
            self.stack.addWidget(self.pages[key])
        self.sidebar.step_selected.connect(self._show_step)

        self.data_page.next_requested.connect(lambda: self.go("tasks"))
        self.tasks_page.next_requested.connect(lambda: self.go("algorithm"))
        self.algorithm_page.next_requested.connect(lambda: self.go("train"))
        self.tasks_page.reload_requested.connect(self.data_page.load)
        self.data_page.loaded.connect(self._on_data_loaded)
        self.train_page.checks.append(self._check_ready)
        self.train_page.config_issue.connect(self._on_config_issue)
        self.train_page.run_state.connect(self._on_run_state)
        self.train_page.run_finished.connect(self._on_run_finished)
        self.runs_page.reopen_requested.connect(self.reopen_config)
        self.runs_page.resume_requested.connect(self.resume_run)
        self.runs_page.fine_tune_requested.connect(self.fine_tune_run)
        self.chat_page.train_requested.connect(lambda: self.go("train"))
        self.chat_page.demo_toggle_requested.connect(lambda: self.set_demo_mode(not self.demo_mode))
        self.runs_page.export_requested.connect(self.open_export_dialog)
        self.train_page.export_requested.connect(self.open_export_dialog)
        self.export_page.imported.connect(lambda _rid: self.runs_page.refresh())
        s.steps_changed.connect(self._update_marks)
        s.project_changed.connect(self._on_project_changed)
        s.config_changed.connect(self._on_config_changed)
        self._start_when_loaded = False
        self.demo_mode = False
        self._demo_restore: dict = {}

        self._build_status_bar()
        self._build_menus()
        self._restore_geometry()
        self.open_initial_project(demo)
        self.go(str(self.settings.value("ui/page", "data")) if not demo else "data")
        from metagui.gui.workers import MainThreadCollector

        self._collector = MainThreadCollector(self)  # garbage collection on this thread only
        if autoload:
            QTimer.singleShot(0, self.data_page.ensure_loaded)
            QTimer.singleShot(0, self._warm_up)
        self._update_marks()

    def _warm_up(self) -> None:
        from metagui.gui.workers import BackgroundTask, warm_up_torch

        self._warm_task = BackgroundTask(warm_up_torch, "warm-up", self)
        self._warm_task.failed.connect(lambda m, d: log.warning("warm-up failed: %s", m))
        # what start-up built lives as long as the window: out of the collector's sight
        self._warm_task.finished.connect(self._collector.freeze)
        self._warm_task.start()

    # --- layout pieces --------------------------------------------------------------------------
    def _build_status_bar(self) -> None:
        sb = self.statusBar()
        from metagui.core.device import select_device

        try:
            dev = select_device(self.state.config.training.device)
            self.device_name = str(dev)
        except MetaGUIError:
            self.device_name = "cpu"
        self.device_label = QLabel()
        self.run_label = QLabel("No run")
        self.stall_label = QLabel("")
        self.stall_label.setToolTip("Longest time the window could not react during the last training run")
        self.project_label = QLabel()
        for w in (self.run_label, self.stall_label, self.device_label, self.project_label):
            sb.addPermanentWidget(w)
        self._update_device_label()
        self._stall_timer = QTimer(self)
        self._stall_timer.setInterval(500)
        self._stall_timer.timeout.connect(self._update_stall_label)
        self._stall_timer.start()

    def _update_device_label(self) -> None:
        want = self.state.config.training.device
        self.device_label.setText(f"Device: {self.device_name}" + (" (auto)" if want == "auto" else ""))
        self.device_label.setToolTip("Where training runs; change it on the Algorithm page")

    def _update_stall_label(self) -> None:
        tp = self.train_page
        if tp.running and tp.stall.beats:
            self.stall_label.setText(f"UI max stall {tp.stall.max_stall_ms:.0f} ms")
        elif tp.last_stall_ms is not None:
            self.stall_label.setText(f"UI max stall {tp.last_stall_ms:.0f} ms (last run)")

    def _build_menus(self) -> None:
        mb = self.menuBar()
        self.actions: dict[str, QAction] = {}

        def act(menu, key, text, slot, shortcut=None, tip="", icon_name=None, checkable=False):
            a = QAction(text, self)
            if shortcut:
                a.setShortcut(QKeySequence(shortcut))
            if tip:
                a.setStatusTip(tip)
                a.setToolTip(tip)
            if icon_name:
                a.setIcon(icons.icon(icon_name))
            a.setCheckable(checkable)
            a.triggered.connect(slot)
            menu.addAction(a)
            self.actions[key] = a
            return a

        f = mb.addMenu("&File")
        act(f, "new_project", "&New project…", self.new_project, QKeySequence.StandardKey.New, "Start a project from the current settings")
        act(f, "open_project", "&Open project…", self.choose_project, QKeySequence.StandardKey.Open, "Switch to another project")
        act(f, "rename_project", "&Rename project…", self.rename_project)
        act(f, "demo_project", "Open the &demo project", lambda: self.open_demo_project(reset=True),
            tip="Voice intents with ProtoNet, ready to train (its settings are reset)")
        act(f, "save_project", "&Save project", self.save_project, QKeySequence.StandardKey.Save, icon_name="save")
        f.addSeparator()
        act(f, "open_config", "Open run &config (TOML)…", self.open_config, "Ctrl+Shift+O")
        act(f, "save_config", "Save run config &as TOML…", self.save_config, "Ctrl+Shift+S")
        f.addSeparator()
        act(f, "quit", "&Quit", self.close, QKeySequence.StandardKey.Quit)

        v = mb.addMenu("&View")
        for i, (key, name, icon_name, _) in enumerate(STEPS, start=1):
            act(v, f"go_{key}", name, lambda _=False, k=key: self.go(k), f"Ctrl+{i}", icon_name=icon_name)
        v.addSeparator()
        group = QActionGroup(self)
        for name, label in (("light", "&Light theme"), ("dark", "&Dark theme")):
            a = act(v, f"theme_{name}", label, lambda _=False, n=name: self.set_theme(n),
                    icon_name="sun" if name == "light" else "moon", checkable=True)
            a.setChecked(self.theme_name == name)
            group.addAction(a)
        act(v, "toggle_theme", "Toggle theme", lambda: self.set_theme("dark" if self.theme_name == "light" else "light"), "Ctrl+Shift+L")
        v.addSeparator()
        demo = act(v, "demo_mode", "Demo &mode (chat, full screen)", lambda: self.set_demo_mode(not self.demo_mode),
                   "F11", "Full screen, large fonts, only the chat: for a projector (Esc leaves)", checkable=True)
        demo.setShortcuts([QKeySequence("F11"), QKeySequence("Ctrl+Shift+D")])
        self.addAction(demo)  # keeps working while the menu bar is hidden
        self._demo_escape = QShortcut(QKeySequence(Qt.Key.Key_Escape), self, lambda: self.set_demo_mode(False))
        self._demo_escape.setEnabled(False)

        t = mb.addMenu("&Training")
        act(t, "sample", "Sample an &episode", self._sample, "Ctrl+E", icon_name="dice")
        act(t, "train", "&Train", self.start_training, "Ctrl+Return", icon_name="play")
        act(t, "pause", "&Pause / resume", self.train_page.toggle_pause, "F6", icon_name="pause")
        act(t, "stop", "&Stop", self.train_page.stop, "Shift+F5", icon_name="stop")
        t.addSeparator()
        act(t, "copy_cli", "Copy &CLI command", self._copy_cli, "Ctrl+Shift+C", icon_name="copy")

        h = mb.addMenu("&Help")
        act(h, "shortcuts", "&Keyboard shortcuts", self.show_shortcuts, "F1")
        act(h, "about", "&About MetaGUI", self.show_about)

    # --- navigation ------------------------------------------------------------------------------
    def go(self, key: str) -> None:
        if key not in self.pages:
            key = "data"
        self.sidebar.select(key)
        self._show_step(key)

    def _show_step(self, key: str) -> None:
        self.stack.setCurrentWidget(self.pages[key])
        if self.sidebar.list.currentRow() != [k for k, *_ in STEPS].index(key):
            self.sidebar.select(key)

    def current_step(self) -> str:
        w = self.stack.currentWidget()
        return next(k for k, p in self.pages.items() if p is w)

    def _update_marks(self) -> None:
        for key in ("data", "tasks", "algorithm", "train", "runs"):
            self.sidebar.set_done(key, bool(self.state.done.get(key)))
        self.sidebar.list.viewport().update()

    # --- projects --------------------------------------------------------------------------------
    def open_initial_project(self, demo: bool) -> None:
        if demo:
            self.open_demo_project(reset=True)
            return
        last = self.settings.value("project/last")
        projects = {p["id"]: p for p in self.state.projects()}
        try:
            last_id = int(last) if last is not None else None
        except (TypeError, ValueError):
            last_id = None
        if last_id in projects:
            self._open_project(last_id)
        elif projects:
            self._open_project(next(iter(projects)))
        else:
            self.open_demo_project()

    def open_demo_project(self, reset: bool = False) -> None:
        """Open the demo project; ``reset`` puts back its ready-to-train settings."""
        for p in self.state.projects():
            if p["name"] == DEMO_NAME:
                self.state.open_project(p["id"])
                if reset:
                    self.state.set_config(demo_config())
                self.data_page.ensure_loaded()
                return
        self.state.new_project(DEMO_NAME, demo_config())
        self.data_page.ensure_loaded()

    def _open_project(self, project_id: int) -> None:
        try:
            self.state.open_project(project_id)
        except MetaGUIError as exc:
            self.show_error(str(exc))
            self.state.new_project(DEMO_NAME, demo_config())
        self.data_page.ensure_loaded()

    def new_project(self) -> None:
        name, ok = QInputDialog.getText(self, "New project", "Name of the new project (it starts from the current settings):")
        if ok and name.strip():
            self.state.new_project(name.strip(), self.state.config.copy())

    def choose_project(self) -> None:
        projects = self.state.projects()
        if not projects:
            return
        labels = [f"{p['name']}  (#{p['id']})" for p in projects]
        label, ok = QInputDialog.getItem(self, "Open project", "Project:", labels, 0, False)
        if ok:
            self._open_project(projects[labels.index(label)]["id"])

    def rename_project(self) -> None:
        name, ok = QInputDialog.getText(self, "Rename project", "New name:", text=self.state.project_name)
        if ok and name.strip():
            self.state.rename_project(name.strip())

    def save_project(self) -> None:
        self.state.save_project()
        self.statusBar().showMessage(f"Saved project “{self.state.project_name}”", 3000)

    def _on_project_changed(self) -> None:
        self.setWindowTitle(f"MetaGUI — {self.state.project_name}")
        self.sidebar.project.setText(f"Project<br><b>{self.state.project_name}</b>")
        self.project_label.setText(f"Project: {self.state.project_name}")
        if self.state.project_id is not None:
            self.settings.setValue("project/last", self.state.project_id)

    def _on_config_changed(self, section: str) -> None:
        if section in ("all", "algorithm", "training"):
            from metagui.core.device import select_device

            try:
                self.device_name = str(select_device(self.state.config.training.device))
            except MetaGUIError:
                self.device_name = self.state.config.training.device
            self._update_device_label()
        if section in ("all", "task"):
            self.data_page.refresh_problems()

    # --- configs ----------------------------------------------------------------------------------
    def open_config(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open run config", "", "TOML (*.toml);;All files (*)")
        if path:
            try:
                self.reopen_config(RunConfig.load(path))
            except MetaGUIError as exc:
                self.show_error(str(exc))

    def save_config(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save run config", "run.toml", "TOML (*.toml)")
        if path:
            self.state.config.save(path)
            self.statusBar().showMessage(f"Saved {path}", 3000)

    def reopen_config(self, cfg: RunConfig) -> None:
        """Load a run's config into every page (Runs page: Reopen)."""
        self.state.set_config(cfg)
        self.data_page.ensure_loaded()
        self.go("train")
        self.statusBar().showMessage("Settings loaded: press Train to run them again", 5000)

    def open_export_dialog(self, run_id: int) -> ExportDialog:
        """The export panel for one run (Runs and Train pages: Export…)."""
        dlg = ExportDialog(self.state, run_id, self)
        self.export_dialogs.append(dlg)
        dlg.finished.connect(lambda _r, d=dlg: self.export_dialogs.remove(d) if d in self.export_dialogs else None)
        dlg.show()
        return dlg

    def fine_tune_run(self, run_id: int) -> None:
        """Runs page: Fine-tune. The run's settings in every page; the next Train starts from
        its best checkpoint (the Data page may switch to other data first, e.g. its feedback)."""
        try:
            cfg = RunConfig.from_toml(self.state.store.run(run_id)["config"])
        except MetaGUIError as exc:
            self.show_error(str(exc))
            return
        self.reopen_config(cfg)
        self.train_page.set_fine_tune(run_id)

    def resume_run(self, run_id: int) -> None:
        self.go("train")
        self.train_page.start(resume_run=run_id)

    # --- training ---------------------------------------------------------------------------------
    def _check_ready(self):
        if not self.state.dataset_ready:
            if self.data_page.busy:
                return ("wait", "The dataset is still loading; training starts as soon as it is ready.")
            return ("data", "Load the dataset first (Data page): " + (self.data_page.banner.message() or "it is not loaded yet."))
        err = self.tasks_page.check()
        if err:
            return ("tasks", "The task cannot be drawn from this dataset: " + err + ".")
        err = self.algorithm_page.check()
        if err:
            return ("algorithm", err)
        return None

    def _on_config_issue(self, page: str) -> None:
        if page == "wait":
            self._start_when_loaded = True
            self.train_page.banner.show_message("info", "The dataset is still loading; training starts as soon as it is ready.")
            return
        self.statusBar().showMessage("Fix the settings shown in red before training", 5000)

    def _on_data_loaded(self) -> None:
        self.tasks_page.refresh()
        if self._start_when_loaded:
            self._start_when_loaded = False
            self.train_page.start()

    def start_training(self) -> None:
        if self.current_step() != "train":
            self.go("train")
        self.train_page.start()

    def _sample(self) -> None:
        self.go("tasks")
        self.tasks_page.sample_episode()

    def _copy_cli(self) -> None:
        self.go("train")
        self.train_page.tabs.setCurrentIndex(1)
        self.train_page.copy_cli()

    def _on_run_state(self, text: str) -> None:
        self.run_label.setText(text)

    def _on_run_finished(self, result: dict) -> None:
        if self.state.closed:  # the window is closing: the store is already shut
            return
        self.runs_page.refresh()
        self.chat_page.refresh_runs(prefer_latest=True)
        self._update_stall_label()

    # --- demo mode -----------------------------------------------------------------------------------
    def set_demo_mode(self, on: bool) -> None:
        """The chat alone, full screen, in large type (the sidebar, menus and status bar
        hidden); Esc, F11 or Ctrl+Shift+D leave it."""
        if on == self.demo_mode:
            return
        self.demo_mode = on
        self.actions["demo_mode"].setChecked(on)
        self._demo_escape.setEnabled(on)
        if on:
            self._demo_restore = {"page": self.current_step(), "maximized": self.isMaximized()}
            self.go("chat")
            for w in (self.sidebar, self.menuBar(), self.statusBar()):
                w.hide()
            self.chat_page.set_demo(True)
            self.showFullScreen()
        else:
            self.chat_page.set_demo(False)
            for w in (self.sidebar, self.menuBar(), self.statusBar()):
                w.show()
            if self._demo_restore.get("maximized"):
                self.showMaximized()
            else:
                self.showNormal()
            self.go(self._demo_restore.get("page", "chat"))

    # --- look ---------------------------------------------------------------------------------------
    def set_theme(self, name: str) -> None:
        self.theme_name = name
        theme.apply_theme(QApplication.instance(), name)
        self.settings.setValue("ui/theme", name)
        self.actions[f"theme_{name}"].setChecked(True)
        self.sidebar.refresh_theme()
        for page in self.pages.values():
            if hasattr(page, "apply_theme"):
                page.apply_theme()
        for key, a in self.actions.items():
            name_map = {"save_project": "save", "sample": "dice", "train": "play", "pause": "pause", "stop": "stop",
                        "copy_cli": "copy", "theme_light": "sun", "theme_dark": "moon"}
            if key in name_map:
                a.setIcon(icons.icon(name_map[key]))
            elif key.startswith("go_"):
                a.setIcon(icons.icon(dict((k, i) for k, _, i, _ in STEPS)[key[3:]]))

    def show_error(self, message: str, details: str = "") -> None:
        show_error_dialog(self, message, details)

    def show_shortcuts(self) -> None:
        lines = [f"<tr><td><b>{a.shortcut().toString(QKeySequence.SequenceFormat.NativeText)}</b></td><td>{a.text().replace('&', '')}</td></tr>"
                 for a in self.actions.values() if not a.shortcut().isEmpty()]
        QMessageBox.information(self, "Keyboard shortcuts", "<table cellspacing=6>" + "".join(lines) + "</table>")

    def show_about(self) -> None:
        QMessageBox.about(self, "About MetaGUI",
                          "<b>MetaGUI</b><br>A desktop workbench for meta-learning: few-shot tasks, live "
                          f"meta-training, runs you can compare and repeat.<br><br>Run store: {self.state.db_path}")

    # --- window state ---------------------------------------------------------------------------------
    def _restore_geometry(self) -> None:
        geo = self.settings.value("window/geometry")
        if isinstance(geo, QByteArray | bytes) and geo:
            self.restoreGeometry(QByteArray(geo))
        st = self.settings.value("window/state")
        if isinstance(st, QByteArray | bytes) and st:
            self.restoreState(QByteArray(st))

    def shutdown(self, wait_ms: int = 30000) -> bool:
        """Stop background work and wait for it; save settings and the project."""
        ok = self.train_page.shutdown(wait_ms)
        ok = self.chat_page.shutdown(wait_ms) and ok
        warm = getattr(self, "_warm_task", None)
        if warm is not None:
            ok = warm.wait(wait_ms) and ok
        if self.data_page.task is not None:
            self.data_page.task.cancel()
            ok = self.data_page.task.wait(wait_ms) and ok
        ok = self.algorithm_page.shutdown(wait_ms) and ok
        for panel in [self.export_page.panel, *(d.panel for d in self.export_dialogs)]:
            ok = panel.shutdown(wait_ms) and ok
        self.runs_page.timer.stop()
        self.settings.setValue("window/geometry", self.saveGeometry())
        self.settings.setValue("window/state", self.saveState())
        self.settings.setValue("ui/theme", self.theme_name)
        self.settings.setValue("ui/page", self.current_step())
        if self.state.project_id is not None:
            self.settings.setValue("project/last", self.state.project_id)
        self.settings.sync()
        return ok

    def closeEvent(self, event) -> None:  # noqa: N802
        if self.train_page.running:
            self.statusBar().showMessage("Stopping training…")
        self.shutdown()
        self.state.close()
        self._collector.stop()
        super().closeEvent(event)


def show_error_dialog(parent: QWidget | None, message: str, details: str = "") -> QMessageBox:
    """A readable, non-blocking error message; details (a traceback) stay folded away."""
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Warning)
    box.setWindowTitle("MetaGUI")
    box.setText(message)
    if details:
        box.setInformativeText("Something went wrong inside MetaGUI. Your settings and runs are kept; "
                               "the details below are also in the log file.")
        box.setDetailedText(details)
    box.setStandardButtons(QMessageBox.StandardButton.Ok)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.setModal(False)
    box.show()
    return box
