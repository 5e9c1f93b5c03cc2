"""A form generated from an algorithm's hyperparameter schema (``HyperParam`` tuples).

Every field carries its help text, range and default as a tooltip; values are checked with
the schema's own ``validate`` so the GUI and the CLI accept exactly the same configs.
"""

from __future__ import annotations

import math
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtGui import QValidator
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
    QWidget,
)

from metagui.core.errors import ConfigError

INT_MAX = 2**31 - 1


def humanize(name: str) -> str:
    words = name.replace("_", " ").split()
    special = {"lr": "LR", "fce": "FCE", "sgd": "SGD"}
    out = [special.get(w, w) for w in words]
    return (out[0][:1].upper() + out[0][1:] + (" " + " ".join(out[1:]) if len(out) > 1 else "")) if out else name


class SciSpinBox(QDoubleSpinBox):
    """A spin box for values spanning decades (learning rates): shows ``1e-03`` style
    numbers and, for log-scale parameters, steps by doubling or halving."""

    def __init__(self, log: bool = False, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.log = log
        self.setDecimals(12)
        self.setKeyboardTracking(False)
        self.setCorrectionMode(QAbstractSpinBox.CorrectionMode.CorrectToNearestValue)

    def textFromValue(self, value: float) -> str:  # noqa: N802 (Qt override)
        return f"{value:.6g}"

    def valueFromText(self, text: str) -> float:  # noqa: N802
        try:
            return float(text)
        except ValueError:
            return self.value()

    def validate(self, text: str, pos: int):  # noqa: D102
        t = text.strip()
        if not t:
            return (QValidator.State.Intermediate, text, pos)
        try:
            v = float(t)
        except ValueError:
            ok = all(c in "0123456789.eE+-" for c in t)
            return (QValidator.State.Intermediate if ok else QValidator.State.Invalid, text, pos)
        if self.minimum() <= v <= self.maximum():
            return (QValidator.State.Acceptable, text, pos)
        return (QValidator.State.Intermediate, text, pos)

    def stepBy(self, steps: int) -> None:  # noqa: N802
        if self.log and self.value() > 0:
            self.setValue(min(self.maximum(), max(self.minimum(), self.value() * 2.0**steps)))
        else:
            super().stepBy(steps)


class HyperParamForm(QWidget):
    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.form = QFormLayout(self)
        self.form.setContentsMargins(0, 0, 0, 0)
        self.form.setHorizontalSpacing(14)
        self.form.setVerticalSpacing(8)
        self.schema: tuple = ()
        self.editors: dict[str, QWidget] = {}
        self.labels: dict[str, QLabel] = {}
        self.error = QLabel()
        self.error.setObjectName("Muted")
        self.error.setWordWrap(True)
        self._building = False

    def build(self, schema: tuple, values: dict[str, Any] | None = None) -> None:
        self._building = True
        while self.form.rowCount():
            self.form.removeRow(0)
        self.editors.clear()
        self.labels.clear()
        self.error = QLabel()
        self.error.setWordWrap(True)
        self.schema = tuple(schema)
        for hp in self.schema:
            editor = self._editor(hp)
            tip = self._tooltip(hp)
            editor.setToolTip(tip)
            label = QLabel(humanize(hp.name))
            label.setToolTip(tip)
            label.setBuddy(editor)
            self.form.addRow(label, editor)
            self.editors[hp.name] = editor
            self.labels[hp.name] = label
        self.form.addRow(self.error)
        self.error.hide()
        self._building = False
        self.set_values(values or {})

    @staticmethod
    def _tooltip(hp) -> str:
        lines = [f"<b>{hp.name}</b>: {hp.help}"]
        if hp.choices:
            lines.append("Choices: " + ", ".join(hp.choices))
        elif hp.low is not None or hp.high is not None:
            lo = "−∞" if hp.low is None else f"{hp.low:g}"
            hi = "∞" if hp.high is None else f"{hp.high:g}"
            lines.append(f"Range: {lo} to {hi}" + (" (log scale: arrows halve / double)" if hp.log else ""))
        lines.append(f"Default: {hp.default}")
        return "<br>".join(lines)

    def _editor(self, hp) -> QWidget:
        if hp.type is bool:
            w = QCheckBox()
            w.toggled.connect(self._on_change)
            return w
        if hp.type is int:
            w = QSpinBox()
            w.setRange(int(hp.low) if hp.low is not None else -INT_MAX, int(hp.high) if hp.high is not None else INT_MAX)
            w.setKeyboardTracking(False)
            w.valueChanged.connect(self._on_change)
            w.setMinimumWidth(120)
            return w
        if hp.type is float:
            w = SciSpinBox(log=hp.log)
            w.setRange(hp.low if hp.low is not None else -1e12, hp.high if hp.high is not None else 1e12)
            if not hp.log:
                span = (hp.high or 1.0) - (hp.low or 0.0)
                w.setSingleStep(10 ** math.floor(math.log10(max(span, 1e-9))) / 10)
            w.valueChanged.connect(self._on_change)
            w.setMinimumWidth(120)
            return w
        if hp.choices:
            w = QComboBox()
            w.addItems(list(hp.choices))
            w.currentTextChanged.connect(self._on_change)
            return w
        w = QLineEdit()
        w.textChanged.connect(self._on_change)
        return w

    def set_values(self, values: dict[str, Any]) -> None:
        self._building = True
        for hp in self.schema:
            v = values.get(hp.name, hp.default)
            w = self.editors[hp.name]
            if isinstance(w, QCheckBox):
                w.setChecked(bool(v))
            elif isinstance(w, QSpinBox | QDoubleSpinBox):
                w.setValue(v)
            elif isinstance(w, QComboBox):
                w.setCurrentText(str(v))
            elif isinstance(w, QLineEdit):
                w.setText(str(v))
        self._building = False
        self.validate()

    def values(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for hp in self.schema:
            w = self.editors[hp.name]
            if isinstance(w, QCheckBox):
                out[hp.name] = w.isChecked()
            elif isinstance(w, QSpinBox):
                out[hp.name] = int(w.value())
            elif isinstance(w, QDoubleSpinBox):
                out[hp.name] = float(f"{w.value():.10g}")
            elif isinstance(w, QComboBox):
                out[hp.name] = w.currentText()
            elif isinstance(w, QLineEdit):
                out[hp.name] = w.text()
        return out

    def validate(self) -> list[str]:
        """Check every value with the schema; mark bad fields and return the messages."""
        errors = []
        values = self.values()
        for hp in self.schema:
            w = self.editors[hp.name]
            try:
                hp.validate(values[hp.name])
                bad = False
            except ConfigError as exc:
                errors.append(str(exc))
                bad = True
            if w.property("invalid") != bad:
                w.setProperty("invalid", bad)
                w.style().unpolish(w)
                w.style().polish(w)
        self.error.setText("\n".join(errors))
        self.error.setVisible(bool(errors))
        return errors

    def reset(self) -> None:
        self.set_values({})
        self.changed.emit()

    def _on_change(self, *_: object) -> None:
        if self._building:
            return
        self.validate()
        self.changed.emit()
