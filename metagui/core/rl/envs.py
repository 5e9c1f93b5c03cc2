"""RL task families as in the RL² paper (Duan et al. 2016), stepped as tensors.

A *task* is an environment drawn from a family; a *trial* is ``episodes`` consecutive
episodes of ``horizon`` steps in that one environment (the agent's memory persists across
them). Both families are tabular MDPs, so one vectorised stepper serves both:

- Bernoulli bandits: k arms with success probabilities drawn uniformly from [0, 1]; an
  episode is one pull (one state, horizon 1), a trial is n pulls.
- Random tabular MDPs: transition distributions drawn from a flat Dirichlet, mean rewards
  from N(1, 1), observed rewards N(mean, 1); each episode starts in a uniformly drawn state.

``sample(n_tasks, rng)`` mirrors the classification samplers: the trainer draws a
``TrialBatch`` per meta-step with a seeded numpy generator, and the batch carries a seed
for its own randomness (rewards, transitions, the policy's actions), so runs repeat exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from metagui.core.errors import ConfigError


@dataclass
class TrialBatch:
    """T environments of one family: transitions [T, S, A, S], mean rewards [T, S, A]."""

    transitions: torch.Tensor
    reward_mean: torch.Tensor
    reward: str  # "bernoulli" | "normal"
    horizon: int
    episodes: int
    seed: int
    kind: str  # "bandit" | "mdp"

    @property
    def n_tasks(self) -> int:
        return int(self.transitions.shape[0])

    @property
    def n_states(self) -> int:
        return int(self.transitions.shape[1])

    @property
    def n_actions(self) -> int:
        return int(self.transitions.shape[2])

    @property
    def steps(self) -> int:
        return self.horizon * self.episodes

    @property
    def n_way(self) -> int:  # so that code written for episode batches can read the action count
        return self.n_actions

    def to(self, device: torch.device | str) -> TrialBatch:
        return TrialBatch(self.transitions.to(device), self.reward_mean.to(device), self.reward,
                          self.horizon, self.episodes, self.seed, self.kind)

    def task(self, i: int) -> TrialBatch:
        s = slice(i, i + 1)
        return TrialBatch(self.transitions[s], self.reward_mean[s], self.reward, self.horizon,
                          self.episodes, self.seed + i, self.kind)


class BanditTasks:
    """k-armed Bernoulli bandits with arm probabilities ~ U[0, 1]; n pulls per trial."""

    kind = "bandit"

    def __init__(self, arms: int = 5, pulls: int = 10) -> None:
        if arms < 2 or pulls < 1:
            raise ConfigError("a bandit needs at least 2 arms and 1 pull")
        self.arms, self.pulls = arms, pulls
        self.n_states, self.n_actions = 1, arms

    def describe(self) -> str:
        return f"{self.arms}-armed bandit, {self.pulls} pulls"

    def sample(self, n_tasks: int, rng: np.random.Generator) -> TrialBatch:
        probs = torch.from_numpy(rng.uniform(0.0, 1.0, size=(n_tasks, 1, self.arms))).float()
        trans = torch.ones(n_tasks, 1, self.arms, 1)
        return TrialBatch(trans, probs, "bernoulli", 1, self.pulls, int(rng.integers(2**62)), self.kind)


class MDPTasks:
    """Random tabular MDPs: S states, A actions, episodes of ``horizon`` steps, ``episodes``
    episodes per trial (the paper: S=10, A=5, horizon 10)."""

    kind = "mdp"

    def __init__(self, states: int = 10, actions: int = 5, horizon: int = 10, episodes: int = 10) -> None:
        if states < 1 or actions < 2 or horizon < 1 or episodes < 1:
            raise ConfigError("an MDP needs at least 1 state, 2 actions, horizon 1 and 1 episode")
        self.n_states, self.n_actions, self.horizon, self.episodes = states, actions, horizon, episodes

    def describe(self) -> str:
        return f"random MDP ({self.n_states} states, {self.n_actions} actions), {self.episodes} episodes of {self.horizon} steps"

    def sample(self, n_tasks: int, rng: np.random.Generator) -> TrialBatch:
        s, a = self.n_states, self.n_actions
        trans = rng.dirichlet(np.ones(s), size=(n_tasks, s, a))
        mean = rng.normal(1.0, 1.0, size=(n_tasks, s, a))
        return TrialBatch(torch.from_numpy(trans).float(), torch.from_numpy(mean).float(), "normal",
                          self.horizon, self.episodes, int(rng.integers(2**62)), self.kind)


class VecTrials:
    """Steps all T environments of a batch together. ``observe()`` gives the current state
    [T]; ``step(actions)`` returns rewards [T] and whether the step ended an episode [T]."""

    def __init__(self, batch: TrialBatch, generator: torch.Generator | None = None) -> None:
        self.batch = batch
        self.gen = generator or torch.Generator(device=batch.transitions.device).manual_seed(batch.seed % 2**63)
        self.t = 0
        self.rows = torch.arange(batch.n_tasks, device=batch.transitions.device)
        self.state = self._start_states()

    def _start_states(self) -> torch.Tensor:
        b = self.batch
        return torch.randint(b.n_states, (b.n_tasks,), generator=self.gen, device=b.transitions.device)

    @property
    def finished(self) -> bool:
        return self.t >= self.batch.steps

    def observe(self) -> torch.Tensor:
        return self.state

    def expected_reward(self, actions: torch.Tensor) -> torch.Tensor:
        return self.batch.reward_mean[self.rows, self.state, actions]

    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = self.batch
        mean = self.expected_reward(actions)
        u = torch.rand(b.n_tasks, generator=self.gen, device=mean.device)
        if b.reward == "bernoulli":
            reward = (u < mean).to(mean.dtype)
        else:
            reward = mean + torch.randn(b.n_tasks, generator=self.gen, device=mean.device)
        self.t += 1
        done = self.t % b.horizon == 0
        if done:
            self.state = self._start_states()
        else:
            probs = b.transitions[self.rows, self.state, actions]  # [T, S]
            self.state = torch.multinomial(probs, 1, generator=self.gen).squeeze(1)
        return reward, torch.full((b.n_tasks,), float(done), device=mean.device)


def bandit_best(batch: TrialBatch) -> torch.Tensor:
    """Best arm probability of each bandit [T]."""
    return batch.reward_mean[:, 0].max(-1).values
