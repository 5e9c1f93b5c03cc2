"""The left sidebar: the flow's steps with icons, marking the ones that are done."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QPainter
from PySide6.QtWidgets import (
    QLabel,
    QListWidget,
    QListWidgetItem,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QVBoxLayout,
    QWidget,
)

from metagui.gui import icons, theme

DONE_ROLE = Qt.ItemDataRole.UserRole + 1
KEY_ROLE = Qt.ItemDataRole.UserRole + 2


class _StepDelegate(QStyledItemDelegate):
    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index) -> None:
        super().paint(painter, option, index)
        t = theme.current()
        r = option.rect
        if index.data(DONE_ROLE):
            pix = icons.pixmap("check", t.good if not option.state & option.state.State_Selected else t.accent_text, 16)
            painter.drawPixmap(r.right() - 28, r.center().y() - 8, pix)

    def sizeHint(self, option, index) -> QSize:  # noqa: N802
        s = super().sizeHint(option, index)
        return QSize(s.width(), max(s.height(), 40))


class Sidebar(QWidget):
    step_selected = Signal(str)

    def __init__(self, steps: list[tuple[str, str, str, str]], parent: QWidget | None = None) -> None:
        """steps: (key, name, icon, tooltip)."""
        super().__init__(parent)
        self.setObjectName("Sidebar")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        self.setFixedWidth(210)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 14, 0, 10)
        lay.setSpacing(4)
        head = QWidget()
        hl = QVBoxLayout(head)
        hl.setContentsMargins(16, 0, 12, 8)
        hl.setSpacing(0)
        self.logo = QLabel()
        self.logo.setPixmap(icons.app_icon().pixmap(36, 36))
        self.title = QLabel("MetaGUI")
        self.title.setObjectName("AppTitle")
        self.subtitle = QLabel("learning to learn")
        self.subtitle.setObjectName("AppSubtitle")
        row = QWidget()
        from PySide6.QtWidgets import QHBoxLayout

        rl = QHBoxLayout(row)
        rl.setContentsMargins(0, 0, 0, 0)
        rl.setSpacing(10)
        rl.addWidget(self.logo)
        col = QVBoxLayout()
        col.setSpacing(0)
        col.addWidget(self.title)
        col.addWidget(self.subtitle)
        rl.addLayout(col, 1)
        hl.addWidget(row)
        lay.addWidget(head)
        self.list = QListWidget()
        self.list.setObjectName("SidebarList")
        self.list.setIconSize(QSize(20, 20))
        self.list.setItemDelegate(_StepDelegate(self.list))
        self.list.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.steps = steps
        for key, name, _icon, tip in steps:
            it = QListWidgetItem(name)
            it.setData(KEY_ROLE, key)
            it.setToolTip(tip)
            self.list.addItem(it)
        self.list.currentRowChanged.connect(self._on_row)
        lay.addWidget(self.list, 1)
        self.project = QLabel()
        self.project.setObjectName("Muted")
        self.project.setWordWrap(True)
        self.project.setContentsMargins(16, 0, 12, 0)
        lay.addWidget(self.project)
        self.refresh_theme()

    def refresh_theme(self) -> None:
        for i, (_, _, icon_name, _) in enumerate(self.steps):
            self.list.item(i).setIcon(icons.icon(icon_name))
        self.list.viewport().update()

    def _on_row(self, row: int) -> None:
        if row >= 0:
            self.step_selected.emit(self.steps[row][0])

    def select(self, key: str) -> None:
        for i, s in enumerate(self.steps):
            if s[0] == key:
                self.list.setCurrentRow(i)
                return

    def item(self, key: str) -> QListWidgetItem:
        for i, s in enumerate(self.steps):
            if s[0] == key:
                return self.list.item(i)
        raise KeyError(key)

    def set_done(self, key: str, done: bool) -> None:
        self.item(key).setData(DONE_ROLE, done)

    def is_done(self, key: str) -> bool:
        return bool(self.item(key).data(DONE_ROLE))
