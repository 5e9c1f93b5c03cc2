"""Holding exports to the live model: the inputs they are checked on, the reference each
must reproduce, and the measured differences."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metagui.core.algorithms.base import MetaLearner
from metagui.core.export.encoder import SentenceTower, text_episode
from metagui.core.export.graphs import ExportGraphs, head_only_reference, live_predict
from metagui.core.export.source import (
    Episode,
    ExportError,
    ModelSource,
    graph_supported,
    item_inputs,
    synthetic_episode,
)


def check_episodes(src: ModelSource, real: list[Episode], tower: SentenceTower | None = None) -> list[tuple[str, Episode]]:
    """Inputs for parity: two random episodes of different sizes (so that a shape baked into a
    traced graph shows) and, when at hand, one episode of real held-out data. A model on a
    pretrained encoder is checked on random sentences, embedded by the encoder as MetaGUI
    does (and tokenized, for a graph that carries the encoder with ``tower``)."""
    if not item_inputs(src):
        return []  # RL policies: bundles compare weights only
    way, shot, query = max(src.n_way, 2), max(src.config.task.shot, 1), max(src.config.task.query, 1)

    def make(n_way: int, n_shot: int, n_query: int, seed: int) -> Episode:
        if src.pre.text_encoder:
            return text_episode(src, tower, n_way, n_shot, n_query, seed)
        return synthetic_episode(src, n_way, n_shot, n_query, seed)

    if src.regression:
        first, second = make(0, shot, query, 1), make(0, shot + 3, query + 2, 2)
    else:
        fixed = src.learner.family == "optimisation"
        first = make(way, shot, query, 1)
        second = make(way if fixed else max(2, way - 1), shot + 1, query + 2, 2)
    out = [("random", first), ("random, other sizes", second)]
    if real and tower is None:  # held-out embeddings have no token ids to feed a tower
        out.append(("held-out data", real[0]))
    return out


def reference(src: ModelSource, ep: Episode) -> torch.Tensor:
    """What an adaptive export must reproduce for this episode."""
    if src.learner.family == "optimisation":
        return head_only_reference(src.learner, ep)
    return live_predict(src.learner, ep)


def _metric_value(src: ModelSource, out: torch.Tensor, y: torch.Tensor) -> float:
    if src.regression:
        return float(((out - y) ** 2).mean())
    return float((out.argmax(-1) == y).float().mean())


def adaptation_summary(src: ModelSource, real: list[Episode]) -> dict[str, Any]:
    """Held-out score of the live model and of the exported adaptation on the same episodes."""
    learner = src.learner
    graphs = ExportGraphs(learner).eval() if graph_supported(learner) else None
    live, exported = [], []
    for ep in real:
        with torch.no_grad():
            live.append(_metric_value(src, live_predict(learner, ep), ep.qy))
            if graphs is not None:
                exported.append(_metric_value(src, graphs(ep.sx, ep.sy, ep.qx), ep.qy))
    name = "mse" if src.regression else "accuracy"
    summary = {"metric": name, "episodes": len(real), "live": float(np.mean(live)),
               "exported": float(np.mean(exported)) if exported else float(np.mean(live))}
    if graphs is None:
        summary["what_adapts"] = "as in MetaGUI (bundle only)"
    elif learner.family == "optimisation":
        summary["what_adapts"] = "head"
        summary["note"] = (f"In MetaGUI, {learner.label} adapts every layer with {learner.hp['eval_steps']} gradient steps; "
                           "the exported graphs adapt only the final linear layer (same steps and step sizes) "
                           "on backbone features computed once.")
    else:
        summary["what_adapts"] = "class representations from the support set (exact)"
    return summary


def ort_session(path: Path):
    try:
        import onnxruntime as ort
    except ImportError:
        raise ExportError("checking ONNX exports needs onnxruntime: pip install 'metagui[export]'") from None
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def max_diff(a, b) -> float:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b.detach().numpy() if isinstance(b, torch.Tensor) else b, dtype=np.float64)
    if a.shape != b.shape:
        return float("inf")
    return float(np.abs(a - b).max()) if a.size else 0.0


def parity_graph(src: ModelSource, graphs: ExportGraphs, fmt: str, path: Path,
                  checks: list[tuple[str, Episode]]) -> dict[str, float]:
    learner = src.learner
    parity: dict[str, float] = {}
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated in torch 2.10+
            loaded = torch.jit.load(str(path))
        for label, ep in checks:
            gsx, gqx = ep.graph_inputs()
            with torch.no_grad():
                parity[f"forward, {label}"] = max_diff(loaded(gsx, ep.sy, gqx), reference(src, ep))
                parity[f"embed, {label}"] = max_diff(loaded.embed(gqx), learner.backbone(ep.qx))
        return parity
    sess = ort_session(path)
    for label, ep in checks:
        gsx, gqx = ep.graph_inputs()
        with torch.no_grad():
            if fmt == "onnx":
                outs = sess.run(None, {"x": gqx.numpy()})
                parity[f"embeddings, {label}"] = max_diff(outs[0], learner.backbone(ep.qx))
                if learner.family == "optimisation":
                    parity[f"outputs, {label}"] = max_diff(outs[1], learner.head(learner.backbone(ep.qx)))
            else:
                feed = {"support_x": gsx.numpy(), "support_y": ep.sy.numpy(), "query_x": gqx.numpy()}
                parity[label] = max_diff(sess.run(None, feed)[0], reference(src, ep))
    return parity


def parity_bundle(src: ModelSource, learner: MetaLearner, checks) -> dict[str, float]:
    a, b = src.learner.state_dict(), learner.state_dict()
    parity = {"weights": max((float((a[k].float() - b[k].float()).abs().max()) if a[k].numel() else 0.0) for k in a)}
    if src.learner.family in ("metric", "optimisation", "probabilistic") and src.pre.modality in ("image", "text", "regression"):
        learner.eval()
        for label, ep in checks:
            with torch.no_grad():
                parity[f"predictions, {label}"] = max_diff(live_predict(learner, ep), live_predict(src.learner, ep))
    return parity
