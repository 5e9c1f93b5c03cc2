"""Showing dataset items: image thumbnails in a grid, texts in a two-column table."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QColor, QIcon, QImage, QPainter, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QListView,
    QListWidget,
    QListWidgetItem,
    QTableWidget,
    QTableWidgetItem,
)

from metagui.gui import theme


def image_pixmap(img, size: int = 64) -> QPixmap:
    """uint8 [C, H, W] (tensor or array) -> a square pixmap of ``size`` pixels."""
    arr = np.asarray(img.cpu().numpy() if hasattr(img, "cpu") else img)
    if arr.ndim == 3 and arr.shape[0] in (1, 3):
        arr = np.transpose(arr, (1, 2, 0))
    arr = np.ascontiguousarray(arr.astype(np.uint8, copy=False))
    h, w = arr.shape[:2]
    if arr.ndim == 2 or arr.shape[2] == 1:
        gray = np.ascontiguousarray(arr.reshape(h, w))
        qimg = QImage(gray.data, w, h, w, QImage.Format.Format_Grayscale8).copy()
    else:
        rgb = np.ascontiguousarray(arr[:, :, :3])
        qimg = QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()
    return QPixmap.fromImage(qimg.scaled(size, size, Qt.AspectRatioMode.KeepAspectRatio,
                                         Qt.TransformationMode.SmoothTransformation))


def framed(pix: QPixmap, color: str | None, width: int = 3) -> QPixmap:
    """The pixmap with a coloured border (class colour in episode previews)."""
    if not color:
        return pix
    out = QPixmap(pix.width() + 2 * width, pix.height() + 2 * width)
    out.fill(QColor(color))
    p = QPainter(out)
    p.drawPixmap(width, width, pix)
    p.end()
    return out


class ThumbnailGrid(QListWidget):
    def __init__(self, thumb: int = 56, parent=None) -> None:
        super().__init__(parent)
        self.thumb = thumb
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setMovement(QListView.Movement.Static)
        self.setIconSize(QSize(thumb + 6, thumb + 6))
        self.setGridSize(QSize(thumb + 34, thumb + 34))
        self.setWordWrap(True)
        self.setUniformItemSizes(True)
        self.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.setTextElideMode(Qt.TextElideMode.ElideMiddle)

    def set_items(self, items: list[tuple[object, str, str, str | None]]) -> None:
        """items: (image, caption, tooltip, frame colour or None)."""
        self.setUpdatesEnabled(False)
        self.clear()
        for img, caption, tip, color in items:
            pix = framed(image_pixmap(img, self.thumb), color)
            it = QListWidgetItem(QIcon(pix), caption)
            it.setToolTip(tip)
            it.setTextAlignment(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop)
            self.addItem(it)
        self.setUpdatesEnabled(True)


class TextItemsTable(QTableWidget):
    def __init__(self, parent=None) -> None:
        super().__init__(0, 2, parent)
        self.setHorizontalHeaderLabels(["Class", "Text"])
        self.verticalHeader().hide()
        self.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        self.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setWordWrap(False)
        self.setAlternatingRowColors(True)

    def set_rows(self, rows: list[tuple[str, str, str | None]]) -> None:
        """rows: (class label, text, class colour or None)."""
        self.setUpdatesEnabled(False)
        self.setRowCount(len(rows))
        for r, (label, text, color) in enumerate(rows):
            a = QTableWidgetItem(label)
            if color:
                a.setForeground(QColor(color))
            b = QTableWidgetItem(text)
            b.setToolTip(text)
            self.setItem(r, 0, a)
            self.setItem(r, 1, b)
        self.setUpdatesEnabled(True)


def class_color(i: int) -> str:
    s = theme.current().series
    return s[i % len(s)]
