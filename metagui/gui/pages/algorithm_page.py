"""Algorithm: which meta-learner, its hyperparameters (a form generated from its schema),
presets, the backbone network and the device to train on."""

from __future__ import annotations

from PySide6.QtCore import QRect, QSize, Qt, Signal
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
    QScrollArea,
    QSplitter,
    QStyle,
    QStyledItemDelegate,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from metagui.core import algorithms
from metagui.core.algorithms import FAMILIES, REGISTRY
from metagui.core.errors import ConfigError
from metagui.core.presets import default_hyperparams, matching_preset
from metagui.gui import theme
from metagui.gui.state import AppState
from metagui.gui.widgets.common import Banner, PageHeader, next_footer, page_layout
from metagui.gui.widgets.hyperparam_form import HyperParamForm

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
        self._syncing = False
        outer = page_layout(self)
        self.header = PageHeader(
            "algorithm", "Algorithm",
            "Pick how the model learns to learn. Optimisation-based learners adapt weights with a few "
            "gradient steps; metric-based ones compare examples in a learned space.")
        outer.addWidget(self.header)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.setChildrenCollapsible(False)
        outer.addWidget(split, 1)

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
        split.addWidget(self.tree)

        # --- details ----------------------------------------------------------------------------
        host = QWidget()
        dl = QVBoxLayout(host)
        dl.setContentsMargins(10, 0, 4, 0)
        dl.setSpacing(8)
        self.title = QLabel()
        self.title.setObjectName("Big")
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.paper = QLabel()
        self.paper.setObjectName("Muted")
        self.paper.setWordWrap(True)
        dl.addWidget(self.title)
        dl.addWidget(self.summary)
        dl.addWidget(self.paper)
        self.banner = Banner()
        dl.addWidget(self.banner)

        hp_box = QGroupBox("Hyperparameters")
        hl = QVBoxLayout(hp_box)
        prow = QHBoxLayout()
        prow.addWidget(QLabel("Preset"))
        self.preset = QComboBox()
        self.preset.setToolTip("Settings from the paper or tuned for a kind of data; you can still edit every value")
        prow.addWidget(self.preset, 1)
        self.reset_button = QPushButton("Defaults")
        self.reset_button.setToolTip("Set every hyperparameter back to its default")
        prow.addWidget(self.reset_button)
        hl.addLayout(prow)
        self.form = HyperParamForm()
        hl.addWidget(self.form)
        dl.addWidget(hp_box)

        model_box = QGroupBox("Model and device")
        mf = QFormLayout(model_box)
        self.backbone = QComboBox()
        self.backbone.setToolTip("The network that turns an example into features; the learner adds its own head")
        self.device = QComboBox()
        self.device.setToolTip("Where training runs. Automatic picks a CUDA GPU when there is one, else the CPU.")
        mf.addRow("Backbone", self.backbone)
        # text: a pretrained sentence encoder from a local folder, in place of the built-in one
        self.encoder_row = QWidget()
        er = QHBoxLayout(self.encoder_row)
        er.setContentsMargins(0, 0, 0, 0)
        self.encoder_path = QLineEdit()
        self.encoder_path.setPlaceholderText("Built-in n-gram encoder (works offline)")
        self.encoder_path.setToolTip("A folder with a pretrained sentence encoder: a sentence-transformers model "
                                     "(modules.json) or an ONNX model (model.onnx + tokenizer.json). It stays frozen; "
                                     "the learner trains a small adapter on top. Empty = the built-in encoder.")
        self.encoder_browse = QPushButton("Choose folder…")
        self.encoder_clear = QPushButton("Built-in")
        self.encoder_clear.setToolTip("Use the built-in n-gram encoder")
        er.addWidget(self.encoder_path, 1)
        er.addWidget(self.encoder_browse)
        er.addWidget(self.encoder_clear)
        mf.addRow("Text encoder", self.encoder_row)
        self.encoder_label = mf.labelForField(self.encoder_row)
        mf.addRow("Device", self.device)
        dl.addWidget(model_box)
        dl.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidget(host)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        split.addWidget(scroll)
        split.setStretchFactor(1, 1)

        foot, self.next_button = next_footer("Train", self.next_requested)
        outer.addLayout(foot)

        self._fill_devices()
        self.tree.currentItemChanged.connect(self._on_pick)
        self.form.changed.connect(self._on_form)
        self.preset.activated.connect(self._on_preset)
        self.reset_button.clicked.connect(self._on_reset)
        self.backbone.activated.connect(self._on_model)
        self.device.activated.connect(self._on_model)
        self.encoder_path.editingFinished.connect(self._on_model)
        self.encoder_browse.clicked.connect(self._browse_encoder)
        self.encoder_clear.clicked.connect(lambda: (self.encoder_path.clear(), self._on_model()))
        state.config_changed.connect(self._on_config_changed)
        state.dataset_changed.connect(self.sync_from_config)
        self.sync_from_config()
        self.header.refresh_theme()

    def _fill_devices(self) -> None:
        from metagui.core.device import available_devices

        self.device.clear()
        self.device.addItem("Automatic (best available)", "auto")
        for d in available_devices():
            self.device.addItem(d.description if d.name == "cpu" else f"{d.name} — {d.description}", d.name)

    # --- config <-> widgets -------------------------------------------------------------------
    @property
    def algorithm(self) -> str:
        return self.state.config.algorithm.name

    def sync_from_config(self) -> None:
        self._syncing = True
        a = self.state.config.algorithm
        it = self.items.get(a.name)
        if it is not None:
            self.tree.setCurrentItem(it)
        self._show_algorithm(a.name)
        self._syncing = False
        self.refresh()

    def _show_algorithm(self, name: str) -> None:
        try:
            cls = algorithms.get(name)
        except ConfigError as exc:
            self.banner.show_message("error", str(exc))
            return
        a = self.state.config.algorithm
        self.title.setText(cls.label)
        self.summary.setText(cls.summary)
        self.paper.setText(cls.paper)
        self._syncing = True
        self.form.build(cls.schema(), a.hyperparams if a.name == name else {})
        self.preset.clear()
        self.preset.addItem("Custom", "")
        for p in cls.presets:
            self.preset.addItem(p, p)
        self._show_preset()
        modality = self.state.modality
        self.backbone.clear()
        for b in ["auto"] + BACKBONES.get(modality, []):
            self.backbone.addItem(BACKBONE_LABELS.get(b, b), b)
        i = self.backbone.findData(a.backbone)
        self.backbone.setCurrentIndex(max(0, i))
        self.encoder_row.setVisible(modality == "text")
        self.encoder_label.setVisible(modality == "text")
        self.encoder_path.setText(a.text_encoder)
        j = self.device.findData(self.state.config.training.device)
        if j < 0:
            self.device.addItem(self.state.config.training.device, self.state.config.training.device)
            j = self.device.count() - 1
        self.device.setCurrentIndex(j)
        self._syncing = False

    def select_algorithm(self, name: str) -> None:
        """Choose ``name`` as a click on its entry would."""
        self.tree.setCurrentItem(self.items[name])

    def _on_pick(self, current: QTreeWidgetItem | None, _prev=None) -> None:
        if self._syncing or current is None or current.data(0, KIND_ROLE) != "algorithm":
            return
        name = current.data(0, NAME_ROLE)
        a = self.state.config.algorithm
        if name != a.name:
            a.name = name
            a.hyperparams = default_hyperparams(name, self.state.modality)
        self._show_algorithm(name)
        self._commit()

    def _show_preset(self) -> None:
        """Show the preset whose settings the config has, or Custom."""
        self.preset.setCurrentIndex(max(0, self.preset.findData(matching_preset(self.state.config))))

    def _on_form(self) -> None:
        if self._syncing:
            return
        self._commit()
        self._show_preset()

    def _on_preset(self, index: int) -> None:
        preset = self.preset.itemData(index)
        if not preset:
            return
        from metagui.core.presets import apply_preset

        before = dict(vars(self.state.config.task))
        apply_preset(self.state.config, preset)
        self._syncing = True
        self.form.set_values(self.state.config.algorithm.hyperparams)
        self._syncing = False
        self.state.changed("algorithm")
        if dict(vars(self.state.config.task)) != before:
            self.state.changed("task")
        self.refresh()

    def _on_reset(self) -> None:
        self._syncing = True
        self.form.set_values({})
        self._syncing = False
        self._commit()
        self._show_preset()

    def _on_model(self, *_: object) -> None:
        if not self._syncing:
            self._commit()

    def _browse_encoder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Pretrained sentence encoder folder", self.encoder_path.text())
        if folder:
            self.encoder_path.setText(folder)
            self._on_model()

    def _commit(self) -> None:
        a = self.state.config.algorithm
        if not self.form.validate():
            a.hyperparams = self.form.values()
        a.backbone = str(self.backbone.currentData() or "auto")
        a.text_encoder = self.encoder_path.text().strip() if self.state.modality == "text" else ""
        self.state.config.training.device = str(self.device.currentData() or "auto")
        self._syncing = True
        self.state.changed("algorithm")
        self._syncing = False
        self.refresh()

    def _on_config_changed(self, section: str) -> None:
        if not self._syncing and section in ("all", "algorithm", "dataset", "training"):
            self.sync_from_config()

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
        folder = self.state.config.algorithm.text_encoder
        if folder and modality == "text":
            from metagui.core.pretrained import detect_format

            try:
                detect_format(folder)
            except ConfigError as exc:
                return str(exc)
        return ""

    def refresh(self) -> None:
        err = self.check()
        if err:
            self.banner.show_message("error", err)
        else:
            cls = algorithms.get(self.algorithm)
            kinds = ", ".join(sorted(cls.modalities))
            self.banner.show_message("ok", f"Ready: {cls.label} on {self.state.modality} tasks (it handles {kinds}).")
        self.state.mark("algorithm", not err)

    def apply_theme(self) -> None:
        self.header.refresh_theme()
        self.tree.viewport().update()
        self.refresh()
