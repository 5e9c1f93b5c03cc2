"""The desktop app: PySide6 views over the Qt-free core (``metagui.core``)."""

from metagui.gui.compat import protect_none_refcount

protect_none_refcount()
