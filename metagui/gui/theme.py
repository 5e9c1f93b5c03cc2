"""Light and dark themes: one palette of named colours for Qt widgets, the style sheet and
the plots, so that every view draws with the same colours."""

from __future__ import annotations

from dataclasses import dataclass

import pyqtgraph as pg
from PySide6.QtGui import QColor, QFont, QPalette
from PySide6.QtWidgets import QApplication


@dataclass(frozen=True)
class Theme:
    name: str
    window: str
    base: str
    alt_base: str
    panel: str  # sidebar, headers
    text: str
    muted: str
    accent: str
    accent_text: str
    good: str
    warn: str
    bad: str
    border: str
    plot_bg: str
    plot_fg: str
    grid_alpha: float
    series: tuple[str, ...]

    def color(self, name: str) -> QColor:
        return QColor(getattr(self, name))


LIGHT = Theme(
    name="light", window="#f4f5f7", base="#ffffff", alt_base="#f7f8fa", panel="#e9ecf1",
    text="#1f2430", muted="#687083", accent="#2f6fde", accent_text="#ffffff",
    good="#1e8e4f", warn="#b7791f", bad="#c53030", border="#d3d8e0",
    plot_bg="#ffffff", plot_fg="#3a4150", grid_alpha=0.25,
    series=("#2f6fde", "#e4572e", "#1e8e4f", "#8e44ad", "#d4a017", "#17a2b8", "#c2185b", "#5d6d7e"),
)

DARK = Theme(
    name="dark", window="#1e2128", base="#262a33", alt_base="#2b303a", panel="#181b21",
    text="#e3e6ec", muted="#9aa3b5", accent="#5b9bff", accent_text="#0d1117",
    good="#4cc38a", warn="#e0b04a", bad="#ff6b6b", border="#3a404d",
    plot_bg="#1b1e25", plot_fg="#c8cdd8", grid_alpha=0.2,
    series=("#5b9bff", "#ff8a5c", "#4cc38a", "#c39bff", "#f2c94c", "#56ccf2", "#ff6fa8", "#aab4c3"),
)

THEMES = {"light": LIGHT, "dark": DARK}
_current: Theme = LIGHT


def current() -> Theme:
    return _current


def apply_theme(app: QApplication, name: str) -> Theme:
    """Set the Fusion style, palette, style sheet and pyqtgraph defaults for ``name``."""
    global _current
    theme = THEMES.get(name, LIGHT)
    _current = theme
    app.setStyle("Fusion")
    pal = QPalette()
    c = theme.color
    for group in (QPalette.ColorGroup.Active, QPalette.ColorGroup.Inactive):
        pal.setColor(group, QPalette.ColorRole.Window, c("window"))
        pal.setColor(group, QPalette.ColorRole.WindowText, c("text"))
        pal.setColor(group, QPalette.ColorRole.Base, c("base"))
        pal.setColor(group, QPalette.ColorRole.AlternateBase, c("alt_base"))
        pal.setColor(group, QPalette.ColorRole.Text, c("text"))
        pal.setColor(group, QPalette.ColorRole.Button, c("base"))
        pal.setColor(group, QPalette.ColorRole.ButtonText, c("text"))
        pal.setColor(group, QPalette.ColorRole.Highlight, c("accent"))
        pal.setColor(group, QPalette.ColorRole.HighlightedText, c("accent_text"))
        pal.setColor(group, QPalette.ColorRole.ToolTipBase, c("base"))
        pal.setColor(group, QPalette.ColorRole.ToolTipText, c("text"))
        pal.setColor(group, QPalette.ColorRole.PlaceholderText, c("muted"))
        pal.setColor(group, QPalette.ColorRole.Link, c("accent"))
        pal.setColor(group, QPalette.ColorRole.Mid, c("border"))
    muted = c("muted")
    for role in (QPalette.ColorRole.WindowText, QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText):
        pal.setColor(QPalette.ColorGroup.Disabled, role, muted)
    pal.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Base, c("alt_base"))
    pal.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Button, c("alt_base"))
    app.setPalette(pal)
    font = app.font()
    if font.pointSizeF() < 10:
        font.setPointSizeF(10)
    app.setFont(font)
    app.setStyleSheet(style_sheet(theme))
    pg.setConfigOptions(background=theme.plot_bg, foreground=theme.plot_fg, antialias=False)
    return theme


def style_sheet(t: Theme) -> str:
    return f"""
QWidget#Sidebar {{ background: {t.panel}; border-right: 1px solid {t.border}; }}
QListWidget#SidebarList {{ background: transparent; border: none; outline: none; }}
QListWidget#SidebarList::item {{ padding: 9px 10px; margin: 2px 8px; border-radius: 6px; color: {t.text}; }}
QListWidget#SidebarList::item:selected {{ background: {t.accent}; color: {t.accent_text}; }}
QListWidget#SidebarList::item:hover:!selected {{ background: {t.border}; }}
QLabel#AppTitle {{ font-size: 15pt; font-weight: 600; color: {t.text}; padding: 2px 0; }}
QLabel#AppSubtitle {{ color: {t.muted}; }}
QLabel#PageTitle {{ font-size: 17pt; font-weight: 600; color: {t.text}; }}
QLabel#PageSubtitle {{ color: {t.muted}; font-size: 10.5pt; }}
QLabel#Muted {{ color: {t.muted}; }}
QLabel#Big {{ font-size: 16pt; font-weight: 600; }}
QLabel#StatValue {{ font-size: 15pt; font-weight: 600; color: {t.text}; }}
QLabel#StatName {{ color: {t.muted}; font-size: 9pt; }}
QFrame#Card {{ background: {t.base}; border: 1px solid {t.border}; border-radius: 8px; }}
QFrame#DropZone {{ background: {t.alt_base}; border: 2px dashed {t.border}; border-radius: 10px; }}
QFrame#DropZone[active="true"] {{ border-color: {t.accent}; background: {t.base}; }}
QFrame#Banner {{ border-radius: 6px; padding: 2px; }}
QFrame#Banner[level="error"] {{ background: {_mix(t.bad, t.base)}; border: 1px solid {t.bad}; }}
QFrame#Banner[level="warning"] {{ background: {_mix(t.warn, t.base)}; border: 1px solid {t.warn}; }}
QFrame#Banner[level="ok"] {{ background: {_mix(t.good, t.base)}; border: 1px solid {t.good}; }}
QFrame#Banner[level="info"] {{ background: {_mix(t.accent, t.base)}; border: 1px solid {t.accent}; }}
QPushButton {{ padding: 5px 12px; border-radius: 5px; border: 1px solid {t.border}; background: {t.base}; }}
QPushButton:hover {{ border-color: {t.accent}; }}
QPushButton:disabled {{ color: {t.muted}; background: {t.alt_base}; }}
QPushButton#Primary {{ background: {t.accent}; color: {t.accent_text}; border-color: {t.accent}; font-weight: 600; }}
QPushButton#Primary:disabled {{ background: {t.border}; color: {t.muted}; border-color: {t.border}; }}
QGroupBox {{ font-weight: 600; border: 1px solid {t.border}; border-radius: 8px; margin-top: 14px; padding: 10px 8px 8px 8px; background: {t.base}; }}
QGroupBox::title {{ subcontrol-origin: margin; left: 10px; padding: 0 4px; color: {t.text}; }}
QTabWidget::pane {{ border: 1px solid {t.border}; border-radius: 6px; background: {t.base}; }}
QTabBar::tab {{ padding: 6px 14px; border: 1px solid transparent; }}
QTabBar::tab:selected {{ border-bottom: 2px solid {t.accent}; color: {t.text}; }}
QTabBar::tab:!selected {{ color: {t.muted}; }}
QProgressBar {{ border: 1px solid {t.border}; border-radius: 5px; text-align: center; background: {t.alt_base}; min-height: 16px; }}
QProgressBar::chunk {{ background: {t.accent}; border-radius: 4px; }}
QToolTip {{ border: 1px solid {t.border}; padding: 4px; }}
QStatusBar QLabel {{ padding: 0 8px; color: {t.muted}; }}
QHeaderView::section {{ padding: 4px 6px; border: none; border-bottom: 1px solid {t.border}; background: {t.alt_base}; font-weight: 600; }}
QTableView, QTreeWidget, QListWidget, QPlainTextEdit, QTextEdit {{ border: 1px solid {t.border}; border-radius: 6px; }}
QTreeWidget::item {{ padding: 4px 2px; }}
QPlainTextEdit#Mono, QTextEdit#Mono {{ font-family: "DejaVu Sans Mono", "Menlo", "Consolas", monospace; font-size: 9.5pt; }}
*[invalid="true"] {{ border: 1px solid {t.bad}; border-radius: 4px; }}
"""


def _mix(fg: str, bg: str, amount: float = 0.14) -> str:
    a, b = QColor(fg), QColor(bg)
    r = round(a.red() * amount + b.red() * (1 - amount))
    g = round(a.green() * amount + b.green() * (1 - amount))
    bl = round(a.blue() * amount + b.blue() * (1 - amount))
    return QColor(r, g, bl).name()


def mono_font() -> QFont:
    f = QFont("DejaVu Sans Mono")
    f.setStyleHint(QFont.StyleHint.Monospace)
    f.setPointSizeF(9.5)
    return f
