"""Interactive few-shot regression (Qt-free): the sinusoid family in the "Try it" pane."""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass

import numpy as np
import torch

from metagui.core.algorithms.base import MetaLearner
from metagui.core.errors import ConfigError, DataError


@dataclass
class RegressionFit:
    x: np.ndarray
    before: np.ndarray | None  # the meta-learned model, not adapted
    after: np.ndarray | None  # adapted to the points
    truth: np.ndarray | None  # the true function, when known
    adapt_ms: float
    mse_before: float | None = None  # against the true function on the grid
    mse_after: float | None = None


class RegressionEngine:
    """Interactive few-shot regression (the sinusoid family): support points the user adds
    by clicking or samples from a drawn sine, and predictions before / after adapting."""

    def __init__(self, learner: MetaLearner, run_id: int | None = None, steps: int | None = None) -> None:
        if not learner.regression:
            raise ConfigError("this run classifies; regression needs a sinusoid run")
        self.learner = learner.eval()
        self.run_id = run_id
        self.steps = steps
        self.points: list[tuple[float, float]] = []
        self.truth: tuple[float, float] | None = None  # amplitude, phase

    @classmethod
    def from_run(cls, store, run_id: int, kind: str | None = None, device: str = "cpu") -> RegressionEngine:
        from metagui.core.evaluation import checkpoint_folder, load_learner

        ckpts = store.checkpoints(run_id)
        kind = kind or ("best" if "best" in ckpts else "last")
        learner, _ = load_learner(checkpoint_folder(store, run_id, kind), kind, torch.device(device))
        return cls(learner, run_id)

    def new_sine(self, rng: random.Random | np.random.Generator | None = None) -> tuple[float, float]:
        """Draw a new task (MAML paper ranges); forgets the points."""
        from metagui.core.data.sinusoid import AMPLITUDE, PHASE

        r = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng.random() if rng else None)
        self.truth = (float(r.uniform(*AMPLITUDE)), float(r.uniform(*PHASE)))
        self.points = []
        return self.truth

    def true_y(self, x: np.ndarray) -> np.ndarray | None:
        if self.truth is None:
            return None
        a, ph = self.truth
        return a * np.sin(np.asarray(x, dtype=np.float64) - ph)

    def sample_points(self, k: int, rng: np.random.Generator | None = None) -> None:
        from metagui.core.data.sinusoid import X_RANGE

        if self.truth is None:
            self.new_sine(rng)
        r = rng or np.random.default_rng()
        xs = r.uniform(*X_RANGE, size=k)
        self.points += [(float(x), float(y)) for x, y in zip(xs, self.true_y(xs), strict=True)]

    def add_point(self, x: float, y: float) -> None:
        if not (math.isfinite(x) and math.isfinite(y)):
            raise DataError("a support point needs finite coordinates")
        self.points.append((float(x), float(y)))

    def fit(self, grid: np.ndarray | None = None) -> RegressionFit:
        from metagui.core.algorithms.gradient import GradientLearner
        from metagui.core.data.sinusoid import X_RANGE

        xs = np.linspace(*X_RANGE, 200) if grid is None else np.asarray(grid, dtype=np.float64)
        gx = torch.from_numpy(xs).float()[:, None]
        L = self.learner
        before = None
        if isinstance(L, GradientLearner):
            with torch.no_grad():
                before = L.run(L.fast_params(), gx)[:, 0].double().numpy()
        after, ms = None, 0.0
        if self.points:
            sx = torch.tensor([[p[0]] for p in self.points], dtype=torch.float32)
            sy = torch.tensor([[p[1]] for p in self.points], dtype=torch.float32)
            start = time.perf_counter()
            if self.steps is not None and isinstance(L, GradientLearner):
                saved = L.hp["eval_steps"]
                L.hp["eval_steps"] = self.steps
                try:
                    pred = L.adapt(sx, sy, 0)
                finally:
                    L.hp["eval_steps"] = saved
            else:
                pred = L.adapt(sx, sy, 0)
            after = pred.predict(gx)[:, 0].double().numpy()
            ms = (time.perf_counter() - start) * 1000
        truth = self.true_y(xs)

        def mse(y):
            return None if y is None or truth is None else float(np.mean((y - truth) ** 2))

        return RegressionFit(xs, before, after, truth, ms, mse(before), mse(after))
