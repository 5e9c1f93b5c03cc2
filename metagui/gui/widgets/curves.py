"""Live training curves that stay smooth with 100k points.

Points go into preallocated numpy buffers that grow by doubling; nothing is drawn when
they arrive. The owner calls ``redraw`` from a timer (~15 Hz), which gives every changed
curve exactly one ``setData``. Plots clip to the view and downsample (peak mode) to the
pixel width, so drawing cost does not grow with the number of steps.
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QGraphicsItem

from metagui.gui import theme


class SeriesBuffer:
    """Growable (x, y) float64 arrays; ``x``/``y`` are views of the filled part."""

    __slots__ = ("_x", "_y", "n")

    def __init__(self, capacity: int = 1024) -> None:
        self._x = np.empty(capacity, dtype=np.float64)
        self._y = np.empty(capacity, dtype=np.float64)
        self.n = 0

    def __len__(self) -> int:
        return self.n

    @property
    def capacity(self) -> int:
        return int(self._x.shape[0])

    def _reserve(self, need: int) -> None:
        cap = self.capacity
        if need <= cap:
            return
        while cap < need:
            cap *= 2
        for name in ("_x", "_y"):
            old = getattr(self, name)
            new = np.empty(cap, dtype=np.float64)
            new[: self.n] = old[: self.n]
            setattr(self, name, new)

    def extend(self, xs, ys) -> None:
        xs = np.asarray(xs, dtype=np.float64).ravel()
        ys = np.asarray(ys, dtype=np.float64).ravel()
        k = xs.shape[0]
        self._reserve(self.n + k)
        self._x[self.n : self.n + k] = xs
        self._y[self.n : self.n + k] = ys
        self.n += k

    def clear(self) -> None:
        self.n = 0

    @property
    def x(self) -> np.ndarray:
        return self._x[: self.n]

    @property
    def y(self) -> np.ndarray:
        return self._y[: self.n]

    @property
    def last(self) -> float | None:
        return float(self._y[self.n - 1]) if self.n else None


def ema(values: np.ndarray, alpha: float, state: tuple[float, int] = (0.0, 0)) -> tuple[np.ndarray, tuple[float, int]]:
    """Debiased exponential moving average (weight ``alpha`` on the past), vectorised in
    blocks; ``state`` (biased last value, count) continues a previous call."""
    x = np.asarray(values, dtype=np.float64)
    out = np.empty_like(x)
    prev, count = state
    if alpha <= 0.0 or x.size == 0:
        out[:] = x
        return out, ((float(x[-1]), count + x.size) if x.size else state)
    a = min(alpha, 0.9999)
    block = max(1, min(128, int(200 * math.log(10) / -math.log(a))))
    for start in range(0, x.size, block):
        xb = x[start : start + block]
        j = np.arange(xb.size, dtype=np.float64)
        inv = a ** (-j)
        biased = a ** (j + 1) * prev + (1 - a) * (a**j) * np.cumsum(xb * inv)
        out[start : start + xb.size] = biased / (1 - a ** (count + j + 1))
        prev = float(biased[-1])
        count += xb.size
    return out, (prev, count)


class LiveSeries:
    """One curve: raw points, an optional EMA-smoothed copy and an optional CI band."""

    def __init__(self, plot: pg.PlotItem, name: str, color: str, smooth: bool = False,
                 band: bool = False, symbol: str | None = None, width: float = 2.0) -> None:
        self.plot = plot
        self.name = name
        self.color = color
        self.smoothable = smooth
        self.smoothing = smooth
        self.alpha = 0.9
        self.buf = SeriesBuffer()
        self._smooth = SeriesBuffer() if smooth else None
        self._ema_state = (0.0, 0)
        self._lo = SeriesBuffer() if band else None
        self._hi = SeriesBuffer() if band else None
        self.dirty = False
        self.fixed_color: str | None = None
        self.lo = math.inf  # value range of everything drawn, for the plot's y range
        self.hi = -math.inf
        self.width = width
        pen = pg.mkPen(color, width=width)
        kw = {}
        if symbol:
            kw = dict(symbol=symbol, symbolSize=7, symbolBrush=color, symbolPen=pg.mkPen(color))
        self.item = plot.plot([], [], pen=pen, name=name, **kw)
        self.smooth_item = None
        if smooth:
            strong = QColor(color)
            strong = strong.darker(125) if theme.current().name == "light" else strong.lighter(115)
            self.smooth_item = plot.plot([], [], pen=pg.mkPen(strong, width=width))
            self.smooth_item.setZValue(2)
            legend = plot.legend
            if legend is not None:  # one legend entry per series: the smoothed line's
                legend.removeItem(self.item)
                legend.addItem(self.smooth_item, name)
        self.band_items = None
        if band:
            fill = QColor(color)
            fill.setAlpha(50)
            lo = pg.PlotDataItem([], [], pen=pg.mkPen(None))
            hi = pg.PlotDataItem([], [], pen=pg.mkPen(None))
            fb = pg.FillBetweenItem(lo, hi, brush=pg.mkBrush(fill))
            plot.addItem(fb)
            self.band_items = (lo, hi, fb)
        self._style()

    def recolor(self, color: str) -> None:
        """Draw with ``color`` from now on (theme change)."""
        self.color = color
        if self.smooth_item is None:
            kw = {"pen": pg.mkPen(color, width=self.width)}
            if self.item.opts.get("symbol"):
                kw.update(symbolBrush=color, symbolPen=pg.mkPen(color))
            self.item.setPen(kw.pop("pen"))
            if kw:
                self.item.setSymbolBrush(kw["symbolBrush"])
                self.item.setSymbolPen(kw["symbolPen"])
        else:
            strong = QColor(color)
            strong = strong.darker(125) if theme.current().name == "light" else strong.lighter(115)
            self.smooth_item.setPen(pg.mkPen(strong, width=self.width))
        if self.band_items is not None:
            fill = QColor(color)
            fill.setAlpha(50)
            self.band_items[2].setBrush(pg.mkBrush(fill))
        self._style()

    def _style(self) -> None:
        if self.smooth_item is None:
            return
        if self.smoothing:
            faint = QColor(self.color)
            faint.setAlpha(55)
            self.item.setPen(pg.mkPen(faint, width=1))
            self.smooth_item.show()
        else:
            self.item.setPen(pg.mkPen(self.color, width=self.width))
            self.smooth_item.hide()

    def add(self, xs, ys, lo=None, hi=None) -> None:
        self.buf.extend(xs, ys)
        for values in (ys, lo, hi):
            if values is not None:
                v = np.asarray(values, dtype=np.float64)
                v = v[np.isfinite(v)]
                if v.size:
                    self.lo = min(self.lo, float(v.min()))
                    self.hi = max(self.hi, float(v.max()))
        if self._smooth is not None:
            sm, self._ema_state = ema(np.asarray(ys, dtype=np.float64).ravel(), self.alpha, self._ema_state)
            self._smooth.extend(xs, sm)
        if self._lo is not None and lo is not None:
            self._lo.extend(xs, lo)
            self._hi.extend(xs, hi)
        self.dirty = True

    def set_smoothing(self, enabled: bool, alpha: float | None = None) -> None:
        if not self.smoothable:
            return
        self.smoothing = enabled
        if alpha is not None and alpha != self.alpha:
            self.alpha = alpha
            sm, self._ema_state = ema(self.buf.y, alpha)
            self._smooth.clear()
            self._smooth.extend(self.buf.x, sm)
        self._style()
        self.dirty = True

    def clear(self) -> None:
        for b in (self.buf, self._smooth, self._lo, self._hi):
            if b is not None:
                b.clear()
        self._ema_state = (0.0, 0)
        self.lo, self.hi = math.inf, -math.inf
        self.dirty = True

    def redraw(self) -> None:
        if not self.dirty:
            return
        self.dirty = False
        self.item.setData(self.buf.x, self.buf.y)
        if self.smooth_item is not None and self.smoothing:
            self.smooth_item.setData(self._smooth.x, self._smooth.y)
        if self.band_items is not None:
            lo, hi, _ = self.band_items
            lo.setData(self._lo.x, self._lo.y)
            hi.setData(self._hi.x, self._hi.y)

    @property
    def smoothed_last(self) -> float | None:
        if self._smooth is not None and self.smoothing:
            return self._smooth.last
        return self.buf.last


class LivePlot(pg.PlotWidget):
    """A plot of named live series against the meta-step."""

    def __init__(self, title: str, y_label: str, x_label: str = "meta-step", parent=None) -> None:
        super().__init__(parent=parent)
        self._title = title
        pi = self.getPlotItem()
        pi.setClipToView(True)
        pi.setDownsampling(auto=True, mode="peak")
        pi.addLegend(labelTextSize="8pt")
        legend_in_title_row(pi)
        pi.setLabel("bottom", x_label)
        pi.setLabel("left", y_label)
        pi.setMenuEnabled(True)
        self.setMinimumHeight(170)
        self.series: dict[str, LiveSeries] = {}
        # Axes (with their grid lines) and the legend are drawn into cached pixmaps; they
        # are only re-rendered when their range changes, which _fit_y keeps rare.
        # Fixed axis sizes and no SI-prefix relabelling: otherwise a new tick label width
        # resizes the view box and every item re-renders.
        for name in ("left", "bottom"):
            ax = pi.getAxis(name)
            ax.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
            ax.enableAutoSIPrefix(False)
        pi.getAxis("left").setWidth(54)
        pi.legend.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
        self.manage_y = False
        pi.getViewBox().sigRangeChangedManually.connect(self._user_zoomed)
        self.apply_theme()

    def _user_zoomed(self, *_: object) -> None:
        self.manage_y = False  # the user zoomed or panned: leave the view alone

    def add_series(self, key: str, name: str, color: str | None = None, **kw) -> LiveSeries:
        t = theme.current()
        s = LiveSeries(self.getPlotItem(), name, color or t.series[len(self.series) % len(t.series)], **kw)
        s.fixed_color = color
        self.series[key] = s
        style_legend(self.getPlotItem().legend)
        return s

    def redraw(self) -> None:
        changed = False
        for s in self.series.values():
            changed |= s.dirty
            s.redraw()
        if changed and self.manage_y:
            self._fit_y()

    def set_x_extent(self, start: float, end: float) -> None:
        """Fix the x axis to the run's steps and manage the y range with hysteresis.

        Autoranging re-ticks both axes on nearly every new point, which is most of the
        drawing cost; with a fixed x range and a y range that only moves when the data
        leaves it (or fills less than half of it), the cached axes are reused."""
        vb = self.getPlotItem().getViewBox()
        vb.disableAutoRange()
        vb.setXRange(start, max(end, start + 1), padding=0.02)
        self.manage_y = True
        self._fit_y(force=True)

    def _fit_y(self, force: bool = False) -> None:
        lo = min((s.lo for s in self.series.values()), default=math.inf)
        hi = max((s.hi for s in self.series.values()), default=-math.inf)
        if not (math.isfinite(lo) and math.isfinite(hi)):
            return
        vb = self.getPlotItem().getViewBox()
        (y0, y1) = vb.viewRange()[1]
        span = max(hi - lo, abs(hi) * 1e-3, 1e-9)
        inside = y0 <= lo and hi <= y1
        if force or not inside or span < 0.4 * (y1 - y0):
            # leave headroom on the side the data is moving towards, so the range (and the
            # cached axes) stay put for a while
            below = 0.25 * span if (force or lo < y0) else 0.06 * span
            above = 0.25 * span if (force or hi > y1) else 0.06 * span
            vb.setYRange(lo - below, hi + above, padding=0)


    def clear_data(self) -> None:
        for s in self.series.values():
            s.clear()
        self.redraw()

    def point_count(self) -> int:
        return sum(len(s.buf) for s in self.series.values())

    def apply_theme(self) -> None:
        t = theme.current()
        self.setBackground(t.plot_bg)
        pi = self.getPlotItem()
        pi.setTitle(self._title, color=t.plot_fg, size="10pt", justify="left")
        for name in ("left", "bottom"):
            ax = pi.getAxis(name)
            ax.setPen(pg.mkPen(t.plot_fg))
            ax.setTextPen(pg.mkPen(t.plot_fg))
        pi.showGrid(x=True, y=True, alpha=t.grid_alpha)
        style_legend(pi.legend)
        for i, s in enumerate(self.series.values()):
            s.recolor(s.fixed_color or t.series[i % len(t.series)])


def legend_in_title_row(pi: pg.PlotItem) -> None:
    """Title on the left, a one-row legend on the right of the same row: the legend
    then never hides a curve."""
    pi.titleLabel.setAttr("justify", "left")
    legend = pi.legend
    if legend is None:
        return
    legend.setParentItem(pi)
    legend.anchor(itemPos=(1, 0), parentPos=(1, 0), offset=(-6, 0))
    legend.setColumnCount(4)
    legend.layout.setContentsMargins(2, 0, 2, 0)


def style_legend(legend) -> None:
    """Theme colours for a legend: text and a translucent background over the curves."""
    if legend is None:
        return
    t = theme.current()
    legend.setLabelTextColor(t.plot_fg)
    for _, label in legend.items:
        label.setText(label.text, color=t.plot_fg)
    bg = QColor(t.plot_bg)
    bg.setAlpha(225)
    legend.setBrush(pg.mkBrush(bg))
    legend.update()


class AdaptationPlot(pg.PlotWidget):
    """Query loss after each inner-loop step, one line per validation (latest brightest)."""

    KEEP = 6

    def __init__(self, parent=None) -> None:
        super().__init__(parent=parent)
        pi = self.getPlotItem()
        pi.setLabel("bottom", "inner step")
        pi.setLabel("left", "query loss")
        pi.addLegend(labelTextSize="8pt")
        legend_in_title_row(pi)
        self.setMinimumHeight(170)
        self.curves: list[tuple[int, list[float]]] = []
        self._note = pg.TextItem("", anchor=(0.5, 0.5))
        pi.addItem(self._note, ignoreBounds=True)
        self.apply_theme()
        self.set_note("The adaptation curve appears at the first validation of an optimisation-based learner.")

    def set_note(self, text: str) -> None:
        self._note.setText(text)
        self._note.setVisible(bool(text))
        pi = self.getPlotItem()
        for ax in ("left", "bottom"):
            pi.getAxis(ax).setStyle(showValues=not text)
        if text:
            self._note.setPos(0.5, 0.5)
            self.getPlotItem().getViewBox().setRange(xRange=(0, 1), yRange=(0, 1), padding=0)

    def add_curve(self, step: int, values: list[float]) -> None:
        self.curves.append((step, list(values)))
        self.curves = self.curves[-self.KEEP :]
        self.set_note("")
        self._draw()

    def clear_curves(self) -> None:
        self.curves = []
        self.getPlotItem().clear()
        pi = self.getPlotItem()
        pi.addItem(self._note, ignoreBounds=True)

    def _draw(self) -> None:
        t = theme.current()
        pi = self.getPlotItem()
        for item in list(pi.listDataItems()):
            pi.removeItem(item)
        n = len(self.curves)
        for i, (step, values) in enumerate(self.curves):
            color = QColor(t.series[1])
            color.setAlphaF(0.25 + 0.75 * (i + 1) / n)
            latest = i == n - 1
            pi.plot(list(range(len(values))), values, pen=pg.mkPen(color, width=2.5 if latest else 1.2),
                    symbol="o" if latest else None, symbolSize=5, symbolBrush=color, symbolPen=None,
                    name=f"step {step}" if latest or i == 0 else None)
        style_legend(pi.legend)
        pi.enableAutoRange()

    def apply_theme(self) -> None:
        t = theme.current()
        self.setBackground(t.plot_bg)
        pi = self.getPlotItem()
        pi.setTitle("Adaptation: query loss per inner step", color=t.plot_fg, size="10pt", justify="left")
        for name in ("left", "bottom"):
            ax = pi.getAxis(name)
            ax.setPen(pg.mkPen(t.plot_fg))
            ax.setTextPen(pg.mkPen(t.plot_fg))
        pi.showGrid(x=True, y=True, alpha=t.grid_alpha)
        self._note.setColor(t.muted)
        if self.curves:
            self._draw()
