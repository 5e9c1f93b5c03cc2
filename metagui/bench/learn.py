"""``metagui bench learn``: does each algorithm learn? Held-out test episodes after short
CPU meta-training runs (paper-like inner loops, small budgets) on glyphs, intents, Omniglot
and sinusoid regression.

``learn_config`` and ``learning_check`` are also what the learning tests run, at smaller
budgets.
"""

from __future__ import annotations

import torch

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
