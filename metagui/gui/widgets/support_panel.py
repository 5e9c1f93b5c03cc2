"""The support set of the "Try it" pane: where the chat starts from, the intents with their
examples and replies, editing, CSV in and out, and the Adapt button. Edits go to the
ChatSession; the panel reports them (``edited``) so that the page re-adapts."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from metagui.core.chat import Adaptation, ChatSession
from metagui.core.errors import MetaGUIError
from metagui.gui import icons, theme
from metagui.gui.widgets.chat_view import SupportTree
from metagui.gui.widgets.common import primary_button

START_FROM = (
    ("held_out", "Held-out classes (never seen in training)"),
    ("all", "All classes of the dataset"),
    ("empty", "Empty: add your own intents"),
)


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


class SupportPanel(QWidget):
    edited = Signal(bool)  # the support set changed; True: adapt to it again
    adapt_requested = Signal()
    message = Signal(str, str)  # level, text: for the page's banner

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session: ChatSession | None = None
        self.add_dialog: AddIntentDialog | None = None
        ll = QVBoxLayout(self)
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

        self.reset_button.clicked.connect(self.reset_support)
        self.tree.currentItemChanged.connect(lambda *_: self._on_intent_selected())
        self.tree.files_dropped.connect(self._on_files)
        self.reply_edit.editingFinished.connect(self._on_reply_edited)
        self.example_edit.returnPressed.connect(self.add_example_from_edit)
        self.add_example_button.clicked.connect(self.add_example_from_edit)
        self.add_intent_button.clicked.connect(self.open_add_intent)
        self.remove_button.clicked.connect(self.remove_selected)
        self.import_button.clicked.connect(lambda: self.import_csv())
        self.export_support_button.clicked.connect(lambda: self.export_support())
        self.adapt_button.clicked.connect(self.adapt_requested)
        self.steps_spin.valueChanged.connect(self._on_steps)
        QShortcut(QKeySequence(QKeySequence.StandardKey.Delete), self.tree, self.remove_selected)

    # --- showing ------------------------------------------------------------------------------------
    def bind(self, session: ChatSession) -> None:
        """Show ``session``'s support set, worded and laid out for its modality."""
        self.session = session
        text = session.modality == "text"
        self.support_title.setText("<b>Support set</b>: " + ("intents, examples, replies" if text else "classes and their images"))
        self.add_intent_button.setText(f"Add {session.noun}…")
        for w in (self.reply_label, self.reply_edit, self.example_edit, self.add_example_button,
                  self.import_button, self.export_support_button):
            w.setVisible(text)
        self.tree.setHeaderLabels(["Intent" if text else "Class", "Examples"])
        grad = session.engine.gradient_head
        self.steps_label.setVisible(grad)
        self.steps_spin.setVisible(grad)
        self.steps_spin.blockSignals(True)
        self.steps_spin.setValue(session.steps)
        self.steps_spin.blockSignals(False)
        self.show_support(keep_expanded=False)

    def show_support(self, keep_expanded: bool = True) -> None:
        s = self.session
        if s is None:
            return
        self.tree.show_support(s.support, keep_expanded=keep_expanded)
        self.show_counts()

    def show_counts(self) -> None:
        s = self.session
        if s is None:
            return
        empty = len(s.support) - len(s.support.usable())
        self.counts_label.setText(f"{len(s.support)} {s.nouns}, {s.support.n_examples} examples"
                                  + (f" ({empty} without any)" if empty else ""))

    def show_adapted(self, ad: Adaptation) -> None:
        s = self.session
        if s is None:
            return
        self.adapt_label.setText(
            f"Adapted in <b>{ad.ms:.0f} ms</b> to {len(ad.names)} {s.nouns} from {ad.examples} examples "
            f"({ad.method}; at most {s.engine.max_per_intent} latest examples per {s.noun}).")
        self.show_counts()

    def show_status(self, text: str) -> None:
        self.adapt_label.setText(text)

    def apply_theme(self) -> None:
        self.adapt_button.setIcon(icons.icon("play", theme.current().accent_text))
        self.show_support()

    def _changed(self, adapt: bool = True) -> None:
        self.show_support()
        self.edited.emit(adapt)

    # --- editing ----------------------------------------------------------------------------------------
    def reset_support(self) -> None:
        s = self.session
        if s is None or s.dataset is None:
            return
        s.reset(self.start_from.currentData())
        self.show_support(keep_expanded=False)
        self._changed()

    def _on_steps(self, value: int) -> None:
        if self.session is not None:
            self.session.steps = value
            self.adapt_requested.emit()

    def _on_intent_selected(self) -> None:
        s = self.session
        name = self.tree.selected_intent()
        ok = s is not None and name in s.support
        self.reply_edit.setEnabled(ok)
        self.reply_edit.setText(s.support[name].reply if ok else "")

    def _on_reply_edited(self) -> None:
        s = self.session
        if s is not None and s.set_reply(self.tree.selected_intent(), self.reply_edit.text()):
            self.tree.show_support(s.support)

    def add_example_from_edit(self) -> None:
        s = self.session
        name = self.tree.selected_intent()
        text = self.example_edit.text().strip()
        if s is None or not text:
            return
        if name not in s.support:
            self.message.emit("warning", "Select the intent the example belongs to first.")
            return
        if s.add_example(name, text):
            self.example_edit.clear()
            self._changed()

    def open_add_intent(self) -> AddIntentDialog | None:
        if self.session is None:
            return None
        dlg = AddIntentDialog(self, self.session.modality)
        dlg.accepted.connect(lambda: self.add_intent(*dlg.values()))
        dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dlg.open()
        self.add_dialog = dlg
        return dlg

    def add_intent(self, name: str, examples: list[str], reply: str = "") -> bool:
        s = self.session
        if s is None:
            return False
        try:
            name = s.add_intent(name, examples, reply)
        except MetaGUIError as exc:
            self.message.emit("error", str(exc))
            return False
        self._changed(adapt=bool(examples))
        item = self.tree.intent_item(name)
        if item is not None:
            self.tree.setCurrentItem(item)
            self.tree.scrollToItem(item)
        return True

    def remove_selected(self) -> None:
        s = self.session
        if s is not None and s.remove(self.tree.selected_intents(), self.tree.selected_examples()):
            self._changed()

    def _on_files(self, intent: str, paths: list[str]) -> None:
        s = self.session
        if s is None or s.modality != "image":
            self.message.emit("warning", "Images can be dropped here when the model is an image model.")
            return
        s.add_images(intent, paths)
        self._changed()

    def import_csv(self, path: str | None = None) -> None:
        s = self.session
        if s is None:
            return
        if not path:
            path, _ = QFileDialog.getOpenFileName(self, "Import intents", "", "Tables (*.csv *.tsv *.txt);;All files (*)")
            if not path:
                return
        try:
            new, added = s.import_csv(path)
        except MetaGUIError as exc:
            self.message.emit("error", str(exc))
            return
        self.message.emit("ok", f"Imported {new} new intents and {added} examples from {Path(path).name}.")
        self._changed()

    def export_support(self, path: str | None = None) -> None:
        s = self.session
        if s is None:
            return
        if not path:
            path, _ = QFileDialog.getSaveFileName(self, "Export support set", "support.csv", "CSV (*.csv)")
            if not path:
                return
        s.export_support(path)
        self.message.emit("ok", f"Saved the support set to {path}.")
