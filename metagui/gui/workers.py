"""Work off the GUI thread: a generic background task and the training session.

Each runs a worker ``QObject`` moved to its own ``QThread``. Only plain Python data crosses
threads, through queued signals (Orange's and Anki's pattern: the worker reports, the
view decides). Cancellation is cooperative: the worker's callable polls a flag.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import os
import signal
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

    import metagui.core.checkpoint  # noqa: F401  what the first Train imports (safetensors), here
    import metagui.core.trainer  # noqa: F401

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

    ``freeze`` (once start-up has imported torch and built the window) moves every object
    alive then out of the collector's sight (``gc.freeze``): a full collection on the GUI
    thread otherwise walks some 350,000 long-lived objects and blocks the window for about
    200 ms; after it, a few milliseconds.
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

    @Slot()
    def freeze(self) -> None:
        if not self._stopped:
            gc.collect(1)  # the young generations only: a full collection is the 200 ms this avoids
            gc.freeze()

    def stop(self) -> None:
        """Collect once more here and give collection back to Python (last window only)."""
        if self._stopped:
            return
        self._stopped = True
        self.timer.stop()
        MainThreadCollector._active -= 1
        if MainThreadCollector._active == 0:
            gc.unfreeze()
            gc.enable()
        gc.collect()


class DistributedSession(QObject):
    """A run on several processes: ``metagui train CONFIG --nproc N`` (torchrun) as a child
    process, followed through the run store as the Runs page follows terminal runs. It
    speaks TrainingSession's events, so the Train page draws its curves live. Stop sends
    SIGTERM, which torchrun forwards to every rank (they stop after the same step); Pause and
    Resume send SIGUSR1 and SIGUSR2 to rank 0 (its pid is in the store), and the ranks agree
    on them between steps (POSIX only)."""

    events = Signal(object)
    finished = Signal(object)
    can_pause = hasattr(signal, "SIGUSR1")

    def __init__(self, config, db_path: str | Path, nproc: int, config_path: str | Path,
                 resume_run: int | None = None, poll_ms: int = 500, parent: QObject | None = None,
                 init_from: int | None = None) -> None:
        super().__init__(parent)
        from PySide6.QtCore import QProcess

        self.config = config
        self.nproc = nproc
        self.db_path = Path(db_path)
        self.config_path = Path(config_path)
        self.resume_run = resume_run
        self.init_from = init_from  # fine-tune: start from this run's best checkpoint (metagui train --from)
        self.result: dict | None = None
        self.run_id: int | None = None
        self._store = None
        self._device = ""
        self._start_step = 0
        self._last_step = -1
        self._announced = False
        self._stdout = ""
        self._lines: list[str] = []
        self._running = False
        self._paused = False
        self._started_at = 0.0
        self.process = QProcess(self)
        self.process.setProcessChannelMode(QProcess.ProcessChannelMode.SeparateChannels)
        self.process.readyReadStandardOutput.connect(self._read_stdout)
        self.process.readyReadStandardError.connect(self._read_stderr)
        self.process.finished.connect(self._on_exit)
        self.process.errorOccurred.connect(self._on_error)
        self.timer = QTimer(self)
        self.timer.setInterval(poll_ms)
        self.timer.timeout.connect(self._poll)

    def command(self) -> list[str]:
        import sys

        args = ["-m", "metagui", "train"]
        args += ["--resume", str(self.resume_run)] if self.resume_run is not None else [str(self.config_path)]
        args += ["--from", str(self.init_from)] if self.init_from is not None else []
        return [sys.executable, *args, "--nproc", str(self.nproc), "--db", str(self.db_path)]

    def start(self) -> DistributedSession:
        if self.resume_run is None:
            self.config_path.parent.mkdir(parents=True, exist_ok=True)
            self.config_path.write_text(self.config.to_toml(), encoding="utf-8")
        program, *args = self.command()
        self._running = True
        self._started_at = time.monotonic()
        self.events.emit([{"kind": "log", "message": "Starting " + " ".join(self.command()[1:])}])
        self.process.start(program, args)
        self.timer.start()
        return self

    @property
    def running(self) -> bool:
        return self._running

    @property
    def paused(self) -> bool:
        return self._paused

    def _signal_rank0(self, sig) -> bool:
        """Send ``sig`` to rank 0, the run's training process on this machine (store row)."""
        from metagui.core.store import RunStore, this_host

        if self.run_id is None or not self.can_pause:
            return False
        try:
            store = self._store or RunStore.for_reading(self.db_path)
            self._store = store
            row = store.run(self.run_id)
        except MetaGUIError:
            return False
        if not row.get("pid") or (row.get("host") and row["host"] != this_host()):
            return False
        try:
            os.kill(int(row["pid"]), sig)
        except OSError:
            return False
        return True

    def pause(self) -> None:
        if self._signal_rank0(signal.SIGUSR1):
            self._paused = True

    def resume(self) -> None:
        if self._signal_rank0(signal.SIGUSR2):
            self._paused = False

    def cancel(self) -> None:
        if self._running:
            self.process.terminate()  # SIGTERM: torchrun forwards it to every rank

    def wait(self, msecs: int = 30000) -> bool:
        from PySide6.QtCore import QProcess

        if self.process.state() == QProcess.ProcessState.NotRunning:
            return True
        return self.process.waitForFinished(msecs)

    # --- following the child ---------------------------------------------------------------------
    def _read_stdout(self) -> None:
        import re

        self._stdout += bytes(self.process.readAllStandardOutput()).decode("utf-8", "replace")
        *lines, self._stdout = self._stdout.split("\n")
        for line in lines:
            self._lines.append(line)
            m = re.match(r"run (\d+) (?:started|resumed at step (\d+)) on (\S+)", line)
            if m:
                self.run_id = int(m.group(1))
                self._start_step = int(m.group(2) or 0)
                self._last_step = self._start_step
                self._device = m.group(3)
            elif line.strip() and not line.startswith("{"):
                self.events.emit([{"kind": "log", "message": line.strip()}])

    def _read_stderr(self) -> None:
        text = bytes(self.process.readAllStandardError()).decode("utf-8", "replace")
        out = [{"kind": "log", "message": s.strip()} for s in text.splitlines() if s.strip()]
        if out:
            self.events.emit(out)

    def _poll(self) -> None:
        """New metric rows of the run since the last poll, as the trainer's events."""
        if self.run_id is None:
            return
        from metagui.core.store import RunStore

        try:
            if self._store is None:
                self._store = RunStore.for_reading(self.db_path)
            rows = self._store.db.execute(
                "SELECT step, name, value FROM metrics WHERE run_id = ? AND step > ? ORDER BY step",
                [self.run_id, self._last_step]).fetchall()
            run = self._store.run(self.run_id)
        except MetaGUIError:
            return  # busy or not written yet: the next poll reads it
        by_step: dict[int, dict[str, float]] = {}
        for step, name, value in rows:
            by_step.setdefault(int(step), {})[name] = value
        out: list[dict] = []
        if not self._announced and by_step:
            names = next(iter(by_step.values()))
            metric = "mse" if "train/mse" in names else "return" if "train/return" in names else "accuracy"
            out.append({"kind": "started", "run_id": self.run_id, "steps": self.config.training.steps,
                        "start_step": self._start_step, "metric": metric, "algorithm": self.config.algorithm.name,
                        "device": f"{self._device} x {self.nproc} processes"})
            self._announced = True
        for step, named in sorted(by_step.items()):
            train = {k[6:]: v for k, v in named.items() if k.startswith("train/")}
            if train:
                out.append({"kind": "metrics", "run_id": self.run_id, "step": step, "metrics": train})
            val = {k[4:]: v for k, v in named.items() if k.startswith("val/")}
            if val:
                out.append({"kind": "validation", "run_id": self.run_id, "step": step, "metrics": val,
                            "best": run.get("best_val")})
            self._last_step = step
        if out:
            self.events.emit(out)

    def _on_error(self, error) -> None:
        from PySide6.QtCore import QProcess

        if error == QProcess.ProcessError.FailedToStart:
            self._finish({"status": "failed", "run_id": None, "steps": 0,
                          "error": f"could not start {self.command()[0]}: {self.process.errorString()}"})

    def _on_exit(self, code: int, _status) -> None:
        import json

        self._read_stdout()
        if self._stdout:
            self._lines.append(self._stdout)
        self._poll()
        summary = next((json.loads(s) for s in reversed(self._lines) if s.startswith("{")), {})
        result = {"status": summary.get("status", "failed"), "run_id": summary.get("run", self.run_id),
                  "steps": summary.get("steps", max(self._last_step, 0)), "best_val": summary.get("best_val"),
                  "best_val_ci": summary.get("best_val_ci95"),
                  "duration_s": summary.get("seconds", time.monotonic() - self._started_at), "error": ""}
        if self.run_id is not None and self._store is not None:
            with contextlib.suppress(MetaGUIError):
                row = self._store.run(self.run_id)
                result.update(status=row["status"], error=row.get("error") or "", steps=row.get("steps_done") or 0)
        if result["status"] in ("failed", "diverged") and not result["error"]:
            result["error"] = f"the {self.nproc}-process run ended with exit code {code}; see the log"
        self._finish(result)

    def _finish(self, result: dict) -> None:
        if not self._running:
            return
        self.timer.stop()
        if self._store is not None:
            self._store.close()
            self._store = None
        self._running = False
        self.result = result
        self.events.emit([{"kind": "finished", **result}])
        self.finished.emit(result)
