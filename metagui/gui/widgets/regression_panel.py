"""Few-shot regression in the "Try it" pane (sinusoid runs): draw a sine, add support points
by clicking or sampling, and see the model before and after adapting to them."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QSpinBox, QVBoxLayout, QWidget

from metagui.core.chat import RegressionEngine, RegressionFit
from metagui.core.errors import MetaGUIError
from metagui.gui import icons, theme
from metagui.gui.widgets.chat_view import RegressionPlot
from metagui.gui.widgets.common import primary_button


class RegressionPanel(QWidget):
    message = Signal(str, str)  # level, text: for the page's banner

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.engine: RegressionEngine | None = None
        self.last_fit: RegressionFit | None = None
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        self.new_sine_button = primary_button("Draw a new sine", "dice")
        self.new_sine_button.setToolTip("Draw amplitude and phase from the training ranges; the true curve is shown")
        self.sample_button = QPushButton("Sample 5 points")
        self.sample_button.setToolTip("Five support points on the true curve")
        self.clear_points_button = QPushButton("Clear points")
        self.steps = QSpinBox()
        self.steps.setRange(1, 500)
        self.steps.setToolTip("Gradient steps on the support points when adapting")
        row.addWidget(self.new_sine_button)
        row.addWidget(self.sample_button)
        row.addWidget(self.clear_points_button)
        row.addSpacing(12)
        row.addWidget(QLabel("Inner steps"))
        row.addWidget(self.steps)
        row.addStretch(1)
        lay.addLayout(row)
        self.label = QLabel("Click on the plot to add support points.")
        self.label.setObjectName("Muted")
        lay.addWidget(self.label)
        self.plot = RegressionPlot()
        lay.addWidget(self.plot, 1)
        self.new_sine_button.clicked.connect(self.new_sine)
        self.sample_button.clicked.connect(self.sample_points)
        self.clear_points_button.clicked.connect(self.clear_points)
        self.plot.point_clicked.connect(self.add_point)
        self.steps.valueChanged.connect(lambda _: self.refit())

    def bind(self, engine: RegressionEngine | None) -> None:
        """Show ``engine`` (None: none) and start it on a new sine."""
        self.engine = engine
        if engine is None:
            return
        self.steps.blockSignals(True)
        self.steps.setValue(int(engine.learner.hp.get("eval_steps", 10)))
        self.steps.blockSignals(False)
        self.new_sine()

    def apply_theme(self) -> None:
        self.new_sine_button.setIcon(icons.icon("dice", theme.current().accent_text))
        self.plot.refresh_theme()

    def new_sine(self) -> None:
        if self.engine is None:
            return
        self.engine.new_sine(np.random.default_rng())
        self.refit()

    def sample_points(self) -> None:
        if self.engine is None:
            return
        self.engine.sample_points(5, np.random.default_rng())
        self.refit()

    def clear_points(self) -> None:
        if self.engine is not None:
            self.engine.points = []
            self.refit()

    def add_point(self, x: float, y: float) -> None:
        if self.engine is not None:
            self.engine.add_point(x, y)
            self.refit()

    def refit(self) -> RegressionFit | None:
        eng = self.engine
        if eng is None:
            return None
        eng.steps = self.steps.value()
        try:
            fit = eng.fit()
        except MetaGUIError as exc:
            self.message.emit("error", str(exc))
            return None
        self.plot.show_fit(fit, eng.points)
        self.last_fit = fit
        parts = [f"{len(eng.points)} support points"]
        if fit.after is not None:
            parts.append(f"adapted in {fit.adapt_ms:.0f} ms ({eng.steps} steps)")
        if fit.truth is not None:
            a, ph = eng.truth
            parts.append(f"true function {a:.2f}·sin(x − {ph:.2f})")
            if fit.mse_before is not None:
                parts.append(f"MSE before {fit.mse_before:.3f}")
            if fit.mse_after is not None:
                parts.append(f"after {fit.mse_after:.3f}")
        if not eng.points:
            parts.append("click on the plot to add points")
        self.label.setText(" · ".join(parts))
        return fit
