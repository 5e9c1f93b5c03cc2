"""``metagui bench gui``: how smooth the window stays while Conv-4 MAML trains in it.

The real main window (offscreen without a display, as in the tests; on the screen under X or
Wayland) runs its own event loop while the Train page trains second-order MAML on the built-in
glyphs (Conv-4, 5-way 1-shot, 28 px, the MAML defaults), once per batching mode, as a user
would press Train. The page's own stall meter (a 10 ms heartbeat on the GUI thread,
``gui.widgets.stall``) gives the longest delay of a beat beyond its interval, and the number
of beats more than 50 ms late. With ``--load`` a second process spins on one core for the
whole run (another program busy beside the app).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time

from metagui.core.errors import ConfigError, MetaGUIError

MODES = ("auto", "loop", "threads", "vmap")
LATE_MS = 50.0
_SPIN = "import sys, time\nend = time.monotonic() + float(sys.argv[1])\nwhile time.monotonic() < end:\n    pass\n"


def bench_gui(steps: int = 30, modes: list[str] | None = None, load: bool = False, threads: int = 0,
              timeout_s: float = 600.0, echo=print) -> list[dict]:
    """One row per batching mode: the mode (auto: its choice), seconds per meta-step, the
    longest stall and the beats more than ``LATE_MS`` late. ``threads``: torch's threads in the
    training worker (0: the Train page's own choice, every core but one)."""
    modes = list(modes or ("auto", "loop"))
    unknown = [m for m in modes if m not in MODES]
    if unknown or steps < 1:
        raise ConfigError(f"bench gui: unknown mode {', '.join(unknown)} (of {', '.join(MODES)})" if unknown else
                          "bench gui: --steps must be at least 1")
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    folder = tempfile.mkdtemp(prefix="metagui-bench-gui-")
    saved = {k: os.environ.get(k) for k in ("METAGUI_SETTINGS_DIR", "METAGUI_DATA_DIR")}
    os.environ["METAGUI_SETTINGS_DIR"] = os.path.join(folder, "settings")
    os.environ["METAGUI_DATA_DIR"] = os.path.join(folder, "data")  # auto calibrates afresh, inside the run
    spinner = None
    window = None
    try:
        from PySide6.QtCore import QEventLoop, Qt, QTimer
        from PySide6.QtTest import QTest

        from metagui.core.presets import default_config
        from metagui.gui.app import make_application
        from metagui.gui.mainwindow import MainWindow

        app = make_application()
        window = MainWindow(db=os.path.join(folder, "runs.db"))
        window.show()

        def wait(cond, what: str) -> None:
            """Run the window's own event loop until ``cond()`` holds."""
            end = time.monotonic() + timeout_s
            loop = QEventLoop()
            poll = QTimer()
            poll.setInterval(50)
            poll.timeout.connect(lambda: (cond() or time.monotonic() > end) and loop.quit())
            poll.start()
            if not cond():
                loop.exec()
            poll.stop()
            if not cond():
                raise MetaGUIError(f"bench gui: timed out waiting for {what}")

        wait(lambda: window.state.dataset_ready, "the demo project to open")
        cfg = default_config("maml", "glyphs")
        cfg.training.steps, cfg.training.val_every, cfg.training.val_episodes = steps, max(1, steps // 2), 20
        window.reopen_config(cfg)
        wait(lambda: window.state.dataset_ready, "the glyphs to load")
        wait(lambda: not getattr(window, "_warm_task", None) or not window._warm_task.running, "start-up")
        tp = window.train_page
        if threads:
            tp.threads = threads
        echo(f"MAML (second order) on the built-in glyphs in the main window ({app.platformName()}): Conv-4, "
             f"5-way {cfg.task.shot}-shot, meta-batch {cfg.algorithm.hyperparams['meta_batch']}, "
             f"{cfg.algorithm.hyperparams['inner_steps']} inner steps, {steps} meta-steps with validation; "
             f"{tp.threads} torch thread{'s' * (tp.threads > 1)} in the training worker"
             f"{'' if threads else ' (the Train page: every core but one)'}, {os.cpu_count()} CPUs"
             + ("; a second process spins on one core" if load else ""))
        if load:
            spinner = subprocess.Popen([sys.executable, "-c", _SPIN, str(timeout_s * len(modes))])
        rows = []
        for mode in modes:
            cfg.algorithm.hyperparams["vectorise"] = mode
            window.state.set_config(cfg.copy())
            clicked = time.perf_counter()
            QTest.mouseClick(tp.start_button, Qt.MouseButton.LeftButton)
            if not tp.running:
                raise MetaGUIError("bench gui: training did not start: " + (tp.banner.message() or "no reason shown"))
            wait(lambda: not tp.running, f"the {mode} run to finish")
            result = tp.last_result or {}
            if result.get("status") != "completed":
                raise MetaGUIError(f"bench gui: the {mode} run ended {result.get('status')}: {result.get('error')}")
            late = [(at - clicked, gap - tp.stall.interval_ms) for at, gap in tp.stall.long_gaps
                    if gap - tp.stall.interval_ms > LATE_MS]
            chosen = f"auto: {_auto_choice() or '?'}" if mode == "auto" else mode
            rows.append({"mode": chosen, "steps": result.get("steps"), "duration_s": result.get("duration_s"),
                         "max_stall_ms": tp.last_stall_ms, "late_beats": len(late), "beats": tp.stall.beats,
                         "late_at_s": [round(at, 2) for at, _ in late]})
        _print(rows, echo)
        return rows
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()
        if window is not None:
            window.shutdown()
            window.close()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(folder, ignore_errors=True)


def _auto_choice() -> str | None:
    """What auto chose: the calibration the run remembered in its (throwaway) data folder."""
    from metagui.core.algorithms.batching import remembered

    entries = [v for v in remembered().values() if isinstance(v, dict)]
    return entries[-1].get("mode") if entries else None


def _print(rows: list[dict], echo) -> None:
    echo(f"  {'batching':<18} {'steps':>5} {'s/step':>7} {'max stall ms':>13} {'beats >50 ms late':>18} {'beats':>6}"
         "  late beats at (s after Train)")
    for r in rows:
        per = r["duration_s"] / r["steps"] if r["steps"] else float("nan")
        at = ", ".join(f"{t:.1f}" for t in r["late_at_s"][:8])
        echo(f"  {r['mode']:<18} {r['steps']:>5} {per:>7.2f} {r['max_stall_ms']:>13.1f} {r['late_beats']:>18} "
             f"{r['beats']:>6}  {at}")
    echo("max stall: the longest delay of the window's 10 ms heartbeat beyond its interval, from Train to the "
         "run's end (start-up, calibration and validation included).")
