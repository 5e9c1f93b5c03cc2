"""Train: start, pause, resume and stop meta-training; watch live curves, the log and the
run's config (as TOML, to repeat it headless with ``metagui train``).

Events from the training thread are buffered as they arrive and handled by a ~15 Hz
redraw timer, which appends them to the curve buffers and calls ``setData`` once per
changed curve. The window's responsiveness is measured while training (a 10 ms
heartbeat) and shown as "UI max stall".
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSlider,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from metagui.core import algorithms
from metagui.core.errors import MetaGUIError
from metagui.gui import icons, theme
from metagui.gui.state import AppState, dataset_key
from metagui.gui.widgets.binding import bind, spin_box
from metagui.gui.widgets.common import (
    Banner,
    PageHeader,
    human_seconds,
    muted_label,
    page_layout,
    splitter,
)
from metagui.gui.widgets.curves import AdaptationPlot, LivePlot
from metagui.gui.widgets.stall import StallMeter
from metagui.gui.workers import DistributedSession, TrainingSession

REDRAW_MS = 33  # two alternating halves of the plots: each redrawn at ~15 Hz


def processes_tip() -> str:
    """What the processes spin does, with the CUDA devices it would use."""
    from metagui.core.device import available_devices

    gpus = [f"{d.name}: {d.description}" for d in available_devices() if d.name.startswith("cuda")]
    where = ("one GPU per process (NCCL):\n" + "\n".join(gpus)) if gpus else \
        "no CUDA GPU here: the processes share the CPU's cores (gloo)"
    return ("Train on this many processes with torch.distributed (torchrun), each meta-batch's tasks split "
            "between them; 1 trains in the app. Several processes run as `metagui train --nproc N` in a "
            "child process, followed live here and on the Runs page; Stop reaches every process. "
            f"Devices: {where}")


class TrainPage(QWidget):
    run_state = Signal(str)  # a one-line description for the status bar
    run_finished = Signal(object)  # the result dict
    config_issue = Signal(str)  # a page the user must fix first ("data", "tasks", "algorithm")
    export_requested = Signal(int)  # run id

    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.session: TrainingSession | None = None
        self.fine_tune_from: int | None = None  # Runs page: Fine-tune; the next Train starts from this run
        self.checks: list = []  # callables returning (page, message) problems before a start
        self._pending: list[dict] = []
        self._log_lines: list[str] = []
        self.metric = "accuracy"
        self.total_steps = 0
        self.start_step = 0
        self.step = 0
        self.run_id: int | None = None
        self.best: float | None = None
        self.last_val: tuple[float, float] | None = None
        self.last_result: dict | None = None
        self.events_seen = 0
        self.started_at = 0.0
        self.last_stall_ms: float | None = None
        self.last_gap_ms: float | None = None
        # torch threads in the worker: all cores but one, which stays with the window
        self.threads = max(1, (os.cpu_count() or 2) - 1)
        self.stall = StallMeter(10, self)

        outer = page_layout(self)
        outer.addWidget(self._build_header())
        outer.addLayout(self._build_budget_row())
        self.banner = Banner(closable=True)
        outer.addWidget(self.banner)
        outer.addLayout(self._build_status_strip())
        split = splitter(Qt.Orientation.Vertical)
        split.addWidget(self._build_plots())
        split.addWidget(self._build_tabs())
        split.setStretchFactor(0, 4)
        split.setStretchFactor(1, 1)
        split.setSizes([560, 150])
        outer.addWidget(split, 1)
        self.timer = QTimer(self)
        self.timer.setInterval(REDRAW_MS)
        self.timer.timeout.connect(self._tick)
        state.config_changed.connect(self._show_toml)
        self._show_toml()
        self._update_buttons()
        self.apply_theme()

    # --- building ----------------------------------------------------------------------------
    def _build_header(self) -> PageHeader:
        self.header = PageHeader(
            "train", "Train",
            "Meta-train: the learner practises on thousands of tasks and gets better at learning new ones. "
            "Curves update live; the window stays usable.")
        self.start_button = QPushButton("Train")
        self.start_button.setObjectName("Primary")
        self.start_button.setToolTip("Start meta-training with the current settings (Ctrl+Return)")
        self.start_button.clicked.connect(lambda: self.start())
        self.pause_button = QPushButton("Pause")
        self.pause_button.setToolTip("Pause after the current step; Resume continues (F6)")
        self.pause_button.clicked.connect(self.toggle_pause)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Stop after the current step; the last checkpoint is kept (Shift+F5)")
        self.stop_button.clicked.connect(self.stop)
        self.export_button = QPushButton("Export…")
        self.export_button.setToolTip("Export this run: MetaGUI bundle, TorchScript or ONNX")
        self.export_button.clicked.connect(lambda: self.run_id is not None and self.export_requested.emit(self.run_id))
        for b in (self.start_button, self.pause_button, self.stop_button, self.export_button):
            self.header.actions.addWidget(b)
        return self.header

    def _build_budget_row(self) -> QHBoxLayout:
        """The training budget (bound to the config) and how the curves are smoothed."""
        row = QHBoxLayout()
        row.setSpacing(8)
        self.steps = spin_box(1, 10_000_000, "Meta-training steps (meta-updates)", min_width=90, separators=True)
        self.val_every = spin_box(1, 1_000_000, "Validate every this many steps (and keep the best checkpoint)",
                                  min_width=90, separators=True)
        self.val_episodes = spin_box(1, 100_000, "Validation episodes; more gives a tighter 95% confidence band",
                                     min_width=90, separators=True)
        for label, w, field in (("Steps", self.steps, "training.steps"),
                                ("Validate every", self.val_every, "training.val_every"),
                                ("Validation episodes", self.val_episodes, "training.val_episodes")):
            bind(w, self.state, field)
            row.addWidget(QLabel(label))
            row.addWidget(w)
        self.processes = spin_box(1, max(64, os.cpu_count() or 1), "", min_width=60)
        self.processes.setValue(1)
        self.processes.setToolTip(processes_tip())
        row.addWidget(QLabel("Processes / GPUs"))
        row.addWidget(self.processes)
        row.addSpacing(16)
        self.smooth = QCheckBox("Smooth")
        self.smooth.setChecked(True)
        self.smooth.setToolTip("Exponential moving average of the per-step curves (the raw values stay faint)")
        self.smooth.toggled.connect(self._apply_smoothing)
        self.smooth_weight = QSlider(Qt.Orientation.Horizontal)
        self.smooth_weight.setRange(50, 99)
        self.smooth_weight.setValue(90)
        self.smooth_weight.setFixedWidth(110)
        self.smooth_weight.setToolTip("Smoothing weight: how much of the past each point keeps (0.50 to 0.99)")
        self.smooth_weight.valueChanged.connect(self._apply_smoothing)
        self.smooth_value = QLabel("0.90")
        row.addWidget(self.smooth)
        row.addWidget(self.smooth_weight)
        row.addWidget(self.smooth_value)
        row.addStretch(1)
        return row

    def _build_status_strip(self) -> QHBoxLayout:
        strip = QHBoxLayout()
        strip.setSpacing(14)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("not started")
        strip.addWidget(self.progress, 2)
        self.labels = {k: QLabel("–") for k in ("step", "elapsed", "eta", "speed", "best", "stall")}
        tips = {"step": "Meta-steps done", "elapsed": "Time since the run started", "eta": "Estimated time left",
                "speed": "Tasks (episodes) per second", "best": "Best validation score (95% confidence half-width)",
                "stall": "Longest time the window could not react during this run (10 ms heartbeat)"}
        for k, lab in self.labels.items():
            lab.setToolTip(tips[k])
            strip.addWidget(lab)
        return strip

    def _build_plots(self) -> QWidget:
        plots = QWidget()
        grid = QGridLayout(plots)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setSpacing(8)
        self.loss_plot = LivePlot("Meta-train loss", "query loss")
        self.loss_plot.add_series("train", "train loss", smooth=True)
        self.metric_plot = LivePlot("Accuracy", "accuracy")
        self.metric_plot.add_series("train", "train", smooth=True)
        self.metric_plot.add_series("val", "validation ± 95% CI", band=True, symbol="o")
        self.adapt_plot = AdaptationPlot()
        self.speed_plot = LivePlot("Throughput", "tasks / s")
        self.speed_plot.add_series("speed", "tasks per second", smooth=True)
        self.memory_plot = LivePlot("Device memory (peak)", "MiB")
        self.memory_plot.add_series("mem", "peak allocated")
        grid.addWidget(self.loss_plot, 0, 0)
        grid.addWidget(self.metric_plot, 0, 1)
        grid.addWidget(self.adapt_plot, 1, 0)
        grid.addWidget(self.speed_plot, 1, 1)
        grid.addWidget(self.memory_plot, 1, 2)
        self.memory_plot.hide()
        self.live_plots = [self.loss_plot, self.metric_plot, self.speed_plot, self.memory_plot]
        self._groups = [[self.loss_plot, self.memory_plot], [self.metric_plot, self.speed_plot]]
        self._turn = 0
        return plots

    def _build_tabs(self) -> QTabWidget:
        """The log, and the run's config as TOML with ways to repeat it in a terminal."""
        self.tabs = QTabWidget()
        self.log = QPlainTextEdit()
        self.log.setObjectName("Mono")
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(5000)
        self.tabs.addTab(self.log, "Log")
        cfg_tab = QWidget()
        cl = QVBoxLayout(cfg_tab)
        cl.setContentsMargins(6, 6, 6, 6)
        self.toml = QPlainTextEdit()
        self.toml.setObjectName("Mono")
        self.toml.setReadOnly(True)
        cl.addWidget(self.toml, 1)
        brow = QHBoxLayout()
        self.save_toml_button = QPushButton("Save TOML…")
        self.save_toml_button.clicked.connect(self.save_toml)
        self.copy_cli_button = QPushButton("Copy CLI command")
        self.copy_cli_button.setToolTip("Save this config next to the run database and copy the command "
                                        "that repeats the run in a terminal")
        self.copy_cli_button.clicked.connect(self.copy_cli)
        self.cli_label = muted_label()
        self.cli_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        brow.addWidget(self.save_toml_button)
        brow.addWidget(self.copy_cli_button)
        brow.addWidget(self.cli_label, 1)
        cl.addLayout(brow)
        self.tabs.addTab(cfg_tab, "Run config (TOML)")
        return self.tabs

    # --- config ----------------------------------------------------------------------------------
    def _show_toml(self, *_: object) -> None:
        """The config as TOML, unless a run's own config is shown while it trains."""
        if not self.running:
            self.toml.setPlainText(self.state.config.to_toml())

    # --- controls ---------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.session is not None and self.session.running

    def set_fine_tune(self, run_id: int | None) -> None:
        """The next Train starts from run ``run_id``'s best checkpoint (Runs page: Fine-tune),
        on whatever data the pages hold then; None: from scratch."""
        self.fine_tune_from = run_id
        if run_id is not None:
            self.banner.show_message("info", f"Fine-tuning from run {run_id}: Train starts from its best checkpoint "
                                             "(same algorithm and model) on the data chosen on the Data page; the new "
                                             f"run records run {run_id} as its parent.")

    def start(self, resume_run: int | None = None) -> bool:
        """Start training the current config (or resume run ``resume_run``) in a worker thread."""
        if self.running:
            return False
        self.banner.clear()
        for check in self.checks:
            problem = check()
            if problem:
                page, message = problem
                self.banner.show_message("error", message)
                self.config_issue.emit(page)
                return False
        cfg = self.state.config.copy()
        if resume_run is not None:
            try:
                from metagui.core.config import RunConfig

                row = self.state.store.run(resume_run)
                cfg = RunConfig.from_toml(row["config"])
            except MetaGUIError as exc:
                self.banner.show_message("error", str(exc))
                return False
        same_data = dataset_key(cfg.dataset) == dataset_key(self.state.config.dataset)
        dataset = self.state.dataset if self.state.dataset_ready and same_data else None
        if cfg.dataset.source == "sinusoid":
            dataset = None
        self._reset_view(cfg)
        if resume_run is not None:
            self._load_history(resume_run)
        init_from = self.fine_tune_from if resume_run is None else None
        if self.processes.value() > 1:  # torchrun in a child process, followed through the store
            stamp = time.strftime("%Y%m%d-%H%M%S")
            self.session = DistributedSession(cfg, self.state.db_path, self.processes.value(),
                                              Path(self.state.db_path).parent / f"distributed-{stamp}.toml",
                                              resume_run=resume_run, parent=self, init_from=init_from)
        else:
            self.session = TrainingSession(cfg, self.state.db_path, dataset=dataset, resume_run=resume_run,
                                           project_id=self.state.project_id, threads=self.threads, parent=self,
                                           init_from=init_from)
        self.set_fine_tune(None)  # once: the next Train starts afresh unless asked again
        self.session.events.connect(self._on_events)
        self.session.finished.connect(self._on_finished)
        self.toml.setPlainText(cfg.to_toml())
        self.stall.reset()
        self.stall.start()
        self.started_at = time.monotonic()
        self.session.start()
        self.timer.start()
        self.state.training_active = True
        self.state.training_changed.emit()
        self.progress.setFormat("preparing…")
        self.progress.setRange(0, 0)
        self._update_buttons()
        self.run_state.emit("Training: preparing…")
        return True

    def toggle_pause(self) -> None:
        if not self.running:
            return
        if self.session.paused:
            self.session.resume()
        else:
            self.session.pause()
        self._update_buttons()

    def stop(self) -> None:
        if self.running:
            self.session.cancel()
            self.stop_button.setEnabled(False)
            self.progress.setFormat("stopping…")

    def _update_buttons(self) -> None:
        running = self.running
        paused = running and self.session.paused
        self.start_button.setEnabled(not running)
        self.pause_button.setEnabled(running and getattr(self.session, "can_pause", True))
        self.stop_button.setEnabled(running)
        self.export_button.setEnabled(not running and self.run_id is not None)
        self.pause_button.setText("Resume" if paused else "Pause")
        self.pause_button.setIcon(icons.icon("resume" if paused else "pause"))
        for w in (self.steps, self.val_every, self.val_episodes, self.processes):
            w.setEnabled(not running)

    # --- views --------------------------------------------------------------------------------------
    def _reset_view(self, cfg) -> None:
        self._pending.clear()
        self.events_seen = 0
        self.step = 0
        self.start_step = 0
        self.best = None
        self.last_val = None
        self.run_id = None
        self.total_steps = cfg.training.steps
        for p in self.live_plots:
            p.clear_data()
            p.set_x_extent(0, self.total_steps)
        self.adapt_plot.clear_curves()
        cls = algorithms.REGISTRY.get(cfg.algorithm.name)
        if cls is not None and cls.family == "optimisation":
            self.adapt_plot.set_note("The adaptation curve appears at the first validation.")
        else:
            label = cls.label if cls else cfg.algorithm.name
            self.adapt_plot.set_note(f"{label} adapts without gradient steps:\nno adaptation curve.")
        self.memory_plot.setVisible(False)
        self.log.clear()
        for k in self.labels:
            self.labels[k].setText("–")
        self._set_metric("mse" if cfg.dataset.source == "sinusoid" else "accuracy")

    def _set_metric(self, metric: str) -> None:
        self.metric = metric
        pi = self.metric_plot.getPlotItem()
        title = "Mean squared error" if metric == "mse" else "Accuracy"
        self.metric_plot._title = title
        pi.setTitle(title, color=theme.current().plot_fg, size="10pt", justify="left")
        pi.setLabel("left", metric)

    def _load_history(self, run_id: int) -> None:
        """Curves of a resumed run so far, from the store."""
        store = self.state.store
        names = set(store.metric_names(run_id))
        metric = "mse" if "train/mse" in names else "accuracy"
        self._set_metric(metric)
        for key, plot, series in (("train/loss", self.loss_plot, "train"), (f"train/{metric}", self.metric_plot, "train"),
                                  ("train/tasks_per_s", self.speed_plot, "speed")):
            xs, ys = store.metric_series(run_id, key)
            if xs:
                plot.series[series].add(xs, ys)
        xs, ys = store.metric_series(run_id, f"val/{metric}")
        _, ci = store.metric_series(run_id, "val/ci95")
        if xs and len(ci) == len(ys):
            self.metric_plot.series["val"].add(xs, ys, [y - c for y, c in zip(ys, ci, strict=True)],
                                               [y + c for y, c in zip(ys, ci, strict=True)])
        for p in self.live_plots:
            p.redraw()

    def _apply_smoothing(self, *_: object) -> None:
        alpha = self.smooth_weight.value() / 100.0
        self.smooth_value.setText(f"{alpha:.2f}")
        self.smooth_weight.setEnabled(self.smooth.isChecked())
        for p in self.live_plots:
            for s in p.series.values():
                s.set_smoothing(self.smooth.isChecked(), alpha)
            p.redraw()

    # --- events ---------------------------------------------------------------------------------------
    def _on_events(self, batch: list) -> None:
        # Arrives on the GUI thread (queued); only buffer here, the timer does the work.
        self._pending.extend(batch)

    def _tick(self) -> None:
        if self._pending:
            batch, self._pending = self._pending, []
            self._handle(batch)
        # Redraw half of the plots per tick (each one at ~15 Hz): a frame then repaints
        # at most two plots, which keeps the longest event-loop stall short.
        group = self._groups[self._turn % len(self._groups)]
        self._turn += 1
        for p in group:
            p.redraw()
        if self.running and self.stall.beats:
            self.labels["stall"].setText(f"UI max stall {self.stall.max_stall_ms:.0f} ms")

    def _handle(self, batch: list[dict]) -> None:
        self.events_seen += len(batch)
        steps: list[int] = []
        cols: dict[str, list[float]] = {}
        last_metrics: dict | None = None
        for ev in batch:
            kind = ev.get("kind")
            if kind == "metrics":
                steps.append(ev["step"])
                m = ev["metrics"]
                for k in ("loss", self.metric, "tasks_per_s", "gpu_mem_mb"):
                    if k in m:
                        cols.setdefault(k, []).append(m[k])
                last_metrics = m
                self.step = ev["step"]
            elif kind == "validation":
                self._flush_metrics(steps, cols)
                steps, cols = [], {}
                self._on_validation(ev)
            elif kind == "started":
                self.run_id = ev.get("run_id")
                self.state.training_run_id = self.run_id
                self.total_steps = ev.get("steps", self.total_steps)
                self.start_step = ev.get("start_step", 0)
                self.step = self.start_step
                if ev.get("metric") and ev["metric"] != self.metric:
                    self._set_metric(ev["metric"])
                self.memory_plot.setVisible(str(ev.get("device", "")).startswith("cuda"))
                for p in self.live_plots:
                    p.set_x_extent(0, self.total_steps)
                self.progress.setRange(0, max(1, self.total_steps))
                self.progress.setFormat("%v / %m steps")
                self._log(f"Training on {ev.get('device')}")
                self.state.training_changed.emit()
            elif kind in ("log", "batching"):
                self._log(ev.get("message", ""))
            elif kind == "progress":
                total = ev.get("total") or 0
                self.progress.setFormat(f"loading data {ev.get('done', 0):,} / {total:,}" if total else "loading data…")
            elif kind == "status":
                self._update_buttons()
                self.run_state.emit(f"Run {self.run_id}: {ev.get('status')} at step {ev.get('step')}")
            elif kind == "error":
                self.banner.show_message("error", ev.get("message", "training failed"))
                self._log("ERROR: " + ev.get("message", ""))
                if ev.get("traceback"):
                    import logging

                    logging.getLogger("metagui").error("training error\n%s", ev["traceback"])
            elif kind == "finished":
                self._log(f"Finished: {ev.get('status')} after {ev.get('steps')} steps")
        self._flush_metrics(steps, cols)
        if self._log_lines:
            self.log.appendPlainText("\n".join(self._log_lines))
            self._log_lines.clear()
        if last_metrics is not None:
            self._update_labels(last_metrics)

    def _flush_metrics(self, steps: list[int], cols: dict[str, list[float]]) -> None:
        if not steps:
            return
        for key, plot, series in (("loss", self.loss_plot, "train"), (self.metric, self.metric_plot, "train"),
                                  ("tasks_per_s", self.speed_plot, "speed"), ("gpu_mem_mb", self.memory_plot, "mem")):
            ys = cols.get(key)
            if ys and len(ys) == len(steps):
                plot.series[series].add(steps, ys)

    def _on_validation(self, ev: dict) -> None:
        v = ev["metrics"]
        step = ev["step"]
        value = v.get(self.metric)
        ci = v.get("ci95", 0.0)
        if value is not None:
            ci = 0.0 if ci != ci else ci
            self.metric_plot.series["val"].add([step], [value], [value - ci], [value + ci])
            self.last_val = (value, ci)
        self.best = ev.get("best", self.best)
        adapt = sorted((int(k.rsplit("_", 1)[1]), val) for k, val in v.items() if k.startswith("adapt_loss_"))
        if adapt:
            self.adapt_plot.add_curve(step, [val for _, val in adapt])
        if self.best is not None:
            self.labels["best"].setText(f"best val {self.metric} {self.best:.3f}" + (f" ± {ci:.3f}" if ci else ""))

    def _update_labels(self, m: dict) -> None:
        self.progress.setValue(min(self.step, self.progress.maximum()))
        self.labels["step"].setText(f"step {self.step:,} / {self.total_steps:,}")
        self.labels["elapsed"].setText(f"elapsed {human_seconds(m.get('elapsed_s'))}")
        self.labels["eta"].setText(f"ETA {human_seconds(m.get('eta_s'))}")
        speed = self.speed_plot.series["speed"].smoothed_last
        if speed is not None:
            self.labels["speed"].setText(f"{speed:,.0f} tasks/s")
        self.run_state.emit(f"Run {self.run_id}: step {self.step:,}/{self.total_steps:,}")

    def _log(self, line: str) -> None:
        self._log_lines.append(time.strftime("%H:%M:%S ") + line)

    def _on_finished(self, result: dict) -> None:
        self.timer.stop()
        self.stall.stop()
        self.last_stall_ms = self.stall.max_stall_ms
        self.last_gap_ms = self.stall.max_gap_ms
        if self._pending:
            batch, self._pending = self._pending, []
            self._handle(batch)
        for p in self.live_plots:
            p.redraw()
        self.last_result = result
        status = result.get("status")
        self.labels["stall"].setText(f"UI max stall {self.last_stall_ms:.0f} ms")
        run = result.get("run_id")
        best = result.get("best_val")
        if status == "completed":
            txt = f"Run {run} completed: {result.get('steps')} steps in {human_seconds(result.get('duration_s'))}"
            if best is not None:
                ci = result.get("best_val_ci")
                txt += f"; best validation {self.metric} {best:.3f}" + (f" ± {ci:.3f}" if ci else "")
            self.banner.show_message("ok", txt + ".")
            self.state.mark("train", True)
            self.progress.setValue(self.progress.maximum())
        elif status == "cancelled":
            self.banner.show_message("info", f"Run {run} stopped at step {result.get('steps')}; its last checkpoint "
                                             "is kept and it can be resumed from the Runs page.")
        elif status == "diverged":
            self.banner.show_message("error", result.get("error") or "training diverged")
        elif not self.banner.isVisible():
            self.banner.show_message("error", result.get("error") or "training failed")
        self.progress.setFormat(f"{status}: %v / %m steps" if self.progress.maximum() > 1 else str(status))
        if self.progress.maximum() == 0:
            self.progress.setRange(0, 1)
        self.state.training_active = False
        self.state.training_changed.emit()
        self._update_buttons()
        self.run_state.emit(f"Run {run}: {status}")
        self.run_finished.emit(result)

    # --- config export ---------------------------------------------------------------------------------
    def _toml_path(self) -> Path:
        name = f"run-{self.run_id}.toml" if self.run_id else f"project-{self.state.project_id or 0}.toml"
        return Path(self.state.db_path).parent / name

    def save_toml(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save run config", str(self._toml_path()), "TOML (*.toml)")
        if path:
            Path(path).write_text(self.toml.toPlainText(), encoding="utf-8")
            self.cli_label.setText(f"Saved {path}")

    def cli_command(self) -> str:
        """Save the shown config next to the database; the command that repeats it."""
        path = self._toml_path()
        path.write_text(self.toml.toPlainText(), encoding="utf-8")
        nproc = f" --nproc {self.processes.value()}" if self.processes.value() > 1 else ""
        return f'metagui train "{path}" --db "{self.state.db_path}"{nproc}'

    def copy_cli(self) -> None:
        cmd = self.cli_command()
        QGuiApplication.clipboard().setText(cmd)
        self.cli_label.setText(f"Copied: {cmd}")

    def apply_theme(self) -> None:
        self.header.refresh_theme()
        t = theme.current()
        self.start_button.setIcon(icons.icon("play", t.accent_text))
        self.stop_button.setIcon(icons.icon("stop"))
        self.export_button.setIcon(icons.icon("export"))
        self.save_toml_button.setIcon(icons.icon("save"))
        self.copy_cli_button.setIcon(icons.icon("copy"))
        self._update_buttons()
        for p in self.live_plots:
            p.apply_theme()
        self.adapt_plot.apply_theme()

    def shutdown(self, wait_ms: int = 30000) -> bool:
        """Stop training and wait for the worker thread (window closing)."""
        if self.session is None:
            return True
        if self.session.running:
            self.session.cancel()
        ok = self.session.wait(wait_ms)
        self.timer.stop()
        self.stall.stop()
        return ok
