import json
import os
import subprocess
import sys

import pytest
import torch

from metagui.core import algorithms
from metagui.core.data.catalog import DATA_DIR_ENV
from metagui.core.errors import ConfigError
from metagui.core.models import MLP, Conv4, Preprocessing, TextEncoder, TextFeaturizer
from metagui.core.tasks import EpisodeBatch


def image_batch(t=2, n=3, k=2, q=2, size=16, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return EpisodeBatch(
        torch.rand(t, n * k, 1, size, size, generator=g, dtype=dtype), torch.arange(n).repeat_interleave(k).expand(t, -1),
        torch.rand(t, n * q, 1, size, size, generator=g, dtype=dtype), torch.arange(n).repeat_interleave(q).expand(t, -1), n,
    )


def meta_gradient(learner, batch):
    learner.zero_grad()
    learner.outer_loss(batch)[0].backward()
    return {k: p.grad.clone() for k, p in learner.fast_params().items()}


@pytest.mark.parametrize("vectorise", ["loop", "vmap"])
@pytest.mark.parametrize("backbone", ["mlp", "conv4"])
def test_maml_second_order_gradient_matches_finite_differences(backbone, vectorise):
    torch.manual_seed(0)
    hp = {"inner_steps": 2, "inner_lr": 0.1, "vectorise": vectorise}
    if backbone == "mlp":
        g = torch.Generator().manual_seed(1)
        x = torch.rand(3, 10, 1, generator=g, dtype=torch.float64) * 8 - 4
        batch = EpisodeBatch(x[:, :5], torch.sin(x[:, :5]), x[:, 5:], torch.sin(x[:, 5:]), 0)
        learner = algorithms.create("maml", MLP(1, 8, 2), 0, hp).double()
    else:
        learner = algorithms.create("maml", Conv4(1, 4, 16), 3, hp).double()
        batch = image_batch(dtype=torch.float64)
    grads = meta_gradient(learner, batch)
    params = learner.fast_params()
    gen = torch.Generator().manual_seed(2)
    names = list(params)
    worst = 0.0
    for _ in range(10):
        name = names[int(torch.randint(len(names), (1,), generator=gen))]
        p = params[name]
        i = int(torch.randint(p.numel(), (1,), generator=gen))
        eps = 1e-6
        with torch.no_grad():
            p.view(-1)[i] += eps
        up = learner.outer_loss(batch)[0].item()
        with torch.no_grad():
            p.view(-1)[i] -= 2 * eps
        down = learner.outer_loss(batch)[0].item()
        with torch.no_grad():
            p.view(-1)[i] += eps
        fd = (up - down) / (2 * eps)
        worst = max(worst, abs(fd - float(grads[name].view(-1)[i])))
    assert worst < 1e-6, f"meta-gradient differs from finite differences by {worst}"


def test_first_order_differs_from_second_order():
    torch.manual_seed(0)
    batch = image_batch(dtype=torch.float64)
    maml = algorithms.create("maml", Conv4(1, 4, 16), 3, {"inner_steps": 2, "inner_lr": 0.4}).double()
    fo = algorithms.create("fomaml", Conv4(1, 4, 16), 3, {"inner_steps": 2, "inner_lr": 0.4}).double()
    fo.load_state_dict(maml.state_dict())
    a, b = meta_gradient(maml, batch), meta_gradient(fo, batch)
    diff = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert diff > 1e-6  # the Hessian term is really there in MAML and really absent in FOMAML


def make(name, kind="conv4", n_way=3, **hp):
    backbone = {"conv4": lambda: Conv4(1, 8, 16), "text": lambda: TextEncoder(1 << 10, 8, 16), "mlp": lambda: MLP()}[kind]()
    return algorithms.create(name, backbone, n_way, hp)


@pytest.mark.parametrize("name", sorted(n for n, c in algorithms.REGISTRY.items() if "image" in c.modalities))
def test_contract_step_evaluate_adapt_predict(name):
    torch.manual_seed(0)
    learner = make(name)
    batch = image_batch(t=2, n=3, k=2, q=2)
    before = {k: v.clone() for k, v in learner.state_dict().items()}
    metrics = learner.meta_step(batch)
    assert set(metrics) >= {"loss", "accuracy"} and all(torch.isfinite(torch.tensor(v)) for v in metrics.values())
    changed = [k for k, v in learner.state_dict().items() if not torch.equal(v, before[k])]
    assert changed, "a meta-step must update the parameters"
    per_task, extra = learner.evaluate(batch)
    assert per_task.shape == (2,) and ((per_task >= 0) & (per_task <= 1)).all()
    pred = learner.adapt(batch.support_x[0], batch.support_y[0])
    probs = pred.predict(batch.query_x[0][:1])  # a lone query works too
    assert probs.shape == (1, 3)
    assert torch.allclose(probs.sum(-1), torch.ones(1), atol=1e-5)
    if learner.family == "optimisation":
        assert "adapt_loss_0" in extra


@pytest.mark.parametrize("name", ["protonet", "matching", "relation"])
def test_metric_learners_take_unbalanced_text_support_sets(name):
    learner = make(name, "text", n_way=3)
    feat = TextFeaturizer(Preprocessing(modality="text", text_buckets=1 << 10))
    sx = feat(["check my balance", "how much money", "what is my balance", "block my card", "freeze card", "hello"])
    sy = torch.tensor([0, 0, 0, 1, 1, 2])
    probs = learner.adapt(sx, sy).predict(feat(["balance please", "lost card"]))
    assert probs.shape == (2, 3) and torch.allclose(probs.sum(-1), torch.ones(2), atol=1e-5)


def test_relation_cosine_skip_adds_the_cosine_to_the_learned_score():
    torch.manual_seed(0)
    learner = make("relation", cosine_skip=True, pair_dim=4, relation_hidden=8)
    batch = image_batch(t=1, n=3, k=2, q=4)
    with torch.no_grad():
        learner.relation[-1].weight.zero_()
        learner.relation[-1].bias.zero_()  # the module says nothing: scores are sigmoid(gain * cosine)
    es, eq = learner.backbone(batch.support_x[0])[None], learner.backbone(batch.query_x[0])[None]
    protos = torch.stack([es[0, batch.support_y[0] == c].mean(0) for c in range(3)])
    cos = torch.nn.functional.cosine_similarity(eq[0, :, None], protos[None], dim=-1)
    scores = learner.scores(es, batch.support_y, eq, 3)[0]
    assert torch.allclose(scores, torch.sigmoid(learner.skip_gain * cos), atol=1e-6)
    plain = make("relation", pair_dim=4, relation_hidden=8)
    assert not hasattr(plain, "skip_gain")  # off by default: the paper's module alone


def test_versa_correction_decay_pulls_the_amortised_correction_not_the_reported_loss():
    from metagui.core.algorithms.base import one_hot_means

    batch = image_batch(t=2, n=3, k=2, q=2)
    torch.manual_seed(0)
    plain = make("versa", mean_skip=True, amortiser_hidden=8)
    decayed = make("versa", mean_skip=True, amortiser_hidden=8, correction_decay=2.0)
    decayed.load_state_dict(plain.state_dict())
    decayed.train()
    s = batch.support_x.shape[1]
    es = decayed.embed_tasks(torch.cat([batch.support_x, batch.query_x], 1))[:, :s]
    correction = decayed.weight_mean(one_hot_means(decayed.instance(es), batch.support_y, 3))[..., :-1]
    decayed.outer_loss(batch)
    assert torch.allclose(decayed.regulariser(), 2.0 * correction.pow(2).sum(-1).mean())
    assert decayed.regulariser() == 0.0  # consumed: each meta-step adds its own batch's term once
    torch.manual_seed(1)
    a = plain.meta_step(batch)
    torch.manual_seed(1)
    b = decayed.meta_step(batch)
    assert a["loss"] == pytest.approx(b["loss"])  # the reported loss is the query loss alone
    assert not torch.equal(plain.weight_mean[-1].weight, decayed.weight_mean[-1].weight)


@pytest.mark.parametrize("name, hp", [
    ("relation", {"cosine_skip": True, "cosine_feature": True, "pair_dim": 4, "relation_hidden": 8}),
    ("versa", {"mean_skip": True, "amortiser_hidden": 8}),
])
def test_start_at_prototypes_begins_as_the_cosine_nearest_class_mean_and_learns_from_there(name, hp):
    batch = image_batch(t=4, n=3, k=2, q=4)
    torch.manual_seed(0)
    learner = make(name, start_at_prototypes=True, **hp)

    def agreement() -> float:
        """Share of queries whose prediction is the cosine nearest class mean's, on the learner's embeddings."""
        learner.eval()
        s = batch.support_x.shape[1]
        with torch.no_grad():
            emb = learner.embed_tasks(torch.cat([batch.support_x, batch.query_x], 1))
            es, eq = emb[:, :s], emb[:, s:]
            protos = torch.stack([es[:, batch.support_y[0] == c].mean(1) for c in range(3)], 1)
            ncm = torch.nn.functional.cosine_similarity(eq[:, :, None], protos[:, None], dim=-1).argmax(-1)
            torch.manual_seed(1)
            probs = learner.probabilities(learner.scores(es, batch.support_y, eq, 3)) if name == "relation" else \
                learner.adapt(batch.support_x[0], batch.support_y[0], 3).predict(batch.query_x[0])[None]
        return float((probs.argmax(-1) == ncm[: len(probs)]).float().mean())

    assert agreement() == 1.0
    plain = make(name, **hp)  # off by default: the module's own random start
    assert plain.state_dict()[("relation.4" if name == "relation" else "weight_mean.2") + ".weight"].abs().sum() > 0
    learner.train()
    for _ in range(30):
        learner.meta_step(batch)
    moved = learner.relation[-1].weight if name == "relation" else learner.weight_mean[-1].weight
    assert moved.abs().sum() > 0  # the zeroed layer learns (its gradient is not zero)


def two_domains(d=16, classes=4, per_class=8, seed=0):
    """Frozen embeddings of two domains: each domain's classes scattered around its own direction."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(2):
        centre = torch.randn(d, generator=g) * 3
        protos = centre + torch.randn(classes, d, generator=g)
        x = protos.repeat_interleave(per_class, 0) + 0.3 * torch.randn(classes * per_class, d, generator=g)
        out.append((x, torch.arange(classes).repeat_interleave(per_class)))
    return out


@pytest.mark.parametrize("name, hp", [
    ("protonet", {"distance": "cosine"}), ("matching", {}),
    ("relation", {"cosine_skip": True, "start_at_prototypes": True, "relation_hidden": 8}),
    ("versa", {"mean_skip": True, "start_at_prototypes": True, "amortiser_hidden": 8}),
])
def test_the_domain_guard_answers_another_domain_with_the_frozen_class_means(name, hp):
    from metagui.core.models import EmbeddingAdapter

    (home, home_y), (away, away_y) = two_domains()
    torch.manual_seed(0)
    learner = algorithms.create(name, EmbeddingAdapter(16), 3, hp)
    with torch.no_grad():  # a meta-learned correction that the frozen class means would not make
        learner.backbone.linear.weight.copy_(torch.randn(16, 16, generator=torch.Generator().manual_seed(3)))
    assert not learner.backbone.guards_domain  # no domain fitted: always the learner
    learner.backbone.fit_domain(home[:16], home[16:])
    assert learner.backbone.guards_domain
    pick = torch.tensor([0, 1, 8, 9, 16, 17])  # 3 classes, 2 shots
    ask = torch.tensor([2, 3, 10, 11, 18, 19])
    for x, y, outside in ((home, home_y, False), (away, away_y, True)):
        sx, sy, qx = x[pick], y[pick], x[ask]
        assert bool(learner.backbone.in_domain(sx[None])[0]) is not outside
        pred = learner.adapt(sx, sy, 3)
        frozen = learner.frozen_class_means(sx[None], torch.nn.functional.one_hot(sy, 3).float()[None], qx[None])[0]
        assert bool(pred.note) is outside
        assert torch.allclose(pred.predict(qx), frozen) is outside
        if outside:  # evaluation scores what adapt answers: the frozen class means
            batch = EpisodeBatch(sx[None], sy[None], qx[None], y[ask][None], 3)
            assert float(learner.evaluate(batch)[0][0]) == float((frozen.argmax(-1) == y[ask]).float().mean())
    off = algorithms.create(name, learner.backbone, 3, {**learner.hp, "domain_guard": False})
    assert off.domain_guard() is None and not off.adapt(away[pick], away_y[pick], 3).note


def test_a_checkpoint_from_before_the_domain_guard_loads_with_the_guard_off(tmp_path):
    from metagui.core.checkpoint import load_checkpoint, save_checkpoint
    from metagui.core.models import EmbeddingAdapter

    def protonet():
        return algorithms.create("protonet", EmbeddingAdapter(8), 3, {"distance": "cosine"})

    learner = protonet()
    learner.backbone.fit_domain(torch.randn(10, 8))
    save_checkpoint(tmp_path / "new", "last", learner, {"step": 1})
    fresh = protonet()
    load_checkpoint(tmp_path / "new", "last", fresh)
    assert fresh.backbone.guards_domain and torch.equal(fresh.backbone.domain_centre, learner.backbone.domain_centre)
    old = protonet()
    for key in EmbeddingAdapter.optional_state:  # as saved before the guard existed
        del old.backbone._buffers[key]
    save_checkpoint(tmp_path / "old", "last", old, {"step": 1})
    again = protonet()
    load_checkpoint(tmp_path / "old", "last", again)
    assert not again.backbone.guards_domain and again.domain_guard() is None


@pytest.mark.parametrize("name", ["maml", "fomaml", "metasgd", "reptile"])
def test_gradient_learners_do_regression(name):
    learner = make(name, "mlp", n_way=0, inner_steps=1)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 10, 1, generator=g)
    m = learner.meta_step(EpisodeBatch(x[:, :5], x[:, :5] * 2, x[:, 5:], x[:, 5:] * 2, 0))
    assert "mse" in m and m["mse"] >= 0
    out = learner.adapt(x[0, :5], x[0, :5] * 2).predict(x[0, 5:])
    assert out.shape == (5, 1)


def test_hyperparameters_are_validated_against_the_schema():
    with pytest.raises(ConfigError, match="inner_lr must be at least"):
        make("maml", inner_lr=-1.0)
    with pytest.raises(ConfigError, match="has no hyperparameter bogus"):
        make("protonet", bogus=1)
    with pytest.raises(ConfigError, match="inner_steps must be an integer"):
        make("maml", inner_steps=1.5)
    for cls in algorithms.REGISTRY.values():
        assert cls.family in algorithms.FAMILIES and cls.summary and cls.label
        for h in cls.schema():
            assert h.help and h.validate(h.default) == h.default
        for preset in cls.presets.values():
            cls.validate_hyperparams(preset["hyperparams"])


@pytest.mark.parametrize("name", ["maml", "fomaml"])
def test_eval_lr_sets_the_test_time_step_size_only(name):
    """Adapting (and evaluating) uses eval_lr; meta-training keeps inner_lr."""
    batch = image_batch()

    def learner(**hp):
        torch.manual_seed(0)
        return algorithms.create(name, Conv4(1, 4, 16), 3, {"inner_steps": 1, "eval_steps": 2, **hp})

    sx, sy, qx = batch.support_x[0], batch.support_y[0], batch.query_x[0]
    small_test = learner(inner_lr=0.5, eval_lr=0.05)
    assert small_test.test_step_size("head.weight") == 0.05 and small_test.step_size("head.weight") == 0.5
    same = learner(inner_lr=0.05)
    big = learner(inner_lr=0.5)
    p = small_test.adapt(sx, sy).predict(qx)
    assert torch.allclose(p, same.adapt(sx, sy).predict(qx), atol=1e-6)
    assert not torch.allclose(p, big.adapt(sx, sy).predict(qx), atol=1e-4)
    assert torch.allclose(small_test.evaluate(batch)[0], same.evaluate(batch)[0])
    # meta-training's inner loop takes inner_lr: the meta-gradient equals the eval_lr-free learner's
    g_small, g_big = meta_gradient(small_test, batch), meta_gradient(big, batch)
    assert all(torch.allclose(g_small[k], g_big[k]) for k in g_big)


# --- vectorise = "auto" (core.algorithms.batching) ----------------------------------------------
def test_auto_batching_keeps_the_faster_mode_and_measures_it_once(tmp_path):
    from metagui.core.algorithms import batching

    now = [0.0]
    calls = {"vmap": 0, "loop": 0, "threads": 0}

    def work(mode, cost):
        def run():
            calls[mode] += 1
            now[0] += cost
        return run

    trials = {"vmap": work("vmap", 0.3), "loop": work("loop", 0.1), "threads": work("threads", 0.12)}
    first = batching.choose("k", trials, tmp_path / "cal.json", clock=lambda: now[0])
    assert first == {"mode": "loop", "ms": {"vmap": 300.0, "loop": 100.0, "threads": 120.0}, "measured": True}
    # vmap, 3x slower after its first timed repeat, is not timed again; the close two are
    assert calls == {"vmap": 2, "loop": batching.REPEATS, "threads": batching.REPEATS}
    again = batching.choose("k", trials, tmp_path / "cal.json", clock=lambda: now[0])
    assert again["mode"] == "loop" and not again["measured"] and calls["loop"] == batching.REPEATS
    other = batching.choose("another shape", {"vmap": work("vmap", 0.1), "loop": work("loop", 0.2)},
                            tmp_path / "cal.json", clock=lambda: now[0])
    assert other["mode"] == "vmap" and other["measured"]
    # within 5% of the fastest is a tie, and the leanest mode is kept: the loop (one task's graph at a time)
    tie = batching.choose("tie", {"vmap": work("vmap", 0.100), "loop": work("loop", 0.104)}, tmp_path / "cal.json",
                          clock=lambda: now[0])
    assert tie["mode"] == "loop"
    apart = batching.choose("apart", {"vmap": work("vmap", 0.100), "loop": work("loop", 0.106)}, tmp_path / "cal.json",
                            clock=lambda: now[0])
    assert apart["mode"] == "vmap"


def test_auto_batching_leaves_out_a_mode_that_runs_out_of_memory(tmp_path):
    from metagui.core.algorithms import batching

    def oom():
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    def cpu_oom():
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory")

    ran = []
    choice = batching.choose("k", {"vmap": oom, "loop": lambda: ran.append(1)}, tmp_path / "cal.json")
    assert choice["mode"] == "loop" and choice["out_of_memory"] == ["vmap"] and set(choice["ms"]) == {"loop"}
    assert len(ran) == batching.REPEATS and "vmap out of memory" in batching.describe(choice)
    # remembered with its failure: not tried again
    again = batching.choose("k", {"vmap": oom, "loop": lambda: ran.append(1)}, tmp_path / "cal.json")
    assert again["mode"] == "loop" and not again["measured"] and len(ran) == batching.REPEATS
    # a leaner stand-in is offered for a mode that ran out: tried, timed and possibly kept
    now = [0.0]

    def costs(ms, fits=True):
        def run():
            if not fits:
                oom()
            now[0] += ms / 1000
        return run

    offers = {"vmap": ("vmap/4", costs(20, fits=False)), "vmap/4": ("vmap/2", costs(30))}
    halves = batching.choose("halves", {"vmap": oom, "loop": costs(100)}, tmp_path / "cal.json",
                             clock=lambda: now[0], leaner=offers.get)
    assert halves["mode"] == "vmap/2" and halves["out_of_memory"] == ["vmap", "vmap/4"]
    assert halves["ms"] == {"loop": 100.0, "vmap/2": 30.0}
    assert "vmap of 2 tasks at a time 30 ms" in batching.describe(halves)
    assert batching.choose("halves", {"vmap": oom, "loop": costs(100)}, tmp_path / "cal.json")["mode"] == "vmap/2"
    assert [batching.smaller(m, 25) for m in ("vmap", "vmap/13", "vmap/3", "vmap/2", "loop")] == [
        "vmap/13", "vmap/7", "vmap/2", None, None]
    with pytest.raises(batching.OutOfMemory, match="does not fit in memory however its tasks run"):
        batching.choose("none fits", {"vmap": oom, "loop": cpu_oom}, tmp_path / "cal.json")
    with pytest.raises(ValueError, match="a real bug"):  # any other error is the run's to report
        batching.choose("bug", {"vmap": lambda: (_ for _ in ()).throw(ValueError("a real bug")), "loop": lambda: None},
                        tmp_path / "cal.json")


def test_a_learner_whose_vmap_runs_out_of_memory_trains_by_another_mode(tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    learner = algorithms.create("maml", MLP(1, 8, 2), 0, {"inner_steps": 1, "vectorise": "auto"})
    real = learner.meta_work

    def work(batch, mode):
        if mode == "vmap":  # half done when memory runs out: a gradient is already there
            next(learner.parameters()).grad = torch.ones_like(next(learner.parameters()))
            raise torch.OutOfMemoryError("CUDA out of memory")
        return real(batch, mode)  # "vmap/2" (two tasks a call) fits

    monkeypatch.setattr(learner, "meta_work", work)
    batch = sine_batch()
    expected = algorithms.create("maml", MLP(1, 8, 2), 0, {"inner_steps": 1, "vectorise": "loop"})
    expected.load_state_dict(learner.state_dict())
    learner.meta_step(batch)
    expected.meta_step(batch)
    assert learner.batching["mode"] != "vmap" and learner.batching["out_of_memory"] == ["vmap"]
    assert "vmap/2" in learner.batching["ms"]  # vmap over half the tasks at a time was timed in its place
    # the failed trial's gradient went with it: the step is the loop's
    for a, b in zip(learner.parameters(), expected.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


_UNDER_A_MEMORY_LIMIT = """
import json, os, resource, sys
import torch
from metagui.core import algorithms
from metagui.core.models import Conv4
from metagui.core.tasks import EpisodeBatch
torch.set_num_threads(1)
torch.manual_seed(0)
learner = algorithms.create("maml", Conv4(1, 64, 28), 5, {"inner_steps": 5, "inner_lr": 0.4, "vectorise": "loop"})
x = torch.rand(4, 80, 1, 28, 28)
batch = EpisodeBatch(x[:, :5], torch.arange(5).expand(4, -1), x[:, 5:],
                     torch.arange(5).repeat_interleave(15).expand(4, -1), 5)
learner.meta_step(batch)  # imports and oneDNN's kernels, before the limit
learner.hp["vectorise"] = "auto"
before = [p.detach().clone() for p in learner.parameters()]
size = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
resource.setrlimit(resource.RLIMIT_AS, (size + 300 * 2**20, resource.RLIM_INFINITY))
learner.meta_step(batch)
moved = any(not torch.equal(a, b) for a, b in zip(before, learner.parameters()))
print(json.dumps({**learner.batching, "moved": moved}))
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux's /proc to set a memory limit")
def test_under_a_real_memory_limit_auto_trains_by_the_mode_that_fits(tmp_path):
    """300 MB over what the process holds: Conv-4's vmap over 4 tasks (about 1 GB) and over 2
    are refused by the system, and auto trains by the loop (one task's graph, about 100 MB)."""
    env = {**os.environ, "METAGUI_DATA_DIR": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", _UNDER_A_MEMORY_LIMIT], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    choice = json.loads(proc.stdout.strip().splitlines()[-1])
    assert choice["out_of_memory"][:2] == ["vmap", "vmap/2"] and choice["mode"] == "loop" and choice["moved"]


def sine_batch(t=4, k=5, q=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    amp, phase = torch.rand(t, 1, 1, generator=g) * 4 + 0.5, torch.rand(t, 1, 1, generator=g) * 3
    sx, qx = torch.rand(t, k, 1, generator=g) * 10 - 5, torch.rand(t, q, 1, generator=g) * 10 - 5
    return EpisodeBatch(sx, amp * torch.sin(sx + phase), qx, amp * torch.sin(qx + phase), 0)


@pytest.mark.parametrize("name", ["maml", "fomaml", "metasgd", "reptile"])
def test_every_batching_mode_meta_trains_to_the_same_weights(name, tmp_path, monkeypatch):
    """vmap, the per-task loop, threads and auto (whichever it picks) are one computation."""
    monkeypatch.setenv("METAGUI_DATA_DIR", str(tmp_path))  # auto measures afresh
    torch.set_num_threads(2)  # threads is timed only where torch has several
    batch, weights = sine_batch(), {}
    for mode in ("loop", "vmap", "threads", "auto", "vmap/3"):
        torch.manual_seed(0)
        learner = algorithms.create(name, MLP(1, 16, 2), 0, {"vectorise": mode.split("/")[0], "inner_steps": 3,
                                                               "inner_lr": 0.05})
        if mode == "vmap/3":  # auto's stand-in where vmap runs out of memory: 3 tasks a call, then 1
            learner.task_mode = lambda batch, first_order: "vmap/3"
        for _ in range(3):
            learner.meta_step(batch)
        weights[mode] = torch.cat([p.detach().flatten() for p in learner.parameters()])
        if mode == "auto":
            assert set(learner.batching["ms"]) == {"vmap", "loop", "threads"}
            assert learner.batching["mode"] in learner.batching["ms"]
    assert (weights["loop"] - weights["vmap"]).abs().max() < 1e-5
    assert (weights["loop"] - weights["threads"]).abs().max() < 1e-5
    assert (weights["auto"] - weights["loop"]).abs().max() < 1e-5
    assert (weights["vmap/3"] - weights["loop"]).abs().max() < 1e-5


def test_configs_written_before_auto_keep_their_batching():
    schema = {h.name: h for h in algorithms.get("maml").schema()}
    assert schema["vectorise"].default == "auto"
    assert schema["vectorise"].validate(True) == "vmap" and schema["vectorise"].validate(False) == "loop"
    with pytest.raises(ConfigError):
        schema["vectorise"].validate("sometimes")


@pytest.mark.parametrize(("name", "mode"), [("maml", "vmap"), ("maml", "auto"), ("reptile", "vmap"),
                                            ("reptile", "auto"), ("platipus", True)])
def test_vmapped_meta_batches_take_a_backbone_that_draws_random_numbers(name, mode, tmp_path, monkeypatch):
    """The built-in text encoder drops tokens at random while meta-training; under vmap each
    task draws its own mask (the Text preset's default, auto, tries vmap on its first batch)."""
    from metagui.core.models import NgramEncoder

    monkeypatch.setenv("METAGUI_DATA_DIR", str(tmp_path))
    torch.manual_seed(0)
    learner = algorithms.create(name, NgramEncoder(1 << 10, 4, 64), 3, {"vectorise": mode, "inner_steps": 1})
    assert learner.backbone.token_dropout > 0
    ids = torch.randint(0, 1 << 10, (2, 6, 12))
    batch = EpisodeBatch(ids, torch.arange(3).repeat(2).expand(2, -1), ids.flip(1), torch.arange(3).repeat(2).expand(2, -1), 3)
    before = torch.cat([p.detach().flatten() for p in learner.parameters()])
    metrics = learner.meta_step(batch)
    after = torch.cat([p.detach().flatten() for p in learner.parameters()])
    assert torch.isfinite(torch.tensor(metrics["loss"])) and not torch.equal(before, after)


@pytest.mark.parametrize("mode", ["loop", "vmap", "threads"])
def test_reptile_with_a_shared_head_moves_to_the_mean_of_the_adapted_weights(mode):
    """Reptile with a shared head: each task adapts n_way copies of the row, and with meta_lr 1
    every weight moves to the mean of the tasks' adapted weights, the row to the mean of all
    adapted rows; the model then answers any number of classes."""
    torch.manual_seed(0)
    learner = make("reptile", "mlp", n_way=3, head="shared", inner_steps=2, inner_lr=0.5, meta_lr=1.0, anneal=False,
                   vectorise=mode)
    x = torch.randn(2, 12, 1)
    batch = EpisodeBatch(x[:, :6], torch.arange(3).repeat(2).expand(2, -1), x[:, 6:], torch.arange(3).repeat(2).expand(2, -1), 3)
    adapted = []
    for t in range(2):
        start = {k: v.detach().clone().requires_grad_(True) for k, v in learner.fast_params(3).items()}
        adapted.append({k: v.detach() for k, v in learner.inner_loop(start, batch.support_x[t], batch.support_y[t], 2, False).items()})
    before = {k: v.detach().clone() for k, v in learner.fast_params().items()}
    learner.meta_step(batch)
    for k, p in learner.fast_params().items():
        mean = (adapted[0][k] + adapted[1][k]) / 2
        expected = mean.mean(0, keepdim=True) if k.startswith("head.") else mean
        assert p.shape == before[k].shape and torch.allclose(p.detach(), expected, atol=1e-5), k
    assert not torch.allclose(learner.backbone.net[0].weight, before["backbone.net.0.weight"])
    probs = learner.adapt(torch.randn(10, 1), torch.arange(5).repeat(2), 5).predict(torch.randn(4, 1))
    assert probs.shape == (4, 5)


@pytest.mark.parametrize("mode", ["loop", "threads"])
@pytest.mark.parametrize("head", ["per_class", "shared"])
def test_the_loop_backpropagates_task_by_task_to_the_mean_loss_gradient(head, mode):
    """meta_step's loop frees each task's graph as it goes, on one thread or several; its
    gradient is the mean loss's, and torch's thread count is as before."""
    torch.manual_seed(0)
    torch.set_num_threads(2)
    learner = algorithms.create("maml", Conv4(1, 8, 16), 3,
                                {"inner_steps": 2, "inner_lr": 0.1, "head": head, "vectorise": "loop"}).double()
    batch = image_batch(t=3, dtype=torch.float64)
    whole = meta_gradient(learner, batch)  # outer_loss: the mean of the tasks' losses, one backward
    learner.zero_grad()
    learner.meta_work(batch, mode)
    by_task = {k: p.grad for k, p in learner.fast_params().items()}
    for k, g in whole.items():
        torch.testing.assert_close(by_task[k], g, rtol=1e-10, atol=1e-12)
    assert torch.get_num_threads() == 2


def test_threads_refuse_a_backbone_that_draws_random_numbers():
    """Tasks on several threads would draw token-dropout masks in a changing order."""
    from metagui.core.models import NgramEncoder

    learner = algorithms.create("maml", NgramEncoder(1 << 10, 4, 64), 3, {"vectorise": "threads", "inner_steps": 1})
    ids = torch.randint(0, 1 << 10, (2, 6, 12))
    batch = EpisodeBatch(ids, torch.arange(3).repeat(2).expand(2, -1), ids, torch.arange(3).repeat(2).expand(2, -1), 3)
    with pytest.raises(ConfigError, match="draws random numbers"):
        learner.meta_step(batch)


def test_conv4_batch_norm_is_the_same_fused_and_written_out():
    """The fused kernel (the loop) and plain tensor ops (vmap) compute one function."""
    torch.manual_seed(0)
    net = Conv4(1, 4, 16).double()
    x = torch.rand(6, 1, 16, 16, dtype=torch.float64)
    fused = net(x)
    from torch.func import functional_call, vmap

    written = vmap(lambda p, v: functional_call(net, p, (v,)), in_dims=(None, 0))(dict(net.named_parameters()), x[None])[0]
    torch.testing.assert_close(fused, written, rtol=1e-10, atol=1e-12)


def test_conv4_pools_as_max_pool2d_at_every_order():
    """Conv-4's faster pooling (the largest items found in channels-last layout, taken with
    gather; pooled before the ReLU) is the plain block's function, with its first and second
    derivatives, where windows hold equal items too (a flat background)."""
    import torch.nn.functional as F

    def plain(net, x):
        for conv, norm in zip(net.convs, net.norms, strict=True):
            x = F.max_pool2d(F.relu(norm(conv(x))), 2)
        return x.flatten(1)

    torch.manual_seed(0)
    net = Conv4(1, 4, 28).double()
    x = torch.zeros(6, 1, 28, 28, dtype=torch.float64)
    x[:, :, 8:20, 8:20] = torch.rand(6, 1, 12, 12, dtype=torch.float64)
    params = list(net.parameters())
    results = []
    for f in (plain, lambda n, v: n(v)):
        out = f(net, x)
        grads = torch.autograd.grad(out.pow(2).sum(), params, create_graph=True)
        second = torch.autograd.grad(sum((g * g).sum() for g in grads), params)
        results.append((out, grads, second))
    (out0, g0, h0), (out1, g1, h1) = results
    assert torch.equal(out0, out1)
    for a, b in [*zip(g0, g1, strict=True), *zip(h0, h1, strict=True)]:
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12 * float(a.abs().max()))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none here)")
def test_the_inner_loop_never_waits_for_the_gpu():
    """No host-device synchronisation inside a meta-batch's work (issue 16): the GPU queue
    stays full. The metrics' floats come after it, in meta_step."""
    b = image_batch()
    batch = EpisodeBatch(b.support_x.cuda(), b.support_y.cuda(), b.query_x.cuda(), b.query_y.cuda(), b.n_way)
    for name in ("maml", "fomaml", "metasgd"):
        for mode in ("loop", "vmap"):
            torch.manual_seed(0)
            learner = algorithms.create(name, Conv4(1, 8, 16), 3, {"inner_steps": 2, "inner_lr": 0.1}).cuda()
            learner.meta_work(batch, mode)  # warm-up: cuDNN picks its kernels
            torch.cuda.synchronize()
            torch.cuda.set_sync_debug_mode("error")
            try:
                learner.meta_work(batch, mode)
            finally:
                torch.cuda.set_sync_debug_mode("default")
