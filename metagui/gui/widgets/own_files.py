"""How users hand the Data page files of their own: a zone to drop them on, and the columns
of a text table for the pickers of its text, label and domain columns."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from metagui.gui import icons, theme


def peek_columns(path: str) -> list[str]:
    """Column names of a text table, read from its first line (for the column pickers)."""
    p = Path(path)
    try:
        with open(p, encoding="utf-8-sig", errors="replace") as f:
            first = f.readline()
    except OSError:
        return []
    first = first.strip()
    if not first:
        return []
    if first.startswith("{"):
        try:
            return [str(k) for k in json.loads(first)]
        except ValueError:
            return []
    try:
        dialect = csv.Sniffer().sniff(first, delimiters=",;\t|")
        return next(csv.reader([first], dialect))
    except (csv.Error, StopIteration):
        return next(csv.reader([first]), [])


def guess_column(columns: list[str], hints: tuple[str, ...]) -> str:
    low = {c.lower(): c for c in columns}
    for h in hints:
        if h in low:
            return low[h]
    for c in columns:
        if any(h in c.lower() for h in hints):
            return c
    return ""


class DropZone(QFrame):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("DropZone")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(12, 12, 12, 12)
        self.icon = QLabel()
        self.icon.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.label = QLabel("Your own data? Drop a folder of class folders, a .zip, or a .csv / .tsv / "
                            ".jsonl table anywhere on this page, or choose it:")
        self.label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.label.setWordWrap(True)
        self.label.setObjectName("Muted")
        lay.addWidget(self.icon)
        lay.addWidget(self.label)
        btns = QHBoxLayout()
        self.folder_button = QPushButton("Folder…")
        self.file_button = QPushButton("File…")
        btns.addStretch(1)
        btns.addWidget(self.folder_button)
        btns.addWidget(self.file_button)
        btns.addStretch(1)
        lay.addLayout(btns)
        self.refresh_theme()

    def set_active(self, on: bool) -> None:
        self.setProperty("active", "true" if on else "false")
        self.style().unpolish(self)
        self.style().polish(self)

    def refresh_theme(self) -> None:
        self.icon.setPixmap(icons.pixmap("download", theme.current().muted, 28))
        self.folder_button.setIcon(icons.icon("folder"))
        self.file_button.setIcon(icons.icon("file"))
