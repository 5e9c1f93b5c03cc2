"""Data: pick a built-in, download a public dataset, or drop your own files; then see what
was loaded (statistics, examples, problems) before any training starts."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSpinBox,
    QSplitter,
    QStackedWidget,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from metagui.core.config import DatasetConfig
from metagui.core.data import BUILTIN_SOURCES
from metagui.core.data.catalog import CATALOG, Downloader
from metagui.core.errors import DataError
from metagui.gui import icons, theme
from metagui.gui.state import AppState, dataset_key
from metagui.gui.widgets.common import (
    Banner,
    PageHeader,
    ProgressRow,
    StatTile,
    human_bytes,
    next_footer,
    page_layout,
    primary_button,
)
from metagui.gui.widgets.items import TextItemsTable, ThumbnailGrid
from metagui.gui.workers import BackgroundTask

SOURCES = [
    ("intents", "Voice intents (built-in)"),
    ("glyphs", "Synthetic glyphs (built-in)"),
    ("sinusoid", "Sine waves (built-in, regression)"),
    ("image_folder", "Your images: folder or .zip"),
    ("text_table", "Your texts: CSV, TSV or JSONL"),
    ("catalog", "Public dataset (download once)"),
]
TABLE_SUFFIXES = {".csv", ".tsv", ".tab", ".jsonl", ".json", ".txt"}
CATALOG_SKIP = {"clinc150-domains"}  # fetched together with clinc150


def peek_columns(path: str) -> list[str]:
    """Column names of a text table, read from its first line (for the column pickers)."""
    p = Path(path)
    try:
        with open(p, encoding="utf-8-sig", errors="replace") as f:
            first = f.readline()
    except OSError:
        return []
    first = first.strip()
    if not first:
        return []
    if first.startswith("{"):
        try:
            return [str(k) for k in json.loads(first)]
        except ValueError:
            return []
    try:
        dialect = csv.Sniffer().sniff(first, delimiters=",;\t|")
        return next(csv.reader([first], dialect))
    except (csv.Error, StopIteration):
        return next(csv.reader([first]), [])


def guess_column(columns: list[str], hints: tuple[str, ...]) -> str:
    low = {c.lower(): c for c in columns}
    for h in hints:
        if h in low:
            return low[h]
    for c in columns:
        if any(h in c.lower() for h in hints):
            return c
    return ""


class DropZone(QFrame):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("DropZone")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(12, 12, 12, 12)
        self.icon = QLabel()
        self.icon.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.label = QLabel("Your own data? Drop a folder of class folders, a .zip, or a .csv / .tsv / "
                            ".jsonl table anywhere on this page, or choose it:")
        self.label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.label.setWordWrap(True)
        self.label.setObjectName("Muted")
        lay.addWidget(self.icon)
        lay.addWidget(self.label)
        btns = QHBoxLayout()
        self.folder_button = QPushButton("Folder…")
        self.file_button = QPushButton("File…")
        btns.addStretch(1)
        btns.addWidget(self.folder_button)
        btns.addWidget(self.file_button)
        btns.addStretch(1)
        lay.addLayout(btns)
        self.refresh_theme()

    def set_active(self, on: bool) -> None:
        self.setProperty("active", "true" if on else "false")
        self.style().unpolish(self)
        self.style().polish(self)

    def refresh_theme(self) -> None:
        self.icon.setPixmap(icons.pixmap("download", theme.current().muted, 28))
        self.folder_button.setIcon(icons.icon("folder"))
        self.file_button.setIcon(icons.icon("file"))


class DataPage(QWidget):
    next_requested = Signal()
    loaded = Signal()

    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.downloader = Downloader()  # tests and mirrors replace this
        self.task: BackgroundTask | None = None
        self._phase = 0
        self._last_done = 0
        self._syncing = False
        self.setAcceptDrops(True)

        outer = page_layout(self)
        self.header = PageHeader(
            "data", "Data",
            "Choose the examples to learn from: a built-in set, a public dataset, or your own files. "
            "Each class becomes a candidate for few-shot tasks.")
        outer.addWidget(self.header)

        split = QSplitter(Qt.Orientation.Horizontal)
        split.setChildrenCollapsible(False)
        outer.addWidget(split, 1)

        # --- left: where the data comes from ---------------------------------------------
        left = QWidget()
        ll = QVBoxLayout(left)
        ll.setContentsMargins(0, 0, 8, 0)
        ll.setSpacing(10)
        self.source = QComboBox()
        for key, label in SOURCES + [(k, k.replace("_", " ").capitalize() + " (built-in)")
                                     for k in BUILTIN_SOURCES if k not in dict(SOURCES)]:
            self.source.addItem(label, key)
            self.source.setItemData(self.source.count() - 1, BUILTIN_SOURCES.get(key, ""), Qt.ItemDataRole.ToolTipRole)
        self.source.setToolTip("Where the examples come from")
        ll.addWidget(QLabel("<b>Source</b>"))
        ll.addWidget(self.source)
        self.source_help = QLabel()
        self.source_help.setWordWrap(True)
        self.source_help.setObjectName("Muted")
        ll.addWidget(self.source_help)

        self.options = QStackedWidget()
        self._build_options()
        ll.addWidget(self.options)

        self.drop = DropZone()
        self.drop.folder_button.clicked.connect(self._pick_folder)
        self.drop.file_button.clicked.connect(self._pick_file)
        ll.addWidget(self.drop)
        ll.addStretch(1)
        self.load_button = primary_button("Load dataset", "data")
        self.load_button.setToolTip("Read the dataset with these settings (in the background)")
        self.load_button.clicked.connect(self.load)
        ll.addWidget(self.load_button)
        self.progress = ProgressRow()
        self.progress.cancel_requested.connect(self.cancel)
        ll.addWidget(self.progress)
        left.setMinimumWidth(330)
        left.setMaximumWidth(430)
        split.addWidget(left)

        # --- right: what was loaded --------------------------------------------------------
        right = QWidget()
        rl = QVBoxLayout(right)
        rl.setContentsMargins(8, 0, 0, 0)
        rl.setSpacing(8)
        self.banner = Banner()
        rl.addWidget(self.banner)
        self.name_label = QLabel("No dataset loaded yet")
        self.name_label.setObjectName("Big")
        rl.addWidget(self.name_label)
        tiles = QHBoxLayout()
        tiles.setSpacing(18)
        self.tiles = {
            "classes": StatTile("classes", tooltip="Distinct labels; each can be one 'way' of a task"),
            "items": StatTile("examples"),
            "min": StatTile("fewest per class", tooltip="A class needs shot + query examples to be used"),
            "max": StatTile("most per class"),
            "domains": StatTile("domains", tooltip="Groups of classes (languages, alphabets, ...); usable for domain splits"),
        }
        for t in self.tiles.values():
            tiles.addWidget(t)
        tiles.addStretch(1)
        rl.addLayout(tiles)
        self.tabs = QTabWidget()
        rl.addWidget(self.tabs, 1)

        overview = QWidget()
        ol = QHBoxLayout(overview)
        ol.setContentsMargins(8, 8, 8, 8)
        self.histogram = pg.PlotWidget()
        self.histogram.setMinimumHeight(200)
        self.histogram.getPlotItem().setLabel("left", "examples")
        self.histogram.getPlotItem().setLabel("bottom", "classes (sorted by size)")
        self.histogram.setMouseEnabled(x=True, y=False)
        for ax in ("left", "bottom"):
            self.histogram.getPlotItem().getAxis(ax).enableAutoSIPrefix(False)
        ol.addWidget(self.histogram, 3)
        dcol = QVBoxLayout()
        dcol.addWidget(QLabel("<b>Domains</b>"))
        self.domains = QListWidget()
        self.domains.setMaximumWidth(240)
        dcol.addWidget(self.domains)
        ol.addLayout(dcol, 1)
        self.tabs.addTab(overview, "Overview")

        self.examples_stack = QStackedWidget()
        self.thumbs = ThumbnailGrid(56)
        self.text_rows = TextItemsTable()
        self.sine_plot = pg.PlotWidget()
        self.examples_stack.addWidget(self.thumbs)
        self.examples_stack.addWidget(self.text_rows)
        self.examples_stack.addWidget(self.sine_plot)
        self.tabs.addTab(self.examples_stack, "Examples")

        self.problems = QListWidget()
        self.problems.setWordWrap(True)
        self.tabs.addTab(self.problems, "Problems")

        split.addWidget(right)
        split.setStretchFactor(0, 0)
        split.setStretchFactor(1, 1)

        self.summary = QLabel()
        self.summary.setObjectName("Muted")
        foot, self.next_button = next_footer("Tasks", self.next_requested, lead=self.summary)
        outer.addLayout(foot)

        self.source.currentIndexChanged.connect(self._on_source_changed)
        state.config_changed.connect(self._on_config_changed)
        state.dataset_changed.connect(self.show_dataset)
        self.sync_from_config()
        self.apply_theme()

    # --- options per source -------------------------------------------------------------------
    def _build_options(self) -> None:
        self.opt_pages: dict[str, QWidget] = {}

        w = QWidget()
        f = QFormLayout(w)
        f.setContentsMargins(0, 0, 0, 0)
        self.languages = QLineEdit()
        self.languages.setPlaceholderText("en")
        self.languages.setToolTip("Language codes, comma separated (e.g. en, de, fr). Each language is a domain.")
        f.addRow("Languages", self.languages)
        self.opt_pages["intents"] = w

        w = QWidget()
        f = QFormLayout(w)
        f.setContentsMargins(0, 0, 0, 0)
        self.n_alphabets = self._spin(1, 1000, "Alphabets to generate (each one is a domain)")
        self.chars = self._spin(1, 200, "Characters (classes) per alphabet")
        self.drawers = self._spin(2, 200, "Drawings (examples) per character")
        self.glyph_size = self._spin(8, 128, "Image side in pixels")
        self.glyph_seed = self._spin(0, 2**31 - 1, "Seed of the generator: the same seed draws the same glyphs")
        f.addRow("Alphabets", self.n_alphabets)
        f.addRow("Characters each", self.chars)
        f.addRow("Drawers", self.drawers)
        f.addRow("Image size", self.glyph_size)
        f.addRow("Seed", self.glyph_seed)
        self.opt_pages["glyphs"] = w

        w = QLabel("Sine waves are a task family: every task is a fresh curve y = A·sin(x − φ), "
                   "so there is nothing to load. Set how many points each task shows on the Tasks page.")
        w.setWordWrap(True)
        self.opt_pages["sinusoid"] = w

        w = QWidget()
        f = QFormLayout(w)
        f.setContentsMargins(0, 0, 0, 0)
        self.image_path = QLineEdit()
        self.image_path.setPlaceholderText("folder of class folders, or a .zip")
        self.image_path.setToolTip("root/class/*.png or root/domain/class/*.png, as a folder or a .zip")
        f.addRow("Path", self.image_path)
        self.image_size = self._spin(4, 1024, "Images are resized to this square size")
        self.channels = QComboBox()
        self.channels.addItem("Grayscale", 1)
        self.channels.addItem("Colour (RGB)", 3)
        self.invert = QCheckBox("Invert (dark strokes on light paper, like Omniglot)")
        f.addRow("Image size", self.image_size)
        f.addRow("Channels", self.channels)
        f.addRow(self.invert)
        self.opt_pages["image_folder"] = w

        w = QWidget()
        f = QFormLayout(w)
        f.setContentsMargins(0, 0, 0, 0)
        self.table_path = QLineEdit()
        self.table_path.setPlaceholderText("a .csv, .tsv or .jsonl file")
        f.addRow("File", self.table_path)
        self.text_column = self._column_combo("Column holding the text of each example")
        self.label_column = self._column_combo("Column holding the class label")
        self.domain_column = self._column_combo("Optional column grouping classes into domains")
        f.addRow("Text column", self.text_column)
        f.addRow("Label column", self.label_column)
        f.addRow("Domain column", self.domain_column)
        self.opt_pages["text_table"] = w

        w = QWidget()
        f = QFormLayout(w)
        f.setContentsMargins(0, 0, 0, 0)
        self.catalog = QComboBox()
        for name, entry in CATALOG.items():
            if name not in CATALOG_SKIP:
                self.catalog.addItem(entry.title, name)
        self.catalog_info = QLabel()
        self.catalog_info.setWordWrap(True)
        self.catalog_info.setObjectName("Muted")
        f.addRow("Dataset", self.catalog)
        f.addRow(self.catalog_info)
        self.catalog.currentIndexChanged.connect(self._update_catalog_info)
        self.opt_pages["catalog"] = w

        for key in BUILTIN_SOURCES:
            if key not in self.opt_pages:  # a source added to the core later: no options here yet
                note = QLabel(BUILTIN_SOURCES[key])
                note.setWordWrap(True)
                self.opt_pages[key] = note
        for page in self.opt_pages.values():
            self.options.addWidget(page)

    @staticmethod
    def _spin(low: int, high: int, tip: str) -> QSpinBox:
        s = QSpinBox()
        s.setRange(low, high)
        s.setToolTip(tip)
        return s

    @staticmethod
    def _column_combo(tip: str) -> QComboBox:
        c = QComboBox()
        c.setEditable(True)
        c.setToolTip(tip)
        return c

    # --- config <-> widgets ---------------------------------------------------------------------
    def current_source(self) -> str:
        return str(self.source.currentData())

    def sync_from_config(self) -> None:
        self._syncing = True
        d = self.state.config.dataset
        idx = self.source.findData(d.source)
        self.source.setCurrentIndex(max(idx, 0))
        self.languages.setText(", ".join(d.languages))
        self.n_alphabets.setValue(d.n_alphabets)
        self.chars.setValue(d.characters_per_alphabet)
        self.drawers.setValue(d.drawers)
        self.glyph_size.setValue(d.image_size)
        self.glyph_seed.setValue(d.seed)
        self.image_size.setValue(d.image_size)
        self.channels.setCurrentIndex(1 if d.channels == 3 else 0)
        self.invert.setChecked(d.invert)
        if d.source == "image_folder":
            self.image_path.setText(d.path)
        if d.source == "text_table":
            self.table_path.setText(d.path)
            self._fill_columns(d.path, d.text_column, d.label_column, d.domain_column)
        if d.source == "catalog":
            i = self.catalog.findData(d.path)
            if i >= 0:
                self.catalog.setCurrentIndex(i)
        self._syncing = False
        self._on_source_changed()

    def dataset_config(self) -> DatasetConfig:
        """The dataset section as the widgets describe it now."""
        d = dataclasses.replace(self.state.config.dataset)
        src = self.current_source()
        d.source = src
        if src == "intents":
            langs = [x.strip() for x in self.languages.text().replace(";", ",").split(",") if x.strip()]
            d.languages = langs or ["en"]
            d.path = ""
        elif src == "glyphs":
            d.n_alphabets = self.n_alphabets.value()
            d.characters_per_alphabet = self.chars.value()
            d.drawers = self.drawers.value()
            d.image_size = self.glyph_size.value()
            d.seed = self.glyph_seed.value()
            d.path = ""
        elif src == "image_folder":
            d.path = self.image_path.text().strip()
            d.image_size = self.image_size.value()
            d.channels = int(self.channels.currentData())
            d.invert = self.invert.isChecked()
        elif src == "text_table":
            d.path = self.table_path.text().strip()
            d.text_column = self.text_column.currentText().strip() or "text"
            d.label_column = self.label_column.currentText().strip() or "category"
            d.domain_column = self.domain_column.currentText().strip()
        elif src == "catalog":
            d.path = str(self.catalog.currentData() or "")
            entry = CATALOG.get(d.path)
            if entry is not None and entry.kind == "image_zip":
                d.image_size = int(entry.loader_options.get("image_size", 28))
                d.channels = int(entry.loader_options.get("channels", 1))
                d.invert = bool(entry.loader_options.get("invert", True))
        else:
            d.path = ""
        return d

    def _on_source_changed(self) -> None:
        src = self.current_source()
        self.options.setCurrentWidget(self.opt_pages[src])
        self.source_help.setText(BUILTIN_SOURCES.get(src, ""))
        self.load_button.setText({"catalog": "Download and load", "sinusoid": "Use sine waves"}.get(src, "Load dataset"))
        self.load_button.setIcon(icons.icon("download" if src == "catalog" else "data", theme.current().accent_text))
        self._update_catalog_info()

    def _update_catalog_info(self) -> None:
        entry = CATALOG.get(str(self.catalog.currentData() or ""))
        if entry is None:
            self.catalog_info.setText("")
            return
        have = self.downloader.target(entry).is_file()
        size = human_bytes(entry.size_bytes) if entry.size_bytes else "size unknown"
        self.catalog_info.setText(f"{entry.description}<br>Licence {entry.licence} · {size} · "
                                  + ("<b>already downloaded</b>" if have else "not downloaded yet"))

    def _fill_columns(self, path: str, text: str = "", label: str = "", domain: str = "") -> None:
        cols = peek_columns(path) if path else []
        for combo, value, hints in (
            (self.text_column, text, ("text", "sentence", "utterance", "query", "question")),
            (self.label_column, label, ("category", "label", "intent", "class", "target")),
            (self.domain_column, domain, ("domain", "language", "lang", "group")),
        ):
            combo.blockSignals(True)
            combo.clear()
            if combo is self.domain_column:
                combo.addItem("")
            combo.addItems(cols)
            guess = value if (value and (value in cols or not cols)) else guess_column(cols, hints)
            if combo is self.domain_column and not value:
                guess = ""
            combo.setCurrentText(guess)
            combo.blockSignals(False)

    def _on_config_changed(self, section: str) -> None:
        if section in ("all", "dataset") and not self._syncing:
            self.sync_from_config()
            self.show_dataset()

    # --- choosing files ---------------------------------------------------------------------------
    def _pick_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Choose a folder of class folders")
        if path:
            self.open_path(path)

    def _pick_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Choose a dataset file", "", "Datasets (*.zip *.csv *.tsv *.jsonl *.json *.txt);;All files (*)")
        if path:
            self.open_path(path)

    def open_path(self, path: str, load: bool = True) -> bool:
        """Use a dropped or chosen path: a folder or .zip of images, or a text table."""
        p = Path(path)
        if p.is_dir() or p.suffix.lower() == ".zip":
            self.source.setCurrentIndex(self.source.findData("image_folder"))
            self.image_path.setText(str(p))
        elif p.suffix.lower() in TABLE_SUFFIXES:
            self.source.setCurrentIndex(self.source.findData("text_table"))
            self.table_path.setText(str(p))
            self._fill_columns(str(p))
        else:
            self.banner.show_message(
                "error", f"{p.name} is not something MetaGUI can read: drop a folder of class folders, "
                         "a .zip of them, or a .csv / .tsv / .jsonl table.")
            return False
        if load:
            self.load()
        return True

    def dragEnterEvent(self, event) -> None:  # noqa: N802
        if event.mimeData().hasUrls() and any(u.isLocalFile() for u in event.mimeData().urls()):
            self.drop.set_active(True)
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragLeaveEvent(self, event) -> None:  # noqa: N802
        self.drop.set_active(False)

    def dropEvent(self, event) -> None:  # noqa: N802
        self.drop.set_active(False)
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self.open_path(paths[0])

    # --- loading ------------------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self.task is not None and self.task.running

    def load(self) -> None:
        """Load the dataset the widgets describe, in a worker thread."""
        if self.busy:
            return
        cfg = self.dataset_config()
        self._syncing = True
        self.state.config.dataset = cfg
        self.state.changed("dataset")
        self._syncing = False
        self.banner.clear()
        if cfg.source == "sinusoid":
            self.state.set_dataset(None, cfg)
            self.loaded.emit()
            return
        downloader = self.downloader

        def work(progress, cancel):
            if cfg.source == "catalog":
                from metagui.core.data.catalog import get_entry, load_catalog_dataset

                if not cfg.path:
                    raise DataError("choose a public dataset first")
                entry = get_entry(cfg.path)
                options = {}
                if entry.kind == "image_zip":
                    options = dict(image_size=cfg.image_size, channels=cfg.channels, invert=cfg.invert,
                                   rotations=cfg.rotations)
                return load_catalog_dataset(entry.name, downloader=downloader, progress=progress,
                                            cancel=cancel, **options)
            from metagui.core.data import load_dataset

            return load_dataset(cfg, progress, cancel)

        self._phase = 0
        self._last_done = 0
        self.task = BackgroundTask(work, "load-data", self)
        self.task.progress.connect(self._on_progress)
        self.task.succeeded.connect(lambda ds: self._on_loaded(ds, cfg))
        self.task.failed.connect(self._on_failed)
        self.task.cancelled.connect(self._on_cancelled)
        self.task.finished.connect(self._on_finished)
        verb = "Downloading" if cfg.source == "catalog" else "Loading"
        self.progress.begin(f"{verb}…")
        self.load_button.setEnabled(False)
        self.task.start()

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()
            self.progress.cancel_button.setEnabled(False)
            self.progress.label.setText("Cancelling…")

    def _on_progress(self, done, total) -> None:
        if done < self._last_done:
            self._phase += 1
        self._last_done = done
        if self.current_source() == "catalog" and self._phase == 0:
            text = f"Downloading {human_bytes(done)}" + (f" of {human_bytes(total)}" if total else "")
        else:
            text = f"Reading {done:,} of {total:,}" if total else "Reading…"
        self.progress.report(done, total, text)

    def _on_loaded(self, ds, cfg: DatasetConfig) -> None:
        if dataset_key(cfg) != dataset_key(self.state.config.dataset):
            return  # the config moved on while loading; a newer load follows
        self.state.set_dataset(ds, cfg)
        self._update_catalog_info()
        self.loaded.emit()

    def _on_failed(self, message: str, details: str) -> None:
        self.banner.show_message("error", message)
        if details:
            import logging

            logging.getLogger("metagui").error("loading data failed: %s\n%s", message, details)

    def _on_cancelled(self, message: str) -> None:
        self.banner.show_message("info", message if message != "cancelled" else "Loading was cancelled.")

    def _on_finished(self) -> None:
        self.progress.end()
        self.load_button.setEnabled(True)
        self.task = None

    def ensure_loaded(self) -> None:
        """Load the configured dataset unless it is loaded already (project opened, run reopened)."""
        if not self.state.dataset_ready and not self.busy:
            self.load()
        elif self.state.config.dataset.source == "sinusoid":
            self.state.set_dataset(None, self.state.config.dataset)

    # --- showing the loaded dataset -----------------------------------------------------------
    def show_dataset(self) -> None:
        ds = self.state.dataset
        src = self.state.config.dataset.source
        if src == "sinusoid" and self.state.dataset_ready:
            self._show_sinusoid()
            return
        if ds is None or not self.state.dataset_ready:
            self.name_label.setText("No dataset loaded yet" if ds is None else f"{ds.name} (settings changed: load again)")
            if ds is None:
                for t in self.tiles.values():
                    t.set("–")
                self.summary.setText("Choose a source and press Load.")
                self.problems.clear()
                self.thumbs.clear()
                self.text_rows.setRowCount(0)
                self.histogram.clear()
                self.domains.clear()
            return
        st = ds.stats()
        self.name_label.setText(f"{ds.name}  ·  {ds.modality.value}")
        self.tiles["classes"].set(f"{st.n_classes:,}")
        self.tiles["items"].set(f"{st.n_items:,}")
        self.tiles["min"].set(str(st.min_per_class))
        self.tiles["max"].set(str(st.max_per_class))
        named = [d for d in st.domains if d]
        self.tiles["domains"].set(str(len(named)) if named else "none")
        self.domains.clear()
        for d, n in sorted(st.domains.items()):
            self.domains.addItem(f"{d or '(no domain)'} — {n} classes")
        self._draw_histogram()
        self._show_examples()
        self.refresh_problems()

    def _draw_histogram(self) -> None:
        ds = self.state.dataset
        if ds is None:
            return
        t = theme.current()
        counts = np.array(sorted(ds.stats().per_class.values(), reverse=True), dtype=float)
        need = self.state.config.task.shot + self.state.config.task.query
        pi = self.histogram.getPlotItem()
        pi.clear()
        x = np.arange(len(counts))
        ok = counts >= need
        if ok.any():
            pi.addItem(pg.BarGraphItem(x=x[ok], height=counts[ok], width=0.85, brush=t.series[0], pen=None))
        if (~ok).any():
            pi.addItem(pg.BarGraphItem(x=x[~ok], height=counts[~ok], width=0.85, brush=t.bad, pen=None))
        line = pg.InfiniteLine(pos=need, angle=0, pen=pg.mkPen(t.warn, width=1.5, style=Qt.PenStyle.DashLine),
                               label=f"a task needs {need} per class", labelOpts={"color": t.warn, "position": 0.7, "anchors": [(0.5, 1), (0.5, 1)],
                                          "fill": pg.mkBrush(QColor(t.plot_bg))})
        pi.addItem(line)
        pi.setTitle("Examples per class", color=t.plot_fg, size="10pt")
        pi.enableAutoRange()

    def _show_examples(self) -> None:
        ds = self.state.dataset
        rng = np.random.default_rng(0)
        by_class = ds.items_by_class()
        if ds.modality.value == "image":
            self.examples_stack.setCurrentWidget(self.thumbs)
            n_classes = len(ds.classes)
            picks = np.linspace(0, n_classes - 1, num=min(n_classes, 40)).astype(int)
            items = []
            for c in dict.fromkeys(picks.tolist()):
                idx = by_class[c]
                for i in idx[: 2 if n_classes < 30 else 1]:
                    path = ds.paths[i] if ds.paths else ""
                    items.append((ds.images[i], ds.classes[c].split("/")[-1], f"{ds.classes[c]}\n{path}".strip(), None))
            self.thumbs.set_items(items[:80])
        else:
            self.examples_stack.setCurrentWidget(self.text_rows)
            rows = []
            n = len(ds)
            for i in sorted(rng.choice(n, size=min(n, 80), replace=False).tolist()):
                rows.append((ds.classes[ds.labels[i]], ds.texts[i], None))
            self.text_rows.set_rows(rows)

    def _show_sinusoid(self) -> None:
        from metagui.core.data.sinusoid import SinusoidTasks

        self.name_label.setText("Sine waves  ·  regression task family")
        for k, v in {"classes": "∞", "items": "∞", "min": "–", "max": "–", "domains": "none"}.items():
            self.tiles[k].set(v)
        self.domains.clear()
        self.problems.clear()
        self.tabs.setTabText(2, "Problems")
        t = theme.current()
        fam = SinusoidTasks()
        params = fam.draw_functions(5, np.random.default_rng(0))
        xs = np.linspace(-5, 5, 200)[None, :, None]
        ys = SinusoidTasks.evaluate(params, np.repeat(xs, 5, axis=0))
        for plot in (self.sine_plot, self.histogram):
            pi = plot.getPlotItem()
            pi.clear()
            for i in range(5):
                pi.plot(xs[0, :, 0], ys[i, :, 0], pen=pg.mkPen(t.series[i % len(t.series)], width=2))
            pi.setTitle("Five tasks drawn from the family", color=t.plot_fg, size="10pt")
        self.examples_stack.setCurrentWidget(self.sine_plot)
        self.summary.setText("Each task is a new sine wave; the learner sees K points and predicts the curve.")

    def refresh_problems(self) -> None:
        """Problems found while reading, plus classes too small for the current task."""
        ds = self.state.dataset
        self.problems.clear()
        if ds is None or not self.state.dataset_ready:
            self.tabs.setTabText(2, "Problems")
            return
        t = theme.current()
        task = self.state.config.task
        small = ds.check_task(task.way, task.shot, task.query)
        found = list(ds.problems) + small
        for p in found:
            it = QListWidgetItem(icons.icon("warning" if p.kind != "unreadable" else "error",
                                            t.warn if p.kind != "unreadable" else t.bad), p.message)
            if p.path:
                it.setToolTip(p.path)
            self.problems.addItem(it)
        if not found:
            it = QListWidgetItem(icons.icon("check", t.good), "No problems found.")
            self.problems.addItem(it)
        self.tabs.setTabText(2, f"Problems ({len(found)})" if found else "Problems")
        unreadable = sum(1 for p in ds.problems if p.kind == "unreadable")
        parts = [f"{ds.stats().n_classes} classes ready"]
        if unreadable:
            parts.append(f"{unreadable} unreadable file(s) skipped")
        if small:
            parts.append(f"{len(small)} class(es) too small for {task.shot}-shot + {task.query}-query: they will be skipped")
        self.summary.setText("; ".join(parts) + ".")
        self._draw_histogram()

    def apply_theme(self) -> None:
        t = theme.current()
        self.header.refresh_theme()
        self.drop.refresh_theme()
        for plot in (self.histogram, self.sine_plot):
            plot.setBackground(t.plot_bg)
            for ax in ("left", "bottom"):
                plot.getPlotItem().getAxis(ax).setPen(pg.mkPen(t.plot_fg))
                plot.getPlotItem().getAxis(ax).setTextPen(pg.mkPen(t.plot_fg))
        self._on_source_changed()
        self.show_dataset()
