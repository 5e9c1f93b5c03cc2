"""The chat behind the "Try it" pane (Qt-free).

- ``support``: the support set (intents, examples, replies), tables of intents, images.
- ``engine``: a trained meta-learner adapted to a support set; answers, feedback,
  before / after, transcripts (``ChatEngine``; how each family adapts is told there).
- ``session``: one chat on one run, as the pane runs it (``ChatSession``, ``open_run``).
- ``regression``: few-shot regression on the sinusoid family (``RegressionEngine``).
"""

from metagui.core.chat.engine import (
    DEFAULT_THRESHOLD,
    MAX_PER_INTENT,
    Adaptation,
    Answer,
    ChatEngine,
    fallback_reply,
    gradient_start,
    held_out_accuracy,
    latency_stats,
)
from metagui.core.chat.regression import RegressionEngine, RegressionFit
from metagui.core.chat.session import (
    MAX_START_CLASSES,
    START_FROM,
    ChatSession,
    NotAdapted,
    held_out_classes,
    journal_to_store,
    open_run,
)
from metagui.core.chat.support import (
    DATA_URI,
    INTENT_COLUMNS,
    REPLY_COLUMNS,
    TEXT_COLUMNS,
    Intent,
    SupportSet,
    default_reply,
    humanise,
    image_to_data_uri,
    load_image,
    read_intent_table,
    support_from_dataset,
)

__all__ = [
    "DATA_URI", "DEFAULT_THRESHOLD", "INTENT_COLUMNS", "MAX_PER_INTENT", "MAX_START_CLASSES",
    "REPLY_COLUMNS", "START_FROM", "TEXT_COLUMNS", "Adaptation", "Answer", "ChatEngine",
    "ChatSession", "Intent", "NotAdapted", "RegressionEngine", "RegressionFit", "SupportSet",
    "default_reply", "fallback_reply", "gradient_start", "held_out_accuracy", "held_out_classes", "journal_to_store",
    "humanise", "image_to_data_uri", "latency_stats", "load_image", "open_run",
    "read_intent_table", "support_from_dataset",
]
