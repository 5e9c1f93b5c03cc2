"""Starting the desktop app: a Qt preflight with a readable message when no window can be
opened, the QApplication, logging, and an excepthook that shows errors instead of dying."""

from __future__ import annotations

import ctypes.util
import logging
import os
import signal
import sys
import threading
import traceback
from logging.handlers import RotatingFileHandler

log = logging.getLogger("metagui")

# Libraries Qt's xcb (X11) platform plugin loads, with their Debian/Ubuntu package names.
XCB_LIBS = [
    ("xcb-cursor", "libxcb-cursor0"),
    ("xcb-icccm", "libxcb-icccm4"),
    ("xcb-keysyms", "libxcb-keysyms1"),
    ("xcb-image", "libxcb-image0"),
    ("xcb-render-util", "libxcb-render-util0"),
    ("xcb-shape", "libxcb-shape0"),
    ("xcb-randr", "libxcb-randr0"),
    ("xcb-xkb", "libxcb-xkb1"),
    ("xkbcommon-x11", "libxkbcommon-x11-0"),
]


def find_system_or_bundled_library(name: str) -> str | None:
    """ctypes.util.find_library, and in a frozen app (PyInstaller) also the libraries it carries."""
    found = ctypes.util.find_library(name)
    bundled = getattr(sys, "_MEIPASS", None)
    if found is None and getattr(sys, "frozen", False) and bundled:
        import glob

        found = next(iter(sorted(glob.glob(os.path.join(bundled, f"lib{name}.so*")))), None)
    return found


def qt_preflight(environ: dict | None = None, find_library=find_system_or_bundled_library) -> str | None:
    """None when Qt can open a window here; otherwise one readable paragraph saying why.

    Qt aborts the process when its X11 plugin cannot start; we check first where the
    platform would be xcb (Linux without Wayland or an explicit QT_QPA_PLATFORM).
    """
    env = os.environ if environ is None else environ
    if not sys.platform.startswith("linux"):
        return None
    platform = env.get("QT_QPA_PLATFORM", "")
    if platform and not platform.startswith("xcb"):
        return None  # offscreen, wayland, vnc, ...: Qt reports its own problems
    if not platform and env.get("WAYLAND_DISPLAY"):
        return None
    if not env.get("DISPLAY"):
        return ("cannot open a window: no display (DISPLAY is not set). Start MetaGUI from a desktop "
                "session, or use `metagui train CONFIG.toml` to train without a window "
                "(QT_QPA_PLATFORM=offscreen runs the app invisibly, e.g. for `metagui tour`).")
    missing = [(lib, pkg) for lib, pkg in XCB_LIBS if find_library(lib) is None]
    if missing:
        libs = ", ".join(f"lib{lib}" for lib, _ in missing)
        pkgs = " ".join(pkg for _, pkg in missing)
        return (f"cannot open a window: Qt's X11 support needs system libraries that are missing ({libs}). "
                f"On Debian or Ubuntu install them with:  sudo apt install {pkgs}")
    return None


def setup_logging() -> None:
    if any(isinstance(h, RotatingFileHandler) for h in log.handlers):
        return
    from metagui.gui.settings import settings_folder

    try:
        folder = settings_folder()
        folder.mkdir(parents=True, exist_ok=True)
        handler = RotatingFileHandler(folder / "metagui.log", maxBytes=1_000_000, backupCount=2, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    except OSError:
        pass


def install_excepthook(window) -> None:
    """Unhandled exceptions on the GUI thread become a dialog (and a log entry), not a crash."""
    from metagui.core.errors import MetaGUIError
    from metagui.gui.mainwindow import show_error_dialog

    def hook(exc_type, exc, tb) -> None:
        if issubclass(exc_type, KeyboardInterrupt):
            sys.__excepthook__(exc_type, exc, tb)
            return
        details = "".join(traceback.format_exception(exc_type, exc, tb))
        log.error("unhandled exception\n%s", details)
        readable = issubclass(exc_type, MetaGUIError)
        message = str(exc) if readable else f"Unexpected error: {exc_type.__name__}: {exc}"
        try:
            show_error_dialog(window, message, "" if readable else details)
        except Exception:  # the dialog itself failed: fall back to stderr
            sys.__excepthook__(exc_type, exc, tb)

    def thread_hook(args) -> None:
        log.error("unhandled exception in thread %s\n%s", getattr(args.thread, "name", "?"),
                  "".join(traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback)))

    sys.excepthook = hook
    threading.excepthook = thread_hook


def make_application(argv: list[str] | None = None):
    from PySide6.QtWidgets import QApplication

    from metagui.gui import icons
    from metagui.gui.settings import APPLICATION, ORGANIZATION

    app = QApplication.instance() or QApplication(argv if argv is not None else sys.argv[:1])
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationName(APPLICATION)
    app.setApplicationDisplayName("MetaGUI")
    app.setDesktopFileName("metagui")
    app.setWindowIcon(icons.app_icon())
    return app


def show_startup_error(message: str, hint: str = "") -> None:
    """A modal message for a problem that stops the app from opening (started from a desktop
    icon, nobody reads the terminal)."""
    from PySide6.QtWidgets import QMessageBox

    box = QMessageBox(QMessageBox.Icon.Critical, "MetaGUI cannot start", message, QMessageBox.StandardButton.Close)
    if hint:
        box.setInformativeText(hint)
    box.exec()


def run_app(db: str | None = None, demo: bool = False, argv: list[str] | None = None,
            bundles: list[str] | None = None) -> int:
    """Open the main window (on the last project, or the demo on first launch), adding these
    .metagui bundles to Runs; the exit code.

    METAGUI_FIRST_WINDOW_EXIT=1 (for start-up measurements, e.g. installer/linux/smoke.sh):
    once the window has been shown and painted, print ``first window at <unix time>`` on stdout
    and quit; METAGUI_FIRST_WINDOW_SHOT=FILE.png also saves a screenshot of the screen then.
    """
    problem = qt_preflight()
    if problem:
        print(f"metagui: {problem}", file=sys.stderr)
        return 1
    app = make_application(argv)
    setup_logging()
    from PySide6.QtCore import QTimer

    from metagui.core.errors import MetaGUIError
    from metagui.gui.mainwindow import MainWindow

    try:
        window = MainWindow(db=db, demo=demo)
    except MetaGUIError as exc:  # e.g. a --db that is not a usable run store: say so in a window too
        print(f"metagui: error: {exc}", file=sys.stderr)
        from metagui.core.errors import StoreError

        hint = ("Start MetaGUI with another run store (--db FILE, or the METAGUI_DB environment variable)."
                if isinstance(exc, StoreError) else "")
        show_startup_error(str(exc), hint)
        return 2
    install_excepthook(window)
    # Ctrl+C in the terminal closes the window cleanly (Python only sees signals between Qt events).
    signal.signal(signal.SIGINT, lambda *_: window.close())
    ticker = QTimer()
    ticker.start(250)
    ticker.timeout.connect(lambda: None)
    window.show()
    log.info("MetaGUI started with run store %s", window.state.db_path)
    for path in bundles or []:  # opened from a file manager: add them, say so in the banner
        QTimer.singleShot(0, lambda path=path: (window.go("export"), window.export_page.open_bundle(path)))
    if os.environ.get("METAGUI_FIRST_WINDOW_EXIT") == "1":
        QTimer.singleShot(0, lambda: _report_first_window(app, window))
    return int(app.exec())


def _report_first_window(app, window) -> None:
    import time

    window.repaint()  # painted, not just mapped
    app.processEvents()
    print(f"first window at {time.time():.3f}", flush=True)
    shot = os.environ.get("METAGUI_FIRST_WINDOW_SHOT")
    if shot:
        screen = window.screen() or app.primaryScreen()
        screen.grabWindow(0).save(shot)
    window.close()
