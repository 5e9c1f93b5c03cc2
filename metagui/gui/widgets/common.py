"""Page furniture shared by every step: headers, banners, stat tiles, a progress row."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from metagui.gui import icons, theme

MARGIN = 18
SPACING = 10


class PageHeader(QWidget):
    """Title, one sentence saying what the page is for, and room for actions on the right."""

    def __init__(self, icon_name: str, title: str, subtitle: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._icon_name = icon_name
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 4)
        lay.setSpacing(12)
        self.icon = QLabel()
        self.icon.setFixedSize(34, 34)
        lay.addWidget(self.icon, 0, Qt.AlignmentFlag.AlignTop)
        text = QVBoxLayout()
        text.setSpacing(2)
        self.title = QLabel(title)
        self.title.setObjectName("PageTitle")
        self.subtitle = QLabel(subtitle)
        self.subtitle.setObjectName("PageSubtitle")
        self.subtitle.setWordWrap(True)
        text.addWidget(self.title)
        text.addWidget(self.subtitle)
        lay.addLayout(text, 1)
        self.actions = QHBoxLayout()
        self.actions.setSpacing(8)
        lay.addLayout(self.actions)
        self.refresh_theme()

    def refresh_theme(self) -> None:
        self.icon.setPixmap(icons.pixmap(self._icon_name, theme.current().accent, 34))


class Banner(QFrame):
    """A coloured message line: error, warning, ok or info. Hidden when empty."""

    closed = Signal()
    ICONS = {"error": ("error", "bad"), "warning": ("warning", "warn"), "ok": ("check", "good"), "info": ("info", "accent")}

    def __init__(self, parent: QWidget | None = None, closable: bool = False) -> None:
        super().__init__(parent)
        self.setObjectName("Banner")
        lay = QHBoxLayout(self)
        lay.setContentsMargins(10, 6, 10, 6)
        lay.setSpacing(8)
        self.icon = QLabel()
        self.icon.setFixedSize(18, 18)
        self.text = QLabel()
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(self.icon, 0, Qt.AlignmentFlag.AlignTop)
        lay.addWidget(self.text, 1)
        if closable:
            btn = QPushButton("Dismiss")
            btn.setFlat(True)
            btn.clicked.connect(self.clear)
            lay.addWidget(btn, 0, Qt.AlignmentFlag.AlignTop)
        self.level = ""
        self.hide()

    def show_message(self, level: str, message: str) -> None:
        self.level = level
        self.setProperty("level", level)
        name, color = self.ICONS.get(level, self.ICONS["info"])
        self.icon.setPixmap(icons.pixmap(name, getattr(theme.current(), color), 18))
        self.text.setText(message)
        self.style().unpolish(self)
        self.style().polish(self)
        self.show()

    def clear(self) -> None:
        self.level = ""
        self.text.setText("")
        self.hide()
        self.closed.emit()

    def message(self) -> str:
        return self.text.text() if self.isVisible() or self.level else ""


class Card(QFrame):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("Card")
        self.lay = QVBoxLayout(self)
        self.lay.setContentsMargins(12, 10, 12, 10)
        self.lay.setSpacing(6)


class StatTile(QWidget):
    def __init__(self, name: str, value: str = "–", tooltip: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 2, 6, 2)
        lay.setSpacing(0)
        self.value = QLabel(value)
        self.value.setObjectName("StatValue")
        self.name = QLabel(name)
        self.name.setObjectName("StatName")
        lay.addWidget(self.value)
        lay.addWidget(self.name)
        if tooltip:
            self.setToolTip(tooltip)

    def set(self, value: str) -> None:
        self.value.setText(value)


class ProgressRow(QWidget):
    """A label, a progress bar and a Cancel button, shown while background work runs."""

    cancel_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.label = QLabel()
        self.bar = QProgressBar()
        self.bar.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel_requested)
        lay.addWidget(self.label)
        lay.addWidget(self.bar, 1)
        lay.addWidget(self.cancel_button)
        self.hide()

    def begin(self, text: str) -> None:
        self.label.setText(text)
        self.bar.setRange(0, 0)  # busy until the first report
        self.cancel_button.setEnabled(True)
        self.show()

    def report(self, done: int, total: int, text: str | None = None) -> None:
        if total and total > 0:
            scale = 1000 if total > 2**30 else 1
            self.bar.setRange(0, int(total // scale))
            self.bar.setValue(int(min(done, total) // scale))
        else:
            self.bar.setRange(0, 0)
        if text is not None:
            self.label.setText(text)

    def end(self) -> None:
        self.hide()


def hline() -> QFrame:
    line = QFrame()
    line.setFrameShape(QFrame.Shape.HLine)
    line.setFrameShadow(QFrame.Shadow.Plain)
    line.setStyleSheet(f"color: {theme.current().border};")
    return line


def page_layout(widget: QWidget) -> QVBoxLayout:
    lay = QVBoxLayout(widget)
    lay.setContentsMargins(MARGIN, MARGIN - 4, MARGIN, MARGIN - 6)
    lay.setSpacing(SPACING)
    return lay


def muted_label(text: str = "", wrap: bool = False) -> QLabel:
    """A secondary line of text (help, a summary) in the theme's muted colour."""
    label = QLabel(text)
    label.setObjectName("Muted")
    label.setWordWrap(wrap)
    return label


def splitter(orientation: Qt.Orientation = Qt.Orientation.Horizontal) -> QSplitter:
    """A splitter whose panes cannot be collapsed away by dragging."""
    split = QSplitter(orientation)
    split.setChildrenCollapsible(False)
    return split


def scroll_area(widget: QWidget, min_width: int = 0, max_width: int = 0, horizontal: bool = True) -> QScrollArea:
    """``widget`` in a frameless scroll area that resizes it (``horizontal``: may scroll sideways)."""
    scroll = QScrollArea()
    scroll.setWidget(widget)
    scroll.setWidgetResizable(True)
    scroll.setFrameShape(QScrollArea.Shape.NoFrame)
    if not horizontal:
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    if min_width:
        scroll.setMinimumWidth(min_width)
    if max_width:
        scroll.setMaximumWidth(max_width)
    return scroll


def primary_button(text: str, icon_name: str | None = None) -> QPushButton:
    btn = QPushButton(text)
    btn.setObjectName("Primary")
    if icon_name:
        btn.setIcon(icons.icon(icon_name, theme.current().accent_text))
    return btn


def next_footer(text: str, on_click, lead: QWidget | None = None) -> tuple[QHBoxLayout, QPushButton]:
    """The row under a flow page: an optional stretching ``lead`` widget (or a stretch) and
    the "Next: ..." button that moves on to the following step."""
    row = QHBoxLayout()
    if lead is not None:
        row.addWidget(lead, 1)
    else:
        row.addStretch(1)
    button = QPushButton(f"Next: {text}  →")
    button.clicked.connect(on_click)
    row.addWidget(button)
    return row, button


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def human_seconds(s: float | None) -> str:
    if s is None or s != s or s < 0:
        return "–"
    s = int(round(s))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"
