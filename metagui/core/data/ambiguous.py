"""Ambiguous regression tasks (the PLATIPUS paper's 1-D setting): each task is either a sine
wave y = A sin(x - phase) or a line y = slope * x + intercept, with a coin flip between them,
observed through Gaussian noise. With only a few support points many tasks fit both kinds of
function, so a single adapted model cannot be right: a probabilistic learner should draw
functions that cover both explanations.

Ranges: amplitude [0.1, 5], phase [0, pi] (as the sinusoid built-in), slope and intercept in
[-3, 3], x uniform in [-5, 5], noise standard deviation 0.3 on the support points (the query
points are noise-free, so the query MSE measures the function, not the noise).
"""

from __future__ import annotations

import numpy as np
import torch

from metagui.core.errors import DataError
from metagui.core.tasks import EpisodeBatch

AMPLITUDE = (0.1, 5.0)
PHASE = (0.0, np.pi)
SLOPE = (-3.0, 3.0)
INTERCEPT = (-3.0, 3.0)
X_RANGE = (-5.0, 5.0)
NOISE_STD = 0.3


def sine(amp: float, phase: float, x: np.ndarray) -> np.ndarray:
    return amp * np.sin(x - phase)


def line(slope: float, intercept: float, x: np.ndarray) -> np.ndarray:
    return slope * x + intercept


class AmbiguousTasks:
    """A task family: ``sample(n_tasks, rng)`` gives K noisy support points and Q clean query
    points per task; half the tasks (in expectation) are sines, half lines."""

    def __init__(self, shot: int = 5, query: int = 10, noise: float = NOISE_STD) -> None:
        self.shot, self.query, self.noise = shot, query, noise

    def draw_functions(self, n_tasks: int, rng: np.random.Generator) -> np.ndarray:
        """[T, 3]: (is_sine, a, b) with (a, b) = (amplitude, phase) or (slope, intercept)."""
        is_sine = rng.random(n_tasks) < 0.5
        amp, phase = rng.uniform(*AMPLITUDE, n_tasks), rng.uniform(*PHASE, n_tasks)
        slope, icpt = rng.uniform(*SLOPE, n_tasks), rng.uniform(*INTERCEPT, n_tasks)
        return np.stack([is_sine, np.where(is_sine, amp, slope), np.where(is_sine, phase, icpt)], axis=1).astype(np.float64)

    @staticmethod
    def evaluate(params: np.ndarray, x: np.ndarray) -> np.ndarray:
        """y for each task at x [T, n, 1]."""
        is_sine = params[:, 0, None, None] > 0.5
        a, b = params[:, 1, None, None], params[:, 2, None, None]
        return np.where(is_sine, a * np.sin(x - b), a * x + b)

    def sample(self, n_tasks: int, rng: np.random.Generator) -> EpisodeBatch:
        params = self.draw_functions(n_tasks, rng)
        x = rng.uniform(*X_RANGE, size=(n_tasks, self.shot + self.query, 1))
        y = self.evaluate(params, x)
        k = self.shot
        y[:, :k] += rng.normal(0.0, self.noise, size=y[:, :k].shape)
        xt, yt = torch.from_numpy(x).float(), torch.from_numpy(y).float()
        return EpisodeBatch(xt[:, :k], yt[:, :k], xt[:, k:], yt[:, k:], n_way=0)


def ambiguous_support(rng: np.random.Generator, shot: int = 5, tolerance: float = NOISE_STD, gap: float = 0.5, tries: int = 20000):
    """Support points that a sine and a line both explain: draw a (sine, line) pair from the
    family's ranges (amplitude at least 1, so that the sine is no line) until ``shot`` x in
    [-5, 5], at least ``gap`` apart, have the two functions within ``tolerance`` (the noise
    level) of each other; y is their average there. Returns (x [shot, 1],
    y [shot, 1], (amp, phase), (slope, intercept))."""
    grid = np.linspace(*X_RANGE, 2001)
    for _ in range(tries):
        amp, phase = rng.uniform(1.0, AMPLITUDE[1]), rng.uniform(*PHASE)
        slope, icpt = rng.uniform(*SLOPE), rng.uniform(*INTERCEPT)
        close = np.abs(sine(amp, phase, grid) - line(slope, icpt, grid)) < tolerance
        xs = grid[close]
        if xs.size == 0:
            continue
        # greedily keep points at least ``gap`` apart, so that they span the range
        picked: list[float] = []
        for x in rng.permutation(xs):
            if all(abs(x - p) >= gap for p in picked):
                picked.append(float(x))
            if len(picked) == shot:
                break
        if len(picked) == shot:
            x = np.sort(np.array(picked))
            y = (sine(amp, phase, x) + line(slope, icpt, x)) / 2
            return (torch.tensor(x, dtype=torch.float32)[:, None], torch.tensor(y, dtype=torch.float32)[:, None],
                    (amp, phase), (slope, icpt))
    raise DataError("no ambiguous support set found; loosen the tolerance")


def classify_functions(x: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For functions sampled on a dense grid x [n] (ys [S, n]): least-squares residuals of the
    best line (a x + b) and of the best sine of the family (a sin x + b cos x = A sin(x - phase)).
    Returns (is_line [S], line_rmse [S], sine_rmse [S])."""
    lin = np.stack([x, np.ones_like(x)], 1)
    sin = np.stack([np.sin(x), np.cos(x)], 1)

    def rmse(basis: np.ndarray) -> np.ndarray:
        coef, *_ = np.linalg.lstsq(basis, ys.T, rcond=None)
        return np.sqrt(((basis @ coef - ys.T) ** 2).mean(0))

    line_err, sine_err = rmse(lin), rmse(sin)
    return line_err < sine_err, line_err, sine_err
