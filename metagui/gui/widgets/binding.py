"""Widgets bound to config fields: one helper in place of hand-synced guards.

``bind(spin, state, "task.way")`` keeps a widget and a dotted field of ``state.config`` equal,
as Orange's ``gui.spin(widget, master, "attr")`` keeps a widget and an attribute:

- a change of the widget (the user's, or a page setting it) writes the field and announces
  it with ``state.changed(section)``, as every edit of the config is announced;
- a change announced by anyone else (a preset, a reopened run or project, a loaded dataset)
  puts the value into the widget with the widget's signals blocked, so it never comes back
  as an edit; the binding that announced a change does not take it back (no echo).

The model is anything with ``config``, ``changed(section)`` and a ``config_changed(section)``
signal: the app's ``AppState``, or a ``ConfigDraft`` for settings that apply later as a whole
(the Data page's, on Load). Pages react to what changed by listening to the model, never to
the widgets, so the same code serves a user's edit and a reopened run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QSignalBlocker, Signal
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QLineEdit,
    QSpinBox,
    QWidget,
)


class ConfigDraft(QObject):
    """A config edited now and applied later as a whole: bindings write here, and the page
    that owns it decides when the edits take effect."""

    config_changed = Signal(str)

    def __init__(self, config: Any, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.config = config

    def changed(self, section: str) -> None:
        self.config_changed.emit(section)

    def reset(self, config: Any) -> None:
        self.config = config
        self.config_changed.emit("all")


class FieldBinding(QObject):
    """Keeps one widget and one value of a model's config equal (see the module docstring).

    ``get``/``put`` read and write the config value, ``read``/``show`` the widget's (``read``
    returns None while the widget has no value, e.g. an empty combo box).
    """

    edited = Signal(object)  # the value a widget change wrote, after it was announced

    def __init__(self, widget: QWidget, model: Any, section: str, *, get: Callable[[], Any],
                 put: Callable[[Any], None], read: Callable[[], Any], show: Callable[[Any], None],
                 signal: Any = None) -> None:
        super().__init__(widget)
        self.setObjectName("binding")
        self.widget, self.model, self.section = widget, model, section
        self.get, self.put, self.read, self.show = get, put, read, show
        self._announcing = False
        if signal is not None:
            signal.connect(self.commit)
        model.config_changed.connect(self._on_model)
        self.refresh()

    def commit(self, *_: object) -> bool:
        """Write the widget's value to the config and announce it, unless it is there already."""
        value = self.read()
        if value is None or value == self.get():
            return False
        self.put(value)
        self._announcing = True
        try:
            self.model.changed(self.section)
        finally:
            self._announcing = False
        self.edited.emit(value)
        return True

    def refresh(self, force: bool = False) -> None:
        """Show the config's value (``force``: even if the widget seems to show it already)."""
        value = self.get()
        if force or self.read() != value:
            with QSignalBlocker(self.widget):
                self.show(value)

    def _on_model(self, section: str) -> None:
        if section in (self.section, "all") and not self._announcing:
            self.refresh()


def binding_of(widget: QWidget) -> FieldBinding:
    """The binding that ``bind`` gave ``widget``."""
    found = widget.findChild(FieldBinding, "binding")
    if found is None:
        raise LookupError(f"{type(widget).__name__} is not bound to a config field")
    return found


def field_access(model: Any, path: str) -> tuple[Callable[[], Any], Callable[[Any], None]]:
    """Getter and setter of the dotted ``path`` ("task.way") below ``model.config``, looked
    up on every call: the model may be given a new config (a reopened project)."""
    *parents, name = path.split(".")

    def owner() -> Any:
        obj = model.config
        for part in parents:
            obj = getattr(obj, part)
        return obj

    return (lambda: getattr(owner(), name)), (lambda value: setattr(owner(), name, value))


def bind(widget: QWidget, model: Any, path: str, *, to_widget: Callable[[Any], Any] | None = None,
         from_widget: Callable[[Any], Any] | None = None, by: str = "data",
         show: Callable[[Any], None] | None = None) -> FieldBinding:
    """Bind a spin box, check box, combo box (its items' data, or with ``by="text"`` its text)
    or line edit to the dotted field ``path`` of ``model.config``.

    ``to_widget`` / ``from_widget`` convert between the config's value and the widget's;
    ``show`` replaces how a combo box shows a value (default: that item, else the first).
    """
    to_w = to_widget or (lambda v: v)
    from_w = from_widget or (lambda v: v)
    if isinstance(widget, QSpinBox | QDoubleSpinBox):
        signal, raw, put_raw = widget.valueChanged, widget.value, widget.setValue
    elif isinstance(widget, QCheckBox):
        signal, raw, put_raw = widget.toggled, widget.isChecked, widget.setChecked
    elif isinstance(widget, QComboBox) and by == "text":
        signal, raw, put_raw = widget.currentTextChanged, widget.currentText, widget.setCurrentText
    elif isinstance(widget, QComboBox):
        signal, raw = widget.currentIndexChanged, widget.currentData
        put_raw = show or (lambda v: widget.setCurrentIndex(max(0, widget.findData(v))))
    elif isinstance(widget, QLineEdit):
        signal, raw, put_raw = widget.textChanged, widget.text, widget.setText
    else:
        raise TypeError(f"cannot bind a {type(widget).__name__}: use FieldBinding with read and show")
    get, put = field_access(model, path)

    def read() -> Any:
        value = raw()
        return None if value is None else from_w(value)

    return FieldBinding(widget, model, path.split(".")[0], get=get, put=put, read=read,
                        show=lambda v: put_raw(to_w(v)), signal=signal)


def spin_box(low: float, high: float, tip: str = "", *, decimals: int | None = None, step: float | None = None,
             min_width: int = 0, separators: bool = False) -> QSpinBox | QDoubleSpinBox:
    """A spin box for a config field: whole numbers, or ``decimals`` places."""
    box: QAbstractSpinBox = QSpinBox() if decimals is None else QDoubleSpinBox()
    if decimals is not None:
        box.setDecimals(decimals)
    box.setRange(low, high)
    if step is not None:
        box.setSingleStep(step)
    box.setToolTip(tip)
    box.setGroupSeparatorShown(separators)
    if min_width:
        box.setMinimumWidth(min_width)
    return box
