"""Data: pick a built-in, download a public dataset, or drop your own files; then see what
was loaded (statistics, examples, problems) before any training starts."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QSignalBlocker, Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QStackedWidget,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from metagui.core.config import DatasetConfig
from metagui.core.data import BUILTIN_SOURCES
from metagui.core.data.catalog import CATALOG, Downloader
from metagui.core.errors import DataError, MetaGUIError
from metagui.gui import icons, theme
from metagui.gui.state import AppState, dataset_key
from metagui.gui.widgets.binding import ConfigDraft, bind, spin_box
from metagui.gui.widgets.common import (
    Banner,
    PageHeader,
    ProgressRow,
    StatTile,
    human_bytes,
    muted_label,
    next_footer,
    page_layout,
    primary_button,
    splitter,
)
from metagui.gui.widgets.items import TextItemsTable, ThumbnailGrid
from metagui.gui.widgets.own_files import DropZone, guess_column, peek_columns
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
# a source's own file or entry: the other sources' options keep theirs when the config changes
OWN_FIELDS = ("path", "text_column", "label_column", "domain_column")


def _languages(text: str) -> list[str]:
    """Language codes from "en, de; fr" (English when none)."""
    return [x.strip() for x in text.replace(";", ",").split(",") if x.strip()] or ["en"]


def _form_page() -> tuple[QWidget, QFormLayout]:
    w = QWidget()
    f = QFormLayout(w)
    f.setContentsMargins(0, 0, 0, 0)
    return w, f


def _note(text: str) -> QLabel:
    note = QLabel(text)
    note.setWordWrap(True)
    return note


class DataPage(QWidget):
    """The Data step. Its options edit a draft of the dataset settings per source (``drafts``),
    through bindings; Load puts the chosen source's draft into the config and loads it, so the
    other pages follow the data only once it is loaded."""

    next_requested = Signal()
    loaded = Signal()

    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.downloader = Downloader()  # tests and mirrors replace this
        self.task: BackgroundTask | None = None
        self._load_when_done = False  # ensure_loaded while busy: load again once done
        self._phase = 0
        self._last_done = 0
        self.drafts: dict[str, ConfigDraft] = {}
        self._option_fields: dict[str, list[str]] = {}  # per source: what its options set
        self._loaded_config: DatasetConfig | None = None  # what this page's last Load wrote
        self.setAcceptDrops(True)
        outer = page_layout(self)
        self.header = PageHeader(
            "data", "Data",
            "Choose the examples to learn from: a built-in set, a public dataset, or your own files. "
            "Each class becomes a candidate for few-shot tasks.")
        outer.addWidget(self.header)
        split = splitter()
        split.addWidget(self._build_source_panel())
        split.addWidget(self._build_dataset_view())
        split.setStretchFactor(0, 0)
        split.setStretchFactor(1, 1)
        outer.addWidget(split, 1)
        self.summary = muted_label()
        foot, self.next_button = next_footer("Tasks", self.next_requested, lead=self.summary)
        outer.addLayout(foot)
        state.config_changed.connect(self._on_config_changed)
        state.dataset_changed.connect(self.show_dataset)
        self._show_config()
        self.apply_theme()

    # --- where the data comes from (left) ---------------------------------------------------
    def _build_source_panel(self) -> QWidget:
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
        self.source.currentIndexChanged.connect(self._on_source_changed)
        ll.addWidget(QLabel("<b>Source</b>"))
        ll.addWidget(self.source)
        self.source_help = muted_label(wrap=True)
        ll.addWidget(self.source_help)
        self.options = QStackedWidget()
        self._build_options()
        ll.addWidget(self.options)
        self.drop = DropZone()
        self.drop.folder_button.clicked.connect(self._pick_folder)
        self.drop.file_button.clicked.connect(self._pick_file)
        ll.addWidget(self.drop)
        ll.addWidget(self._build_feedback_row())
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
        return left

    def _build_feedback_row(self) -> QWidget:
        """Feedback of run N: what a served or tried model was corrected on, as a text table."""
        box = QWidget()
        row = QHBoxLayout(box)
        row.setContentsMargins(0, 0, 0, 0)
        self.feedback_runs = QComboBox()
        self.feedback_runs.setToolTip("Messages that a served model (metagui serve) or the Try it pane was told the "
                                      "right intent of, per run")
        self.feedback_button = QPushButton("Use")
        self.feedback_button.setToolTip("Load this feedback as a text table (text, label): fine-tune a run on it "
                                        "(Runs page: Fine-tune), alone or beside other data")
        self.feedback_button.clicked.connect(lambda: self.use_feedback(self.feedback_runs.currentData()))
        row.addWidget(self.feedback_runs, 1)
        row.addWidget(self.feedback_button)
        self.refresh_feedback()
        return box

    def refresh_feedback(self) -> None:
        """The runs that have feedback, with how much."""
        try:
            counts = self.state.store.feedback_counts() if not self.state.closed else {}
        except Exception:  # noqa: BLE001  a busy or closed store: nothing to offer now
            counts = {}
        current = self.feedback_runs.currentData()
        self.feedback_runs.clear()
        for rid, n in sorted(counts.items(), reverse=True):
            self.feedback_runs.addItem(f"Feedback of run {rid} ({n} messages)", rid)
        if not counts:
            self.feedback_runs.addItem("No feedback yet (metagui serve, Try it)", None)
        if current is not None and self.feedback_runs.findData(current) >= 0:
            self.feedback_runs.setCurrentIndex(self.feedback_runs.findData(current))
        self.feedback_button.setEnabled(bool(counts))

    def use_feedback(self, run_id: int | None, load: bool = True) -> Path | None:
        """Write run ``run_id``'s feedback beside the store and open it as a text table."""
        if run_id is None:
            return None
        from metagui.core.feedback import feedback_file, write_feedback_csv

        try:
            path, n, k = write_feedback_csv(self.state.store, run_id, feedback_file(self.state.store, run_id))
        except MetaGUIError as exc:
            self.banner.show_message("error", str(exc))
            return None
        self.open_path(str(path), load=False)
        if load:
            self.load()
        self.banner.show_message("ok", f"Feedback of run {run_id}: {n} messages of {k} intents, from {path.name}.")
        return path

    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        self.refresh_feedback()

    def _build_options(self) -> None:
        """One page of options per source, each bound to that source's draft."""
        self.opt_pages: dict[str, QWidget] = {
            "intents": self._intents_options(), "glyphs": self._glyph_options(),
            "sinusoid": _note("Sine waves are a task family: every task is a fresh curve y = A·sin(x − φ), "
                              "so there is nothing to load. Set how many points each task shows on the Tasks page."),
            "image_folder": self._image_folder_options(), "text_table": self._text_table_options(),
            "catalog": self._catalog_options(),
        }
        for key in BUILTIN_SOURCES:
            if key not in self.opt_pages:  # a source added to the core later: no options here yet
                self.opt_pages[key] = _note(BUILTIN_SOURCES[key])
        for page in self.opt_pages.values():
            self.options.addWidget(page)

    def _option(self, source: str, widget: QWidget, field: str, **kw) -> QWidget:
        """``widget`` bound to ``field`` of ``source``'s draft, which Load takes it from."""
        if source not in self.drafts:
            self.drafts[source] = ConfigDraft(SimpleNamespace(dataset=DatasetConfig()), self)
        bind(widget, self.drafts[source], f"dataset.{field}", **kw)
        self._option_fields.setdefault(source, []).append(field)
        return widget

    def _intents_options(self) -> QWidget:
        w, f = _form_page()
        self.languages = QLineEdit()
        self.languages.setPlaceholderText("en")
        self.languages.setToolTip("Language codes, comma separated (e.g. en, de, fr). Each language is a domain.")
        f.addRow("Languages", self._option("intents", self.languages, "languages", to_widget=", ".join,
                                           from_widget=_languages))
        return w

    def _glyph_options(self) -> QWidget:
        w, f = _form_page()
        for attr, label, field, low, high, tip in (
            ("n_alphabets", "Alphabets", "n_alphabets", 1, 1000, "Alphabets to generate (each one is a domain)"),
            ("chars", "Characters each", "characters_per_alphabet", 1, 200, "Characters (classes) per alphabet"),
            ("drawers", "Drawers", "drawers", 2, 200, "Drawings (examples) per character"),
            ("glyph_size", "Image size", "image_size", 8, 128, "Image side in pixels"),
            ("glyph_seed", "Seed", "seed", 0, 2**31 - 1, "Seed of the generator: the same seed draws the same glyphs"),
        ):
            setattr(self, attr, self._option("glyphs", spin_box(low, high, tip), field))
            f.addRow(label, getattr(self, attr))
        return w

    def _image_folder_options(self) -> QWidget:
        w, f = _form_page()
        self.image_path = QLineEdit()
        self.image_path.setPlaceholderText("folder of class folders, or a .zip")
        self.image_path.setToolTip("root/class/*.png or root/domain/class/*.png, as a folder or a .zip")
        f.addRow("Path", self._option("image_folder", self.image_path, "path"))
        self.image_size = spin_box(4, 1024, "Images are resized to this square size")
        self.channels = QComboBox()
        self.channels.addItem("Grayscale", 1)
        self.channels.addItem("Colour (RGB)", 3)
        self.invert = QCheckBox("Invert (dark strokes on light paper, like Omniglot)")
        f.addRow("Image size", self._option("image_folder", self.image_size, "image_size"))
        f.addRow("Channels", self._option("image_folder", self.channels, "channels"))
        f.addRow(self._option("image_folder", self.invert, "invert"))
        return w

    def _text_table_options(self) -> QWidget:
        w, f = _form_page()
        self.table_path = QLineEdit()
        self.table_path.setPlaceholderText("a .csv, .tsv or .jsonl file")
        f.addRow("File", self._option("text_table", self.table_path, "path"))
        for attr, label, tip in (("text_column", "Text column", "Column holding the text of each example"),
                                 ("label_column", "Label column", "Column holding the class label"),
                                 ("domain_column", "Domain column", "Optional column grouping classes into domains")):
            combo = QComboBox()
            combo.setEditable(True)
            combo.setToolTip(tip)
            setattr(self, attr, self._option("text_table", combo, attr, by="text"))
            f.addRow(label, combo)
        return w

    def _catalog_options(self) -> QWidget:
        w, f = _form_page()
        self.catalog = QComboBox()
        for name, entry in CATALOG.items():
            if name not in CATALOG_SKIP:
                self.catalog.addItem(entry.title, name)
        self.catalog.currentIndexChanged.connect(self._update_catalog_info)
        self.catalog_info = muted_label(wrap=True)
        f.addRow("Dataset", self._option("catalog", self.catalog, "path"))
        self.drafts["catalog"].config.dataset.path = str(self.catalog.currentData() or "")
        f.addRow(self.catalog_info)
        return w

    # --- what was loaded (right) --------------------------------------------------------------
    def _build_dataset_view(self) -> QWidget:
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
        self.tabs.addTab(self._build_overview(), "Overview")
        self.examples_stack = QStackedWidget()
        self.thumbs = ThumbnailGrid(56)
        self.text_rows = TextItemsTable()
        self.sine_plot = pg.PlotWidget()
        for w in (self.thumbs, self.text_rows, self.sine_plot):
            self.examples_stack.addWidget(w)
        self.tabs.addTab(self.examples_stack, "Examples")
        self.problems = QListWidget()
        self.problems.setWordWrap(True)
        self.tabs.addTab(self.problems, "Problems")
        return right

    def _build_overview(self) -> QWidget:
        """Examples per class (a histogram) and the domains."""
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
        return overview

    # --- config <-> drafts ------------------------------------------------------------------------
    def current_source(self) -> str:
        return str(self.source.currentData())

    def _show_config(self) -> None:
        """Every source's options from the config; a source other than the config's keeps its
        own file or entry (OWN_FIELDS)."""
        d = self.state.config.dataset
        for source, draft in self.drafts.items():
            shown = copy.deepcopy(d)
            if source != d.source:
                for name in OWN_FIELDS:
                    setattr(shown, name, getattr(draft.config.dataset, name))
            draft.reset(SimpleNamespace(dataset=shown))
        self.source.setCurrentIndex(max(self.source.findData(d.source), 0))
        if d.source == "text_table":
            self._fill_columns(d.path, d.text_column, d.label_column, d.domain_column)
        self._on_source_changed()

    def dataset_config(self) -> DatasetConfig:
        """The dataset section as the widgets describe it now: the config, with the chosen
        source and that source's options."""
        src = self.current_source()
        d = dataclasses.replace(self.state.config.dataset, source=src)
        if src in self.drafts:
            draft = self.drafts[src].config.dataset
            for name in self._option_fields[src]:
                setattr(d, name, copy.deepcopy(getattr(draft, name)))
        if src == "text_table":
            d.path = d.path.strip()
            d.text_column = d.text_column.strip() or "text"
            d.label_column = d.label_column.strip() or "category"
            d.domain_column = d.domain_column.strip()
        elif src == "image_folder":
            d.path = d.path.strip()
        elif src == "catalog":
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
        """Offer the table's columns; take ``text``/``label``/``domain`` where the table has them,
        else a guess from the column names (no domain column unless asked)."""
        cols = peek_columns(path) if path else []
        draft = self.drafts["text_table"]
        for combo, field, value, hints in (
            (self.text_column, "text_column", text, ("text", "sentence", "utterance", "query", "question")),
            (self.label_column, "label_column", label, ("category", "label", "intent", "class", "target")),
            (self.domain_column, "domain_column", domain, ("domain", "language", "lang", "group")),
        ):
            with QSignalBlocker(combo):
                combo.clear()
                combo.addItems([""] + cols if combo is self.domain_column else cols)
            guess = value if (value and (value in cols or not cols)) else guess_column(cols, hints)
            setattr(draft.config.dataset, field, "" if combo is self.domain_column and not value else guess)
        draft.changed("dataset")  # the boxes show what was taken

    def _on_config_changed(self, section: str) -> None:
        if section not in ("all", "dataset"):
            return
        if section == "dataset" and self.state.config.dataset == self._loaded_config:
            return  # this page's own Load: its options show that already
        self._loaded_config = None
        self._show_config()
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
        self._loaded_config = copy.deepcopy(cfg)
        self.state.config.dataset = cfg
        self.state.changed("dataset")
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
        if self._load_when_done:  # a project or run was opened while the previous data loaded
            self._load_when_done = False
            self.ensure_loaded()

    def ensure_loaded(self) -> None:
        """Load the configured dataset unless it is loaded already (project opened, run
        reopened); while another load runs, once it is done."""
        if self.busy:
            self._load_when_done = True
        elif not self.state.dataset_ready:
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
