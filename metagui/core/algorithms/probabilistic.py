"""Probabilistic meta-learners: PLATIPUS and VERSA. Both adapt to a support set by drawing
several models, so a prediction comes with the spread of its samples (``Predictor``'s
``predict_samples`` and ``uncertainty``).
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import grad, vmap

from metagui.core.algorithms.base import (
    DOMAIN_GUARD,
    PRETRAINED_PRESET,
    TEXT_PRESET,
    HyperParam,
    MetaLearner,
    Predictor,
    one_hot_means,
    register,
)
from metagui.core.algorithms.gradient import GradientLearner, Params, _key
from metagui.core.tasks import EpisodeBatch


# --- PLATIPUS ------------------------------------------------------------------------------------
@register
class PLATIPUS(GradientLearner):
    """Probabilistic MAML (Finn, Xu, Levine 2018).

    Meta-parameters Θ = {μθ, σθ², vq, γp, γq}: a Gaussian over the initial weights (mean μθ,
    the network's own parameters, and a learned per-weight variance σθ²), the variance vq of
    the inference network, and the step sizes γp, γq of the prior and inference means.

    Meta-training follows Algorithm 1 of the paper, per task (D_tr = support, D_test = query):

        q(θ | D_test)  = N(μθ - γq ∇μθ L(μθ, D_test), vq)     θ ~ q (reparameterised)
        φ              = θ - α ∇θ L(θ, D_tr)                    (``inner_steps`` steps)
        p(θ | D_tr)    = N(μθ - γp ∇μθ L(μθ, D_tr), σθ²)
        loss           = L(φ, D_test) + kl_weight · KL(q(θ | D_test) || p(θ | D_tr))

    and Θ is updated with Adam on the mean over tasks. Adaptation (the paper's Algorithm 2)
    draws ``num_samples`` θ ~ p(θ | D_tr), runs the inner loop from each and keeps every
    adapted model: predictions are their mean, ``predict_samples`` gives each.

    Choices the paper leaves open or that differ: the KL term is weighted (``kl_weight``,
    because L is a mean squared error / cross-entropy rather than a summed log-likelihood);
    γp and γq are one learned scalar per weight tensor; variances are parameterised by their
    logarithm; second derivatives flow through the inner step and the gradient-shifted means
    unless ``first_order`` is set.
    """

    name = "platipus"
    label = "PLATIPUS"
    family = "probabilistic"
    summary = ("Probabilistic MAML: learns a distribution over initial weights and draws several adapted "
               "models per task, so ambiguous tasks get several plausible answers.")
    paper = "Finn, Xu, Levine 2018, Probabilistic Model-Agnostic Meta-Learning"
    hyperparams = (
        HyperParam("inner_lr", float, 0.01, "Step size α of the inner gradient steps from each sampled initialisation.", 1e-5, 10.0, log=True),
        HyperParam("inner_steps", int, 1, "Inner gradient steps during meta-training (1 in the paper).", 1, 20),
        HyperParam("eval_steps", int, 5, "Inner gradient steps from each sample when adapting at test time.", 1, 100),
        HyperParam("num_samples", int, 10, "Models drawn per task at adaptation and evaluation time.", 1, 100),
        HyperParam("kl_weight", float, 0.05, "Weight of KL(q(θ|test) || p(θ|train)) in the meta-objective.", 0.0, 100.0, log=True),
        HyperParam("init_log_var", float, -4.0, "Initial log-variance of the prior σθ² and of the inference network's vq.", -20.0, 2.0),
        HyperParam("first_order", bool, False, "Do not differentiate through gradients (cheaper, less exact)."),
        HyperParam("vectorise", bool, True, "Batch the tasks of a meta-batch with torch.func.vmap: several times faster for "
                   "small regression networks; for Conv-4 on the CPU the per-task loop can be faster."),
    )
    presets = {
        "Ambiguous sine/line (short CPU runs)": {"hyperparams": {"inner_lr": 0.01, "inner_steps": 1, "eval_steps": 5, "meta_lr": 3e-3, "meta_batch": 10, "kl_weight": 0.05}},
        "Omniglot 5-way (MAML settings)": {"hyperparams": {"inner_lr": 0.4, "inner_steps": 1, "eval_steps": 3, "meta_lr": 1e-3, "meta_batch": 32, "kl_weight": 1e-3}},
    }

    def meta_step(self, batch: EpisodeBatch) -> dict[str, Any]:
        # one backward pass of its own objective (the query loss and the KL terms of
        # ``outer_loss``), not GradientLearner's task-by-task one
        return MetaLearner.meta_step(self, batch)

    @property
    def vectorised(self) -> bool:
        """Batch the tasks (and samples) with vmap: PLATIPUS's own switch, a boolean."""
        return bool(self.hp.get("vectorise", True))

    def build(self) -> None:
        super().build()
        self.first_order = bool(self.hp["first_order"])
        shapes = self.fast_params()
        lv = self.hp["init_log_var"]
        self.prior_log_var = nn.ParameterDict({_key(k): nn.Parameter(torch.full_like(p, lv)) for k, p in shapes.items()})
        self.q_log_var = nn.ParameterDict({_key(k): nn.Parameter(torch.full_like(p, lv)) for k, p in shapes.items()})
        lr = self.hp["inner_lr"]
        self.gamma_p = nn.ParameterDict({_key(k): nn.Parameter(torch.tensor(lr)) for k in shapes})
        self.gamma_q = nn.ParameterDict({_key(k): nn.Parameter(torch.tensor(lr)) for k in shapes})

    def shifted_mean(self, mu: Params, x: torch.Tensor, y: torch.Tensor, gamma: nn.ParameterDict, create_graph: bool) -> Params:
        """μθ - γ ∇μθ L(μθ, (x, y))."""
        grads = torch.autograd.grad(self.task_loss(self.run(mu, x), y), tuple(mu.values()), create_graph=create_graph)
        return {k: m - gamma[_key(k)] * g for (k, m), g in zip(mu.items(), grads, strict=True)}

    def kl(self, mean_q: Params, mean_p: Params) -> torch.Tensor:
        """KL(N(mean_q, vq) || N(mean_p, σθ²)), summed over all weights."""
        terms = []
        for k in mean_q:
            lq, lp = self.q_log_var[_key(k)], self.prior_log_var[_key(k)]
            terms.append(0.5 * (lp - lq + (lq.exp() + (mean_q[k] - mean_p[k]) ** 2) / lp.exp() - 1).sum())
        return torch.stack(terms).sum()

    def prior_samples(self, sx: torch.Tensor, sy: torch.Tensor, n: int) -> Params:
        """n draws θ ~ p(θ | support), stacked on a leading dim."""
        with torch.enable_grad():
            mean = self.shifted_mean(self.fast_params(), sx, sy, self.gamma_p, create_graph=False)
        return {k: (m.detach() + (0.5 * self.prior_log_var[_key(k)].detach()).exp()
                    * torch.randn((n, *m.shape), device=m.device)) for k, m in mean.items()}

    def adapted_outputs(self, thetas: Params, sx: torch.Tensor, sy: torch.Tensor, qx: torch.Tensor, steps: int) -> torch.Tensor:
        """Query outputs after 0..steps inner steps from each sampled θ: [steps + 1, S, Q, out]."""

        def one(theta: Params) -> torch.Tensor:
            outs = [self.run_query(theta, sx, qx)]
            for _ in range(steps):
                theta = self.adapt_functional(theta, sx, sy, 1, True)
                outs.append(self.run_query(theta, sx, qx))
            return torch.stack(outs)

        return vmap(one, randomness="different")(thetas).transpose(0, 1)

    def mean_output(self, outs: torch.Tensor) -> torch.Tensor:
        """Average over samples (dim -3): values for regression, probabilities otherwise."""
        return outs.mean(-3) if self.regression else outs.softmax(-1).mean(-3)

    def sample_loss(self, mean: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(mean, y) if self.regression else F.nll_loss(mean.clamp_min(1e-8).log(), y)

    def task_objective(self, mu: Params, sx, sy, qx, qy, eps: Params) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Algorithm 1 for one task in torch.func form (vmap-able over tasks): query loss of the
        adapted sample, KL(q || p), query metric. ``eps`` is the standard-normal draw for θ."""

        def loss_at(p: Params, x, y) -> torch.Tensor:
            return self.task_loss(self.run(p, x), y)

        def shifted(x, y, gamma: nn.ParameterDict) -> Params:
            g = grad(loss_at)(mu, x, y)
            if self.first_order:
                g = {k: v.detach() for k, v in g.items()}
            return {k: m - gamma[_key(k)] * g[k] for k, m in mu.items()}

        mean_q = shifted(qx, qy, self.gamma_q)
        theta = {k: m + (0.5 * self.q_log_var[_key(k)]).exp() * eps[k] for k, m in mean_q.items()}
        phi = self.adapt_functional(theta, sx, sy, self.hp["inner_steps"], self.first_order)
        out = self.run_query(phi, sx, qx)
        mean_p = shifted(sx, sy, self.gamma_p)
        return self.task_loss(out, qy), self.kl(mean_q, mean_p), self.task_metric(out.detach(), qy)

    def outer_loss(self, batch: EpisodeBatch, evaluating: bool = False):
        if evaluating:
            return self.evaluation_loss(batch)
        if self.vectorised:
            mu = self.fast_params()
            eps = {k: torch.randn((batch.n_tasks, *m.shape), device=m.device) for k, m in mu.items()}
            losses, kls, metrics = vmap(lambda *a: self.task_objective(mu, *a), randomness="different")(
                batch.support_x, batch.support_y, batch.query_x, batch.query_y, eps)
            loss, kl = losses.mean(), kls.mean()
            return loss + self.hp["kl_weight"] * kl, metrics.detach(), {"kl": float(kl.detach()), "query_loss": float(loss.detach())}
        second = not self.first_order
        mu = self.fast_params()
        losses, kls, metrics = [], [], []
        for t in range(batch.n_tasks):
            sx, sy, qx, qy = batch.support_x[t], batch.support_y[t], batch.query_x[t], batch.query_y[t]
            mean_q = self.shifted_mean(mu, qx, qy, self.gamma_q, create_graph=second)
            theta = {k: m + (0.5 * self.q_log_var[_key(k)]).exp() * torch.randn_like(m) for k, m in mean_q.items()}
            phi = self.inner_loop(theta, sx, sy, self.hp["inner_steps"], create_graph=second)
            out = self.run_query(phi, sx, qx)
            mean_p = self.shifted_mean(mu, sx, sy, self.gamma_p, create_graph=second)
            losses.append(self.task_loss(out, qy))
            kls.append(self.kl(mean_q, mean_p))
            metrics.append(self.task_metric(out.detach(), qy))
        loss, kl = torch.stack(losses).mean(), torch.stack(kls).mean()
        return loss + self.hp["kl_weight"] * kl, torch.stack(metrics), {"kl": float(kl.detach()), "query_loss": float(loss.detach())}

    def evaluation_loss(self, batch: EpisodeBatch):
        """Per task: draw θ ~ p(θ | support), adapt each, score the mean prediction.
        ``adapt_loss_0`` is the query loss of μθ itself (no data seen), ``adapt_loss_i`` that of
        the samples' mean after drawing and i inner steps."""
        steps, n = self.hp["eval_steps"], self.hp["num_samples"]
        losses, metrics, curves = [], [], []
        for t in range(batch.n_tasks):
            sx, sy, qx, qy = batch.support_x[t], batch.support_y[t], batch.query_x[t], batch.query_y[t]
            with torch.no_grad():
                before = self.task_loss(self.run_query(self.fast_params(), sx, qx), qy)
            thetas = self.prior_samples(sx, sy, n)
            with torch.enable_grad():
                outs = self.adapted_outputs(thetas, sx, sy, qx, steps).detach()
            means = self.mean_output(outs)  # [steps + 1, Q, out]
            curve = [float(before)] + [float(self.sample_loss(m, qy)) for m in means[1:]]
            curves.append(curve)
            losses.append(curve[-1])
            final = means[-1]
            metrics.append(((final - qy) ** 2).mean() if self.regression else (final.argmax(-1) == qy).float().mean())
        mean_curve = torch.tensor(curves).mean(0)
        extra = {f"adapt_loss_{i}": float(v) for i, v in enumerate(mean_curve)}
        return torch.tensor(losses).mean(), torch.stack(metrics), extra

    def adapt(self, support_x: torch.Tensor, support_y: torch.Tensor, n_way: int | None = None,
              samples: int | None = None) -> Predictor:
        """Draw ``samples`` (default ``num_samples``) initialisations from p(θ | support) and
        adapt each; the predictor keeps all the adapted models."""
        n_way = n_way or self.n_way
        if not self.regression and n_way != self.n_way:
            raise ValueError(f"this model was meta-trained for {self.n_way}-way tasks, not {n_way}-way")
        self.eval()
        start = time.perf_counter()
        thetas = self.prior_samples(support_x, support_y, samples or self.hp["num_samples"])

        def adapt_one(theta: Params) -> Params:
            return self.adapt_functional(theta, support_x, support_y, self.hp["eval_steps"], True)

        with torch.enable_grad():
            phis = {k: v.detach() for k, v in vmap(adapt_one, randomness="different")(thetas).items()}
        elapsed = time.perf_counter() - start

        def samples(x: torch.Tensor) -> torch.Tensor:
            out = vmap(lambda p: self.run_query(p, support_x, x))(phis)
            return out if self.regression else out.softmax(-1)

        return Predictor(lambda x: samples(x).mean(0), n_way, elapsed, samples_fn=samples)


# --- VERSA ---------------------------------------------------------------------------------------
@register
class VERSA(MetaLearner):
    """VERSA (Gordon, Bronskill, Bauer, Nowozin, Turner 2019), few-shot classification.

    A shared feature extractor (the backbone) embeds every item. An amortisation network
    turns each class's support embeddings into a Gaussian over that class's linear-classifier
    weights and bias: a per-item network, mean-pooled over the class (permutation invariant,
    any number of shots), then two heads for the mean and the log-variance. ``num_samples``
    weight sets are drawn by reparameterisation; the episode loss is the paper's

        -log (1/L Σ_l softmax(h(x) · w_l + b_l)[y])  =  -(logsumexp_l log p_l(y|x) - log L)

    and the whole system (extractor and amortiser) is trained end to end on it. Predictions
    average the class probabilities over the samples; ``uncertainty`` is the entropy of
    that average. Unlike the paper, the weights are sampled directly (the paper uses the local
    reparameterisation trick, a lower-variance equivalent), and the amortiser is an MLP of
    ``amortiser_hidden`` units for every backbone.
    """

    name = "versa"
    label = "VERSA"
    family = "probabilistic"
    guards_domain = True
    summary = ("An amortisation network maps each class's support examples to a distribution over that "
               "class's classifier weights; predictions average over sampled weights. No inner loop.")
    paper = "Gordon, Bronskill, Bauer, Nowozin, Turner 2019, Meta-Learning Probabilistic Inference for Prediction"
    hyperparams = (
        HyperParam("num_samples", int, 10, "Weight samples per class (L) in the loss and in predictions.", 1, 200),
        HyperParam("amortiser_hidden", int, 128, "Hidden units of the amortisation network.", 8, 2048),
        HyperParam("mean_skip", bool, False,
                   "Add the class's mean support embedding, scaled to unit length and by a learned gain, to the "
                   "weight mean, so that a cosine-prototype classifier is in reach: needed when embeddings are much "
                   "wider than the amortiser "
                   "(the built-in text encoder's 4096 dimensions)."),
        HyperParam("correction_decay", float, 0.0,
                   "While meta-training, add this times the squared length of each class's amortised weight mean "
                   "(with mean_skip: of the amortiser's correction to the scaled class mean) to the loss: a pull "
                   "towards the cosine-prototype classifier that mean_skip starts from. The correction fits the "
                   "training classes and generalised worse to new ones without it (see the README's Text transfer).",
                   0.0, 100.0),
        HyperParam("start_at_prototypes", bool, False,
                   "Start the amortiser's weight means at zero (its last layer zeroed): with mean_skip, an untrained "
                   "run is then the cosine prototype classifier (on a pretrained encoder, the frozen encoder's "
                   "nearest class mean), and meta-training learns a correction to it."),
        DOMAIN_GUARD,
    )
    presets = {
        "Long runs (small steps)": {"hyperparams": {"num_samples": 10, "meta_lr": 1e-4, "meta_batch": 16}},
        "Short CPU runs": {"hyperparams": {"num_samples": 10, "meta_lr": 1e-3, "meta_batch": 4}},
        TEXT_PRESET: {"hyperparams": {"mean_skip": True, "correction_decay": 0.3, "meta_lr": 1e-2}},
        PRETRAINED_PRESET: {"hyperparams": {"mean_skip": True, "correction_decay": 0.3, "start_at_prototypes": True,
                                            "meta_lr": 1e-3}},
    }

    def build(self) -> None:
        d, h = self.backbone.emb_dim, self.hp["amortiser_hidden"]
        self.instance = nn.Sequential(nn.Linear(d, h), nn.ELU(), nn.Linear(h, h), nn.ELU())
        self.weight_mean = nn.Sequential(nn.Linear(h, h), nn.ELU(), nn.Linear(h, d + 1))
        self.weight_log_var = nn.Sequential(nn.Linear(h, h), nn.ELU(), nn.Linear(h, d + 1))
        with torch.no_grad():  # start with small weight variances
            self.weight_log_var[-1].bias.fill_(-6.0)
            self.weight_log_var[-1].weight.mul_(0.1)
            if self.hp["start_at_prototypes"]:
                self.weight_mean[-1].weight.zero_()
                self.weight_mean[-1].bias.zero_()
        if self.hp["mean_skip"]:
            self.log_skip_gain = nn.Parameter(torch.tensor(2.3))  # gain ~10 at the start
        self._correction: torch.Tensor | None = None

    def weight_distribution(self, es: torch.Tensor, sy: torch.Tensor, n_way: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance [T, N, d + 1] of each class's weights (last entry: bias)."""
        pooled = one_hot_means(self.instance(es), sy, n_way)
        mean = self.weight_mean(pooled)
        if self.training and self.hp["correction_decay"]:
            self._correction = mean[..., :-1].pow(2).sum(-1).mean()
        if self.hp["mean_skip"]:
            skip = self.log_skip_gain.exp() * F.normalize(one_hot_means(es, sy, n_way), dim=-1)
            mean = mean + torch.cat([skip, skip.new_zeros(*skip.shape[:-1], 1)], dim=-1)
        return mean, self.weight_log_var(pooled).clamp(-12.0, 4.0)

    def sample_log_probs(self, eq: torch.Tensor, mean: torch.Tensor, log_var: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """Log class probabilities of the queries under each weight sample [T, L, Q, N];
        ``eps`` [T, L, N, d + 1] is the standard-normal noise."""
        w = mean[:, None] + (0.5 * log_var[:, None]).exp() * eps  # [T, L, N, d + 1]
        logits = torch.einsum("tqd,tlnd->tlqn", eq, w[..., :-1]) + w[..., -1][:, :, None, :]
        return logits.log_softmax(-1)

    def outer_loss(self, batch: EpisodeBatch, evaluating: bool = False):
        s, n_way, L = batch.support_x.shape[1], batch.n_way, self.hp["num_samples"]
        emb = self.embed_tasks(torch.cat([batch.support_x, batch.query_x], dim=1))
        es, eq = emb[:, :s], emb[:, s:]
        mean, log_var = self.weight_distribution(es, batch.support_y, n_way)
        eps = torch.randn(mean.shape[0], L, *mean.shape[1:], device=mean.device)
        logp = self.sample_log_probs(eq, mean, log_var, eps)  # [T, L, Q, N]
        idx = batch.query_y[:, None, :, None].expand(-1, L, -1, 1)
        true = logp.gather(-1, idx).squeeze(-1)  # [T, L, Q]
        loss = -(torch.logsumexp(true, dim=1) - math.log(L)).mean()
        probs = logp.detach().exp().mean(1)
        per_task = (probs.argmax(-1) == batch.query_y).float().mean(1)
        return loss, per_task, {"weight_std": float((0.5 * log_var.detach()).exp().mean())}

    def regulariser(self) -> torch.Tensor | float:
        """The backbone's penalty plus ``correction_decay`` times the mean squared length of the
        amortised weight corrections of the batch just seen (set by ``weight_distribution``)."""
        correction, self._correction = self._correction, None
        extra = self.hp["correction_decay"] * correction if correction is not None else 0.0
        return super().regulariser() + extra

    def evaluate(self, batch: EpisodeBatch) -> tuple[torch.Tensor, dict[str, float]]:
        self.eval()
        with torch.no_grad():  # no inner loop: nothing to differentiate
            loss, per_task, extra = self.outer_loss(batch, evaluating=True)
        return self.guarded(batch, per_task), {"loss": float(loss), **extra}

    def adapt(self, support_x: torch.Tensor, support_y: torch.Tensor, n_way: int | None = None) -> Predictor:
        n_way = n_way or int(support_y.max()) + 1
        self.eval()
        guarded = self.guarded_predictor(support_x, support_y, n_way)
        if guarded is not None:
            return guarded
        start = time.perf_counter()
        independent = getattr(self.backbone, "batch_independent", False)
        cached = None
        with torch.no_grad():
            if independent:
                cached = self.weight_distribution(self.backbone(support_x)[None], support_y[None], n_way)
                d1 = cached[0].shape[-1]
            else:
                d1 = self.backbone.emb_dim + 1
        # the noise is drawn once, so that the predictor answers the same way every time
        eps = torch.randn(1, self.hp["num_samples"], n_way, d1, device=support_x.device)
        elapsed = time.perf_counter() - start

        def samples(x: torch.Tensor) -> torch.Tensor:
            if cached is not None:
                (mean, log_var), eq = cached, self.backbone(x)[None]
            else:
                emb = self.backbone(torch.cat([support_x, x]))[None]
                mean, log_var = self.weight_distribution(emb[:, : support_x.shape[0]], support_y[None], n_way)
                eq = emb[:, support_x.shape[0]:]
            return self.sample_log_probs(eq, mean, log_var, eps)[0].exp()  # [L, n, N]

        return Predictor(lambda x: samples(x).mean(0), n_way, elapsed, samples_fn=samples)
