"""``metagui bench bandits``: RL² on Bernoulli bandits, cumulative regret against classical
strategies (random, epsilon-greedy, UCB1, Thompson sampling) on the same held-out bandits.
"""

from __future__ import annotations

import torch

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
