"""Meta-learning algorithms behind one contract (see ``base``) and a name registry."""

from metagui.core.algorithms import gradient, metric, probabilistic, rl2  # noqa: F401  (registers the learners)
from metagui.core.algorithms.base import (
    FAMILIES,
    REGISTRY,
    HyperParam,
    MetaLearner,
    Predictor,
    create,
    get,
)

__all__ = ["FAMILIES", "REGISTRY", "HyperParam", "MetaLearner", "Predictor", "create", "get"]
