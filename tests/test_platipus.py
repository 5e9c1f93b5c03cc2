"""PLATIPUS: the paper's objective (KL between Gaussians, vmapped and per-task paths agree),
several different adapted models per support set, classification with uncertainty, and after a
short run on the ambiguous sine/line family: adaptation cuts the error, and the functions drawn
for support points that fit both a sine and a line include both."""

import math

import numpy as np
import pytest
import torch

from metagui.bench.ambiguous import ambiguity_check, platipus_config
from metagui.bench.learn import learning_check
from metagui.core import algorithms
from metagui.core.data.ambiguous import (
    AmbiguousTasks,
    ambiguous_support,
    classify_functions,
    line,
    sine,
)
from metagui.core.experiment import Experiment
from metagui.core.models import MLP, Conv4
from metagui.core.tasks import EpisodeBatch


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def regression_batch(t=3, seed=0):
    return AmbiguousTasks(5, 10).sample(t, np.random.default_rng(seed))


def test_ambiguous_family_and_support_sets():
    rng = np.random.default_rng(0)
    fam = AmbiguousTasks(5, 10)
    params = fam.draw_functions(400, rng)
    assert 0.4 < params[:, 0].mean() < 0.6  # half sines, half lines
    b = fam.sample(4, rng)
    assert b.support_x.shape == (4, 5, 1) and b.query_y.shape == (4, 10, 1) and b.n_way == 0
    sx, sy, (amp, phase), (slope, icpt) = ambiguous_support(np.random.default_rng(1))
    x = sx[:, 0].numpy()
    assert np.abs(sine(amp, phase, x) - sy[:, 0].numpy()).max() < 0.3
    assert np.abs(line(slope, icpt, x) - sy[:, 0].numpy()).max() < 0.3
    grid = np.linspace(-5, 5, 101)
    kinds, _, _ = classify_functions(grid, np.stack([sine(2.0, 0.5, grid), line(0.7, -1.0, grid)]))
    assert kinds.tolist() == [False, True]


def test_kl_matches_torch_distributions():
    torch.manual_seed(0)
    learner = algorithms.create("platipus", MLP(1, 6, 1), 0, {})
    with torch.no_grad():
        for p in list(learner.q_log_var.values()) + list(learner.prior_log_var.values()):
            p.uniform_(-3, 0)
    mu = learner.fast_params()
    mq = {k: v + 0.1 * torch.randn_like(v) for k, v in mu.items()}
    mp = {k: v - 0.2 * torch.randn_like(v) for k, v in mu.items()}
    from metagui.core.algorithms.gradient import _key

    expected = sum(
        torch.distributions.kl_divergence(
            torch.distributions.Normal(mq[k], (0.5 * learner.q_log_var[_key(k)]).exp()),
            torch.distributions.Normal(mp[k], (0.5 * learner.prior_log_var[_key(k)]).exp()),
        ).sum()
        for k in mu
    )
    assert torch.allclose(learner.kl(mq, mp), expected, atol=1e-4)


def test_vectorised_and_per_task_objectives_agree():
    """Without sampling noise the two implementations of Algorithm 1 give the same loss and
    meta-gradient (second order through the inner step and the shifted means)."""
    torch.manual_seed(0)
    vec = algorithms.create("platipus", MLP(1, 8, 2), 0, {"vectorise": True, "inner_steps": 2}).double()
    loop = algorithms.create("platipus", MLP(1, 8, 2), 0, {"vectorise": False, "inner_steps": 2}).double()
    loop.load_state_dict(vec.state_dict())
    for lr in (vec, loop):
        with torch.no_grad():
            for p in lr.q_log_var.values():
                p.fill_(-60.0)  # no noise: θ is the inference network's mean
    b = regression_batch()
    b = EpisodeBatch(b.support_x.double(), b.support_y.double(), b.query_x.double(), b.query_y.double(), 0)
    grads = []
    for lr in (vec, loop):
        lr.zero_grad()
        loss, per_task, extra = lr.outer_loss(b)
        loss.backward()
        grads.append({k: p.grad.clone() for k, p in lr.named_parameters() if p.grad is not None})
        assert extra["kl"] > 0 and per_task.shape == (3,)
    assert set(grads[0]) == set(grads[1]) and any(k.startswith("gamma_") for k in grads[0])
    for k in grads[0]:
        assert torch.allclose(grads[0][k], grads[1][k], atol=1e-8), k


def test_regression_contract_and_distinct_samples():
    torch.manual_seed(0)
    learner = algorithms.create("platipus", MLP(1, 40, 2), 0, {"num_samples": 6})
    assert learner.family == "probabilistic" and "regression" in learner.modalities
    b = regression_batch()
    m = learner.meta_step(b)
    assert {"loss", "mse", "kl"} <= set(m) and all(math.isfinite(v) for v in m.values())
    per_task, extra = learner.evaluate(b)
    assert per_task.shape == (3,) and "adapt_loss_0" in extra and f"adapt_loss_{learner.hp['eval_steps']}" in extra
    pred = learner.adapt(b.support_x[0], b.support_y[0])
    x = torch.linspace(-5, 5, 50)[:, None]
    samples = pred.predict_samples(x)
    assert pred.stochastic and samples.shape == (6, 50, 1)
    assert torch.allclose(pred.predict(x), samples.mean(0), atol=1e-6)
    assert float(samples.std(0).mean()) > 1e-3  # the drawn models differ
    assert torch.equal(pred.predict(x), pred.predict(x))
    u = pred.uncertainty(x)
    assert u.shape == (50,) and (u > 0).all()
    assert learner.adapt(b.support_x[0], b.support_y[0], samples=3).predict_samples(x).shape == (3, 50, 1)


@pytest.mark.parametrize("vectorise", [False, True])
def test_classification_reports_uncertainty(vectorise):
    torch.manual_seed(0)
    learner = algorithms.create("platipus", Conv4(1, 8, 16), 3, {"num_samples": 4, "inner_lr": 0.4, "vectorise": vectorise})
    g = torch.Generator().manual_seed(0)
    b = EpisodeBatch(torch.rand(2, 6, 1, 16, 16, generator=g), torch.arange(3).repeat_interleave(2).expand(2, -1),
                     torch.rand(2, 6, 1, 16, 16, generator=g), torch.arange(3).repeat_interleave(2).expand(2, -1), 3)
    m = learner.meta_step(b)
    assert 0 <= m["accuracy"] <= 1 and math.isfinite(m["loss"])
    per_task, _ = learner.evaluate(b)
    assert per_task.shape == (2,)
    pred = learner.adapt(b.support_x[0], b.support_y[0])
    probs = pred.predict(b.query_x[0])
    assert probs.shape == (6, 3) and torch.allclose(probs.sum(-1), torch.ones(6), atol=1e-5)
    assert pred.predict_samples(b.query_x[0]).shape == (4, 6, 3)
    u = pred.uncertainty(b.query_x[0])
    assert u.shape == (6,) and ((u >= 0) & (u <= math.log(3) + 1e-5)).all()


@pytest.fixture(scope="module")
def trained():
    """A short run on the ambiguous family: the preset, 2500 meta-steps of 10 tasks (about 20 s
    of one CPU core); `metagui bench ambiguous` trains longer and draws the figure."""
    cfg = platipus_config(steps=2500)
    exp = Experiment.prepare(cfg)
    return learning_check(cfg, test_episodes=100, experiment=exp, keep_learner=True)


def test_adaptation_cuts_the_error(trained):
    assert trained["mse"] + trained["ci95"] < 0.5 * trained["pre_mse"], trained


def test_drawn_functions_cover_both_explanations(trained):
    check = ambiguity_check(trained["learner"], sets=12, samples=20, seed=0)
    assert check["spread"] > 0.1  # the samples differ, not only by noise
    assert check["covered"] >= 8, [s["lines"] for s in check["sets"]]  # both a line and a sine drawn
    assert 0.1 < check["line_fraction"] < 0.9  # neither explanation crowds out the other
