"""Work-arounds for bugs in the Qt binding that the app cannot wait for.

PySide6 6.12.0 on CPython 3.11 drops one reference to ``None`` on every call of a C++
method that returns nothing (``label.setText(...)``, ``pen.setWidth(...)``, ...). From
CPython 3.12 ``None`` is immortal and the bug is invisible; on 3.11 its reference count
reaches zero after some thousands of such calls and the interpreter aborts with
"none_dealloc: deallocating None". PySide6 6.11 is not affected. Until the dependency is
pinned away from it, we give ``None`` a reference count so large that the leak can never
exhaust it (which is what 3.12's immortal objects do); True and False likewise.
"""

from __future__ import annotations

import ctypes
import sys

_PROTECTED = False


def affected(pyside_version: str, python: tuple[int, int] = sys.version_info[:2]) -> bool:
    return python < (3, 12) and pyside_version.startswith("6.12.") and sys.implementation.name == "cpython"


def protect_none_refcount() -> bool:
    """Make ``None`` effectively immortal where the PySide6 bug would free it. Idempotent."""
    global _PROTECTED
    if _PROTECTED:
        return True
    try:
        import PySide6
    except ImportError:
        return False
    if not affected(PySide6.__version__):
        return False
    # ob_refcnt is the first field of every CPython object; we hold the GIL here. True and
    # False get the same protection: some paths (bool signal arguments) leak them too.
    for obj in (None, True, False):
        refcnt = ctypes.c_ssize_t.from_address(id(obj))
        refcnt.value += 1 << 60
    _PROTECTED = True
    return True
