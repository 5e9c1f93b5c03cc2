"""Tasks: the shape of the few-shot problems (N-way, K-shot, Q queries), how classes are
split between meta-training, validation and test, and a preview of one episode."""

from __future__ import annotations

import dataclasses

import numpy as np
import pyqtgraph as pg
import torch
from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from metagui.core.errors import MetaGUIError
from metagui.core.tasks import SPLITS, EpisodeSampler, check_task, split_classes
from metagui.gui import icons, theme
from metagui.gui.state import AppState
from metagui.gui.widgets.assign import AssignmentTable
from metagui.gui.widgets.binding import FieldBinding, bind, binding_of, spin_box
from metagui.gui.widgets.common import (
    Banner,
    PageHeader,
    muted_label,
    next_footer,
    page_layout,
    scroll_area,
    splitter,
)
from metagui.gui.widgets.items import TextItemsTable, ThumbnailGrid, class_color

STRATEGIES = [("ratio", "By ratio (random classes)"), ("classes", "Explicit class lists"), ("domain", "By domain")]


class TasksPage(QWidget):
    next_requested = Signal()
    reload_requested = Signal()

    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self._episodes_drawn = 0
        self.last_episode: dict | None = None
        self.error: str = ""
        outer = page_layout(self)
        self.header = PageHeader(
            "tasks", "Tasks",
            "Define the small problems the learner practises on: N classes per task, K examples of "
            "each to learn from (support) and Q more to be tested on (query).")
        outer.addWidget(self.header)
        self.banner = Banner()
        outer.addWidget(self.banner)
        split = splitter()
        split.addWidget(self._build_task_form())
        split.addWidget(self._build_episode_view())
        split.setStretchFactor(1, 1)
        outer.addWidget(split, 1)
        foot, self.next_button = next_footer("Algorithm", self.next_requested)
        outer.addLayout(foot)
        state.config_changed.connect(self._on_config_changed)  # after the bindings: they show values first
        state.dataset_changed.connect(self._show_config)
        self._show_config()
        self.apply_theme()

    # --- the task spec (left) ---------------------------------------------------------------
    def _build_task_form(self) -> QWidget:
        host = QWidget()
        self._form_layout = QVBoxLayout(host)
        self._form_layout.setContentsMargins(0, 0, 8, 0)
        self._form_layout.setSpacing(10)
        self._form_layout.addWidget(self._build_shape_box())
        self._splits_box = self._build_split_box()
        self._form_layout.addWidget(self._splits_box)
        self._form_layout.addWidget(self._build_augmentation_box())
        self._form_layout.addStretch(1)
        return scroll_area(host, 360, 470, horizontal=False)

    def _build_shape_box(self) -> QGroupBox:
        box = QGroupBox("Episode shape")
        form = QFormLayout(box)
        self.way = spin_box(2, 1000, "N-way: how many classes each task mixes", min_width=110)
        self.shot = spin_box(1, 1000, "K-shot: labelled examples per class that the learner adapts on (support set)",
                             min_width=110)
        self.query = spin_box(1, 1000, "Query examples per class that each task is scored on after adapting",
                              min_width=110)
        # regression has no classes: the way is shown (at least 2) but not used
        bind(self.way, self.state, "task.way", to_widget=lambda v: max(v, 2),
             from_widget=lambda v: 0 if self.state.modality == "regression" else v)
        bind(self.shot, self.state, "task.shot")
        bind(self.query, self.state, "task.query")
        self.way_label = QLabel("N-way (classes)")
        self.shot_label = QLabel("K-shot (support)")
        self.query_label = QLabel("Queries per class")
        form.addRow(self.way_label, self.way)
        form.addRow(self.shot_label, self.shot)
        form.addRow(self.query_label, self.query)
        return box

    def _build_split_box(self) -> QGroupBox:
        box = QGroupBox("Class split")
        lay = QVBoxLayout(box)
        self.strategy = QComboBox()
        for key, label in STRATEGIES:
            self.strategy.addItem(label, key)
        self.strategy.setToolTip("Meta-testing uses classes never seen in meta-training. "
                                 "Split them at random, by hand, or by whole domains (languages, alphabets).")
        bind(self.strategy, self.state, "task.split").edited.connect(self._on_strategy_edited)
        lay.addWidget(self.strategy)
        self.split_stack = QStackedWidget()
        self.split_stack.addWidget(self._build_ratio_form())
        self.class_table = AssignmentTable("classes")
        self.fill_button = QPushButton("Start from the ratio split")
        self.fill_button.setToolTip("Fill the lists with the random ratio split, then adjust by hand")
        self.fill_button.clicked.connect(self._fill_from_ratio)
        classes = QWidget()
        cl = QVBoxLayout(classes)
        cl.setContentsMargins(0, 4, 0, 0)
        cl.addWidget(self.class_table, 1)
        cl.addWidget(self.fill_button)
        self.split_stack.addWidget(classes)
        self.domain_table = AssignmentTable("domains")
        self.split_stack.addWidget(self.domain_table)
        for table, kind in ((self.class_table, "classes"), (self.domain_table, "domains")):
            self._bind_table(table, kind)
        lay.addWidget(self.split_stack, 1)
        self.split_summary = muted_label(wrap=True)
        lay.addWidget(self.split_summary)
        return box

    def _build_ratio_form(self) -> QWidget:
        ratio = QWidget()
        form = QFormLayout(ratio)
        form.setContentsMargins(0, 4, 0, 0)
        self.train_ratio = spin_box(0.0, 1.0, "Share of classes used for meta-training", decimals=2, step=0.05)
        self.val_ratio = spin_box(0.0, 1.0, "Share of classes used to validate during training (early stopping, "
                                  "best checkpoint)", decimals=2, step=0.05)
        for box, field in ((self.train_ratio, "task.train_ratio"), (self.val_ratio, "task.val_ratio")):
            bind(box, self.state, field, from_widget=lambda v: round(v, 4))
        self.test_share = muted_label()
        form.addRow("Train", self.train_ratio)
        form.addRow("Validation", self.val_ratio)
        form.addRow("Test", self.test_share)
        return ratio

    def _bind_table(self, table: AssignmentTable, kind: str) -> FieldBinding:
        """``table`` edits the three ``{split}_{kind}`` lists of the task as one value."""

        def get() -> dict[str, list[str]]:
            return {s: list(getattr(self.state.config.task, f"{s}_{kind}")) for s in SPLITS}

        def put(assignment: dict[str, list[str]]) -> None:
            for s in SPLITS:
                setattr(self.state.config.task, f"{s}_{kind}", assignment[s])

        def show(assignment: dict[str, list[str]]) -> None:
            table.set_rows(self._table_rows(kind), {n: s for s, names in assignment.items() for n in names})

        return FieldBinding(table, self.state, "task", get=get, put=put, read=table.assignment, show=show,
                            signal=table.changed)

    def _build_augmentation_box(self) -> QGroupBox:
        box = QGroupBox("Augmentation and seed")
        form = QFormLayout(box)
        self.rotations = QCheckBox("Rotations: 90°, 180°, 270° copies become new classes")
        self.rotations.setToolTip("The Omniglot protocol: quadruples the classes of an image dataset "
                                  "(reloads the images). For image folders and downloaded image sets.")
        bind(self.rotations, self.state, "dataset.rotations").edited.connect(lambda _on: self.reload_requested.emit())
        form.addRow(self.rotations)
        self.seed = spin_box(0, 2**31 - 1, "Seed of the class split and of episode sampling: same seed, same tasks")
        bind(self.seed, self.state, "task.seed")
        form.addRow("Seed", self.seed)
        return box

    # --- an episode (right) ---------------------------------------------------------------------
    def _build_episode_view(self) -> QWidget:
        right = QWidget()
        rl = QVBoxLayout(right)
        rl.setContentsMargins(8, 0, 0, 0)
        bar = QHBoxLayout()
        self.sample_button = QPushButton("Sample an episode")
        self.sample_button.setObjectName("Primary")
        self.sample_button.setToolTip("Draw one task from the chosen split, as the trainer would (Ctrl+E)")
        self.sample_button.clicked.connect(self.sample_episode)
        self.sample_split = QComboBox()
        for key, label in (("train", "from training classes"), ("val", "from validation classes"), ("test", "from test classes")):
            self.sample_split.addItem(label, key)
        bar.addWidget(self.sample_button)
        bar.addWidget(self.sample_split)
        bar.addStretch(1)
        rl.addLayout(bar)
        self.episode_title = muted_label("Press “Sample an episode” to see what one task looks like.", wrap=True)
        rl.addWidget(self.episode_title)
        self.support_label = QLabel("<b>Support</b> — the examples the learner adapts on")
        self.query_label2 = QLabel("<b>Query</b> — what it must then label")
        self.support_stack = QStackedWidget()
        self.query_stack = QStackedWidget()
        self.support_grid, self.query_grid = ThumbnailGrid(52), ThumbnailGrid(52)
        self.support_text, self.query_text = TextItemsTable(), TextItemsTable()
        self.sine_plot = pg.PlotWidget()
        for w in (self.support_grid, self.support_text, self.sine_plot):
            self.support_stack.addWidget(w)
        for w in (self.query_grid, self.query_text, QLabel("Query points are drawn in the plot above (hollow).")):
            self.query_stack.addWidget(w)
        rl.addWidget(self.support_label)
        rl.addWidget(self.support_stack, 1)
        rl.addWidget(self.query_label2)
        rl.addWidget(self.query_stack, 1)
        return right

    # --- showing the config -------------------------------------------------------------------------
    def _show_config(self) -> None:
        """What follows the dataset: labels for regression, the rows of the split tables."""
        regression = self.state.modality == "regression"
        self.way.setEnabled(not regression)
        self.way_label.setText("N-way (classes)" if not regression else "N-way (not used: regression)")
        self.shot_label.setText("K-shot (support)" if not regression else "Points to learn from (K)")
        self.query_label.setText("Queries per class" if not regression else "Points to predict")
        self.strategy.setEnabled(not regression)
        src = self.state.config.dataset.source
        self.rotations.setEnabled(self.state.modality == "image" and src in ("image_folder", "catalog"))
        for table in (self.class_table, self.domain_table):
            binding_of(table).refresh(force=True)  # the rows come from the loaded dataset
        self._show_strategy()
        self.refresh()

    def _on_config_changed(self, section: str) -> None:
        if section in ("all", "dataset"):
            self._show_config()
        elif section == "task":
            self._show_strategy()
            self.refresh()

    def _show_strategy(self) -> None:
        index = {"ratio": 0, "classes": 1, "domain": 2}.get(self.state.config.task.split, 0)
        self.split_stack.setCurrentIndex(index)
        # only the shown page claims room: the ratio form stays compact
        for i in range(self.split_stack.count()):
            pol = QSizePolicy.Policy.Preferred if i == index else QSizePolicy.Policy.Ignored
            self.split_stack.widget(i).setSizePolicy(pol, pol)
        self.split_stack.adjustSize()
        self._form_layout.setStretchFactor(self._splits_box, 0 if index == 0 else 10)

    def _on_strategy_edited(self, split: str) -> None:
        if split == "classes" and not any(self.class_table.assignment().values()):
            self._fill_from_ratio()

    def _table_rows(self, kind: str) -> list[tuple[str, int]]:
        """(name, examples) of each class or domain of the loaded dataset."""
        ds = self.state.dataset
        if ds is None or not self.state.dataset_ready:
            return []
        st = ds.stats()
        if kind == "classes":
            return list(st.per_class.items())
        items_per_domain: dict[str, int] = {}
        for c, d in zip(ds.classes, ds.class_domains, strict=True):
            items_per_domain[d] = items_per_domain.get(d, 0) + st.per_class[c]
        return sorted(items_per_domain.items())

    def _fill_from_ratio(self) -> None:
        ds = self.state.dataset
        if ds is None or not self.state.dataset_ready:
            return
        t = dataclasses.replace(self.state.config.task, split="ratio")
        try:
            parts = split_classes(ds, t)
        except MetaGUIError as exc:
            self.banner.show_message("error", str(exc))
            return
        assign = {ds.classes[i]: s for s, ids in parts.items() for i in ids}
        self.class_table.set_rows(self._table_rows("classes"), assign)
        binding_of(self.class_table).commit()

    # --- checking -------------------------------------------------------------------------------
    def check(self) -> str:
        """'' when the task can be trained, else the core's readable reason."""
        t = self.state.config.task
        if self.state.modality == "regression":
            return "" if t.shot >= 1 and t.query >= 1 else "shot and query must be at least 1"
        ds = self.state.dataset
        if ds is None or not self.state.dataset_ready:
            return ""
        try:
            splits = split_classes(ds, t)
            check_task(ds, t, splits)
        except MetaGUIError as exc:
            return str(exc)
        return ""

    def refresh(self) -> None:
        t = self.state.config.task
        self.test_share.setText(f"{max(0.0, 1 - t.train_ratio - t.val_ratio):.0%} of the classes (the rest)")
        regression = self.state.modality == "regression"
        ds = self.state.dataset
        self.error = self.check()
        ready = regression or (ds is not None and self.state.dataset_ready)
        if self.error:
            self.banner.show_message("error", self.error[:1].upper() + self.error[1:] + ".")
        elif not ready:
            self.banner.show_message("info", "Load a dataset on the Data page to check this task against it.")
        elif regression:
            self.banner.show_message("ok", f"Each task: {t.shot} points to fit a sine wave, {t.query} to predict.")
        else:
            splits = split_classes(ds, t)
            msg = f"{t.way}-way {t.shot}-shot tasks with {t.query} queries per class can be drawn."
            if not splits["val"]:
                msg += " No validation classes: training will not validate (set a validation share above 0)."
                self.banner.show_message("warning", msg)
            else:
                self.banner.show_message("ok", msg)
        if ready and not regression and not self.error:
            splits = split_classes(ds, t)
            need = t.shot + t.query
            counts = np.bincount(ds.labels, minlength=len(ds.classes))
            parts = []
            for s, name in (("train", "train"), ("val", "validation"), ("test", "test")):
                usable = sum(1 for c in splits[s] if counts[c] >= need)
                skipped = len(splits[s]) - usable
                parts.append(f"{name}: {len(splits[s])} classes" + (f" ({skipped} too small)" if skipped else ""))
            self.split_summary.setText(" · ".join(parts))
        else:
            self.split_summary.setText("")
        self.sample_button.setEnabled(ready and not self.error)
        self.state.mark("tasks", bool(ready and not self.error))

    # --- episode preview -------------------------------------------------------------------------
    def sample_episode(self) -> dict | None:
        """Draw one episode from the chosen split and show its support and query items."""
        t = self.state.config.task
        self._episodes_drawn += 1
        rng = np.random.default_rng([t.seed, self._episodes_drawn])
        split_name = str(self.sample_split.currentData())
        if self.state.modality == "regression":
            return self._sample_sine(rng)
        ds = self.state.dataset
        if ds is None or not self.state.dataset_ready:
            self.banner.show_message("info", "Load a dataset first (Data page).")
            return None
        try:
            splits = split_classes(ds, t)
            check_task(ds, t, splits)
            if not splits[split_name]:
                raise MetaGUIError(f"the {split_name} split has no classes")
            # Items as their own indices: the core sampler then hands back which items it drew.
            sampler = EpisodeSampler(torch.arange(len(ds)), ds.labels, splits[split_name], t.way, t.shot, t.query)
            batch = sampler.sample(1, rng)
        except MetaGUIError as exc:
            self.banner.show_message("error", str(exc))
            return None
        classes = [ds.classes[c] for c in batch.classes[0]]
        support = [(int(i), int(y)) for i, y in zip(batch.support_x[0].tolist(), batch.support_y[0].tolist(), strict=True)]
        query = [(int(i), int(y)) for i, y in zip(batch.query_x[0].tolist(), batch.query_y[0].tolist(), strict=True)]
        self.last_episode = {"split": split_name, "classes": classes, "support": support, "query": query}
        names = ", ".join(c.split("/")[-1] for c in classes[:8]) + ("…" if len(classes) > 8 else "")
        self.episode_title.setText(f"Episode {self._episodes_drawn} from the {split_name} split: "
                                   f"{t.way} classes ({names}); {len(support)} support, {len(query)} query items. "
                                   "Colours mark the classes.")
        if ds.modality.value == "image":
            self.support_stack.setCurrentWidget(self.support_grid)
            self.query_stack.setCurrentWidget(self.query_grid)
            for grid, items in ((self.support_grid, support), (self.query_grid, query)):
                grid.set_items([(ds.images[i], f"{y}: {classes[y].split('/')[-1]}", classes[y], class_color(y))
                                for i, y in items])
        else:
            self.support_stack.setCurrentWidget(self.support_text)
            self.query_stack.setCurrentWidget(self.query_text)
            for table, items in ((self.support_text, support), (self.query_text, query)):
                table.set_rows([(f"{y}: {classes[y]}", ds.texts[i], class_color(y)) for i, y in items])
        self.state.mark("tasks", True)
        return self.last_episode

    def _sample_sine(self, rng: np.random.Generator) -> dict:
        from metagui.core.data.sinusoid import SinusoidTasks

        t = self.state.config.task
        fam = SinusoidTasks(t.shot, t.query)
        batch = fam.sample(1, rng)
        th = theme.current()
        pi = self.sine_plot.getPlotItem()
        pi.clear()
        pi.addLegend(offset=(-10, 10))
        sx, sy = batch.support_x[0, :, 0].numpy(), batch.support_y[0, :, 0].numpy()
        qx, qy = batch.query_x[0, :, 0].numpy(), batch.query_y[0, :, 0].numpy()
        pi.plot(sx, sy, pen=None, symbol="o", symbolBrush=th.series[0], symbolSize=9, name="support (fit these)")
        pi.plot(qx, qy, pen=None, symbol="o", symbolBrush=None, symbolPen=pg.mkPen(th.series[1], width=2),
                symbolSize=9, name="query (predict these)")
        self.support_stack.setCurrentWidget(self.sine_plot)
        self.query_stack.setCurrentIndex(2)
        self.episode_title.setText(f"Episode {self._episodes_drawn}: one sine wave, {t.shot} points to learn from, "
                                   f"{t.query} to predict.")
        self.last_episode = {"split": "train", "classes": [], "support": sx.tolist(), "query": qx.tolist()}
        return self.last_episode

    def apply_theme(self) -> None:
        self.header.refresh_theme()
        self.sample_button.setIcon(icons.icon("dice", theme.current().accent_text))
        self.sine_plot.setBackground(theme.current().plot_bg)
