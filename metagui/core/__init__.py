"""The Qt-free engine: data, tasks, models, algorithms, training, store, export.

Nothing under this package may import PySide6 or pyqtgraph (checked by import-linter
and by tests/test_layers.py).
"""
