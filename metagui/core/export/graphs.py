"""The computations exports contain, written with shape-generic tensor ops so that a traced
graph takes any number of items, support examples, queries and (for metric learners) classes."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from metagui.core.algorithms.base import MetaLearner
from metagui.core.export.source import OPSET, Episode, ExportError, ModelSource
from metagui.core.models import Conv4


def _one_hot(labels: torch.Tensor, n: torch.Tensor | int, dtype: torch.dtype) -> torch.Tensor:
    """One-hot rows by comparison with ``arange(n)``: traces with a dynamic ``n``."""
    return (labels.unsqueeze(1) == torch.arange(n, device=labels.device).unsqueeze(0)).to(dtype)


def _episode_norm(x: torch.Tensor, norm: nn.Module) -> torch.Tensor:
    """``models.EpisodeBatchNorm`` for one episode, with its means taken in two stages (over
    pixels, then over items). onnxruntime sums a long ReduceMean one float at a time; over a
    whole episode's pixels that drifts by ~1e-4, which this keeps at rounding level."""
    mean = x.mean((2, 3), keepdim=True).mean(0, keepdim=True)
    var = (x - mean).pow(2).mean((2, 3), keepdim=True).mean(0, keepdim=True)
    return (x - mean) * torch.rsqrt(var + norm.eps) * norm.weight.view(1, -1, 1, 1) + norm.bias.view(1, -1, 1, 1)


class ExportGraphs(nn.Module):
    """The computations that exports contain, written with shape-generic tensor ops so that a
    traced graph takes any number of items, support examples, queries and (for metric
    learners) classes. Parity checks hold them to the learner's own code."""

    def __init__(self, learner: MetaLearner, tower: nn.Module | None = None) -> None:
        super().__init__()
        self.learner = learner
        # a pretrained text encoder carried inside (``encoder.SentenceTower``): token ids in,
        # its sentence embeddings are what the learner's backbone takes
        self.tower = tower
        self.family = learner.family
        self.batch_independent = bool(getattr(learner.backbone, "batch_independent", False))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self._backbone(x)

    def _backbone(self, x: torch.Tensor) -> torch.Tensor:
        if self.tower is not None:
            x = self.tower(x)
        bb = self.learner.backbone
        if not isinstance(bb, Conv4):
            return bb(x)
        for conv, norm in zip(bb.convs, bb.norms, strict=True):
            x = F.max_pool2d(F.relu(_episode_norm(conv(x), norm)), 2)
        return x.flatten(1)

    def outputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Backbone embeddings and, for optimisation-based learners, the head's outputs at the
        meta-learned initialisation (logits, or values for regression)."""
        emb = self._backbone(x)
        return emb, self.learner.head(emb)

    def _features(self, sx: torch.Tensor, qx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Support and query embeddings; batch-norm backbones see the episode together."""
        if self.batch_independent:
            return self._backbone(sx), self._backbone(qx)
        emb = self._backbone(torch.cat([sx, qx]))
        s = sx.shape[0]
        return emb[:s], emb[s:]

    def forward(self, support_x: torch.Tensor, support_y: torch.Tensor, query_x: torch.Tensor) -> torch.Tensor:
        if self.family == "metric":
            return self._metric(support_x, support_y, query_x)
        return self._head_adaptation(support_x, support_y, query_x)

    # metric learners: exactly the learner's adapt/predict, through its own scoring
    def _metric(self, sx: torch.Tensor, sy: torch.Tensor, qx: torch.Tensor) -> torch.Tensor:
        lr = self.learner
        guard = lr.domain_guard()  # the adapter of a pretrained encoder, when the learner has a domain guard
        if guard is None:
            es, eq = self._features(sx, qx)
        else:  # the guard also needs the frozen embeddings, which the adapter takes
            fs, fq = (self.tower(sx), self.tower(qx)) if self.tower is not None else (sx, qx)
            es, eq = guard(fs), guard(fq)
        oh = _one_hot(sy, sy.max() + 1, es.dtype)  # [S, N], N traced from the labels
        probs = lr.probabilities(lr.score_onehot(es.unsqueeze(0), oh.unsqueeze(0), eq.unsqueeze(0)))[0]
        if guard is None:
            return probs
        # another domain's support set: the frozen class means (``MetaLearner.guarded_predictor``)
        frozen = lr.frozen_class_means(fs.unsqueeze(0), oh.unsqueeze(0), fq.unsqueeze(0))[0]
        return torch.where(guard.in_domain(fs.unsqueeze(0))[0], probs, frozen)

    # optimisation-based learners: closed-form gradient steps on the final linear layer
    def _head_adaptation(self, sx: torch.Tensor, sy: torch.Tensor, qx: torch.Tensor) -> torch.Tensor:
        lr = self.learner
        hs_alone = self._backbone(sx)  # the inner loop sees the support set alone, as in MetaGUI
        _, hq = self._features(sx, qx)
        w, b = lr.head.weight, lr.head.bias
        lr_w, lr_b = lr.test_step_size("head.weight"), lr.test_step_size("head.bias")
        count = torch.ones_like(hs_alone[:, :1]).sum()  # support size, traced as a tensor
        regression = lr.regression
        target = sy if regression else _one_hot(sy, w.shape[0], hs_alone.dtype)
        for _ in range(int(lr.hp["eval_steps"])):
            out = hs_alone @ w.t() + b
            # d loss / d out: softmax cross-entropy (p - y) / S; mean squared error 2 (out - y) / S
            g = 2 * (out - target) / count if regression else (out.softmax(-1) - target) / count
            w = w - lr_w * (g.t() @ hs_alone)
            b = b - lr_b * g.sum(0)
        out = hq @ w.t() + b
        return out if regression else out.softmax(-1)


def head_only_reference(learner: MetaLearner, ep: Episode) -> torch.Tensor:
    """What the in-graph adaptation of an optimisation-based learner computes, by autograd on
    the learner's own loss and step sizes: the reference its closed form is checked against."""
    with torch.no_grad():
        hs = learner.backbone(ep.sx)
        if getattr(learner.backbone, "batch_independent", False):
            hq = learner.backbone(ep.qx)
        else:
            hq = learner.backbone(torch.cat([ep.sx, ep.qx]))[ep.sx.shape[0]:]
    w = learner.head.weight.detach().clone().requires_grad_(True)
    b = learner.head.bias.detach().clone().requires_grad_(True)
    lr_w, lr_b = learner.test_step_size("head.weight"), learner.test_step_size("head.bias")
    if isinstance(lr_w, torch.Tensor):
        lr_w, lr_b = lr_w.detach(), lr_b.detach()
    with torch.enable_grad():
        for _ in range(int(learner.hp["eval_steps"])):
            loss = learner.task_loss(F.linear(hs, w, b), ep.sy)
            gw, gb = torch.autograd.grad(loss, (w, b))
            w, b = w - lr_w * gw, b - lr_b * gb
    with torch.no_grad():
        out = F.linear(hq, w, b)
        return out if learner.regression else out.softmax(-1)


def live_predict(learner: MetaLearner, ep: Episode, n_way: int | None = None) -> torch.Tensor:
    """The live model: adapt to the support set (all layers for MAML-family learners), predict."""
    torch.manual_seed(0)  # probabilistic learners sample; the same draws for both sides
    return learner.adapt(ep.sx, ep.sy, n_way or (0 if learner.regression else int(ep.sy.max()) + 1)).predict(ep.qx)


class _OnnxEmbed(nn.Module):
    def __init__(self, graphs: ExportGraphs, with_head: bool) -> None:
        super().__init__()
        self.graphs = graphs
        self.with_head = with_head

    def forward(self, x: torch.Tensor):
        return self.graphs.outputs(x) if self.with_head else self.graphs.embed(x)


def onnx_export(src: ModelSource, graphs: ExportGraphs, fmt: str, path: Path, ep: Episode) -> None:
    dyn_x = {0: "n", 1: "tokens"} if src.pre.modality == "text" else {0: "n"}
    if fmt == "onnx":
        with_head = src.learner.family == "optimisation"
        names = ["embeddings", "outputs"] if with_head else ["embeddings"]
        # eval(): torch.onnx.export restores the module's mode afterwards, recursively, and a
        # wrapper left in training mode would switch the live model's dropout back on
        module: nn.Module = _OnnxEmbed(graphs, with_head).eval()
        args: tuple = (ep.graph_inputs()[0],)
        inputs = ["x"]
        axes = {"x": dyn_x, **{n: {0: "n"} for n in names}}
    else:
        out_name = "values" if src.regression else "probabilities"
        names = [out_name]
        module = graphs
        gsx, gqx = ep.graph_inputs()
        args = (gsx, ep.sy, gqx)
        inputs = ["support_x", "support_y", "query_x"]
        text = src.pre.modality == "text"
        sdyn = {0: "S", 1: "support_tokens"} if text else {0: "S"}
        qdyn = {0: "Q", 1: "query_tokens"} if text else {0: "Q"}
        axes = {"support_x": sdyn, "support_y": {0: "S"}, "query_x": qdyn,
                out_name: {0: "Q"} if src.learner.family == "optimisation" else {0: "Q", 1: "N"}}
    try:
        torch.onnx.export(module, args, str(path), dynamo=False, opset_version=OPSET, input_names=inputs,
                          output_names=names, dynamic_axes=axes, do_constant_folding=True)
    except ImportError as exc:
        raise ExportError(f"ONNX export needs the 'export' extra: pip install 'metagui[export]' ({exc})") from None
