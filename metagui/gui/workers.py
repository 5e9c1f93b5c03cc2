"""Work off the GUI thread: a generic background task and the training session.

Each runs a worker ``QObject`` moved to its own ``QThread``. Only plain Python data crosses
threads, through queued signals (Orange's and Anki's pattern: the worker reports, the
view decides). Cancellation is cooperative: the worker's callable polls a flag.
"""

from __future__ import annotations

import dataclasses
import gc
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, QThread, QTimer, Signal, Slot

from metagui.core.errors import Cancelled, MetaGUIError

Progress = Callable[[int, int], None]
CancelCheck = Callable[[], bool]

_LIVE: set[QThread] = set()


def live_threads() -> list[QThread]:
    """Worker threads started by this module that have not finished yet."""
    return [t for t in list(_LIVE) if t.isRunning()]


class _FunctionWorker(QObject):
    progress = Signal(object, object)
    succeeded = Signal(object)
    failed = Signal(str, str)
    cancelled = Signal(str)
    finished = Signal()

    def __init__(self, fn: Callable[[Progress, CancelCheck], Any], interval: float) -> None:
        super().__init__()
        self._fn = fn
        self._cancel = threading.Event()
        self._interval = interval
        self._last = 0.0

    def request_cancel(self) -> None:
        self._cancel.set()

    def _progress(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self._last >= self._interval or (total and done >= total):
            self._last = now
            self.progress.emit(done, total)

    @Slot()
    def run(self) -> None:
        try:
            result = self._fn(self._progress, self._cancel.is_set)
        except Cancelled as exc:
            self.cancelled.emit(str(exc) or "cancelled")
        except MetaGUIError as exc:
            self.failed.emit(str(exc), "")
        except Exception as exc:  # a bug: report it readably, keep the details for the log
            self.failed.emit(f"{type(exc).__name__}: {exc}", traceback.format_exc())
        else:
            if self._cancel.is_set():
                self.cancelled.emit("cancelled")
            else:
                self.succeeded.emit(result)
        finally:
            self.finished.emit()


class BackgroundTask(QObject):
    """Run ``fn(progress, cancel)`` in a thread; its outcome arrives as signals on the GUI thread.

    ``fn`` reports with ``progress(done, total)`` (throttled to ~20 Hz) and polls ``cancel()``;
    it may raise ``Cancelled`` or a ``MetaGUIError`` whose message is shown to the user.
    """

    progress = Signal(object, object)
    succeeded = Signal(object)
    failed = Signal(str, str)  # readable message, details (traceback or "")
    cancelled = Signal(str)
    finished = Signal()

    def __init__(self, fn: Callable[[Progress, CancelCheck], Any], name: str = "task",
                 parent: QObject | None = None, progress_interval: float = 0.05) -> None:
        super().__init__(parent)
        self.name = name
        self._thread: QThread | None = QThread()
        self._thread.setObjectName(f"metagui-{name}")
        self._worker = _FunctionWorker(fn, progress_interval)
        self._worker.moveToThread(self._thread)
        self._thread.started.connect(self._worker.run)
        self._worker.progress.connect(self._on_progress)
        self._worker.succeeded.connect(self._on_succeeded)
        self._worker.failed.connect(self._on_failed)
        self._worker.cancelled.connect(self._on_cancelled)
        self._worker.finished.connect(self._on_finished)
        # Quit the thread's event loop from the worker itself, so that a GUI thread blocked in
        # wait() (window closing) does not wait for its own queued slot.
        self._worker.finished.connect(self._thread.quit, Qt.ConnectionType.DirectConnection)
        self._running = False

    def start(self) -> BackgroundTask:
        assert self._thread is not None, "a BackgroundTask runs once"
        self._running = True
        _LIVE.add(self._thread)
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._running

    def cancel(self) -> None:
        self._worker.request_cancel()

    def wait(self, msecs: int = 10000) -> bool:
        """Block until the worker is done (used when the window closes)."""
        t = self._thread
        if t is None:
            return True
        deadline = time.monotonic() + msecs / 1000
        while self._running and time.monotonic() < deadline:
            if t.wait(50):
                break
        return not t.isRunning()

    @Slot(object, object)
    def _on_progress(self, done: object, total: object) -> None:
        self.progress.emit(done, total)

    @Slot(object)
    def _on_succeeded(self, result: object) -> None:
        self.succeeded.emit(result)

    @Slot(str, str)
    def _on_failed(self, message: str, details: str) -> None:
        self.failed.emit(message, details)

    @Slot(str)
    def _on_cancelled(self, message: str) -> None:
        self.cancelled.emit(message)

    @Slot()
    def _on_finished(self) -> None:
        t = self._thread
        if t is not None:
            t.quit()
            t.wait()
            _LIVE.discard(t)
        self._running = False
        self.finished.emit()


# --- training ---------------------------------------------------------------------------
class _TrainingWorker(QObject):
    events = Signal(object)
    done = Signal(object)

    def __init__(self, config, db_path: Path, dataset, resume_run: int | None,
                 project_id: int | None, control, threads: int | None, batch_interval: float,
                 init_from: int | None = None) -> None:
        super().__init__()
        self._init_from = init_from
        self._config = config
        self._db_path = db_path
        self._dataset = dataset
        self._resume_run = resume_run
        self._project_id = project_id
        self._control = control
        self._threads = threads
        self._interval = batch_interval
        self._pending: list[dict] = []
        self._last_emit = 0.0

    def _on_event(self, ev: dict) -> None:
        # Called on the worker thread. Batch the high-rate events (one per meta-step) so
        # that the GUI thread receives a handful of queued signals per second.
        self._pending.append(ev)
        now = time.monotonic()
        if ev.get("kind") not in ("metrics", "progress") or now - self._last_emit >= self._interval:
            self._flush(now)

    def _flush(self, now: float | None = None) -> None:
        if self._pending:
            batch, self._pending = self._pending, []
            self.events.emit(batch)
        self._last_emit = now if now is not None else time.monotonic()

    @Slot()
    def run(self) -> None:
        import torch

        from metagui.core.experiment import Experiment
        from metagui.core.store import RunStore
        from metagui.core.trainer import Trainer

        if self._threads:
            torch.set_num_threads(self._threads)
        store = None
        result: dict[str, Any] = {"run_id": self._resume_run, "status": "failed", "steps": 0, "error": ""}
        try:
            store = RunStore(self._db_path)
            experiment = None
            if self._dataset is not None:
                self._on_event({"kind": "log", "run_id": None, "message": "Preparing episodes..."})
                experiment = Experiment.prepare(self._config, dataset=self._dataset,
                                                cancel=lambda: self._control.cancelled)
            trainer = Trainer(self._config, store, self._on_event, self._control,
                              resume_run=self._resume_run, project_id=self._project_id,
                              experiment=experiment, init_from=self._init_from)
            result = dataclasses.asdict(trainer.run())
        except Exception as exc:  # before the trainer's own error handling took over
            readable = isinstance(exc, MetaGUIError)
            message = str(exc) if readable else f"{type(exc).__name__}: {exc}"
            status = "cancelled" if isinstance(exc, Cancelled) else "failed"
            ev = {"kind": "error", "run_id": self._resume_run, "message": message}
            if not readable:
                ev["traceback"] = traceback.format_exc()
            if status == "failed":
                self._on_event(ev)
            self._on_event({"kind": "finished", "run_id": self._resume_run, "status": status,
                            "steps": 0, "best": None, "error": message if status == "failed" else ""})
            result.update(status=status, error=message if status == "failed" else "")
        finally:
            self._flush()
            if store is not None:
                store.close()
            self.done.emit(result)


class TrainingSession(QObject):
    """One training run on its own thread, calling ``Trainer.run`` with its own store
    connection (same database file). Events arrive as batches of plain dicts."""

    events = Signal(object)
    finished = Signal(object)

    def __init__(self, config, db_path: str | Path, dataset=None, resume_run: int | None = None,
                 project_id: int | None = None, threads: int | None = 1,
                 batch_interval: float = 0.05, parent: QObject | None = None, init_from: int | None = None) -> None:
        super().__init__(parent)
        from metagui.core.trainer import TrainingControl

        self.control = TrainingControl()
        self.config = config
        self.result: dict | None = None
        self._thread = QThread()
        self._thread.setObjectName("metagui-training")
        self._worker = _TrainingWorker(config, Path(db_path), dataset, resume_run, project_id,
                                       self.control, threads, batch_interval, init_from)
        self._worker.moveToThread(self._thread)
        self._thread.started.connect(self._worker.run)
        self._worker.events.connect(self._on_events)
        self._worker.done.connect(self._on_done)
        self._worker.done.connect(self._thread.quit, Qt.ConnectionType.DirectConnection)
        self._running = False

    def start(self) -> TrainingSession:
        self._running = True
        _LIVE.add(self._thread)
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._running

    @property
    def paused(self) -> bool:
        return self.control.paused

    def pause(self) -> None:
        self.control.pause()

    def resume(self) -> None:
        self.control.resume()

    def cancel(self) -> None:
        self.control.cancel()

    def wait(self, msecs: int = 30000) -> bool:
        if not self._thread.isRunning():
            return True
        return self._thread.wait(msecs)

    @Slot(object)
    def _on_events(self, batch: list) -> None:
        self.events.emit(batch)

    @Slot(object)
    def _on_done(self, result: dict) -> None:
        self._thread.quit()
        self._thread.wait()
        _LIVE.discard(self._thread)
        self._running = False
        self.result = result
        self.finished.emit(result)


def warm_up_torch(progress=None, cancel=None) -> None:
    """Import what the first training step would import (building an optimiser pulls in
    torch._dynamo and sympy: ~800 modules). Done once in the background at start-up, so
    that pressing Train does not stall the window with those imports."""
    import torch
    from torch.func import functional_call, vmap

    lin = torch.nn.Linear(2, 2)
    torch.optim.Adam(lin.parameters(), lr=1e-3)
    params = dict(lin.named_parameters())
    vmap(lambda x: functional_call(lin, params, (x,)))(torch.ones(2, 3, 2))


class MainThreadCollector(QObject):
    """Python's cyclic garbage collector, run only on the GUI thread while a window lives.

    Left automatic, a collection runs in whichever thread happens to allocate: a training
    or warm-up worker could then destroy Qt wrappers of dead widgets from the wrong thread,
    and Qt's signal lock taken there against the GIL held by the GUI thread deadlocks both
    (seen in the test suite: a worker's collection disconnecting an old widget while the GUI
    thread deleted form rows). So automatic collection is off while any window is open, and
    a timer collects, generation by generation as the thresholds say, on the GUI thread.
    """

    _active = 0

    def __init__(self, parent: QObject | None = None, interval_ms: int = 1000) -> None:
        super().__init__(parent)
        if MainThreadCollector._active == 0:
            gc.disable()
        MainThreadCollector._active += 1
        self._stopped = False
        self.timer = QTimer(self)
        self.timer.timeout.connect(self.collect)
        self.timer.start(interval_ms)

    @Slot()
    def collect(self) -> None:
        limits, counts = gc.get_threshold(), gc.get_count()
        for generation in (2, 1, 0):
            if counts[generation] > limits[generation]:
                gc.collect(generation)
                break

    def stop(self) -> None:
        """Collect once more here and give collection back to Python (last window only)."""
        if self._stopped:
            return
        self._stopped = True
        self.timer.stop()
        gc.collect()
        MainThreadCollector._active -= 1
        if MainThreadCollector._active == 0:
            gc.enable()
