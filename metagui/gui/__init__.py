"""The desktop app: PySide6 views over the Qt-free core (``metagui.core``)."""
