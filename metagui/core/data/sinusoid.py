"""Sinusoid regression tasks (MAML paper): y = A sin(x - phase), A in [0.1, 5], phase in
[0, pi], x uniform in [-5, 5]. Every task is freshly drawn, so there is no class split:
train, val and test differ only in their random streams."""

from __future__ import annotations

import numpy as np
import torch

from metagui.core.tasks import EpisodeBatch

AMPLITUDE = (0.1, 5.0)
PHASE = (0.0, np.pi)
X_RANGE = (-5.0, 5.0)


class SinusoidTasks:
    """A task family: ``sample(n_tasks, rng)`` gives K support and Q query points per task."""

    def __init__(self, shot: int = 10, query: int = 10) -> None:
        self.shot, self.query = shot, query

    def draw_functions(self, n_tasks: int, rng: np.random.Generator) -> np.ndarray:
        amp = rng.uniform(*AMPLITUDE, size=n_tasks)
        phase = rng.uniform(*PHASE, size=n_tasks)
        return np.stack([amp, phase], axis=1)

    @staticmethod
    def evaluate(params: np.ndarray, x: np.ndarray) -> np.ndarray:
        """y for each task's (amplitude, phase) at x [T, n, 1]."""
        return params[:, 0, None, None] * np.sin(x - params[:, 1, None, None])

    def sample(self, n_tasks: int, rng: np.random.Generator) -> EpisodeBatch:
        params = self.draw_functions(n_tasks, rng)
        x = rng.uniform(*X_RANGE, size=(n_tasks, self.shot + self.query, 1))
        y = self.evaluate(params, x)
        xt = torch.from_numpy(x).float()
        yt = torch.from_numpy(y).float()
        k = self.shot
        return EpisodeBatch(xt[:, :k], yt[:, :k], xt[:, k:], yt[:, k:], n_way=0)
