"""Each algorithm really learns, on short CPU runs, on classes it never saw in training.

Budgets are small (tens of meta-steps) so the suite stays fast; `metagui bench learn`
runs the same checks with larger budgets and prints the figures.
"""

import pytest

from metagui.core.bench import learn_config, learning_check
from metagui.core.experiment import Experiment
from tests.helpers import OMNIGLOT_SMALL1

METRIC = ["protonet", "matching", "relation"]
GRADIENT = ["maml", "fomaml", "metasgd", "reptile"]
_experiments: dict[str, Experiment] = {}


def run(algorithm: str, source: str, steps: int, test_episodes: int = 100, **hp) -> dict:
    cfg = learn_config(algorithm, source, steps, str(OMNIGLOT_SMALL1))
    cfg.training.val_episodes = 20
    cfg.algorithm.hyperparams.update(hp)
    if source == "glyphs":  # a smaller generated alphabet set keeps data generation fast
        cfg.dataset.n_alphabets, cfg.dataset.characters_per_alphabet, cfg.dataset.drawers = 8, 12, 12
    if source not in _experiments and source != "sinusoid":
        _experiments[source] = Experiment.prepare(cfg)
    return learning_check(cfg, test_episodes=test_episodes, experiment=_experiments.get(source))


@pytest.mark.parametrize("algorithm", METRIC + GRADIENT)
def test_learns_glyphs_far_above_chance(algorithm):
    r = run(algorithm, "glyphs", 30 if algorithm in METRIC else 40, test_episodes=50)
    assert r["accuracy"] - r["ci95"] > 0.4, r  # 5-way 1-shot: chance is 0.2


@pytest.mark.parametrize("algorithm", METRIC + GRADIENT)
def test_learns_intents_far_above_chance(algorithm):
    r = run(algorithm, "intents", 30)
    assert r["accuracy"] - r["ci95"] > 0.5, r  # 5-way 5-shot on unseen intents: chance 0.2


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
