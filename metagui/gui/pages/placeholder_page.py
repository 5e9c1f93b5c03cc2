"""Pages whose features arrive in later versions: they say what will be there."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from metagui.gui import icons, theme
from metagui.gui.widgets.common import Card, PageHeader, page_layout


class PlaceholderPage(QWidget):
    def __init__(self, icon_name: str, title: str, subtitle: str, body: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        outer = page_layout(self)
        self.header = PageHeader(icon_name, title, subtitle)
        outer.addWidget(self.header)
        outer.addStretch(1)
        card = Card()
        card.setMaximumWidth(560)
        self.icon = QLabel()
        self.icon.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._icon_name = icon_name
        coming = QLabel("Coming soon")
        coming.setObjectName("Big")
        coming.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.body = QLabel(body)
        self.body.setWordWrap(True)
        self.body.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.body.setObjectName("Muted")
        card.lay.addWidget(self.icon)
        card.lay.addWidget(coming)
        card.lay.addWidget(self.body)
        row = QVBoxLayout()
        row.addWidget(card, 0, Qt.AlignmentFlag.AlignHCenter)
        outer.addLayout(row)
        outer.addStretch(2)
        self.apply_theme()

    def apply_theme(self) -> None:
        self.header.refresh_theme()
        self.icon.setPixmap(icons.pixmap(self._icon_name, theme.current().muted, 64))
