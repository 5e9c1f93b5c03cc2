"""The conversation of the "Try it" pane: the threshold and before / after options, the
transcript with its feedback links, the message box (or image chooser), and saving,
reopening and exporting transcripts. Questions and transcripts go to the ChatSession;
feedback and reopened support sets are reported to the page, which owns the support set."""

from __future__ import annotations

import time

from PySide6.QtCore import Signal
from PySide6.QtGui import QCursor, QFont
from PySide6.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QFileDialog,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QMenu,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from metagui.core.chat import DEFAULT_THRESHOLD, Answer, ChatSession, NotAdapted
from metagui.core.errors import MetaGUIError
from metagui.gui.widgets.chat_view import TranscriptView

PLACEHOLDER = {
    "text": "Type a message below. The assistant answers with the reply of the intent it recognises.",
    "image": "Drop an image here (or choose one below): the model says which class it is.",
}


class ConversationPanel(QWidget):
    feedback_chosen = Signal(int, str)  # turn, the intent it was
    support_replaced = Signal()  # a reopened transcript brought its own support set
    message = Signal(str, str)  # level, text: for the page's banner

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session: ChatSession | None = None
        self.store = None
        self.feedback_menu: QMenu | None = None
        rl = QVBoxLayout(self)
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

        self.threshold.valueChanged.connect(self._on_threshold)
        self.compare.toggled.connect(lambda _: self.render())
        self.save_button.clicked.connect(lambda: self.save_transcript())
        self.open_button.clicked.connect(lambda: self.open_transcript())
        self.export_button.clicked.connect(lambda: self.export_transcript())
        self.clear_button.clicked.connect(self.clear_chat)
        self.input.returnPressed.connect(self.send)
        self.send_button.clicked.connect(self.send)
        self.image_button.clicked.connect(self.choose_image)
        self.view.feedback_clicked.connect(self._on_feedback_link)
        self.view.files_dropped.connect(self._on_files)

    def bind(self, session: ChatSession, store) -> None:
        """Chat with ``session``; transcripts are saved in ``store`` (the run's store)."""
        self.session = session
        self.store = store
        session.threshold = self.threshold.value()
        text = session.modality == "text"
        self.view.modality = session.modality
        self.view.placeholder = PLACEHOLDER.get(session.modality, "")
        self.input.setVisible(text)
        self.send_button.setVisible(text)
        self.image_button.setVisible(not text)
        self.compare.setToolTip(f"Answer each message twice, side by side. Before: {session.engine.baseline_help}")

    def render(self) -> None:
        s = self.session
        if s is None:
            return
        self.view.show_transcript(s.transcript, s.engine.baseline_label, len(s.adaptation.names) if s.adaptation else 0)

    def set_demo(self, on: bool) -> None:
        """Large type and no options row, for a projector."""
        self.options_row.setVisible(not on)
        self.view.scale = 1.8 if on else 1.0
        big = QFont(self.input.font())
        big.setPointSizeF(20 if on else max(10.0, QFont().pointSizeF()))
        for w in (self.input, self.send_button, self.image_button):
            w.setFont(big)
        self.render()

    # --- chatting -------------------------------------------------------------------------------------
    def _on_threshold(self, value: float) -> None:
        if self.session is not None:
            self.session.threshold = value

    def ask(self, message: str) -> Answer | None:
        """Answer ``message`` (text, or an image path) and show it; None if not possible."""
        s = self.session
        if s is None:
            return None
        try:
            answer = s.ask(message, compare=self.compare.isChecked())
        except NotAdapted as exc:
            self.message.emit("warning", str(exc))
            return None
        except MetaGUIError as exc:
            self.message.emit("error", str(exc))
            return None
        if answer is not None:
            self.render()
        return answer

    def send(self) -> None:
        if self.ask(self.input.text()) is not None:
            self.input.clear()

    def choose_image(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Classify an image", "", "Images (*.png *.jpg *.jpeg *.bmp *.gif *.webp)")
        if path:
            self.ask(path)

    def _on_files(self, paths: list[str]) -> None:
        if self.session is None or self.session.modality != "image":
            self.message.emit("warning", "This model reads text: type the message instead.")
            return
        for p in paths[:8]:
            self.ask(p)

    def _on_feedback_link(self, turn: int, kind: str) -> None:
        s = self.session
        if s is None or turn >= len(s.transcript):
            return
        if kind == "right":
            self.feedback_chosen.emit(turn, s.predicted(turn))
            return
        menu = QMenu(self)
        menu.addSection("It was…")
        for name in s.corrections(turn):
            menu.addAction(name, lambda n=name: self.feedback_chosen.emit(turn, n))
        menu.addSeparator()
        menu.addAction("A new intent…", lambda: self._feedback_new_intent(turn))
        self.feedback_menu = menu
        menu.popup(QCursor.pos())

    def _feedback_new_intent(self, turn: int) -> None:
        name, ok = QInputDialog.getText(self, "New intent", "Name of the intent this message belongs to:")
        if ok and name.strip():
            self.feedback_chosen.emit(turn, name.strip())

    def clear_chat(self) -> None:
        if self.session is not None:
            self.session.clear()
            self.render()

    # --- transcripts ------------------------------------------------------------------------------------
    def save_transcript(self, title: str | None = None) -> int | None:
        s = self.session
        if s is None or s.run_id is None:
            return None
        if title is None:
            default = time.strftime("Chat %Y-%m-%d %H:%M")
            title, ok = QInputDialog.getText(self, "Save transcript", "Title:", text=default)
            if not ok:
                return None
        tid = s.save(self.store, title)
        self.message.emit("ok", f"Saved “{title}” with its support set in the run store (run #{s.run_id}).")
        return tid

    def open_transcript(self, transcript_id: int | None = None) -> None:
        s = self.session
        if s is None:
            return
        rows = s.saved(self.store)
        if not rows:
            self.message.emit("info", "No saved transcripts for this run yet: Save keeps the chat and its support set.")
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
        s.open(row)
        self.render()
        self.support_replaced.emit()

    def export_transcript(self, path: str | None = None) -> None:
        s = self.session
        if s is None:
            return
        if not path:
            path, _ = QFileDialog.getSaveFileName(self, "Export transcript", "transcript.json",
                                                  "JSON with support set (*.json);;CSV (*.csv)")
            if not path:
                return
        p = s.export_transcript(path)
        self.message.emit("ok", f"Exported {len(s.transcript)} messages to {p}.")
