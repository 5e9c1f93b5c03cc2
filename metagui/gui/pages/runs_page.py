"""Runs: every run in the store, sortable and filterable; overlay the curves of several,
compare their configs key by key, reopen, resume, rename, tag, delete, export CSV.

The page polls the database once a second and reads only new metric rows, so a run
started with ``metagui train`` in a terminal shows up and can be watched live.
"""

from __future__ import annotations

import csv
import time
import tomllib
from pathlib import Path
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QSortFilterProxyModel,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QColor, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QTableView,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from metagui.core.config import RunConfig
from metagui.core.errors import MetaGUIError
from metagui.gui import icons, theme
from metagui.gui.state import AppState
from metagui.gui.widgets.common import (
    Banner,
    PageHeader,
    human_seconds,
    muted_label,
    page_layout,
    splitter,
)
from metagui.gui.widgets.curves import SeriesBuffer, legend_in_title_row, style_legend

COLUMNS = [
    ("id", "ID"), ("name", "Name"), ("algorithm", "Algorithm"), ("dataset", "Dataset"), ("task", "Task"),
    ("status", "Status"), ("best_val", "Best val"), ("steps_done", "Steps"), ("duration_s", "Duration"),
    ("device", "Device"), ("tags", "Tags"), ("created", "Created"),
]
COL = {key: i for i, (key, _) in enumerate(COLUMNS)}
SORT_ROLE = Qt.ItemDataRole.UserRole
ID_ROLE = Qt.ItemDataRole.UserRole + 1
_ROOT = QModelIndex()
STATUS_COLORS = {"completed": "good", "running": "accent", "paused": "warn", "failed": "bad",
                 "diverged": "bad", "cancelled": "muted", "created": "muted"}


class RunsModel(QAbstractTableModel):
    renamed = Signal(int, str)
    retagged = Signal(int, list)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.rows: list[dict] = []

    def rowCount(self, parent=_ROOT) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent=_ROOT) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):  # noqa: N802
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section][1]
        return None

    def flags(self, index):
        f = super().flags(index)
        if COLUMNS[index.column()][0] in ("name", "tags"):
            f |= Qt.ItemFlag.ItemIsEditable
        return f

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        row = self.rows[index.row()]
        key = COLUMNS[index.column()][0]
        value = row.get(key)
        if role == ID_ROLE:
            return row["id"]
        if role == SORT_ROLE:
            if key == "tags":
                return ", ".join(value or [])
            if value is None:
                return -1e18 if key in ("best_val", "duration_s", "steps_done", "created") else ""
            return value
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.EditRole):
            return self._format(key, value, row, role == Qt.ItemDataRole.EditRole)
        if role == Qt.ItemDataRole.ForegroundRole and key == "status":
            return QColor(getattr(theme.current(), STATUS_COLORS.get(value, "text")))
        if role == Qt.ItemDataRole.ToolTipRole:
            if key == "status" and row.get("error"):
                return row["error"]
            if key == "best_val" and row.get("best_val_ci") is not None:
                return f"95% confidence half-width {row['best_val_ci']:.4f}"
            if key in ("name", "tags"):
                return "Double-click to edit"
        if role == Qt.ItemDataRole.TextAlignmentRole and key in ("id", "best_val", "steps_done", "duration_s"):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    @staticmethod
    def _format(key: str, value: Any, row: dict, edit: bool) -> str:
        if key == "tags":
            return ", ".join(value or [])
        if value is None:
            return ""
        if key == "best_val":
            ci = row.get("best_val_ci")
            return f"{value:.3f}" + (f" ± {ci:.3f}" if ci is not None and not edit else "")
        if key == "duration_s":
            return human_seconds(value)
        if key == "created":
            return time.strftime("%b %d %H:%M", time.localtime(value))
        if key == "device" and (row.get("world_size") or 1) > 1:
            return f"{value} ×{row['world_size']}"  # processes (torchrun's world size)
        return str(value)

    def setData(self, index, value, role=Qt.ItemDataRole.EditRole) -> bool:  # noqa: N802
        if role != Qt.ItemDataRole.EditRole or not index.isValid():
            return False
        row = self.rows[index.row()]
        key = COLUMNS[index.column()][0]
        if key == "name":
            name = str(value).strip()
            if not name:
                return False
            row["name"] = name
            self.renamed.emit(row["id"], name)
        elif key == "tags":
            tags = [t.strip() for t in str(value).split(",") if t.strip()]
            row["tags"] = tags
            self.retagged.emit(row["id"], tags)
        else:
            return False
        self.dataChanged.emit(index, index)
        return True

    def set_rows(self, rows: list[dict]) -> None:
        if [r["id"] for r in rows] == [r["id"] for r in self.rows]:
            changed = [i for i, (a, b) in enumerate(zip(self.rows, rows, strict=True)) if a != b]
            self.rows = rows
            for i in changed:
                self.dataChanged.emit(self.index(i, 0), self.index(i, len(COLUMNS) - 1))
            return
        self.beginResetModel()
        self.rows = rows
        self.endResetModel()

    def row_by_id(self, run_id: int) -> dict | None:
        for r in self.rows:
            if r["id"] == run_id:
                return r
        return None


class RunsFilter(QSortFilterProxyModel):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.status = ""
        self.project_id: int | None = None
        self.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.setFilterKeyColumn(-1)
        self.setSortRole(SORT_ROLE)

    def set_status(self, status: str) -> None:
        if hasattr(self, "beginFilterChange"):  # Qt >= 6.9
            self.beginFilterChange()
            self.status = status
            self.endFilterChange(QSortFilterProxyModel.Direction.Rows)
        else:
            self.status = status
            self.invalidateFilter()

    def set_project(self, project_id: int | None) -> None:
        if hasattr(self, "beginFilterChange"):
            self.beginFilterChange()
            self.project_id = project_id
            self.endFilterChange(QSortFilterProxyModel.Direction.Rows)
        else:
            self.project_id = project_id
            self.invalidateFilter()

    def filterAcceptsRow(self, source_row: int, source_parent) -> bool:  # noqa: N802
        row = self.sourceModel().rows[source_row]
        if self.status and row.get("status") != self.status:
            return False
        if self.project_id is not None and row.get("project_id") != self.project_id:
            return False
        return super().filterAcceptsRow(source_row, source_parent)


def flatten_config(toml_text: str) -> dict[str, str]:
    """``{"task.way": "5", ...}`` from a run's TOML config (for key-by-key comparison): the
    fields that apply to the run, whether its file was written with them only or with all."""
    try:
        data = tomllib.loads(toml_text or "")
    except tomllib.TOMLDecodeError:
        return {"(config)": "unreadable"}
    try:
        data = RunConfig.from_dict(data).to_dict()
    except MetaGUIError:
        pass  # a file this version cannot read as a config: compare what it says
    out: dict[str, str] = {}

    def walk(prefix: str, v: Any) -> None:
        if isinstance(v, dict) and (v or not prefix):
            for k, x in v.items():
                walk(f"{prefix}.{k}" if prefix else k, x)
        else:
            out[prefix] = ", ".join(map(str, v)) if isinstance(v, list) else str(v)

    walk("", data)
    return out


class RunsPage(QWidget):
    reopen_requested = Signal(object)  # RunConfig
    resume_requested = Signal(int)
    export_requested = Signal(int)
    fine_tune_requested = Signal(int)

    POLL_MS = 1000

    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.confirm = self._confirm  # replaced in tests
        self.ask_save_path = self._ask_save_path
        outer = page_layout(self)
        self.header = PageHeader(
            "runs", "Runs",
            "Every run in this workbench, including ones started from a terminal. Select several to "
            "overlay their curves and see how their settings differ.")
        outer.addWidget(self.header)
        outer.addLayout(self._build_filter_bar())
        self._build_actions()
        self.banner = Banner(closable=True)
        outer.addWidget(self.banner)
        split = splitter(Qt.Orientation.Vertical)
        split.addWidget(self._build_table())
        self.tabs = QTabWidget()
        self.tabs.addTab(self._build_curves_tab(), "Curves")
        self.tabs.addTab(self._build_compare_tab(), "Compare configs")
        self.tabs.addTab(self._build_lineage_tab(), "Parent vs child")
        split.addWidget(self.tabs)
        split.setSizes([330, 380])
        outer.addWidget(split, 1)
        # selected runs' curves: run_id -> (buffer, plot item, last step)
        self._curves: dict[int, tuple[SeriesBuffer, pg.PlotDataItem]] = {}
        self._curve_metric = ""
        self.timer = QTimer(self)
        self.timer.setInterval(self.POLL_MS)
        self.timer.timeout.connect(self.poll)
        state.project_changed.connect(self._apply_project_filter)
        self.refresh()
        self._update_buttons()
        self.apply_theme()

    # --- building ----------------------------------------------------------------------------
    def _build_filter_bar(self) -> QHBoxLayout:
        bar = QHBoxLayout()
        self.filter = QLineEdit()
        self.filter.setPlaceholderText("Filter runs (name, algorithm, dataset, tag…)")
        self.filter.setClearButtonEnabled(True)
        self.status_filter = QComboBox()
        self.status_filter.addItem("All statuses", "")
        for s in ("completed", "running", "paused", "cancelled", "failed", "diverged"):
            self.status_filter.addItem(s.capitalize(), s)
        self.project_only = QCheckBox("This project only")
        self.project_only.setToolTip("Show only the runs started in the open project")
        self.project_only.toggled.connect(self._apply_project_filter)
        bar.addWidget(self.filter, 1)
        bar.addWidget(self.status_filter)
        bar.addWidget(self.project_only)
        return bar

    def _build_actions(self) -> None:
        """The buttons in the header, acting on the selected runs."""
        self.buttons: dict[str, QPushButton] = {}
        for key, text, icon_name, tip, act in (
            ("reopen", "Reopen", "reopen", "Load the run's settings into the Data, Tasks, Algorithm and Train pages",
             self.reopen),
            ("resume", "Resume", "resume", "Continue a stopped run from its last checkpoint", self.resume),
            ("finetune", "Fine-tune", "reopen", "Fine-tune from this run: load its settings, and the next Train starts "
             "from its best checkpoint (on the data you choose, e.g. its feedback); the new run records it as parent",
             self.fine_tune),
            ("export", "Export…", "export", "Export the run: MetaGUI bundle, TorchScript or ONNX, checked against the "
             "live model", self.export),
            ("rename", "Rename", "rename", "Rename the run (F2)", lambda: self._edit_column("name")),
            ("tag", "Tags", "tag", "Edit the run's tags, comma separated", lambda: self._edit_column("tags")),
            ("csv", "Export CSV…", "csv", "Save the metrics of the selected runs as CSV", self.export_csv),
            ("delete", "Delete", "trash", "Delete the selected runs and their checkpoints (Del)", self.delete_selected),
        ):
            b = QPushButton(text)
            b.setToolTip(tip)
            b.setProperty("icon_name", icon_name)
            b.clicked.connect(act)
            self.header.actions.addWidget(b)
            self.buttons[key] = b

    def _build_table(self) -> QTableView:
        self.model = RunsModel(self)
        self.model.renamed.connect(self._rename)
        self.model.retagged.connect(self._retag)
        self.proxy = RunsFilter(self)
        self.proxy.setSourceModel(self.model)
        self.filter.textChanged.connect(self.proxy.setFilterFixedString)
        self.status_filter.currentIndexChanged.connect(lambda _: self.proxy.set_status(self.status_filter.currentData()))
        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(COL["id"], Qt.SortOrder.DescendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.DoubleClicked | QAbstractItemView.EditTrigger.EditKeyPressed)
        self.table.verticalHeader().hide()
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        hh = self.table.horizontalHeader()
        hh.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        hh.setSectionResizeMode(COL["name"], QHeaderView.ResizeMode.Stretch)
        hh.setStretchLastSection(False)
        for key, width in (("id", 44), ("algorithm", 84), ("dataset", 100), ("task", 100),
                           ("status", 84), ("best_val", 108), ("steps_done", 60), ("duration_s", 76), ("device", 60),
                           ("tags", 100), ("created", 96)):
            self.table.setColumnWidth(COL[key], width)
        self.table.selectionModel().selectionChanged.connect(self._on_selection)
        QShortcut(QKeySequence(QKeySequence.StandardKey.Delete), self.table, self.delete_selected,
                  context=Qt.ShortcutContext.WidgetShortcut)
        return self.table

    def _build_curves_tab(self) -> QWidget:
        """The selected runs' curves of one metric, overlaid."""
        curves = QWidget()
        cl = QVBoxLayout(curves)
        cl.setContentsMargins(6, 6, 6, 6)
        crow = QHBoxLayout()
        crow.addWidget(QLabel("Metric"))
        self.metric = QComboBox()
        self.metric.setMinimumWidth(180)
        self.metric.currentIndexChanged.connect(self._rebuild_curves)
        crow.addWidget(self.metric)
        self.live_label = muted_label()
        crow.addWidget(self.live_label, 1)
        cl.addLayout(crow)
        self.plot = pg.PlotWidget()
        pi = self.plot.getPlotItem()
        pi.addLegend(labelTextSize="8pt")
        pi.setTitle("Selected runs", size="10pt", justify="left")
        legend_in_title_row(pi)
        pi.setClipToView(True)
        pi.setDownsampling(auto=True, mode="peak")
        pi.setLabel("bottom", "meta-step")
        for ax in ("left", "bottom"):
            pi.getAxis(ax).enableAutoSIPrefix(False)
        cl.addWidget(self.plot, 1)
        return curves

    def _build_compare_tab(self) -> QWidget:
        """The selected runs' settings side by side."""
        cmp_tab = QWidget()
        dl = QVBoxLayout(cmp_tab)
        dl.setContentsMargins(6, 6, 6, 6)
        self.diff_only = QCheckBox("Differences only")
        self.diff_only.setChecked(True)
        self.diff_only.setToolTip("Show only the settings whose values differ between the selected runs")
        self.diff_only.toggled.connect(self._fill_diff)
        dl.addWidget(self.diff_only)
        self.diff = QTableWidget(0, 0)
        self.diff.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.diff.verticalHeader().hide()
        self.diff.horizontalHeader().setStretchLastSection(True)
        dl.addWidget(self.diff, 1)
        return cmp_tab

    def _build_lineage_tab(self) -> QWidget:
        """A fine-tuned run beside its parent: the same held-out episodes, and the parent's
        feedback (``core.lineage``), so that promoting the child is decided with numbers."""
        tab = QWidget()
        lay = QVBoxLayout(tab)
        lay.setContentsMargins(6, 6, 6, 6)
        row = QHBoxLayout()
        self.lineage_button = QPushButton("Compare with its parent")
        self.lineage_button.setToolTip("Evaluate the selected fine-tuned run and the run it started from on the same "
                                       "held-out episodes of the parent's data, and on the parent's feedback")
        self.lineage_button.clicked.connect(self.compare_lineage)
        self.lineage_label = muted_label(wrap=True)
        row.addWidget(self.lineage_button)
        row.addWidget(self.lineage_label, 1)
        lay.addLayout(row)
        self.lineage = QTableWidget(0, 4)
        self.lineage.setHorizontalHeaderLabels(["", "parent", "child", "child − parent"])
        self.lineage.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.lineage.verticalHeader().hide()
        self.lineage.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for c in (1, 2, 3):
            self.lineage.horizontalHeader().setSectionResizeMode(c, QHeaderView.ResizeMode.ResizeToContents)
        self.lineage.setWordWrap(True)
        lay.addWidget(self.lineage, 1)
        self.lineage_task = None
        self.lineage_result: dict | None = None
        return tab

    def _lineage_pair(self) -> tuple[int, int] | None:
        """(parent, child) of the selection: one run with a parent, or two runs one of which is
        the other's parent."""
        ids = self.selected_ids()
        rows = [self.model.row_by_id(r) or {} for r in ids]
        if len(rows) == 1 and rows[0].get("parent_id"):
            return int(rows[0]["parent_id"]), ids[0]
        if len(rows) == 2:
            a, b = rows
            if b.get("parent_id") == a.get("id"):
                return a["id"], b["id"]
            if a.get("parent_id") == b.get("id"):
                return b["id"], a["id"]
        return None

    def _update_lineage(self) -> None:
        pair = self._lineage_pair()
        busy = self.lineage_task is not None and self.lineage_task.running
        self.lineage_button.setEnabled(pair is not None and not busy)
        if busy:
            return
        if pair is None:
            self.lineage_label.setText("Select a fine-tuned run (Fine-tune, or `metagui train CONFIG --from RUN`) "
                                       "to compare it with its parent.")
        elif not self.lineage_result or (self.lineage_result["parent"], self.lineage_result["child"]) != pair:
            self.lineage_label.setText(f"Run {pair[1]} was fine-tuned from run {pair[0]}.")

    def compare_lineage(self) -> None:
        pair = self._lineage_pair()
        if pair is None:
            return
        from metagui.core.lineage import compare_with_parent
        from metagui.gui.workers import BackgroundTask

        parent, child = pair
        db = self.state.db_path

        def work(progress, cancel):
            return compare_with_parent(db, child, parent)

        self.lineage_label.setText(f"Evaluating runs {parent} and {child} on the same episodes…")
        task = BackgroundTask(work, "lineage", self)
        task.succeeded.connect(self._show_lineage)
        task.failed.connect(lambda m, d: self.lineage_label.setText(f"Cannot compare: {m}"))
        task.finished.connect(self._update_lineage)
        self.lineage_task = task.start()
        self.lineage_button.setEnabled(False)

    def _show_lineage(self, res: dict) -> None:
        self.lineage_result = res
        held, fb = res["held_out"], res["feedback"]

        def pct(v):
            return "—" if v is None else f"{100 * v:.1f}%"

        seen_classes = held.get("child_trained_on_classes")
        seen_msgs = fb.get("child_trained_on")
        held_note = (f"; the child meta-trained on {seen_classes} of these {held['test_classes']} classes"
                     if seen_classes else "")
        fb_note = (f"; the child trained on {seen_msgs} of them: not held out for it" if seen_msgs else "")
        rows = [(f"Held-out {held['metric']}: {held['episodes']} episodes of {held['dataset']}, {held['way']}-way "
                 f"{held['shot']}-shot (the parent's test classes{held_note})",
                 f"{pct(held['parent'])} ± {100 * held['parent_ci95']:.1f}",
                 f"{pct(held['child'])} ± {100 * held['child_ci95']:.1f}",
                 f"{100 * (held['child'] - held['parent']):+.1f} points")]
        if fb.get("answered"):
            rows.append((f"Feedback accuracy: {fb['messages']} messages of {fb['intents']} intents the parent was "
                         f"corrected on ({fb['folds']}-fold{fb_note})", pct(fb["parent"]), pct(fb["child"]),
                         f"{100 * (fb['child'] - fb['parent']):+.1f} points"))
        else:
            rows.append((f"Feedback: {fb.get('note', 'none')}", "—", "—", "—"))
        self.lineage.setRowCount(len(rows))
        for r, values in enumerate(rows):
            for c, v in enumerate(values):
                item = QTableWidgetItem(v)
                if c:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                self.lineage.setItem(r, c, item)
        self.lineage.resizeRowsToContents()
        self.lineage_label.setText(f"Run {res['child']} ({res['names']['child']}) beside its parent, run "
                                   f"{res['parent']} ({res['names']['parent']}): the same episodes, the same messages.")

    def _apply_project_filter(self, *_: object) -> None:
        self.proxy.set_project(self.state.project_id if self.project_only.isChecked() else None)

    # --- polling ------------------------------------------------------------------------------
    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        self.refresh()
        self.timer.start()

    def hideEvent(self, event) -> None:  # noqa: N802
        super().hideEvent(event)
        self.timer.stop()

    def refresh(self) -> None:
        if self.state.closed:
            return
        try:
            rows = self.state.store.runs()
        except Exception as exc:  # the database is busy or gone: say so, keep the old view
            self.banner.show_message("error", f"cannot read the run store: {exc}")
            return
        selected = self.selected_ids()
        self.model.set_rows(rows)
        self._restore_selection(selected)
        self.state.mark("runs", bool(rows))

    def poll(self) -> None:
        """Once a second: new or changed runs, and new metric rows of the selected ones."""
        self.refresh()
        if self.state.closed:
            return
        if not self.metric.count() and self.selected_ids():  # selected before its first metrics
            self._fill_metric_names()
            self._rebuild_curves()
        live = []
        for run_id, (buf, item) in self._curves.items():
            row = self.model.row_by_id(run_id)
            if row is None:
                continue
            after = int(buf.x[-1]) if len(buf) else -1
            xs, ys = self.state.store.metric_series(run_id, self._curve_metric, after_step=after)
            if xs:
                buf.extend(xs, ys)
                item.setData(buf.x, buf.y)
            if row.get("status") in ("running", "paused"):
                live.append(f"run {run_id} at step {row.get('steps_done') or 0}")
        self.live_label.setText(("Watching live: " + ", ".join(live)) if live else "")

    # --- selection ------------------------------------------------------------------------------
    def selected_ids(self) -> list[int]:
        rows = self.table.selectionModel().selectedRows()
        return sorted({int(self.proxy.data(i, ID_ROLE)) for i in rows})

    def _restore_selection(self, ids: list[int]) -> None:
        if not ids:
            return
        sm = self.table.selectionModel()
        current = set(self.selected_ids())
        if current == set(ids):
            return
        sm.blockSignals(True)
        sm.clearSelection()
        for r in range(self.proxy.rowCount()):
            idx = self.proxy.index(r, 0)
            if int(self.proxy.data(idx, ID_ROLE)) in ids:
                sm.select(idx, sm.SelectionFlag.Select | sm.SelectionFlag.Rows)
        sm.blockSignals(False)

    def select_runs(self, ids: list[int]) -> None:
        """Select the rows of ``ids`` as ctrl-clicks would."""
        self.table.clearSelection()
        sm = self.table.selectionModel()
        for r in range(self.proxy.rowCount()):
            idx = self.proxy.index(r, 0)
            if int(self.proxy.data(idx, ID_ROLE)) in ids:
                sm.select(idx, sm.SelectionFlag.Select | sm.SelectionFlag.Rows)

    def _on_selection(self, *_: object) -> None:
        self._update_buttons()
        self._update_lineage()
        self._fill_metric_names()
        self._rebuild_curves()
        self._fill_diff()

    def _update_buttons(self) -> None:
        n = len(self.selected_ids())
        for key in ("reopen", "resume", "finetune", "export", "rename", "tag"):
            self.buttons[key].setEnabled(n == 1)
        for key in ("csv", "delete"):
            self.buttons[key].setEnabled(n >= 1)

    # --- curves and comparison --------------------------------------------------------------------
    def _fill_metric_names(self) -> None:
        names: set[str] = set()
        for rid in self.selected_ids():
            names.update(self.state.store.metric_names(rid))
        names.discard("val/episodes")
        ordered = sorted(names, key=lambda n: (not n.startswith("val/"), n.startswith("val/adapt"), n))
        current = self.metric.currentText()
        self.metric.blockSignals(True)
        self.metric.clear()
        self.metric.addItems(ordered)
        if current in names:
            self.metric.setCurrentText(current)
        else:
            for pref in ("val/accuracy", "val/mse", "train/loss"):
                if pref in names:
                    self.metric.setCurrentText(pref)
                    break
        self.metric.blockSignals(False)

    def _rebuild_curves(self, *_: object) -> None:
        pi = self.plot.getPlotItem()
        for _, item in self._curves.values():
            pi.removeItem(item)
        self._curves.clear()
        self._curve_metric = self.metric.currentText()
        if not self._curve_metric:
            return
        t = theme.current()
        for i, rid in enumerate(self.selected_ids()):
            row = self.model.row_by_id(rid) or {}
            buf = SeriesBuffer()
            xs, ys = self.state.store.metric_series(rid, self._curve_metric)
            buf.extend(xs, ys)
            val = self._curve_metric.startswith("val/")
            color = t.series[i % len(t.series)]
            item = pi.plot(buf.x, buf.y, pen=pg.mkPen(color, width=2 if val else 1),
                           symbol="o" if val else None, symbolSize=5, symbolBrush=color, symbolPen=None,
                           name=f"{rid}: {row.get('name', '')}"[:40])
            self._curves[rid] = (buf, item)
        pi.setLabel("left", self._curve_metric)
        style_legend(pi.legend)
        pi.enableAutoRange()

    def curve_points(self) -> dict[int, int]:
        return {rid: len(buf) for rid, (buf, _) in self._curves.items()}

    def _fill_diff(self, *_: object) -> None:
        ids = self.selected_ids()
        configs = {rid: flatten_config((self.model.row_by_id(rid) or {}).get("config", "")) for rid in ids}
        keys: list[str] = []
        for c in configs.values():
            keys += [k for k in c if k not in keys]
        if self.diff_only.isChecked() and len(ids) > 1:
            keys = [k for k in keys if len({c.get(k, "—") for c in configs.values()}) > 1]
        self.diff.clear()
        self.diff.setColumnCount(1 + len(ids))
        self.diff.setHorizontalHeaderLabels(["setting"] + [f"run {rid}" for rid in ids])
        self.diff.setRowCount(len(keys))
        for r, k in enumerate(keys):
            self.diff.setItem(r, 0, QTableWidgetItem(k))
            for c, rid in enumerate(ids, start=1):
                self.diff.setItem(r, c, QTableWidgetItem(configs[rid].get(k, "—")))
        self.diff.resizeColumnToContents(0)

    def diff_keys(self) -> list[str]:
        return [self.diff.item(r, 0).text() for r in range(self.diff.rowCount())]

    # --- actions -------------------------------------------------------------------------------------
    def _one(self) -> dict | None:
        ids = self.selected_ids()
        if len(ids) != 1:
            self.banner.show_message("info", "Select one run first.")
            return None
        return self.model.row_by_id(ids[0])

    def reopen(self) -> None:
        row = self._one()
        if row is None:
            return
        try:
            cfg = RunConfig.from_toml(row["config"])
        except MetaGUIError as exc:
            self.banner.show_message("error", f"run {row['id']} has an unreadable config: {exc}")
            return
        self.reopen_requested.emit(cfg)

    def resume(self) -> None:
        row = self._one()
        if row is None:
            return
        rid = row["id"]
        if row.get("status") in ("running",) and self.state.training_active:
            self.banner.show_message("info", f"Run {rid} is running already.")
            return
        if "last" not in self.state.store.checkpoints(rid):
            self.banner.show_message("error", f"Run {rid} has no checkpoint to resume from.")
            return
        try:
            steps = RunConfig.from_toml(row["config"]).training.steps
        except MetaGUIError:
            steps = 0
        if row.get("status") == "completed" and (row.get("steps_done") or 0) >= steps:
            self.banner.show_message("info", f"Run {rid} has finished all its {steps} steps. Reopen it, raise the "
                                             "steps on the Train page and train again to go further.")
            return
        self.resume_requested.emit(rid)

    def fine_tune(self) -> None:
        self._with_checkpoint(self.fine_tune_requested, "to fine-tune from")

    def export(self) -> None:
        self._with_checkpoint(self.export_requested, "to export")

    def _with_checkpoint(self, signal, purpose: str) -> None:
        """Emit ``signal`` with the selected run's id, or say that it has no checkpoint ``purpose``."""
        row = self._one()
        if row is None:
            return
        if not self.state.store.checkpoints(row["id"]):
            self.banner.show_message("error", f"Run {row['id']} has no checkpoint {purpose}.")
            return
        signal.emit(row["id"])

    def _edit_column(self, key: str) -> None:
        rows = self.table.selectionModel().selectedRows()
        if len(rows) != 1:
            return
        idx = self.proxy.index(rows[0].row(), COL[key])
        self.table.setCurrentIndex(idx)
        self.table.edit(idx)

    def _rename(self, run_id: int, name: str) -> None:
        if self.state.closed:
            return
        self.state.store.update_run(run_id, name=name)
        self.banner.show_message("ok", f"Run {run_id} renamed to “{name}”.")

    def _retag(self, run_id: int, tags: list) -> None:
        if self.state.closed:
            return
        self.state.store.update_run(run_id, tags=tags)

    def delete_selected(self) -> None:
        ids = self.selected_ids()
        if not ids:
            return
        active = self.state.training_run_id if self.state.training_active else None
        if active in ids:
            self.banner.show_message("error", f"Run {active} is training: stop it before deleting it.")
            return
        what = f"run {ids[0]}" if len(ids) == 1 else f"{len(ids)} runs"
        if not self.confirm("Delete runs", f"Delete {what} with their metrics and checkpoints? This cannot be undone."):
            return
        import shutil

        for rid in ids:
            self.state.store.delete_run(rid)
            folder = self.state.store.runs_dir / f"run-{rid}"
            if folder.is_dir():
                shutil.rmtree(folder, ignore_errors=True)
        self.table.clearSelection()
        self.refresh()
        self.banner.show_message("ok", f"Deleted {what}.")

    def export_csv(self) -> Path | None:
        ids = self.selected_ids()
        if not ids:
            return None
        default = Path(self.state.db_path).parent / ("metrics-" + "-".join(map(str, ids[:5])) + ".csv")
        path = self.ask_save_path(str(default))
        if not path:
            return None
        store = self.state.store
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["run_id", "run_name", "step", "metric", "value"])
            for rid in ids:
                name = (self.model.row_by_id(rid) or {}).get("name", "")
                for metric in sorted(store.metric_names(rid)):
                    xs, ys = store.metric_series(rid, metric)
                    w.writerows((rid, name, x, metric, y) for x, y in zip(xs, ys, strict=True))
        self.banner.show_message("ok", f"Saved the metrics of {len(ids)} run(s) to {path}.")
        return Path(path)

    def _confirm(self, title: str, text: str) -> bool:
        return QMessageBox.question(self, title, text) == QMessageBox.StandardButton.Yes

    def _ask_save_path(self, default: str) -> str:
        path, _ = QFileDialog.getSaveFileName(self, "Export metrics", default, "CSV (*.csv)")
        return path

    def apply_theme(self) -> None:
        t = theme.current()
        self.header.refresh_theme()
        for b in self.buttons.values():
            b.setIcon(icons.icon(b.property("icon_name")))
        self.plot.setBackground(t.plot_bg)
        pi = self.plot.getPlotItem()
        for ax in ("left", "bottom"):
            pi.getAxis(ax).setPen(pg.mkPen(t.plot_fg))
            pi.getAxis(ax).setTextPen(pg.mkPen(t.plot_fg))
        pi.showGrid(x=True, y=True, alpha=t.grid_alpha)
        pi.setTitle("Selected runs", color=t.plot_fg, size="10pt", justify="left")
        self._rebuild_curves()
