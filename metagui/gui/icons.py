"""Icons drawn from the small SVG files in ``metagui/resources``, tinted to the theme.

The SVGs stroke with ``currentColor``; we substitute a concrete colour before rendering, so
one file serves both themes and every state (muted, accent, good, bad).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from PySide6.QtCore import QByteArray, QRectF, QSize, Qt
from PySide6.QtGui import QIcon, QImage, QPainter, QPixmap
from PySide6.QtSvg import QSvgRenderer

from metagui.gui import theme

RESOURCES = Path(__file__).resolve().parent.parent / "resources"


@cache
def _svg(name: str) -> str:
    path = RESOURCES / f"{name}.svg"
    return path.read_text(encoding="utf-8") if path.is_file() else ""


def pixmap(name: str, color: str | None = None, size: int = 24) -> QPixmap:
    """The icon ``name`` rendered at ``size`` pixels in ``color`` (default: theme text)."""
    return _pixmap(name, color or theme.current().text, size)


@cache
def _pixmap(name: str, color: str, size: int) -> QPixmap:
    text = _svg(name).replace("currentColor", color)
    img = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    img.fill(Qt.GlobalColor.transparent)
    if text:
        renderer = QSvgRenderer(QByteArray(text.encode("utf-8")))
        painter = QPainter(img)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        renderer.render(painter, QRectF(0, 0, size, size))
        painter.end()
    return QPixmap.fromImage(img)


def icon(name: str, color: str | None = None) -> QIcon:
    """A QIcon with normal and disabled variants, sharp at 16-48 px."""
    t = theme.current()
    ic = QIcon()
    for size in (16, 20, 24, 32, 48):
        ic.addPixmap(pixmap(name, color or t.text, size), QIcon.Mode.Normal)
        ic.addPixmap(pixmap(name, t.muted, size), QIcon.Mode.Disabled)
        ic.addPixmap(pixmap(name, t.accent_text, size), QIcon.Mode.Selected)
    return ic


def app_icon() -> QIcon:
    ic = QIcon()
    for size in (16, 24, 32, 48, 64, 128, 256):
        ic.addPixmap(_pixmap("app", "#000000", size))
    return ic


def icon_size(n: int = 18) -> QSize:
    return QSize(n, n)
