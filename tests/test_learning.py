"""Each algorithm really learns, on short CPU runs, on classes it never saw in training.

"Learns" means: after meta-training it does clearly better than the same learner untrained
(same architecture and seed, zero meta-steps) on exactly the same held-out episodes. Chance
is no bar: an untrained Conv-4 already gets about 0.6 on 5-way 1-shot glyphs, and the untrained
n-gram text encoder about 0.94 on 5-way 5-shot intents.

Budgets are small (tens of meta-steps) so the suite stays fast; `metagui bench learn`
runs the same checks with larger budgets and prints the figures.
"""

import pytest

from metagui.bench.learn import learn_config, learning_check
from metagui.core.experiment import Experiment
from tests.helpers import OMNIGLOT_SMALL1, needs_omniglot, paired_gain, trained_and_untrained

METRIC = ["protonet", "matching", "relation"]
GRADIENT = ["maml", "fomaml", "metasgd", "reptile"]
_experiments: dict[tuple, Experiment] = {}


def _setup(algorithm: str, source: str, steps: int, shot: int | None = None, **hp):
    cfg = learn_config(algorithm, source, steps, str(OMNIGLOT_SMALL1 or ""))
    cfg.training.val_episodes = 20
    cfg.algorithm.hyperparams.update(hp)
    cfg.task.shot = shot or cfg.task.shot
    if source == "glyphs":  # a smaller generated alphabet set keeps data generation fast
        cfg.dataset.n_alphabets, cfg.dataset.characters_per_alphabet, cfg.dataset.drawers = 8, 12, 12
    key = (source, cfg.task.shot)
    if key not in _experiments and source != "sinusoid":
        _experiments[key] = Experiment.prepare(cfg)
    return cfg, _experiments.get(key)


def run(algorithm: str, source: str, steps: int, test_episodes: int = 100, **hp) -> dict:
    cfg, exp = _setup(algorithm, source, steps, **hp)
    return learning_check(cfg, test_episodes=test_episodes, experiment=exp)


def gain(algorithm: str, source: str, steps: int, test_episodes: int, shot: int | None = None, **hp) -> dict:
    """The trained learner's per-episode gain over the untrained one, on the same episodes."""
    cfg, exp = _setup(algorithm, source, steps, shot, **hp)
    trained, untrained = trained_and_untrained(cfg, exp, test_episodes)
    mean, ci = paired_gain(trained, untrained)
    return {"trained": float(trained.mean()), "untrained": float(untrained.mean()), "gain": mean, "ci95": ci}


@pytest.mark.parametrize("algorithm", METRIC + GRADIENT)
def test_meta_training_beats_the_untrained_learner_on_glyphs(algorithm):
    # Reptile: 10 SGD steps from the untrained weights already reach what 40 meta-steps give
    # (0.83 vs 0.82 in our runs); the learned start shows after few steps, as MAML is run here
    hp = {"eval_steps": 3} if algorithm == "reptile" else {}
    r = gain(algorithm, "glyphs", 30 if algorithm in METRIC else 40, 50, **hp)
    assert r["gain"] - r["ci95"] > 0.05, r  # 5-way 1-shot; gains 0.14 to 0.50 in our runs


# 5-way 1-shot: at 5 shots the untrained encoder is at 0.94 and 30 meta-steps add under 0.02
NO_GAIN_ON_INTENTS = pytest.mark.xfail(strict=True, reason=(
    "30 meta-steps do not beat the untrained learner on intents yet (gain +0.001 +- 0.007 for "
    "Relation Networks, -0.002 +- 0.012 for Reptile in our runs)"))


@pytest.mark.parametrize("algorithm", [
    a if a not in ("relation", "reptile") else pytest.param(a, marks=NO_GAIN_ON_INTENTS) for a in METRIC + GRADIENT
])
def test_meta_training_beats_the_untrained_learner_on_intents(algorithm):
    r = gain(algorithm, "intents", 30, 100, shot=1)
    assert r["gain"] - r["ci95"] > 0, r  # gains 0.01 to 0.03 in our runs: small but not chance


@needs_omniglot
@pytest.mark.parametrize("algorithm", ["protonet", "fomaml"])
def test_learns_omniglot_minimal_split(algorithm):
    r = run(algorithm, "omniglot", 30 if algorithm == "protonet" else 40, test_episodes=50)
    assert r["accuracy"] - r["ci95"] > 0.4, r


@pytest.mark.parametrize("algorithm", GRADIENT)
def test_sinusoid_adaptation_cuts_the_error(algorithm):
    # 10-shot sinusoid; meta-batches of 10 tasks keep the run short (the paper uses 25)
    batch = {} if algorithm == "reptile" else {"meta_batch": 10}
    r = run(algorithm, "sinusoid", 600 if algorithm == "reptile" else 1000, test_episodes=200, **batch)
    assert r["mse"] + r["ci95"] < 0.7 * r["pre_mse"], r
