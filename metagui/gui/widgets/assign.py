"""Assigning classes or domains to the train / validation / test splits by hand."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from metagui.gui import theme

SPLIT_NAMES = {"train": "train", "val": "validation", "test": "test", "": "unused"}


class AssignmentTable(QWidget):
    """Rows of names with an example count and the split each one belongs to. Select rows
    and press a split button to move them."""

    changed = Signal()

    def __init__(self, what: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.what = what
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels([what.capitalize(), "Examples", "Split"])
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setSectionResizeMode(2, QHeaderView.ResizeMode.ResizeToContents)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setSortingEnabled(True)
        lay.addWidget(self.table, 1)
        row = QHBoxLayout()
        row.addWidget(QLabel("Move selected to:"))
        self.buttons: dict[str, QPushButton] = {}
        for key in ("train", "val", "test", ""):
            b = QPushButton(SPLIT_NAMES[key].capitalize())
            b.clicked.connect(lambda _=False, k=key: self.assign_selected(k))
            b.setToolTip(f"Put the selected {what} in the {SPLIT_NAMES[key]} split")
            self.buttons[key] = b
            row.addWidget(b)
        row.addStretch(1)
        lay.addLayout(row)

    def set_rows(self, rows: list[tuple[str, int]], assignment: dict[str, str]) -> None:
        self.table.setSortingEnabled(False)
        self.table.setRowCount(len(rows))
        for r, (name, count) in enumerate(rows):
            a = QTableWidgetItem(name)
            b = QTableWidgetItem()
            b.setData(Qt.ItemDataRole.DisplayRole, int(count))
            self.table.setItem(r, 0, a)
            self.table.setItem(r, 1, b)
            self.table.setItem(r, 2, self._split_item(assignment.get(name, "")))
        self.table.setSortingEnabled(True)

    def _split_item(self, split: str) -> QTableWidgetItem:
        it = QTableWidgetItem(SPLIT_NAMES[split])
        it.setData(Qt.ItemDataRole.UserRole, split)
        colors = {"train": 0, "val": 2, "test": 1}
        if split in colors:
            it.setForeground(QColor(theme.current().series[colors[split]]))
        return it

    def assign_selected(self, split: str) -> None:
        rows = sorted({i.row() for i in self.table.selectedIndexes()})
        if not rows:
            return
        self.table.setSortingEnabled(False)
        for r in rows:
            self.table.setItem(r, 2, self._split_item(split))
        self.table.setSortingEnabled(True)
        self.changed.emit()

    def assignment(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {"train": [], "val": [], "test": []}
        for r in range(self.table.rowCount()):
            split = self.table.item(r, 2).data(Qt.ItemDataRole.UserRole)
            if split:
                out[split].append(self.table.item(r, 0).text())
        for v in out.values():
            v.sort()
        return out

    def select_names(self, names: list[str]) -> None:
        want = set(names)
        self.table.clearSelection()
        mode = self.table.selectionMode()
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.MultiSelection)
        for r in range(self.table.rowCount()):
            if self.table.item(r, 0).text() in want:
                self.table.selectRow(r)
        self.table.setSelectionMode(mode)
