"""Metric / memory-based meta-learners: Prototypical, Matching and Relation Networks.

Support and query items are embedded together in one pass per task (batch-norm backbones
normalise with the episode's statistics); class evidence comes from one-hot products, so
unbalanced support sets (a chat user's edited intents) work too.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import nn

from metagui.core.algorithms.base import (
    DOMAIN_GUARD,
    PRETRAINED_PRESET,
    TEXT_PRESET,
    HyperParam,
    MetaLearner,
    Predictor,
    onehot_means,
    register,
)
from metagui.core.tasks import EpisodeBatch


class MetricLearner(MetaLearner):
    family = "metric"
    guards_domain = True

    def scores(self, es: torch.Tensor, sy: torch.Tensor, eq: torch.Tensor, n_way: int) -> torch.Tensor:
        """Class scores [T, Q, N] of query embeddings given support embeddings."""
        return self.score_onehot(es, F.one_hot(sy, n_way).to(es.dtype), eq)

    def score_onehot(self, es: torch.Tensor, support_onehot: torch.Tensor, eq: torch.Tensor) -> torch.Tensor:
        """Class scores [T, Q, N] of query embeddings [T, Q, d], given support embeddings
        [T, S, d] and their one-hot labels [T, S, N]. Written with shape-generic tensor ops:
        training and the exported graphs (any number of classes) both call it."""
        raise NotImplementedError

    def loss_from_scores(self, scores: torch.Tensor, qy: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(scores.flatten(0, 1), qy.flatten())

    def probabilities(self, scores: torch.Tensor) -> torch.Tensor:
        return scores.softmax(-1)

    def outer_loss(self, batch: EpisodeBatch, evaluating: bool = False):
        s = batch.support_x.shape[1]
        emb = self.embed_tasks(torch.cat([batch.support_x, batch.query_x], dim=1))
        scores = self.scores(emb[:, :s], batch.support_y, emb[:, s:], batch.n_way)
        loss = self.loss_from_scores(scores, batch.query_y)
        per_task = (scores.detach().argmax(-1) == batch.query_y).float().mean(1)
        return loss, per_task, {}

    def adapt(self, support_x: torch.Tensor, support_y: torch.Tensor, n_way: int | None = None) -> Predictor:
        n_way = n_way or int(support_y.max()) + 1
        self.eval()
        guarded = self.guarded_predictor(support_x, support_y, n_way)
        if guarded is not None:
            return guarded
        start = time.perf_counter()
        cached = None
        if getattr(self.backbone, "batch_independent", False):
            with torch.no_grad():
                cached = self.backbone(support_x)[None]
        elapsed = time.perf_counter() - start

        def predict(x: torch.Tensor) -> torch.Tensor:
            if cached is not None:
                es, eq = cached, self.backbone(x)[None]
            else:
                emb = self.backbone(torch.cat([support_x, x]))[None]
                es, eq = emb[:, : support_x.shape[0]], emb[:, support_x.shape[0] :]
            return self.probabilities(self.scores(es, support_y[None], eq, n_way))[0]

        return Predictor(predict, n_way, elapsed)


@register
class ProtoNet(MetricLearner):
    name = "protonet"
    label = "Prototypical Networks"
    summary = "Each class is the mean of its support embeddings; queries go to the nearest prototype."
    paper = "Snell, Swersky, Zemel 2017, Prototypical Networks for Few-shot Learning"
    hyperparams = (
        HyperParam("distance", str, "euclidean",
                   "How queries are compared with prototypes: squared Euclidean (the paper) or cosine "
                   "similarity scaled by a learned temperature (no penalty on tight classes' shorter "
                   "prototypes; the built-in text encoder transfers better with it).",
                   choices=("euclidean", "cosine")),
        DOMAIN_GUARD,
    )
    presets = {
        "Omniglot (paper)": {"hyperparams": {"meta_lr": 1e-3, "meta_batch": 1}},
        TEXT_PRESET: {"hyperparams": {"distance": "cosine", "meta_lr": 1e-2}},
        PRETRAINED_PRESET: {"hyperparams": {"distance": "cosine", "meta_lr": 1e-3}},
    }

    def build(self) -> None:
        if self.hp["distance"] == "cosine":
            self.log_scale = nn.Parameter(torch.tensor(2.3))  # temperature ~10 at the start

    def score_onehot(self, es, support_onehot, eq):
        protos = onehot_means(es, support_onehot)
        if self.hp["distance"] == "cosine":
            sim = F.normalize(eq, dim=-1) @ F.normalize(protos, dim=-1).transpose(1, 2)
            return self.log_scale.exp() * sim
        return -(eq.unsqueeze(2) - protos.unsqueeze(1)).pow(2).sum(-1)


@register
class MatchingNet(MetricLearner):
    name = "matching"
    label = "Matching Networks"
    summary = "Attention over the support set by cosine similarity; optionally full-context embeddings (LSTMs)."
    paper = "Vinyals et al. 2016, Matching Networks for One Shot Learning"
    hyperparams = (
        HyperParam("fce", bool, False, "Full-context embeddings: a bidirectional LSTM over the support set and an attention LSTM for queries."),
        HyperParam("fce_steps", int, 3, "Read steps of the query attention LSTM (with fce).", 1, 20),
        HyperParam("temperature", float, 10.0, "Scale of cosine similarities before the softmax attention.", 0.1, 100.0),
        DOMAIN_GUARD,
    )
    presets = {
        "Omniglot (paper)": {"hyperparams": {"meta_lr": 1e-3, "meta_batch": 4, "fce": False}},
        TEXT_PRESET: {"hyperparams": {"temperature": 30.0, "meta_lr": 1e-2}},
        PRETRAINED_PRESET: {"hyperparams": {"temperature": 10.0, "meta_lr": 1e-3}},
    }

    def build(self) -> None:
        d = self.backbone.emb_dim
        if self.hp["fce"]:
            self.support_lstm = nn.LSTM(d, d, batch_first=True, bidirectional=True)
            self.query_cell = nn.LSTMCell(d, d)

    def contextualise(self, es: torch.Tensor, eq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Full-context embeddings: support [T, S, d] through a bidirectional LSTM, queries
        [T, Q, d] read the support set with an attention LSTM."""
        d = es.shape[-1]
        out, _ = self.support_lstm(es)
        g = es + out[..., :d] + out[..., d:]
        x = eq.reshape(-1, d)  # [T*Q, d]
        h = torch.zeros_like(x)
        c = torch.zeros_like(x)
        for _ in range(self.hp["fce_steps"]):
            attn = torch.softmax(h.view_as(eq) @ g.transpose(1, 2), dim=-1)  # [T, Q, S]
            read = (attn @ g).reshape(-1, d)
            h, c = self.query_cell(x, (h + read, c))
            h = h + x
        return g, h.view_as(eq)

    def score_onehot(self, es, support_onehot, eq):
        if self.hp["fce"]:
            es, eq = self.contextualise(es, eq)
        sim = F.normalize(eq, dim=-1) @ F.normalize(es, dim=-1).transpose(1, 2)
        attn = torch.softmax(self.hp["temperature"] * sim, dim=-1)  # [T, Q, S]
        probs = attn @ support_onehot
        return torch.log(probs.clamp_min(1e-8))  # log-probabilities act as scores

    def loss_from_scores(self, scores, qy):
        return F.nll_loss(scores.flatten(0, 1), qy.flatten())

    def probabilities(self, scores):
        return scores.exp()


@register
class RelationNet(MetricLearner):
    name = "relation"
    label = "Relation Networks"
    summary = "A learned relation module scores each (class, query) pair; trained to output 1 for matches."
    paper = "Sung et al. 2018, Learning to Compare: Relation Network for Few-Shot Learning"
    hyperparams = (
        HyperParam("relation_hidden", int, 64, "Hidden units of the relation module.", 4, 1024),
        HyperParam("cosine_feature", bool, False,
                   "Also give the relation module each pair's cosine similarity: wide embeddings (the built-in "
                   "text encoder's 4096 dimensions) make a comparison hard to learn from the pair features alone."),
        HyperParam("pair_dim", int, 0,
                   "Project embeddings to this many dimensions (a learned linear map) before forming pair "
                   "features; 0 = no projection. Wide embeddings make every (class, query) pair costly.", 0, 4096),
        HyperParam("cosine_skip", bool, False,
                   "Add each pair's cosine similarity, times a learned gain, to the relation module's score before "
                   "the sigmoid: the module then learns a correction to a cosine comparison instead of the whole "
                   "comparison, which holds up better with more classes than training had (15-way text tasks "
                   "after 5-way training, see the README's Text transfer)."),
        HyperParam("start_at_prototypes", bool, False,
                   "Start the relation module's output at zero (its last layer zeroed): with cosine_skip, an "
                   "untrained run is then the cosine prototype classifier (on a pretrained encoder, the frozen "
                   "encoder's nearest class mean), and meta-training learns a correction to it."),
        DOMAIN_GUARD,
    )
    presets = {
        "Omniglot (paper-like)": {"hyperparams": {"meta_lr": 1e-3, "meta_batch": 1}},
        TEXT_PRESET: {"hyperparams": {"cosine_feature": True, "cosine_skip": True, "pair_dim": 64, "meta_lr": 1e-3}},
        PRETRAINED_PRESET: {"hyperparams": {"cosine_feature": True, "cosine_skip": True, "pair_dim": 64,
                                            "start_at_prototypes": True, "meta_lr": 1e-4}},
    }

    def build(self) -> None:
        d = self.backbone.emb_dim
        h = self.hp["relation_hidden"]
        extra = 1 if self.hp["cosine_feature"] else 0
        if self.hp["pair_dim"]:
            self.pair_proj = nn.Linear(d, self.hp["pair_dim"])
            d = self.hp["pair_dim"]
        self.relation = nn.Sequential(nn.Linear(4 * d + extra, h), nn.ReLU(), nn.Linear(h, h // 2 or 1), nn.ReLU(), nn.Linear(h // 2 or 1, 1))
        if self.hp["cosine_skip"]:
            self.skip_gain = nn.Parameter(torch.tensor(10.0))
        if self.hp["start_at_prototypes"]:
            nn.init.zeros_(self.relation[-1].weight)
            nn.init.zeros_(self.relation[-1].bias)

    def score_onehot(self, es, support_onehot, eq):
        # class feature: mean of its support embeddings (the paper sums; the mean keeps the
        # scale fixed when support sets are unbalanced)
        return self.relate(onehot_means(es, support_onehot), eq)

    def relate(self, cls: torch.Tensor, eq: torch.Tensor) -> torch.Tensor:
        """Scores [T, Q, N] in (0, 1) of class features [T, N, d] against query embeddings
        [T, Q, d]."""
        cos = None
        if self.hp["cosine_feature"] or self.hp["cosine_skip"]:
            cos = F.normalize(eq, dim=-1) @ F.normalize(cls, dim=-1).transpose(1, 2)  # [T, Q, N]
        if self.hp["pair_dim"]:
            cls, eq = self.pair_proj(cls), self.pair_proj(eq)
        t, q, d = eq.shape
        n_way = cls.shape[1]
        c = cls[:, None].expand(t, q, n_way, d)
        x = eq[:, :, None].expand(t, q, n_way, d)
        # the paper's concatenation, plus |c - x| and c * x: the relation module learns a
        # comparison much faster when it sees them (same idea, richer pair features)
        parts = [c, x, (c - x).abs(), c * x]
        if self.hp["cosine_feature"]:
            parts.append(cos.unsqueeze(-1) * 10.0)
        logit = self.relation(torch.cat(parts, dim=-1)).squeeze(-1)
        if self.hp["cosine_skip"]:
            logit = logit + self.skip_gain * cos
        return torch.sigmoid(logit)  # [T, Q, N] in (0, 1)

    def loss_from_scores(self, scores, qy):
        return F.mse_loss(scores, F.one_hot(qy, scores.shape[-1]).to(scores.dtype))

    def probabilities(self, scores):
        return scores / scores.sum(-1, keepdim=True).clamp_min(1e-8)
