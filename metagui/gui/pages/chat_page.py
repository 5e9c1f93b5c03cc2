"""Try it: a trained meta-learner adapts to a handful of examples per intent and answers in
a chat, made for live demos.

Left, the support set (intents, their examples and replies), editable; right, the chat.
Feedback on an answer adds the message to the support set and re-adapts at once. Image
models take dropped images; regression (sinusoid) models get a plot where clicks add
support points. Loading a run and adapting run in a worker thread; answering takes
milliseconds and runs on the GUI thread. The logic lives in ``metagui.core.chat``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QCursor, QFont
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QMenu,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from metagui.core.chat import (
    DEFAULT_THRESHOLD,
    ChatEngine,
    RegressionEngine,
    SupportSet,
    support_from_dataset,
)
from metagui.core.errors import ConfigError, MetaGUIError
from metagui.gui import icons, theme
from metagui.gui.state import AppState
from metagui.gui.widgets.chat_view import RegressionPlot, SupportTree, TranscriptView
from metagui.gui.widgets.common import (
    Banner,
    Card,
    PageHeader,
    ProgressRow,
    page_layout,
    primary_button,
)
from metagui.gui.workers import BackgroundTask

log = logging.getLogger("metagui")

START_FROM = (
    ("held_out", "Held-out classes (never seen in training)"),
    ("all", "All classes of the dataset"),
    ("empty", "Empty: add your own intents"),
)
MAX_START_CLASSES = 60
SUBTITLE = {
    "text": "A trained model learns new intents from a handful of examples, in milliseconds, without "
            "retraining. Chat with it; correct it and it learns at once.",
    "image": "A trained model learns new classes from a handful of images, without retraining. Drop images "
             "onto a class to teach it, and into the chat to classify them.",
    "regression": "A trained model fits a new function from a few points. Click on the plot to add points and "
                  "compare the model before and after adapting to them.",
}
PLACEHOLDER = {
    "text": "Type a message below. The assistant answers with the reply of the intent it recognises.",
    "image": "Drop an image here (or choose one below): the model says which class it is.",
}


class AddIntentDialog(QDialog):
    """Name, example utterances (one per line) and the reply of a new intent."""

    def __init__(self, parent: QWidget | None, modality: str = "text") -> None:
        super().__init__(parent)
        self.setWindowTitle("Add intent" if modality == "text" else "Add class")
        form = QFormLayout(self)
        self.name = QLineEdit()
        self.name.setPlaceholderText("e.g. branch_opening_hours")
        form.addRow("Name", self.name)
        self.examples = QPlainTextEdit()
        self.examples.setPlaceholderText("One example per line, e.g.\nWhat are your opening hours?\nIs the branch open on Saturday?")
        self.reply = QLineEdit()
        self.reply.setPlaceholderText("What the assistant answers, e.g. We are open 9:00-17:00 on weekdays.")
        if modality == "text":
            form.addRow("Examples", self.examples)
            form.addRow("Reply", self.reply)
        else:
            hint = QLabel("Drop images onto the new class in the list afterwards.")
            hint.setObjectName("Muted")
            form.addRow(hint)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        form.addRow(self.buttons)
        self.resize(460, 320)

    def values(self) -> tuple[str, list[str], str]:
        lines = [ln.strip() for ln in self.examples.toPlainText().splitlines() if ln.strip()]
        return self.name.text().strip(), lines, self.reply.text().strip()


class ChatPage(QWidget):
    train_requested = Signal()
    demo_toggle_requested = Signal()

    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.engine: ChatEngine | None = None
        self.reg_engine: RegressionEngine | None = None
        self.run_id: int | None = None
        self.run_row: dict | None = None
        self.dataset = None
        self.held_out: list[str] = []
        self.shots = 5
        self.transcript_id: int | None = None
        self.load_task: BackgroundTask | None = None
        self.adapt_task: BackgroundTask | None = None
        self._adapt_again = False
        self._loading_run: int | None = None
        self.demo = False
        self.adapt_count = 0

        outer = page_layout(self)
        self.outer = outer
        self.header = PageHeader("chat", "Try it", SUBTITLE["text"])
        self.run_combo = QComboBox()
        self.run_combo.setMinimumWidth(320)
        self.run_combo.setToolTip("The trained run to try (completed runs with a checkpoint; the best one is used)")
        self.demo_button = QPushButton("Demo mode")
        self.demo_button.setToolTip("Full screen, large fonts, only the chat (F11 or Ctrl+Shift+D; Esc leaves)")
        model_label = QLabel("Model")
        self.header.actions.addWidget(model_label)
        self.header.actions.addWidget(self.run_combo)
        self.header.actions.addWidget(self.demo_button)
        outer.addWidget(self.header)
        self.banner = Banner(closable=True)
        outer.addWidget(self.banner)
        self.progress = ProgressRow()
        self.progress.cancel_button.hide()
        outer.addWidget(self.progress)
        self.demo_info = QLabel()
        self.demo_info.setObjectName("Muted")
        self.demo_info.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.demo_info.setWordWrap(True)
        self.demo_info.hide()
        outer.addWidget(self.demo_info)

        self.stack = QStackedWidget()
        outer.addWidget(self.stack, 1)
        self.stack.addWidget(self._build_empty())
        self.stack.addWidget(self._build_classify())
        self.stack.addWidget(self._build_regression())

        self.run_combo.currentIndexChanged.connect(self._on_run_chosen)
        self.demo_button.clicked.connect(self.demo_toggle_requested)
        self._refreshing = False
        self.refresh_runs()
        self.apply_theme()

    # --- layout ---------------------------------------------------------------------------------------
    def _build_empty(self) -> QWidget:
        w = QWidget()
        lay = QVBoxLayout(w)
        lay.addStretch(1)
        card = Card()
        card.setMaximumWidth(560)
        self.empty_icon = QLabel()
        self.empty_icon.setAlignment(Qt.AlignmentFlag.AlignCenter)
        title = QLabel("No trained model yet")
        title.setObjectName("Big")
        title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_text = QLabel(
            "Meta-train a model on the Train page (the demo project takes about a minute), then come back: "
            "give it a few examples of new intents and chat with it.")
        self.empty_text.setWordWrap(True)
        self.empty_text.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_text.setObjectName("Muted")
        self.go_train = QPushButton("Go to Train")
        self.go_train.clicked.connect(self.train_requested)
        card.lay.addWidget(self.empty_icon)
        card.lay.addWidget(title)
        card.lay.addWidget(self.empty_text)
        card.lay.addWidget(self.go_train, 0, Qt.AlignmentFlag.AlignHCenter)
        lay.addWidget(card, 0, Qt.AlignmentFlag.AlignHCenter)
        lay.addStretch(2)
        return w

    def _build_classify(self) -> QWidget:
        self.split = QSplitter(Qt.Orientation.Horizontal)
        self.split.setChildrenCollapsible(False)

        # left: the support set
        left = QWidget()
        self.left_panel = left
        ll = QVBoxLayout(left)
        ll.setContentsMargins(0, 0, 0, 0)
        ll.setSpacing(6)
        top = QHBoxLayout()
        self.support_title = QLabel("<b>Support set</b>")
        self.counts_label = QLabel()
        self.counts_label.setObjectName("Muted")
        top.addWidget(self.support_title)
        top.addStretch(1)
        top.addWidget(self.counts_label)
        ll.addLayout(top)
        start = QHBoxLayout()
        start.addWidget(QLabel("Start from"))
        self.start_from = QComboBox()
        for key, label in START_FROM:
            self.start_from.addItem(label, key)
        self.start_from.setToolTip("Which classes the support set starts with, with as many examples each as the "
                                   "run's task has shots. Resetting discards your edits.")
        self.reset_button = QPushButton("Reset")
        self.reset_button.setToolTip("Rebuild the support set from the chosen classes")
        start.addWidget(self.start_from, 1)
        start.addWidget(self.reset_button)
        ll.addLayout(start)
        self.tree = SupportTree()
        ll.addWidget(self.tree, 1)
        reply_row = QHBoxLayout()
        self.reply_label = QLabel("Reply")
        self.reply_edit = QLineEdit()
        self.reply_edit.setPlaceholderText("Select an intent to edit its reply")
        self.reply_edit.setEnabled(False)
        reply_row.addWidget(self.reply_label)
        reply_row.addWidget(self.reply_edit, 1)
        ll.addLayout(reply_row)
        ex_row = QHBoxLayout()
        self.example_edit = QLineEdit()
        self.example_edit.setPlaceholderText("New example for the selected intent, then Enter")
        self.add_example_button = QPushButton("Add example")
        ex_row.addWidget(self.example_edit, 1)
        ex_row.addWidget(self.add_example_button)
        ll.addLayout(ex_row)
        btns = QHBoxLayout()
        self.add_intent_button = QPushButton("Add intent…")
        self.remove_button = QPushButton("Remove")
        self.remove_button.setToolTip("Remove the selected intents or examples (Delete)")
        self.import_button = QPushButton("Import CSV…")
        self.import_button.setToolTip("Add intents from a table with columns intent, example (text) and optionally reply")
        self.export_support_button = QPushButton("Export CSV…")
        self.export_support_button.setToolTip("Save the support set as intent, example, reply rows")
        for b in (self.add_intent_button, self.remove_button, self.import_button, self.export_support_button):
            btns.addWidget(b)
        ll.addLayout(btns)
        adapt_row = QHBoxLayout()
        self.adapt_button = primary_button("Adapt", "play")
        self.adapt_button.setToolTip("Run the algorithm's own few-shot adaptation on the support set")
        self.steps_label = QLabel("Inner steps")
        self.steps_spin = QSpinBox()
        self.steps_spin.setRange(0, 200)
        self.steps_spin.setToolTip("Gradient steps on the support set when adapting (optimisation-based learners)")
        adapt_row.addWidget(self.adapt_button)
        adapt_row.addWidget(self.steps_label)
        adapt_row.addWidget(self.steps_spin)
        adapt_row.addStretch(1)
        ll.addLayout(adapt_row)
        self.adapt_label = QLabel("Not adapted yet")
        self.adapt_label.setObjectName("Muted")
        self.adapt_label.setWordWrap(True)
        ll.addWidget(self.adapt_label)

        # right: the chat
        right = QWidget()
        rl = QVBoxLayout(right)
        rl.setContentsMargins(0, 0, 0, 0)
        rl.setSpacing(6)
        opts = QHBoxLayout()
        self.options_row = QWidget()
        self.options_row.setLayout(opts)
        opts.setContentsMargins(0, 0, 0, 0)
        opts.addWidget(QLabel("Threshold"))
        self.threshold = QDoubleSpinBox()
        self.threshold.setRange(0.0, 1.0)
        self.threshold.setSingleStep(0.05)
        self.threshold.setDecimals(2)
        self.threshold.setValue(DEFAULT_THRESHOLD)
        self.threshold.setToolTip("Confidence threshold: below it the assistant asks (\"I'm not sure, did you mean "
                                  "...?\") instead of guessing")
        opts.addWidget(self.threshold)
        self.compare = QCheckBox("Before / after")
        self.compare.setToolTip("Answer each message twice: without adaptation and adapted, side by side")
        opts.addWidget(self.compare)
        opts.addStretch(1)
        self.save_button = QPushButton("Save")
        self.save_button.setToolTip("Save the transcript and the support set in the run store")
        self.open_button = QPushButton("Open…")
        self.open_button.setToolTip("Reopen a saved transcript of this run (with its support set)")
        self.export_button = QPushButton("Export…")
        self.export_button.setToolTip("Export the transcript as JSON (with the support set) or CSV")
        self.clear_button = QPushButton("Clear")
        self.clear_button.setToolTip("Start a new conversation (the support set stays)")
        for b in (self.save_button, self.open_button, self.export_button, self.clear_button):
            opts.addWidget(b)
        rl.addWidget(self.options_row)
        self.view = TranscriptView()
        rl.addWidget(self.view, 1)
        inp = QHBoxLayout()
        self.input = QLineEdit()
        self.input.setPlaceholderText("Type a message and press Enter")
        self.send_button = QPushButton("Send")
        self.send_button.setObjectName("Primary")
        self.image_button = QPushButton("Choose image…")
        inp.addWidget(self.input, 1)
        inp.addWidget(self.image_button)
        inp.addWidget(self.send_button)
        rl.addLayout(inp)

        self.split.addWidget(left)
        self.split.addWidget(right)
        self.split.setStretchFactor(0, 2)
        self.split.setStretchFactor(1, 3)
        self.split.setSizes([420, 640])

        self.reset_button.clicked.connect(self.reset_support)
        self.tree.currentItemChanged.connect(lambda *_: self._on_intent_selected())
        self.tree.files_dropped.connect(self._on_support_files)
        self.reply_edit.editingFinished.connect(self._on_reply_edited)
        self.example_edit.returnPressed.connect(self.add_example_from_edit)
        self.add_example_button.clicked.connect(self.add_example_from_edit)
        self.add_intent_button.clicked.connect(self.open_add_intent)
        self.remove_button.clicked.connect(self.remove_selected)
        self.import_button.clicked.connect(self.import_csv)
        self.export_support_button.clicked.connect(self.export_support)
        self.adapt_button.clicked.connect(self.request_adapt)
        self.steps_spin.valueChanged.connect(self._on_steps)
        self.threshold.valueChanged.connect(self._on_threshold)
        self.compare.toggled.connect(lambda _: self._render())
        self.save_button.clicked.connect(self.save_transcript)
        self.open_button.clicked.connect(self.open_transcript)
        self.export_button.clicked.connect(self.export_transcript)
        self.clear_button.clicked.connect(self.clear_chat)
        self.input.returnPressed.connect(self.send)
        self.send_button.clicked.connect(self.send)
        self.image_button.clicked.connect(self.choose_image)
        self.view.feedback_clicked.connect(self._on_feedback_link)
        self.view.files_dropped.connect(self._on_chat_files)
        from PySide6.QtGui import QKeySequence, QShortcut

        QShortcut(QKeySequence(QKeySequence.StandardKey.Delete), self.tree, self.remove_selected)
        return self.split

    def _build_regression(self) -> QWidget:
        w = QWidget()
        lay = QVBoxLayout(w)
        lay.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        self.new_sine_button = primary_button("Draw a new sine", "dice")
        self.new_sine_button.setToolTip("Draw amplitude and phase from the training ranges; the true curve is shown")
        self.sample_button = QPushButton("Sample 5 points")
        self.sample_button.setToolTip("Five support points on the true curve")
        self.clear_points_button = QPushButton("Clear points")
        self.reg_steps = QSpinBox()
        self.reg_steps.setRange(1, 500)
        self.reg_steps.setToolTip("Gradient steps on the support points when adapting")
        row.addWidget(self.new_sine_button)
        row.addWidget(self.sample_button)
        row.addWidget(self.clear_points_button)
        row.addSpacing(12)
        row.addWidget(QLabel("Inner steps"))
        row.addWidget(self.reg_steps)
        row.addStretch(1)
        lay.addLayout(row)
        self.reg_label = QLabel("Click on the plot to add support points.")
        self.reg_label.setObjectName("Muted")
        lay.addWidget(self.reg_label)
        self.reg_plot = RegressionPlot()
        lay.addWidget(self.reg_plot, 1)
        self.new_sine_button.clicked.connect(self.new_sine)
        self.sample_button.clicked.connect(self.sample_points)
        self.clear_points_button.clicked.connect(self.clear_points)
        self.reg_plot.point_clicked.connect(self.add_point)
        self.reg_steps.valueChanged.connect(lambda _: self.refit())
        return w

    # --- runs ------------------------------------------------------------------------------------------
    def runs_with_checkpoints(self) -> list[dict]:
        out = []
        store = self.state.store
        for r in store.runs():
            if r["status"] not in ("completed", "cancelled", "paused", "failed", "diverged"):
                continue
            ckpts = store.checkpoints(r["id"])
            if "best" in ckpts or "last" in ckpts:
                out.append(r)
        return out

    def refresh_runs(self, prefer_latest: bool = False) -> None:
        """List the usable runs; keep the current choice (unless ``prefer_latest``: a run
        just finished), else pick the latest run of the project (else the latest run)."""
        rows = self.runs_with_checkpoints()
        if prefer_latest and self.engine is not None and self.engine.transcript:
            prefer_latest = False  # a conversation is under way: do not swap the model under it
        current = None if prefer_latest else self.run_combo.currentData()
        self._refreshing = True
        self.run_combo.clear()
        for r in rows:
            best = f", best {r['best_val']:.2f}" if r.get("best_val") is not None else ""
            self.run_combo.addItem(f"#{r['id']} {r['name']} · {r['task']}{best}", r["id"])
        self._refreshing = False
        if not rows:
            self.stack.setCurrentIndex(0)
            self.run_id = None
            return
        ids = [r["id"] for r in rows]
        if current in ids:
            choice = current
        else:
            mine = [r["id"] for r in rows if r.get("project_id") == self.state.project_id]
            choice = mine[0] if mine else ids[0]
        self._refreshing = True
        self.run_combo.setCurrentIndex(ids.index(choice))
        self._refreshing = False
        if choice != self.run_id and self.isVisible():
            self.load_run(choice)

    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        self.refresh_runs()
        if self.run_id is None and self.run_combo.count() and self._loading_run is None:
            self.load_run(self.run_combo.currentData())

    def _on_run_chosen(self, _index: int) -> None:
        if self._refreshing:
            return
        run_id = self.run_combo.currentData()
        if run_id is not None and run_id != self.run_id:
            self.load_run(int(run_id))

    def load_run(self, run_id: int) -> None:
        """Load the run's best checkpoint and its dataset, build the starting support set and
        adapt, in a worker thread."""
        if self.load_task is not None and self.load_task.running:
            self._pending_run = run_id
            return
        self._pending_run = None
        self._loading_run = run_id
        db = self.state.db_path
        shared = self.state.dataset if self.state.dataset_ready else None
        shared_key = None
        if shared is not None:
            from metagui.gui.state import dataset_key

            shared_key = dataset_key(self.state.config.dataset)
        start = self.start_from.currentData() or "held_out"

        def work(progress, cancel):
            return load_for_chat(db, run_id, shared, shared_key, start)

        self.progress.begin(f"Loading run #{run_id} and adapting to its held-out classes…")
        self.banner.clear()
        self._set_busy(True)
        task = BackgroundTask(work, "chat-load", self)
        task.succeeded.connect(self._on_loaded)
        task.failed.connect(self._on_load_failed)
        task.finished.connect(self._on_load_finished)
        self.load_task = task.start()

    def _on_loaded(self, result: dict) -> None:
        self.run_id = result["run_id"]
        self.run_row = result["run"]
        self.transcript_id = None
        if result["kind"] == "regression":
            self.engine = None
            self.reg_engine = result["engine"]
            self.reg_steps.blockSignals(True)
            self.reg_steps.setValue(int(self.reg_engine.learner.hp.get("eval_steps", 10)))
            self.reg_steps.blockSignals(False)
            self.header.subtitle.setText(SUBTITLE["regression"])
            self.stack.setCurrentIndex(2)
            self.new_sine()
            return
        self.reg_engine = None
        eng: ChatEngine = result["engine"]
        eng.threshold = self.threshold.value()
        self.engine = eng
        self.dataset = result["dataset"]
        self.held_out = result["held_out"]
        self.shots = result["shots"]
        modality = eng.pre.modality
        self.view.modality = modality
        self.view.placeholder = PLACEHOLDER.get(modality, "")
        text = modality == "text"
        noun = "intent" if text else "class"
        self.support_title.setText("<b>Support set</b>: " + ("intents, examples, replies" if text else "classes and their images"))
        self.add_intent_button.setText(f"Add {noun}…")
        for w in (self.reply_label, self.reply_edit, self.example_edit, self.add_example_button, self.input, self.send_button):
            w.setVisible(text)
        self.image_button.setVisible(not text)
        self.import_button.setVisible(text)
        self.export_support_button.setVisible(text)
        self.tree.setHeaderLabels(["Intent" if text else "Class", "Examples"])
        grad = eng.gradient_head
        self.steps_label.setVisible(grad)
        self.steps_spin.setVisible(grad)
        self.steps_spin.blockSignals(True)
        self.steps_spin.setValue(eng.inner_steps)
        self.steps_spin.blockSignals(False)
        self.compare.setToolTip(f"Answer each message twice, side by side. Before: {eng.baseline_help}")
        self.header.subtitle.setText(SUBTITLE[modality])
        self.stack.setCurrentIndex(1)
        self.tree.show_support(eng.support, keep_expanded=False)
        self._update_counts()
        if result["adaptation"] is not None:
            self._on_adapted(result["adaptation"])
        else:
            self.adapt_label.setText(eng.support.problem() or "Not adapted yet")
            self._render()
        if result.get("note"):
            self.banner.show_message("info", result["note"])

    def _on_load_failed(self, message: str, details: str) -> None:
        self.banner.show_message("error", f"Could not load run #{self._loading_run}: {message}")
        if details:
            log.error("chat: loading run failed: %s\n%s", message, details)

    def _on_load_finished(self) -> None:
        self.progress.end()
        self._loading_run = None
        self._set_busy(False)
        pending = getattr(self, "_pending_run", None)
        if pending is not None and pending != self.run_id:
            self.load_run(pending)

    def _set_busy(self, busy: bool) -> None:
        self.run_combo.setEnabled(not busy)
        self.reset_button.setEnabled(not busy)

    @property
    def busy(self) -> bool:
        return any(t is not None and t.running for t in (self.load_task, self.adapt_task))

    # --- the support set ------------------------------------------------------------------------------------
    def reset_support(self) -> None:
        eng = self.engine
        if eng is None or self.dataset is None:
            return
        key = self.start_from.currentData()
        if key == "empty":
            eng.support = SupportSet(modality=eng.pre.modality)
        else:
            classes = self.held_out if key == "held_out" else list(self.dataset.classes)[:MAX_START_CLASSES]
            eng.support, _ = support_from_dataset(self.dataset, classes, self.shots)
        self.tree.show_support(eng.support, keep_expanded=False)
        self.support_changed()

    def support_changed(self, adapt: bool = True) -> None:
        """After an edit: redraw the counts and re-adapt (the model follows the support set)."""
        eng = self.engine
        if eng is None:
            return
        self.tree.show_support(eng.support)
        self._update_counts()
        if adapt:
            self.request_adapt()

    def _update_counts(self) -> None:
        eng = self.engine
        if eng is None:
            return
        s = eng.support
        noun = "intents" if eng.pre.modality == "text" else "classes"
        empty = len(s) - len(s.usable())
        self.counts_label.setText(f"{len(s)} {noun}, {s.n_examples} examples" + (f" ({empty} without any)" if empty else ""))

    def _on_intent_selected(self) -> None:
        eng = self.engine
        name = self.tree.selected_intent()
        ok = eng is not None and name in eng.support
        self.reply_edit.setEnabled(ok)
        self.reply_edit.setText(eng.support[name].reply if ok else "")

    def _on_reply_edited(self) -> None:
        eng = self.engine
        name = self.tree.selected_intent()
        if eng is not None and name in eng.support and eng.support[name].reply != self.reply_edit.text().strip():
            eng.support.set_reply(name, self.reply_edit.text())
            self.tree.show_support(eng.support)

    def add_example_from_edit(self) -> None:
        eng = self.engine
        name = self.tree.selected_intent()
        text = self.example_edit.text().strip()
        if eng is None or not text:
            return
        if name not in eng.support:
            self.banner.show_message("warning", "Select the intent the example belongs to first.")
            return
        if eng.support.add_example(name, text):
            self.example_edit.clear()
            self.support_changed()

    def open_add_intent(self) -> AddIntentDialog | None:
        if self.engine is None:
            return None
        dlg = AddIntentDialog(self, self.engine.pre.modality)
        dlg.accepted.connect(lambda: self.add_intent(*dlg.values()))
        dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dlg.open()
        self._add_dialog = dlg
        return dlg

    def add_intent(self, name: str, examples: list[str], reply: str = "") -> bool:
        eng = self.engine
        if eng is None:
            return False
        try:
            eng.support.add_intent(name, examples, reply)
        except MetaGUIError as exc:
            self.banner.show_message("error", str(exc))
            return False
        self.support_changed(adapt=bool(examples))
        item = self.tree.intent_item(" ".join(name.split()))
        if item is not None:
            self.tree.setCurrentItem(item)
            self.tree.scrollToItem(item)
        return True

    def remove_selected(self) -> None:
        eng = self.engine
        if eng is None:
            return
        intents = self.tree.selected_intents()
        examples = [e for e in self.tree.selected_examples() if e[0] not in intents]
        if not intents and not examples:
            return
        for name in intents:
            eng.support.remove_intent(name)
        for name, idx in sorted(examples, key=lambda e: -e[1]):
            eng.support.remove_example(name, idx)
        self.support_changed()

    def import_csv(self, path: str | None = None) -> None:
        eng = self.engine
        if eng is None:
            return
        if not path:
            path, _ = QFileDialog.getOpenFileName(self, "Import intents", "", "Tables (*.csv *.tsv *.txt);;All files (*)")
            if not path:
                return
        try:
            new, added = eng.support.import_csv(path)
        except MetaGUIError as exc:
            self.banner.show_message("error", str(exc))
            return
        self.banner.show_message("ok", f"Imported {new} new intents and {added} examples from {Path(path).name}.")
        self.support_changed()

    def export_support(self, path: str | None = None) -> None:
        eng = self.engine
        if eng is None:
            return
        if not path:
            path, _ = QFileDialog.getSaveFileName(self, "Export support set", "support.csv", "CSV (*.csv)")
            if not path:
                return
        Path(path).write_text(eng.support.to_csv(), encoding="utf-8")
        self.banner.show_message("ok", f"Saved the support set to {path}.")

    def _on_support_files(self, intent: str, paths: list[str]) -> None:
        eng = self.engine
        if eng is None or eng.pre.modality != "image":
            self.banner.show_message("warning", "Images can be dropped here when the model is an image model.")
            return
        if intent not in eng.support:
            base = Path(paths[0]).parent.name or "class"
            intent, k = base, 2
            while intent in eng.support:
                intent, k = f"{base} {k}", k + 1
            eng.support.add_intent(intent)
        for p in paths:
            eng.support.add_example(intent, p)
        self.support_changed()

    # --- adapting -------------------------------------------------------------------------------------------
    def _on_steps(self, value: int) -> None:
        if self.engine is not None:
            self.engine.steps = value
            self.request_adapt()

    def request_adapt(self) -> None:
        """Adapt to a snapshot of the support set in a worker; edits made meanwhile trigger
        one more adaptation when it finishes."""
        eng = self.engine
        if eng is None:
            return
        problem = eng.support.problem()
        if problem:
            self.adapt_label.setText(problem)
            return
        if self.adapt_task is not None and self.adapt_task.running:
            self._adapt_again = True
            return
        self._adapt_again = False
        snapshot = eng.support.copy()
        self.adapt_label.setText("Adapting…")

        def work(progress, cancel):
            return eng.adapt(snapshot)

        task = BackgroundTask(work, "chat-adapt", self)
        task.succeeded.connect(self._on_adapted)
        task.failed.connect(lambda m, d: self.banner.show_message("error", f"Adaptation failed: {m}"))
        task.finished.connect(self._on_adapt_finished)
        self.adapt_task = task.start()

    def _on_adapt_finished(self) -> None:
        if self._adapt_again:
            self.request_adapt()

    def _on_adapted(self, ad) -> None:
        self.adapt_count += 1
        eng = self.engine
        if eng is None:
            return
        noun = "intents" if eng.pre.modality == "text" else "classes"
        one = "intent" if noun == "intents" else "class"
        text = (f"Adapted in <b>{ad.ms:.0f} ms</b> to {len(ad.names)} {noun} from {ad.examples} examples "
                f"({ad.method}; at most {eng.max_per_intent} latest examples per {one}).")
        self.adapt_label.setText(text)
        self.demo_info.setText(f"{self._model_name()} · adapted to {len(ad.names)} {noun} from {ad.examples} examples "
                               f"in {ad.ms:.0f} ms · Esc leaves demo mode")
        self._update_counts()
        self._render()

    def _model_name(self) -> str:
        if self.engine is None:
            return ""
        return self.engine.learner.label

    # --- chatting ----------------------------------------------------------------------------------------------
    def _on_threshold(self, value: float) -> None:
        if self.engine is not None:
            self.engine.threshold = value

    def ask(self, message: str):
        """Answer ``message`` (text, or an image path) and show it; None if not possible."""
        eng = self.engine
        message = message.strip() if eng is not None and eng.pre.modality == "text" else message
        if eng is None or not message:
            return None
        if eng.adaptation is None:
            self.banner.show_message("warning", "Adapt to the support set first (at least two intents with examples).")
            return None
        try:
            answer = eng.ask(message, compare=self.compare.isChecked())
        except MetaGUIError as exc:
            self.banner.show_message("error", str(exc))
            return None
        self._render()
        return answer

    def send(self) -> None:
        text = self.input.text()
        if self.ask(text) is not None:
            self.input.clear()

    def choose_image(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Classify an image", "", "Images (*.png *.jpg *.jpeg *.bmp *.gif *.webp)")
        if path:
            self.ask(path)

    def _on_chat_files(self, paths: list[str]) -> None:
        if self.engine is None or self.engine.pre.modality != "image":
            self.banner.show_message("warning", "This model reads text: type the message instead.")
            return
        for p in paths[:8]:
            self.ask(p)

    def _on_feedback_link(self, turn: int, kind: str) -> None:
        eng = self.engine
        if eng is None or turn >= len(eng.transcript):
            return
        if kind == "right":
            self.give_feedback(turn, eng.transcript[turn]["answer"]["intent"])
            return
        menu = QMenu(self)
        menu.addSection("It was…")
        predicted = eng.transcript[turn]["answer"]["intent"]
        for name in eng.support.names:
            if name != predicted:
                menu.addAction(name, lambda n=name: self.give_feedback(turn, n))
        menu.addSeparator()
        menu.addAction("A new intent…", lambda: self._feedback_new_intent(turn))
        self._feedback_menu = menu
        menu.popup(QCursor.pos())

    def _feedback_new_intent(self, turn: int) -> None:
        name, ok = QInputDialog.getText(self, "New intent", "Name of the intent this message belongs to:")
        if ok and name.strip():
            self.give_feedback(turn, name.strip())

    def give_feedback(self, turn: int, intent: str) -> None:
        """The answer to ``turn`` was ``intent``: add the message as its example, re-adapt."""
        eng = self.engine
        if eng is None:
            return
        try:
            eng.feedback(turn, intent, adapt=False)
        except MetaGUIError as exc:
            self.banner.show_message("error", str(exc))
            return
        self.support_changed()
        self._render()

    def clear_chat(self) -> None:
        if self.engine is not None:
            self.engine.clear()
            self.transcript_id = None
            self._render()

    def _render(self) -> None:
        eng = self.engine
        if eng is None:
            return
        self.view.show_transcript(eng.transcript, eng.baseline_label,
                                  len(eng.adaptation.names) if eng.adaptation else 0)

    # --- transcripts ----------------------------------------------------------------------------------------------
    def save_transcript(self, title: str | None = None) -> int | None:
        eng = self.engine
        if eng is None or self.run_id is None:
            return None
        if title is None:
            default = time.strftime("Chat %Y-%m-%d %H:%M")
            title, ok = QInputDialog.getText(self, "Save transcript", "Title:", text=default)
            if not ok:
                return None
        self.transcript_id = eng.save(self.state.store, title or "Chat", self.transcript_id)
        self.banner.show_message("ok", f"Saved “{title}” with its support set in the run store (run #{self.run_id}).")
        return self.transcript_id

    def saved_transcripts(self) -> list[dict]:
        return self.state.store.transcripts(self.run_id) if self.run_id is not None else []

    def open_transcript(self, transcript_id: int | None = None) -> None:
        eng = self.engine
        rows = self.saved_transcripts()
        if eng is None:
            return
        if not rows:
            self.banner.show_message("info", "No saved transcripts for this run yet: Save keeps the chat and its support set.")
            return
        if transcript_id is None:
            labels = [f"{r['title']} ({len(r['messages'])} messages, {time.strftime('%Y-%m-%d %H:%M', time.localtime(r['updated']))})"
                      for r in rows]
            label, ok = QInputDialog.getItem(self, "Open transcript", "Transcript:", labels, 0, False)
            if not ok:
                return
            row = rows[labels.index(label)]
        else:
            row = next((r for r in rows if r["id"] == transcript_id), None)
            if row is None:
                return
        eng.restore(row)
        self.transcript_id = row["id"]
        self.tree.show_support(eng.support, keep_expanded=False)
        self._update_counts()
        self._render()
        self.request_adapt()

    def export_transcript(self, path: str | None = None) -> None:
        eng = self.engine
        if eng is None:
            return
        if not path:
            path, _ = QFileDialog.getSaveFileName(self, "Export transcript", "transcript.json",
                                                  "JSON with support set (*.json);;CSV (*.csv)")
            if not path:
                return
        p = Path(path)
        text = eng.transcript_csv() if p.suffix.lower() == ".csv" else eng.to_json(title=p.stem)
        p.write_text(text, encoding="utf-8")
        self.banner.show_message("ok", f"Exported {len(eng.transcript)} messages to {p}.")

    # --- regression -----------------------------------------------------------------------------------------------
    def new_sine(self) -> None:
        if self.reg_engine is None:
            return
        self.reg_engine.new_sine(np.random.default_rng())
        self.refit()

    def sample_points(self) -> None:
        if self.reg_engine is None:
            return
        self.reg_engine.sample_points(5, np.random.default_rng())
        self.refit()

    def clear_points(self) -> None:
        if self.reg_engine is not None:
            self.reg_engine.points = []
            self.refit()

    def add_point(self, x: float, y: float) -> None:
        if self.reg_engine is not None:
            self.reg_engine.add_point(x, y)
            self.refit()

    def refit(self):
        eng = self.reg_engine
        if eng is None:
            return None
        eng.steps = self.reg_steps.value()
        try:
            fit = eng.fit()
        except MetaGUIError as exc:
            self.banner.show_message("error", str(exc))
            return None
        self.reg_plot.show_fit(fit, eng.points)
        self.last_fit = fit
        parts = [f"{len(eng.points)} support points"]
        if fit.after is not None:
            parts.append(f"adapted in {fit.adapt_ms:.0f} ms ({eng.steps} steps)")
        if fit.truth is not None:
            a, ph = eng.truth
            parts.append(f"true function {a:.2f}·sin(x − {ph:.2f})")
            if fit.mse_before is not None:
                parts.append(f"MSE before {fit.mse_before:.3f}")
            if fit.mse_after is not None:
                parts.append(f"after {fit.mse_after:.3f}")
        if not eng.points:
            parts.append("click on the plot to add points")
        self.reg_label.setText(" · ".join(parts))
        return fit

    # --- demo mode and look --------------------------------------------------------------------------------------
    def set_demo(self, on: bool) -> None:
        """Large fonts and only the conversation (the window hides its own chrome)."""
        self.demo = on
        self.header.setVisible(not on)
        self.left_panel.setVisible(not on)
        self.options_row.setVisible(not on)
        self.demo_info.setVisible(on and self.engine is not None)
        self.view.scale = 1.8 if on else 1.0
        big = QFont(self.input.font())
        big.setPointSizeF(20 if on else max(10.0, QFont().pointSizeF()))
        for w in (self.input, self.send_button, self.image_button):
            w.setFont(big)
        info = QFont(self.demo_info.font())
        info.setPointSizeF(14 if on else 10)
        self.demo_info.setFont(info)
        self.outer.setContentsMargins(*((48, 24, 48, 24) if on else (18, 14, 18, 12)))
        self._render()

    def apply_theme(self) -> None:
        self.header.refresh_theme()
        self.empty_icon.setPixmap(icons.pixmap("chat", theme.current().muted, 64))
        self.adapt_button.setIcon(icons.icon("play", theme.current().accent_text))
        self.new_sine_button.setIcon(icons.icon("dice", theme.current().accent_text))
        self.reg_plot.refresh_theme()
        if self.engine is not None:
            self.tree.show_support(self.engine.support)
        self._render()

    def shutdown(self, wait_ms: int = 10000) -> bool:
        ok = True
        for t in (self.load_task, self.adapt_task):
            if t is not None and t.running:
                ok = t.wait(wait_ms) and ok
        return ok


def load_for_chat(db, run_id: int, shared_dataset=None, shared_key: str | None = None, start: str = "held_out") -> dict:
    """Worker side of loading a run: the engine, the dataset, the starting support set and
    a first adaptation. Opens its own store connection (this runs off the GUI thread)."""
    from metagui.core.config import RunConfig
    from metagui.core.store import RunStore

    store = RunStore(db)
    try:
        run = store.run(run_id)
        cfg = RunConfig.from_toml(run["config"])
        if cfg.dataset.source == "sinusoid":
            return {"kind": "regression", "run_id": run_id, "run": run,
                    "engine": RegressionEngine.from_run(store, run_id)}
        engine = ChatEngine.from_run(store, run_id)
    finally:
        store.close()
    from metagui.core.tasks import split_classes
    from metagui.gui.state import dataset_key

    if shared_dataset is not None and shared_key == dataset_key(cfg.dataset):
        ds = shared_dataset
    else:
        from metagui.core.data import load_dataset

        ds = load_dataset(cfg.dataset)
    note = ""
    try:
        held = [ds.classes[i] for i in split_classes(ds, cfg.task).get("test", [])]
    except MetaGUIError:
        held = []
    if not held:
        held = list(ds.classes)[:MAX_START_CLASSES]
        note = "This run has no test classes: the support set starts from the dataset's classes instead."
    shots = max(1, cfg.task.shot)
    if start == "empty":
        engine.support = SupportSet(modality=engine.pre.modality)
    else:
        classes = held if start == "held_out" else list(ds.classes)[:MAX_START_CLASSES]
        engine.support, _ = support_from_dataset(ds, classes, shots)
    adaptation = None
    if not engine.support.problem():
        try:
            adaptation = engine.adapt()
        except ConfigError:
            way = engine.learner.n_way
            if start == "empty" or len(engine.support) <= way:
                raise
            # a learner that adapts only to its training way (PLATIPUS): start with that many
            engine.support = SupportSet([engine.support[n] for n in engine.support.names[:way]], engine.pre.modality)
            adaptation = engine.adapt()
            note = (f"{engine.learner.label} adapts to exactly {way} classes at a time (as meta-trained): "
                    f"the support set starts with {way} of the held-out classes.")
    return {"kind": "classify", "run_id": run_id, "run": run, "engine": engine, "dataset": ds,
            "held_out": held, "shots": shots, "adaptation": adaptation, "note": note}
