"""Classical bandit strategies, run on the same sampled bandits as RL², and regret.

Regret is the expected (pseudo-)regret of a trial: the sum over pulls of the best arm's
success probability minus the chosen arm's. Every strategy is vectorised over bandits.

- random: a uniformly chosen arm at every pull.
- epsilon-greedy: untried arms first (in random order), then with probability epsilon a
  uniform arm, otherwise the arm with the best empirical mean (ties broken at random).
- UCB1 (Auer et al. 2002): each arm once, then argmax mean + sqrt(2 ln t / n_arm).
- Thompson sampling: a Beta(1 + successes, 1 + failures) draw per arm, play the largest.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Strategy = Callable[[np.ndarray, np.ndarray, int, np.random.Generator], np.ndarray]


def _argmax_random_ties(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    noise = rng.random(values.shape) * 1e-9
    return np.argmax(np.where(values == values.max(1, keepdims=True), 1.0 + noise, 0.0), axis=1)


def random_arm(succ, fail, t, rng):
    return rng.integers(succ.shape[1], size=succ.shape[0])


def epsilon_greedy(epsilon: float = 0.1) -> Strategy:
    def choose(succ, fail, t, rng):
        n = succ + fail
        means = np.where(n > 0, succ / np.maximum(n, 1), np.inf)  # untried arms first
        greedy = _argmax_random_ties(means, rng)
        explore = rng.random(succ.shape[0]) < epsilon
        return np.where(explore & (n.min(1) > 0), rng.integers(succ.shape[1], size=succ.shape[0]), greedy)

    return choose


def ucb1(succ, fail, t, rng):
    n = succ + fail
    bonus = np.sqrt(2.0 * np.log(max(t, 1)) / np.maximum(n, 1))
    scores = np.where(n > 0, succ / np.maximum(n, 1) + bonus, np.inf)
    return _argmax_random_ties(scores, rng)


def thompson(succ, fail, t, rng):
    return np.argmax(rng.beta(1.0 + succ, 1.0 + fail), axis=1)


BASELINES: dict[str, Strategy] = {
    "random": random_arm,
    "epsilon-greedy": epsilon_greedy(0.1),
    "UCB1": ucb1,
    "Thompson": thompson,
}


def run_strategy(strategy: Strategy, probs: np.ndarray, pulls: int, seed: int) -> np.ndarray:
    """Expected regret of ``strategy`` on each bandit (probs [T, k]) over ``pulls`` pulls [T]."""
    rng = np.random.default_rng(seed)
    t_, k = probs.shape
    succ = np.zeros((t_, k))
    fail = np.zeros((t_, k))
    best = probs.max(1)
    regret = np.zeros(t_)
    rows = np.arange(t_)
    for t in range(pulls):
        arm = strategy(succ, fail, t, rng)
        p = probs[rows, arm]
        regret += best - p
        win = rng.random(t_) < p
        succ[rows, arm] += win
        fail[rows, arm] += ~win
    return regret


def baseline_regrets(probs: np.ndarray, pulls: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Per-bandit expected regret of every baseline on the same bandits."""
    return {name: run_strategy(fn, probs, pulls, seed + i) for i, (name, fn) in enumerate(BASELINES.items())}
