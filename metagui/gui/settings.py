"""Where the app keeps its preferences (last project, window geometry, theme).

``METAGUI_SETTINGS_DIR`` redirects them to an INI file in that folder, so that tests and
scripted tours never touch the real user's settings.
"""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QSettings

ORGANIZATION = "MetaGUI"
APPLICATION = "MetaGUI"
SETTINGS_DIR_ENV = "METAGUI_SETTINGS_DIR"


def make_settings() -> QSettings:
    folder = os.environ.get(SETTINGS_DIR_ENV)
    if folder:
        path = Path(folder).expanduser()
        path.mkdir(parents=True, exist_ok=True)
        return QSettings(str(path / "metagui.ini"), QSettings.Format.IniFormat)
    return QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, ORGANIZATION, APPLICATION)


def settings_folder() -> Path:
    """The folder of the settings file (the app's log file lives there too)."""
    return Path(make_settings().fileName()).parent
