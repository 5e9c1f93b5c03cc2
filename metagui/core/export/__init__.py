"""Export trained models, and open MetaGUI bundles again without executing anything from them.

Formats (``FORMATS``):

- ``bundle``: a ``.metagui`` zip of safetensors weights, the run's config, label names,
  preprocessing, metrics, a model card and a manifest of checksums. It reopens in the app
  (imported as a run) and in ``metagui predict``.
- ``torchscript``: one traced module; ``forward(support_x, support_y, query_x)`` adapts to the
  support set and predicts the queries, ``embed(x)`` is the backbone.
- ``onnx``: the backbone as an ONNX graph (``x -> embeddings``, plus the head's ``outputs`` for
  optimisation-based learners).
- ``onnx-adaptive``: an ONNX graph that adapts inside any ONNX runtime
  (``support_x, support_y, query_x -> probabilities | values``). Metric learners adapt exactly
  as in MetaGUI; MAML-family learners adapt their final linear layer with closed-form gradient
  steps on backbone features computed once (the model card says so and measures the gap).

Every export is checked against the live model on the same inputs (onnxruntime for ONNX,
``torch.jit.load`` for TorchScript, a reopened bundle for bundles) at two input sizes, so that
traced shapes cannot hide. Files are written under temporary names and moved into place only
when the check passes: a failed export leaves nothing behind.

The exported graphs take model inputs, not raw items: images as float32 [n, C, H, W] in
[0, 1], texts as int64 token ids [n, L] (0 = padding). The text featurizer is plain Python; its
exact specification travels as JSON and as a short stdlib snippet in the model card, never as
code inside a bundle.

One concept per module: ``source`` (what is exported, which formats it can take, example
episodes), ``graphs`` (the traced computations), ``parity`` (checks against the live model),
``bundle`` (the writer and the checked reader), ``card`` (model card, spec and snippet) and
``pipeline`` (check, write, move into place).
"""

from metagui.core.export.bundle import (
    BUNDLE_MEMBERS,
    Bundle,
    BundleError,
    EncoderNeeded,
    import_bundle,
    open_bundle,
    predict,
)
from metagui.core.export.card import code_snippet, model_card
from metagui.core.export.graphs import ExportGraphs, head_only_reference, live_predict
from metagui.core.export.pipeline import (
    ExportResult,
    ExportTargetExists,
    export_model,
    export_run,
    sidecars,
)
from metagui.core.export.source import (
    EXPORT_FAMILIES,
    FORMATS,
    SUFFIXES,
    TOLERANCE,
    Episode,
    ExportError,
    ModelSource,
    data_episodes,
    export_problem,
    load_source,
    synthetic_episode,
)

__all__ = [
    "BUNDLE_MEMBERS", "EXPORT_FAMILIES", "FORMATS", "SUFFIXES", "TOLERANCE", "Bundle", "BundleError", "Episode",
    "EncoderNeeded", "ExportError", "ExportGraphs", "ExportResult", "ExportTargetExists", "ModelSource", "code_snippet", "data_episodes", "export_model",
    "export_problem", "export_run", "head_only_reference", "import_bundle", "live_predict", "load_source",
    "model_card", "open_bundle", "predict", "sidecars", "synthetic_episode",
]
