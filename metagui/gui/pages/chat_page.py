"""Try it: a trained meta-learner adapts to a handful of examples per intent and answers in
a chat, made for live demos.

Left, the support set (``SupportPanel``); right, the conversation (``ConversationPanel``);
regression (sinusoid) runs get a plot instead (``RegressionPanel``). The page wires them to
one ``ChatSession`` (``metagui.core.chat``), which holds the chat's state and decisions.
Loading a run and adapting run in a worker thread; answering takes milliseconds and runs on
the GUI thread.
"""

from __future__ import annotations

import logging

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QComboBox,
    QLabel,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from metagui.core.chat import (
    Adaptation,
    ChatEngine,
    ChatSession,
    RegressionEngine,
    journal_to_store,
    open_run,
)
from metagui.core.errors import MetaGUIError
from metagui.gui import icons, theme
from metagui.gui.state import AppState, dataset_key
from metagui.gui.widgets.common import Banner, Card, PageHeader, ProgressRow, page_layout
from metagui.gui.widgets.conversation_panel import ConversationPanel
from metagui.gui.widgets.regression_panel import RegressionPanel
from metagui.gui.widgets.support_panel import SupportPanel
from metagui.gui.workers import BackgroundTask

log = logging.getLogger("metagui")

SUBTITLE = {
    "text": "A trained model learns new intents from a handful of examples, in milliseconds, without "
            "retraining. Chat with it; correct it and it learns at once.",
    "image": "A trained model learns new classes from a handful of images, without retraining. Drop images "
             "onto a class to teach it, and into the chat to classify them.",
    "regression": "A trained model fits a new function from a few points. Click on the plot to add points and "
                  "compare the model before and after adapting to them.",
}


class ChatPage(QWidget):
    train_requested = Signal()
    demo_toggle_requested = Signal()

    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.session: ChatSession | None = None
        self._journal = None  # records the session's edits and feedback in the run store
        self.run_id: int | None = None
        self.load_task: BackgroundTask | None = None
        self.adapt_task: BackgroundTask | None = None
        self._adapt_again = False
        self._loading_run: int | None = None
        self._pending_run: int | None = None
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
        self.header.actions.addWidget(QLabel("Model"))
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

        self.support_panel = SupportPanel()
        self.conversation_panel = ConversationPanel()
        self.regression_panel = RegressionPanel()
        self.input = self.conversation_panel.input  # the message box and the before / after switch,
        self.compare = self.conversation_panel.compare  # which scripted tours drive
        self.split = QSplitter(Qt.Orientation.Horizontal)
        self.split.setChildrenCollapsible(False)
        self.split.addWidget(self.support_panel)
        self.split.addWidget(self.conversation_panel)
        self.split.setStretchFactor(0, 2)
        self.split.setStretchFactor(1, 3)
        self.split.setSizes([420, 640])
        self.stack = QStackedWidget()
        outer.addWidget(self.stack, 1)
        self.stack.addWidget(self._build_empty())
        self.stack.addWidget(self.split)
        self.stack.addWidget(self.regression_panel)

        for panel in (self.support_panel, self.conversation_panel, self.regression_panel):
            panel.message.connect(self.banner.show_message)
        self.support_panel.edited.connect(lambda adapt: adapt and self.request_adapt())
        self.support_panel.adapt_requested.connect(self.request_adapt)
        self.conversation_panel.feedback_chosen.connect(self.give_feedback)
        self.conversation_panel.support_replaced.connect(self._on_support_replaced)
        self.run_combo.currentIndexChanged.connect(self._on_run_chosen)
        self.demo_button.clicked.connect(self.demo_toggle_requested)
        self._refreshing = False
        self.refresh_runs()
        self.apply_theme()

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

    # --- what is loaded ---------------------------------------------------------------------------------
    @property
    def engine(self) -> ChatEngine | None:
        return self.session.engine if self.session is not None else None

    @property
    def dataset(self):
        return self.session.dataset if self.session is not None else None

    @property
    def busy(self) -> bool:
        return any(t is not None and t.running for t in (self.load_task, self.adapt_task))

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
        if prefer_latest and self.session is not None and self.session.transcript:
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
        """Open the run (``open_run``: checkpoint, dataset, starting support set, first
        adaptation) in a worker thread."""
        if self.load_task is not None and self.load_task.running:
            self._pending_run = run_id
            return
        self._pending_run = None
        self._loading_run = run_id
        db = self.state.db_path
        shared = self.state.dataset if self.state.dataset_ready else None
        shared_key = dataset_key(self.state.config.dataset) if shared is not None else None
        start = self.support_panel.start_from.currentData() or "held_out"

        def reuse(cfg):  # the dataset the app already holds, when the run was trained on it
            return shared if shared is not None and dataset_key(cfg) == shared_key else None

        def work(progress, cancel):
            return open_run(db, run_id, start, reuse)

        self.progress.begin(f"Loading run #{run_id} and adapting to its held-out classes…")
        self.banner.clear()
        self._set_busy(True)
        task = BackgroundTask(work, "chat-load", self)
        task.succeeded.connect(self._on_loaded)
        task.failed.connect(self._on_load_failed)
        task.finished.connect(self._on_load_finished)
        self.load_task = task.start()

    def _close_journal(self) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None

    def _journal_session(self, session: ChatSession) -> None:
        """From now on every edit of the support set and every correction is written to the
        run store (as ``metagui serve`` does) before the pane goes on: nothing is lost, and a
        served model restarts from what was edited here."""
        self._close_journal()
        if session.run_id is None:
            return
        try:
            self._journal = journal_to_store(self.state.db_path, session.run_id, "app")
        except MetaGUIError as exc:
            self.banner.show_message("warning", f"Edits and corrections are not recorded: {exc}")
            return
        session.on_change = self._journal

    def _on_loaded(self, result: ChatSession | RegressionEngine) -> None:
        self.run_id = result.run_id
        self._close_journal()
        if isinstance(result, RegressionEngine):
            self.session = None
            self.header.subtitle.setText(SUBTITLE["regression"])
            self.stack.setCurrentIndex(2)
            self.regression_panel.bind(result)
            return
        self.regression_panel.bind(None)
        self.session = session = result
        self._journal_session(session)
        self.support_panel.bind(session)
        self.conversation_panel.bind(session, self.state.store)
        self.header.subtitle.setText(SUBTITLE[session.modality])
        self.stack.setCurrentIndex(1)
        if session.adaptation is not None:
            self._on_adapted(session.adaptation)
        else:
            self.support_panel.show_status(session.problem() or "Not adapted yet")
            self.conversation_panel.render()
        if session.note:
            self.banner.show_message("info", session.note)

    def _on_load_failed(self, message: str, details: str) -> None:
        self.banner.show_message("error", f"Could not load run #{self._loading_run}: {message}")
        if details:
            log.error("chat: loading run failed: %s\n%s", message, details)

    def _on_load_finished(self) -> None:
        self.progress.end()
        self._loading_run = None
        self._set_busy(False)
        if self._pending_run is not None and self._pending_run != self.run_id:
            self.load_run(self._pending_run)

    def _set_busy(self, busy: bool) -> None:
        self.run_combo.setEnabled(not busy)
        self.support_panel.reset_button.setEnabled(not busy)

    # --- adapting -------------------------------------------------------------------------------------------
    def request_adapt(self) -> None:
        """Adapt to a snapshot of the support set in a worker; edits made meanwhile trigger
        one more adaptation when it finishes."""
        session = self.session
        if session is None:
            return
        problem = session.problem()
        if problem:
            self.support_panel.show_status(problem)
            return
        if self.adapt_task is not None and self.adapt_task.running:
            self._adapt_again = True
            return
        self._adapt_again = False
        snapshot = session.snapshot()
        self.support_panel.show_status("Adapting…")

        def work(progress, cancel):
            return session.adapt(snapshot)

        task = BackgroundTask(work, "chat-adapt", self)
        task.succeeded.connect(self._on_adapted)
        task.failed.connect(lambda m, d: self.banner.show_message("error", f"Adaptation failed: {m}"))
        task.finished.connect(self._on_adapt_finished)
        self.adapt_task = task.start()

    def _on_adapt_finished(self) -> None:
        if self._adapt_again:
            self.request_adapt()

    def _on_adapted(self, ad: Adaptation) -> None:
        self.adapt_count += 1
        session = self.session
        if session is None:
            return
        self.support_panel.show_adapted(ad)
        self.demo_info.setText(f"{session.engine.learner.label} · adapted to {len(ad.names)} {session.nouns} from "
                               f"{ad.examples} examples in {ad.ms:.0f} ms · Esc leaves demo mode")
        self.conversation_panel.render()

    # --- across the panels -------------------------------------------------------------------------------------
    def give_feedback(self, turn: int, intent: str) -> None:
        """The answer to ``turn`` was ``intent``: add the message as its example, re-adapt."""
        if self.session is None:
            return
        try:
            self.session.feedback(turn, intent)
        except MetaGUIError as exc:
            self.banner.show_message("error", str(exc))
            return
        self.support_panel.show_support()
        self.request_adapt()
        self.conversation_panel.render()

    def add_intent(self, name: str, examples: list[str], reply: str = "") -> bool:
        return self.support_panel.add_intent(name, examples, reply)

    def _on_support_replaced(self) -> None:
        self.support_panel.show_support(keep_expanded=False)
        self.request_adapt()

    # --- demo mode and look --------------------------------------------------------------------------------------
    def set_demo(self, on: bool) -> None:
        """Large fonts and only the conversation (the window hides its own chrome)."""
        self.demo = on
        self.header.setVisible(not on)
        self.support_panel.setVisible(not on)
        self.demo_info.setVisible(on and self.session is not None)
        info = QFont(self.demo_info.font())
        info.setPointSizeF(14 if on else 10)
        self.demo_info.setFont(info)
        self.outer.setContentsMargins(*((48, 24, 48, 24) if on else (18, 14, 18, 12)))
        self.conversation_panel.set_demo(on)

    def apply_theme(self) -> None:
        self.header.refresh_theme()
        self.empty_icon.setPixmap(icons.pixmap("chat", theme.current().muted, 64))
        self.support_panel.apply_theme()
        self.regression_panel.apply_theme()
        self.conversation_panel.render()

    def shutdown(self, wait_ms: int = 10000) -> bool:
        ok = True
        for t in (self.load_task, self.adapt_task):
            if t is not None and t.running:
                ok = t.wait(wait_ms) and ok
        self._close_journal()  # its own store connection
        return ok
