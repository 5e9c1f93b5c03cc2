"""How responsive the window is: a 10 ms heartbeat on the GUI thread that records the
longest gap between beats. A gap well above 10 ms means the event loop was blocked (by
our own work or by waiting for the GIL while the training thread runs Python)."""

from __future__ import annotations

import time

from PySide6.QtCore import QObject, Qt, QTimer


class StallMeter(QObject):
    def __init__(self, interval_ms: int = 10, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.interval_ms = interval_ms
        self._timer = QTimer(self)
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._beat)
        self._last: float | None = None
        self.max_gap_ms = 0.0
        self.beats = 0
        self._window_max = 0.0
        self.long_gaps: list[tuple[float, float]] = []  # (time, gap ms) of gaps over 30 ms, for diagnosis

    def start(self) -> None:
        self._last = None
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()
        self._last = None

    def reset(self) -> None:
        self.max_gap_ms = 0.0
        self._window_max = 0.0
        self.beats = 0
        self._last = None
        self.long_gaps = []

    @property
    def max_stall_ms(self) -> float:
        """Longest delay beyond the heartbeat's own interval."""
        return max(0.0, self.max_gap_ms - self.interval_ms)

    def take_window_max(self) -> float:
        """Longest gap since the previous call (for a live display)."""
        v, self._window_max = self._window_max, 0.0
        return v

    def _beat(self) -> None:
        now = time.perf_counter()
        if self._last is not None:
            gap = (now - self._last) * 1000.0
            self.beats += 1
            if gap > self.max_gap_ms:
                self.max_gap_ms = gap
            if gap > self._window_max:
                self._window_max = gap
            if gap > 30 and len(self.long_gaps) < 1000:
                self.long_gaps.append((now, gap))
        self._last = now
