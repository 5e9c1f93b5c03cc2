"""``metagui bench train``: meta-training throughput and peak memory of each algorithm on a
fixed synthetic config, against baselines measured in the same run.

Each (algorithm, implementation) runs in a fresh subprocess so that its peak resident
memory (CPU) or peak allocated memory (CUDA) is its own.

Implementations:
- ``metagui``: the learner as shipped (functional inner loops, tasks batched per pass).
- ``naive``: a per-task loop. Metric learners: one forward/backward per episode.
  Optimisation learners: the common hand-written loop, a deep copy of the network per task
  trained with torch.optim.SGD, first-order meta-gradient (what MAML code without
  functional calls can do).
- ``vmap`` (optimisation learners): the learner's torch.func.vmap path over tasks.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time

import torch

from metagui.core.errors import MetaGUIError

SYNTHETIC = {"way": 5, "shot": 1, "query": 5, "image_size": 28, "meta_batch": 8}
GRADIENT = ("maml", "fomaml", "metasgd", "reptile")


def _synthetic_batch(seed: int):
    from metagui.core.tasks import EpisodeBatch

    g = torch.Generator().manual_seed(seed)
    c = SYNTHETIC
    t, n, k, q, s = c["meta_batch"], c["way"], c["shot"], c["query"], c["image_size"]
    return EpisodeBatch(
        torch.rand(t, n * k, 1, s, s, generator=g), torch.arange(n).repeat_interleave(k).expand(t, -1),
        torch.rand(t, n * q, 1, s, s, generator=g), torch.arange(n).repeat_interleave(q).expand(t, -1), n,
    )


def _naive_step(learner, batch) -> None:
    if learner.family == "metric":
        learner.optimizer.zero_grad(set_to_none=True)
        for i in range(batch.n_tasks):
            loss, _, _ = learner.outer_loss(batch.task(i))
            (loss / batch.n_tasks).backward()
        learner.optimizer.step()
        return
    steps = learner.hp["inner_steps"]
    lr = learner.hp["inner_lr"] if isinstance(learner.hp["inner_lr"], float) else 0.1
    learner.optimizer.zero_grad(set_to_none=True)
    params = [p for n, p in learner.named_parameters() if n.startswith(("backbone.", "head."))]
    for i in range(batch.n_tasks):
        net = copy.deepcopy(learner)
        opt = torch.optim.SGD(net.parameters(), lr=lr)
        sx, sy = batch.support_x[i], batch.support_y[i]
        for _ in range(steps):
            opt.zero_grad()
            learner.task_loss(net(sx), sy).backward()
            opt.step()
        opt.zero_grad()
        qx, qy = batch.query_x[i], batch.query_y[i]
        out = net(torch.cat([sx, qx]))[sx.shape[0]:]
        learner.task_loss(out, qy).backward()
        fast = [p for n, p in net.named_parameters() if n.startswith(("backbone.", "head."))]
        for p, f in zip(params, fast, strict=True):
            p.grad = f.grad / batch.n_tasks if p.grad is None else p.grad + f.grad / batch.n_tasks
    learner.optimizer.step()


def _worker(algorithm: str, impl: str, steps: int, device: str) -> dict:
    from metagui.core import algorithms
    from metagui.core.models import Conv4

    torch.manual_seed(0)
    dev = torch.device(device)
    hp = {"meta_batch": SYNTHETIC["meta_batch"]}
    if algorithm in ("maml", "fomaml", "metasgd"):
        hp.update(inner_steps=1, inner_lr=0.4, vectorise=impl == "vmap")
    learner = algorithms.create(algorithm, Conv4(1, 64, SYNTHETIC["image_size"]), SYNTHETIC["way"], hp).to(dev)
    batch = _synthetic_batch(0).to(dev)
    step = (lambda: _naive_step(learner, batch)) if impl == "naive" else (lambda: learner.meta_step(batch))
    step()  # warm-up
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    out = {"tasks_per_s": steps * batch.n_tasks / elapsed}
    if dev.type == "cuda":
        out["peak_mb"] = torch.cuda.max_memory_allocated(dev) / 2**20
    return out


def _measure(algorithm: str, impl: str, steps: int, device: str) -> dict:
    proc = subprocess.Popen(
        [sys.executable, "-m", "metagui.core.bench", algorithm, impl, str(steps), device],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    out, err = proc.stdout.read(), proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise MetaGUIError(f"bench worker {algorithm}/{impl} failed: {err.strip().splitlines()[-1] if err.strip() else proc.returncode}")
    result = json.loads(out.strip().splitlines()[-1])
    result.setdefault("peak_mb", usage.ru_maxrss / 1024)  # Linux reports KiB
    return result


def bench_train(algorithms: list[str], steps: int = 10, device: str = "cpu", echo=print) -> list[dict]:
    c = SYNTHETIC
    echo(f"meta-train throughput, Conv-4 (64 filters), {c['way']}-way {c['shot']}-shot {c['query']}-query, "
         f"{c['image_size']}x{c['image_size']} synthetic images, {c['meta_batch']} tasks per step, {steps} steps, "
         f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    mem = "peak MB (CUDA alloc)" if device.startswith("cuda") else "peak MB (RSS)"
    echo(f"{'algorithm':<10} {'impl':<8} {'tasks/s':>9} {mem:>21} {'speed vs naive':>15}")
    rows = []
    for algo in algorithms:
        impls = ["naive", "metagui"] + (["vmap"] if algo in ("maml", "fomaml", "metasgd") else [])
        base = None
        for impl in impls:
            r = _measure(algo, impl, steps, device)
            base = base or r["tasks_per_s"]
            ratio = r["tasks_per_s"] / base
            rows.append({"algorithm": algo, "impl": impl, **r, "speed_vs_naive": ratio})
            echo(f"{algo:<10} {impl:<8} {r['tasks_per_s']:>9.1f} {r['peak_mb']:>21.0f} {ratio:>14.2f}x")
    return rows


if __name__ == "__main__":
    a, i, s, d = sys.argv[1:5]
    print(json.dumps(_worker(a, i, int(s), d)))


# --- does each algorithm learn? ---------------------------------------------------------------
# Settings for short CPU runs: paper-like inner loops, small budgets.
LEARN_HYPERPARAMS: dict[str, dict] = {
    "maml": {"inner_lr": 0.4, "inner_steps": 1, "eval_steps": 3},
    "fomaml": {"inner_lr": 0.4, "inner_steps": 1, "eval_steps": 3},
    "metasgd": {"inner_lr": 0.4},
    "reptile": {"inner_lr": 0.1, "inner_steps": 5, "eval_steps": 10, "meta_lr": 1.0},
    "protonet": {},
    "matching": {},
    "relation": {},
    "versa": {"num_samples": 10},
    "platipus": {"inner_lr": 0.4, "inner_steps": 1, "eval_steps": 3, "kl_weight": 1e-3, "num_samples": 5, "vectorise": False},
}
SINUSOID_HYPERPARAMS: dict[str, dict] = {
    "maml": {"inner_lr": 0.01, "inner_steps": 1, "eval_steps": 10, "meta_batch": 25},
    "fomaml": {"inner_lr": 0.01, "inner_steps": 1, "eval_steps": 10, "meta_batch": 25},
    "metasgd": {"inner_lr": 0.01, "meta_batch": 25},
    "reptile": {"inner_lr": 0.02, "inner_steps": 32, "eval_steps": 32, "meta_batch": 1, "meta_lr": 0.1},
    "platipus": {"inner_lr": 0.01, "inner_steps": 1, "eval_steps": 10, "meta_batch": 25},
}
LEARN_SOURCES = ("glyphs", "intents", "omniglot", "sinusoid")


def learn_config(algorithm: str, source: str, steps: int, omniglot_zip: str = ""):
    from metagui.core import algorithms
    from metagui.core.algorithms.base import TEXT_PRESET
    from metagui.core.presets import SOURCE_MODALITY, default_config, default_hyperparams

    cfg = default_config(algorithm, "glyphs" if source == "omniglot" else source)
    if source == "omniglot":
        cfg.dataset.source, cfg.dataset.path, cfg.dataset.invert = "image_folder", omniglot_zip, True
    hp = SINUSOID_HYPERPARAMS if source == "sinusoid" else LEARN_HYPERPARAMS
    if SOURCE_MODALITY.get(source) == "text" and TEXT_PRESET in algorithms.get(algorithm).presets:
        cfg.algorithm.hyperparams = default_hyperparams(algorithm, "text")  # the text preset
    else:
        cfg.algorithm.hyperparams = dict(hp[algorithm])
    cfg.training.steps = steps
    cfg.training.val_every = steps
    cfg.training.val_episodes = 100
    return cfg


def learning_check(cfg, test_episodes: int = 200, experiment=None, run_dir=None, keep_learner: bool = False) -> dict:
    """Meta-train ``cfg`` and evaluate on held-out test episodes. For regression, also the
    query MSE before adaptation (``pre_mse``), to compare with after (``mse``).
    ``keep_learner`` adds the trained learner to the result (key ``learner``)."""
    from metagui.core.experiment import Experiment, evaluate
    from metagui.core.tasks import step_rng
    from metagui.core.trainer import train_to_completion

    exp = experiment or Experiment.prepare(cfg)
    exp.config = cfg
    learner, seconds = train_to_completion(cfg, exp, run_dir)
    rng = step_rng(cfg.training.seed + 1000, "test", 0)
    batches = [exp.sample("test", 25, rng) for _ in range(max(1, test_episodes // 25))]
    res = evaluate(learner, batches, torch.device("cpu"))
    out = {"algorithm": cfg.algorithm.name, "train_seconds": seconds, "steps": cfg.training.steps, **res}
    if "adapt_loss_0" in res and learner.regression:
        out["pre_mse"] = res["adapt_loss_0"]
    if keep_learner:
        out["learner"] = learner
    return out


def bench_learn(algorithms: list[str], sources: list[str], steps: int, omniglot_zip: str, echo=print) -> list[dict]:
    from metagui.core.experiment import Experiment

    echo(f"held-out test episodes after {steps} meta-steps on {torch.get_num_threads()} CPU threads")
    rows = []
    for source in sources:
        exp = None
        for algo in algorithms:
            if source == "sinusoid" and algo not in SINUSOID_HYPERPARAMS:
                continue
            cfg = learn_config(algo, source, steps * (10 if source == "sinusoid" else 1), omniglot_zip)
            if exp is None and source != "sinusoid":
                exp = Experiment.prepare(cfg)
            r = learning_check(cfg, experiment=exp if source != "sinusoid" else None)
            r["source"] = source
            rows.append(r)
            task = f"{cfg.task.way}-way {cfg.task.shot}-shot" if source != "sinusoid" else f"{cfg.task.shot}-shot"
            if "accuracy" in r:
                score = f"accuracy {r['accuracy']:.3f} ± {r['ci95']:.3f} (chance {1 / cfg.task.way:.2f})"
            else:
                score = f"MSE before adaptation {r['pre_mse']:.3f}, after {r['mse']:.3f} ± {r['ci95']:.3f}"
            echo(f"{source:<9} {task:<14} {algo:<9} {score}  [{r['steps']} steps, {r['train_seconds']:.0f} s]")
    return rows


# --- RL²: cumulative regret on Bernoulli bandits against classical strategies -----------------
BANDIT_SETTINGS = ((5, 10), (5, 100), (10, 10), (10, 100))  # (arms, pulls), as in the RL² paper's table
BANDIT_STRATEGIES = ("RL²", "random", "epsilon-greedy", "UCB1", "Thompson")


def bandit_lambda(pulls: int) -> float:
    """GAE lambda per trial length: 0.3 (the default) learns fastest on short trials; on 100
    pulls it let the policy collapse onto one arm in our runs, and 0.95 does not."""
    return 0.3 if pulls <= 20 else 0.95


def bandit_config(arms: int, pulls: int, steps: int, meta_batch: int = 64, seed: int = 0):
    from metagui.core.presets import default_config

    cfg = default_config("rl2", "bandit")
    cfg.dataset.arms, cfg.dataset.pulls = arms, pulls
    cfg.algorithm.hyperparams = {"meta_batch": meta_batch, "gae_lambda": bandit_lambda(pulls)}
    cfg.training.steps = steps
    cfg.training.val_every = steps
    cfg.training.val_episodes = 100
    cfg.training.seed = seed
    return cfg


def bandit_check(cfg, test_bandits: int = 500, run_dir=None) -> dict:
    """Meta-train RL² on ``cfg``'s bandits, then measure the expected cumulative regret of RL²
    and of each baseline on the same ``test_bandits`` held-out bandits. Returns
    {strategy: (mean, ci95)}, the per-bandit regrets and the training time."""
    from metagui.core.experiment import Experiment, mean_ci95
    from metagui.core.rl.baselines import baseline_regrets
    from metagui.core.tasks import step_rng
    from metagui.core.trainer import train_to_completion

    exp = Experiment.prepare(cfg)
    learner, seconds = train_to_completion(cfg, exp, run_dir)
    test = exp.sample("test", test_bandits, step_rng(cfg.training.seed + 1000, "test", 0))
    regrets = {"RL²": learner.bandit_regret(test).numpy()}
    regrets.update(baseline_regrets(test.reward_mean[:, 0].numpy(), cfg.dataset.pulls, seed=cfg.training.seed + 1))
    return {"summary": {k: mean_ci95(v) for k, v in regrets.items()}, "regrets": regrets,
            "train_seconds": seconds, "steps": cfg.training.steps}


def bench_bandits(steps: int, test_bandits: int = 500, settings=BANDIT_SETTINGS, meta_batch: int = 64,
                  echo=print) -> list[dict]:
    """The RL² paper's bandit table, as cumulative regret (lower is better)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a GRU over tens of trials: one thread is fastest, more only contend
    try:
        echo(f"RL² (PPO, GRU 128, GAE lambda 0.3 for <= 20 pulls, 0.95 above) trained for {steps} updates of "
             f"{meta_batch} bandits each, per setting; expected cumulative regret (mean ± 95% CI) on the same "
             f"{test_bandits} held-out bandits")
        echo(f"{'arms':>4} {'pulls':>5}  " + "  ".join(f"{s:>15}" for s in BANDIT_STRATEGIES) + "   train")
        rows = []
        for arms, pulls in settings:
            r = bandit_check(bandit_config(arms, pulls, steps, meta_batch), test_bandits)
            cells = "  ".join(f"{m:>8.2f} ± {c:<4.2f}" for m, c in (r["summary"][s] for s in BANDIT_STRATEGIES))
            echo(f"{arms:>4} {pulls:>5}  {cells}   {r['train_seconds']:.0f} s")
            rows.append({"arms": arms, "pulls": pulls, "train_seconds": r["train_seconds"], **r["summary"]})
        return rows
    finally:
        torch.set_num_threads(threads)


# --- PLATIPUS on ambiguous regression: do the drawn functions cover both explanations? -------
def platipus_config(steps: int, seed: int = 0, **hp):
    from metagui.core.presets import default_config

    cfg = default_config("platipus", "ambiguous", preset="Ambiguous sine/line (short CPU runs)")
    cfg.algorithm.hyperparams.update(hp)
    cfg.training.steps = steps
    cfg.training.val_every = steps
    cfg.training.val_episodes = 50
    cfg.training.seed = seed
    return cfg


def ambiguity_check(learner, sets: int = 12, samples: int = 20, seed: int = 0) -> dict:
    """Adapt to ``sets`` support sets that a sine and a line both explain (see
    ``data.ambiguous.ambiguous_support``), draw ``samples`` functions for each and call each
    one a line or a sine by which least-squares fit on [-5, 5] is closer. ``covered`` counts
    the sets whose samples include both kinds; ``spread`` is the mean standard deviation of
    the samples on the grid."""
    import numpy as np

    from metagui.core.data.ambiguous import ambiguous_support, classify_functions

    rng = np.random.default_rng(seed)
    grid = np.linspace(-5.0, 5.0, 201)
    gx = torch.tensor(grid, dtype=torch.float32)[:, None]
    rows = []
    for _ in range(sets):
        sx, sy, sine_p, line_p = ambiguous_support(rng)
        ys = learner.adapt(sx, sy, samples=samples).predict_samples(gx)[..., 0].double().numpy()
        is_line, line_err, sine_err = classify_functions(grid, ys)
        rows.append({"support": (sx[:, 0].numpy(), sy[:, 0].numpy()), "sine": sine_p, "line": line_p,
                     "curves": ys, "lines": int(is_line.sum()), "spread": float(ys.std(0).mean())})
    covered = sum(0 < r["lines"] < samples for r in rows)
    lines = sum(r["lines"] for r in rows) / (sets * samples)
    return {"grid": grid, "sets": rows, "covered": covered, "line_fraction": lines,
            "spread": float(np.mean([r["spread"] for r in rows]))}


def draw_samples_figure(check: dict, path: str, columns: int = 4) -> None:
    """A PNG of each ambiguous support set (dots), the sine and the line through it (grey)
    and the sampled functions (orange: called a line, blue: called a sine). Pillow only."""
    import numpy as np
    from PIL import Image, ImageDraw

    from metagui.core.data.ambiguous import classify_functions, line, sine

    sets, grid = check["sets"], check["grid"]
    w, h, pad, lo, hi = 300, 220, 12, -8.0, 8.0
    rows = (len(sets) + columns - 1) // columns
    img = Image.new("RGB", (columns * w, rows * h), "white")
    draw = ImageDraw.Draw(img)
    for i, s in enumerate(sets):
        ox, oy = (i % columns) * w, (i // columns) * h

        def to_px(x, y, ox=ox, oy=oy):
            return ox + pad + (x + 5) / 10 * (w - 2 * pad), oy + pad + (hi - np.clip(y, lo, hi)) / (hi - lo) * (h - 2 * pad)

        def curve(ys):
            xs, yy = to_px(grid, ys)
            return list(zip(xs.tolist(), yy.tolist(), strict=True))

        draw.rectangle([ox + pad, oy + pad, ox + w - pad, oy + h - pad], outline=(200, 200, 200))
        draw.line(curve(np.zeros_like(grid)), fill=(235, 235, 235))
        kinds, _, _ = classify_functions(grid, s["curves"])
        for ys, is_line in zip(s["curves"], kinds, strict=True):
            draw.line(curve(ys), fill=(230, 140, 40) if is_line else (40, 110, 210), width=1)
        draw.line(curve(sine(*s["sine"], grid)), fill=(110, 110, 110), width=1)
        draw.line(curve(line(*s["line"], grid)), fill=(110, 110, 110), width=1)
        for x, y in zip(*s["support"], strict=True):
            px, py = to_px(float(x), float(y))
            draw.ellipse([px - 3, py - 3, px + 3, py + 3], fill=(0, 0, 0))
        n = len(s["curves"])
        draw.text((ox + pad + 4, oy + pad + 2), f"{s['lines']} lines / {n - s['lines']} sines", fill=(0, 0, 0))
    img.save(path)


def bench_ambiguous(steps: int, out: str = "", samples: int = 20, echo=print) -> dict:
    """Train PLATIPUS on the ambiguous sine/line family; report MSE before and after adaptation
    and how often the drawn functions cover both explanations of an ambiguous support set."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = platipus_config(steps)
        r = learning_check(cfg, test_episodes=200, keep_learner=True)
        check = ambiguity_check(r["learner"], samples=samples)
        echo(f"PLATIPUS on ambiguous sine/line regression, {cfg.task.shot}-shot, {steps} meta-steps "
             f"({r['train_seconds']:.0f} s, {torch.get_num_threads()} thread)")
        echo(f"  held-out tasks: query MSE before adaptation {r['pre_mse']:.2f}, after {r['mse']:.2f} ± {r['ci95']:.2f} "
             f"(mean of {r['learner'].hp['num_samples']} drawn models)")
        echo(f"  {len(check['sets'])} ambiguous support sets x {samples} drawn functions: both a line and a sine "
             f"among the samples in {check['covered']} sets; {check['line_fraction']:.0%} of all samples are lines; "
             f"mean spread {check['spread']:.2f}")
        if out:
            draw_samples_figure(check, out)
            echo(f"  figure: {out}")
        return {"mse": r["mse"], "ci95": r["ci95"], "pre_mse": r["pre_mse"], "train_seconds": r["train_seconds"],
                "covered": check["covered"], "sets": len(check["sets"]), "line_fraction": check["line_fraction"]}
    finally:
        torch.set_num_threads(threads)


# --- the chat engine on Banking77 (`metagui bench chat`) -------------------------------------
def bench_chat(*args, **kwargs) -> list[dict]:
    """Held-out and new-intent accuracy and adapt + answer latency; see ``chat_bench``."""
    from metagui.core.chat_bench import bench_chat as run

    return run(*args, **kwargs)
