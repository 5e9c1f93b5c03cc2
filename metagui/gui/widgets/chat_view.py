"""Views of the "Try it" pane: the conversation, the support set tree and the regression plot.

They only draw what the page hands them (plain dicts from ``ChatEngine.transcript``, a
``SupportSet``, a ``RegressionFit``) and report clicks, drops and links as signals.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QByteArray, QSize, Qt, QUrl, Signal
from PySide6.QtGui import QImage, QPixmap, QTextDocument
from PySide6.QtWidgets import QAbstractItemView, QTextBrowser, QTreeWidget, QTreeWidgetItem

from metagui.core.chat import DATA_URI, SupportSet, humanise
from metagui.gui import theme

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def local_paths(mime) -> list[str]:
    return [u.toLocalFile() for u in mime.urls() if u.isLocalFile()] if mime.hasUrls() else []


def image_paths(paths: list[str]) -> list[str]:
    """Image files among ``paths``; folders are searched one level down."""
    out: list[str] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(str(c) for c in p.iterdir() if c.suffix.lower() in IMAGE_SUFFIXES)
        elif p.suffix.lower() in IMAGE_SUFFIXES:
            out.append(str(p))
    return out


def item_image(item: str) -> QImage:
    """An image example (file path or PNG data URI) as a QImage (null if unreadable)."""
    img = QImage()
    if item.startswith(DATA_URI):
        img.loadFromData(QByteArray(base64.b64decode(item[len(DATA_URI) :])))
    else:
        img.load(item)
    return img


def thumbnail(item: str, size: int = 40) -> QPixmap:
    img = item_image(item)
    if img.isNull():
        return QPixmap()
    return QPixmap.fromImage(img.scaled(size, size, Qt.AspectRatioMode.KeepAspectRatio,
                                        Qt.TransformationMode.SmoothTransformation))


# --- the conversation ----------------------------------------------------------------------------
class AcceptsImageDrops:
    """Mixin: accept a drag only while it carries image files (the drop handler decides
    what they become)."""

    def dragEnterEvent(self, event) -> None:  # noqa: N802
        if image_paths(local_paths(event.mimeData())):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:  # noqa: N802
        self.dragEnterEvent(event)


class TranscriptView(AcceptsImageDrops, QTextBrowser):
    """The chat as rich text: user bubbles on the right, the assistant's answers on the left
    with intent, confidence, alternatives and feedback links; before / after side by side."""

    feedback_clicked = Signal(int, str)  # turn, "right" | "wrong"
    files_dropped = Signal(list)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setOpenLinks(False)
        self.setOpenExternalLinks(False)
        self.anchorClicked.connect(self._on_anchor)
        self.setAcceptDrops(True)
        self.viewport().setAcceptDrops(True)
        self.scale = 1.0
        self.modality = "text"
        self.placeholder = ""
        self.html_text = ""

    def _on_anchor(self, url: QUrl) -> None:
        parts = url.toString().split(":")
        if len(parts) == 3 and parts[0] == "fb" and parts[1].isdigit():
            self.feedback_clicked.emit(int(parts[1]), parts[2])

    def dropEvent(self, event) -> None:  # noqa: N802
        paths = image_paths(local_paths(event.mimeData()))
        if paths:
            event.acceptProposedAction()
            self.files_dropped.emit(paths)

    def show_transcript(self, entries: list[dict], baseline_label: str = "", intents: int = 0) -> None:
        t = theme.current()
        doc = self.document()
        base_pt = 10.5 * self.scale
        small_pt = 9.0 * (1 + (self.scale - 1) * 0.5)  # details grow less than the replies in demo mode
        parts = [f"<div style='font-size:{base_pt:.1f}pt'>"]
        if not entries:
            parts.append(f"<p style='color:{t.muted}; font-size:{base_pt:.1f}pt' align='center'><br>{html.escape(self.placeholder)}</p>")
        for i, e in enumerate(entries):
            parts.append(self._user_html(i, e, t, base_pt, doc))
            a, before = e["answer"], e.get("before")
            if before:
                parts.append(
                    f"<table width='100%' cellspacing='6' cellpadding='10'><tr>"
                    f"<td width='50%' bgcolor='{t.alt_base}' style='border:1px solid {t.border}'>"
                    f"<span style='color:{t.muted}; font-size:{small_pt:.1f}pt'>BEFORE · {html.escape(baseline_label)}</span><br>"
                    f"{self._answer_html(before, t, base_pt, small_pt)}</td>"
                    f"<td width='50%' bgcolor='{t.base}' style='border:1px solid {t.accent}'>"
                    f"<span style='color:{t.accent}; font-size:{small_pt:.1f}pt'>AFTER · adapted to {e.get('intents', intents)} intents</span><br>"
                    f"{self._answer_html(a, t, base_pt, small_pt)}{self._feedback_html(i, e, t, small_pt)}</td>"
                    f"</tr></table>")
            else:
                parts.append(
                    f"<table width='100%' cellspacing='6' cellpadding='10'><tr>"
                    f"<td bgcolor='{t.alt_base}' style='border:1px solid {t.border}'>"
                    f"{self._answer_html(a, t, base_pt, small_pt)}{self._feedback_html(i, e, t, small_pt)}</td>"
                    f"<td width='22%'></td></tr></table>")
        parts.append("</div>")
        self.html_text = "".join(parts)
        self.setHtml(self.html_text)
        bar = self.verticalScrollBar()
        bar.setValue(bar.maximum())

    def _user_html(self, i: int, e: dict, t, base_pt: float, doc: QTextDocument) -> str:
        msg = e["message"]
        if self.modality == "image":
            url = QUrl(f"thumb:{i}")
            img = item_image(msg)
            if not img.isNull():
                side = int(72 * self.scale)
                doc.addResource(QTextDocument.ResourceType.ImageResource, url,
                                img.scaled(side, side, Qt.AspectRatioMode.KeepAspectRatio,
                                           Qt.TransformationMode.SmoothTransformation))
            name = "image" if msg.startswith("data:") else Path(msg).name
            body = f"<img src='thumb:{i}'><br><span style='font-size:{base_pt * 0.85:.1f}pt'>{html.escape(name)}</span>"
        else:
            body = html.escape(msg)
        return (f"<table width='100%' cellspacing='6' cellpadding='10'><tr><td width='22%'></td>"
                f"<td bgcolor='{t.accent}' style='color:{t.accent_text}' align='right'>{body}</td></tr></table>")

    def _answer_html(self, a: dict, t, base_pt: float, small_pt: float) -> str:
        alts = ", ".join(f"{html.escape(humanise(n))} {p:.0%}" for n, p in a["alternatives"])
        conf_color = t.warn if a["fallback"] else t.good
        if self.modality == "image":
            reply = f"<b>{html.escape(humanise(a['intent']))}</b>" if not a["fallback"] else html.escape(a["reply"])
        else:
            reply = html.escape(a["reply"])
        if a["fallback"]:
            reply = f"<i>{reply}</i>"
        meta = (f"<span style='color:{t.muted}; font-size:{small_pt:.1f}pt'>"
                f"{'intent' if self.modality == 'text' else 'class'} <b style='color:{t.text}'>{html.escape(a['intent'])}</b> · "
                f"<b style='color:{conf_color}'>{a['confidence']:.0%}</b>"
                + (" (below threshold)" if a["fallback"] else "")
                + (f" · also {alts}" if alts else "")
                + f" · {_ms(a['latency_ms'])}</span>")
        return f"<span style='font-size:{base_pt:.1f}pt'>{reply}</span><br>{meta}"

    def _feedback_html(self, i: int, e: dict, t, small_pt: float) -> str:
        fb = e.get("feedback")
        style = f"font-size:{small_pt:.1f}pt"
        if not fb:
            return (f"<br><span style='{style}'><a href='fb:{i}:right' style='color:{t.good}'>✓ Right</a>"
                    f" &nbsp; <a href='fb:{i}:wrong' style='color:{t.bad}'>✗ Wrong…</a></span>")
        what = "added as an example" if fb.get("added") else "already an example"
        if fb.get("correct"):
            text = f"✓ Marked right: {what} of “{html.escape(fb['intent'])}”"
            color = t.good
        else:
            text = f"✗ Corrected to “{html.escape(fb['intent'])}”: {what}"
            color = t.bad
        return f"<br><span style='{style}; color:{color}'>{text}</span>"


def _ms(ms: float) -> str:
    return f"{ms:.1f} ms" if ms < 10 else f"{ms:.0f} ms"


# --- the support set ----------------------------------------------------------------------------
class SupportTree(AcceptsImageDrops, QTreeWidget):
    """Intents with their example counts; examples as children (thumbnails for images).
    Image files dropped on an intent become its examples; dropped elsewhere, a new class."""

    files_dropped = Signal(str, list)  # intent ("" = none under the cursor), image paths

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setColumnCount(2)
        self.setHeaderLabels(["Intent", "Examples"])
        self.setRootIsDecorated(True)
        self.setUniformRowHeights(False)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setAcceptDrops(True)
        self.viewport().setAcceptDrops(True)
        self.setDragDropMode(QAbstractItemView.DragDropMode.DropOnly)
        self.setIconSize(QSize(36, 36))
        header = self.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(0, header.ResizeMode.Stretch)
        header.setSectionResizeMode(1, header.ResizeMode.ResizeToContents)

    def show_support(self, support: SupportSet, keep_expanded: bool = True) -> None:
        expanded = {self.topLevelItem(i).data(0, Qt.ItemDataRole.UserRole)
                    for i in range(self.topLevelItemCount()) if self.topLevelItem(i).isExpanded()}
        selected = self.selected_intent()
        self.clear()
        for name, intent in support.intents.items():
            top = QTreeWidgetItem([name, str(len(intent.examples))])
            top.setData(0, Qt.ItemDataRole.UserRole, name)
            top.setTextAlignment(1, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            top.setToolTip(0, f"Reply: {intent.reply}" if intent.reply else "No reply text yet")
            if not intent.examples:
                top.setForeground(1, theme.current().color("bad"))
            for j, ex in enumerate(intent.examples):
                if support.modality == "image":
                    child = QTreeWidgetItem([f"example {j + 1}" if ex.startswith("data:") else Path(ex).name])
                    child.setIcon(0, thumbnail(ex, 36))
                else:
                    child = QTreeWidgetItem([ex])
                    child.setToolTip(0, ex)
                child.setData(0, Qt.ItemDataRole.UserRole, name)
                child.setData(1, Qt.ItemDataRole.UserRole, j)
                top.addChild(child)
            self.addTopLevelItem(top)
            top.setExpanded(keep_expanded and name in expanded)
            if name == selected:
                top.setSelected(True)
                self.setCurrentItem(top)

    def intent_item(self, name: str) -> QTreeWidgetItem | None:
        for i in range(self.topLevelItemCount()):
            it = self.topLevelItem(i)
            if it.data(0, Qt.ItemDataRole.UserRole) == name:
                return it
        return None

    def selected_intent(self) -> str:
        it = self.currentItem()
        return str(it.data(0, Qt.ItemDataRole.UserRole)) if it is not None else ""

    def selected_examples(self) -> list[tuple[str, int]]:
        return [(str(it.data(0, Qt.ItemDataRole.UserRole)), int(it.data(1, Qt.ItemDataRole.UserRole)))
                for it in self.selectedItems() if it.parent() is not None]

    def selected_intents(self) -> list[str]:
        return [str(it.data(0, Qt.ItemDataRole.UserRole)) for it in self.selectedItems() if it.parent() is None]

    def dropEvent(self, event) -> None:  # noqa: N802
        paths = image_paths(local_paths(event.mimeData()))
        if not paths:
            event.ignore()
            return
        event.acceptProposedAction()
        it = self.itemAt(event.position().toPoint())
        name = str(it.data(0, Qt.ItemDataRole.UserRole)) if it is not None else ""
        self.files_dropped.emit(name, paths)


# --- regression -----------------------------------------------------------------------------------
class RegressionPlot(pg.PlotWidget):
    """Click to add a support point; shows the model before and after adapting to the points
    and the true function when it is known."""

    point_clicked = Signal(float, float)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setMenuEnabled(False)
        self.showGrid(x=True, y=True, alpha=theme.current().grid_alpha)
        self.setLabel("bottom", "x")
        self.setLabel("left", "y")
        self.setXRange(-5, 5, padding=0.02)
        self.setYRange(-5.5, 5.5, padding=0.02)
        self.getViewBox().setMouseEnabled(x=False, y=False)
        self.legend = self.addLegend(offset=(10, 10))
        t = theme.current()
        self.truth = self.plot([], [], name="true function", pen=pg.mkPen(t.good, width=2, style=Qt.PenStyle.DashLine))
        self.before = self.plot([], [], name="before adaptation", pen=pg.mkPen(t.muted, width=2, style=Qt.PenStyle.DotLine))
        self.after = self.plot([], [], name="after adaptation", pen=pg.mkPen(t.accent, width=3))
        self.points = pg.ScatterPlotItem(size=11, brush=pg.mkBrush(t.series[1]), pen=pg.mkPen(t.text, width=1),
                                         name="support points")
        self.addItem(self.points)
        self.scene().sigMouseClicked.connect(self._on_click)

    def _on_click(self, ev) -> None:
        if ev.button() != Qt.MouseButton.LeftButton:
            return
        vb = self.getViewBox()
        if not vb.sceneBoundingRect().contains(ev.scenePos()):
            return
        p = vb.mapSceneToView(ev.scenePos())
        self.point_clicked.emit(float(p.x()), float(p.y()))

    def show_fit(self, fit, points: list[tuple[float, float]]) -> None:
        def put(curve, y):
            curve.setData(fit.x, y) if y is not None else curve.setData([], [])

        put(self.truth, fit.truth)
        put(self.before, fit.before)
        put(self.after, fit.after)
        xs = np.array([p[0] for p in points], dtype=float)
        ys = np.array([p[1] for p in points], dtype=float)
        self.points.setData(xs, ys)

    def refresh_theme(self) -> None:
        t = theme.current()
        self.setBackground(t.plot_bg)
        self.truth.setPen(pg.mkPen(t.good, width=2, style=Qt.PenStyle.DashLine))
        self.before.setPen(pg.mkPen(t.muted, width=2, style=Qt.PenStyle.DotLine))
        self.after.setPen(pg.mkPen(t.accent, width=3))
        self.points.setBrush(pg.mkBrush(t.series[1]))
        for axis in ("left", "bottom"):
            ax = self.getAxis(axis)
            ax.setPen(pg.mkPen(t.plot_fg))
            ax.setTextPen(pg.mkPen(t.plot_fg))
