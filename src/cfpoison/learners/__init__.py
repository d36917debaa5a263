"""The collaborative-filtering learners that the attacks target.

* :class:`ALSLearner` (:class:`ALSConfig`): alternating minimization, the paper's Eq. 2;
* :class:`NuclearNormLearner` (:class:`NuclearConfig`): nuclear-norm minimization, Eq. 3,
  with an optimality certificate;
* :class:`BiasedLearner` (:class:`BiasedConfig`): biased MF (global mean, user and item
  biases, factors) by ALS, with augmented factors whose product is the prediction;
* :func:`build_learner`: a fresh learner for any of these configs (``LearnerConfig``, the
  configs the attacks take, does not include biased MF: no implicit gradient for it yet).

All follow :class:`cfpoison.learners.base.Learner` and the regularizer convention stated
in :mod:`cfpoison.learners.base` (biased MF adds ``lam_b`` on the biases).
"""

from __future__ import annotations

from cfpoison.learners.als import ALSConfig, ALSLearner
from cfpoison.learners.base import Factors, Learner
from cfpoison.learners.biased import BiasedConfig, BiasedLearner
from cfpoison.learners.nuclear import NuclearConfig, NuclearNormLearner

LearnerConfig = ALSConfig | NuclearConfig

__all__ = [
    "ALSConfig",
    "ALSLearner",
    "BiasedConfig",
    "BiasedLearner",
    "Factors",
    "Learner",
    "LearnerConfig",
    "NuclearConfig",
    "NuclearNormLearner",
    "build_learner",
]


def build_learner(
    config: LearnerConfig | BiasedConfig,
) -> ALSLearner | NuclearNormLearner | BiasedLearner:
    """A new, unfitted learner for ``config`` (dispatch on its type)."""
    if isinstance(config, ALSConfig):
        return ALSLearner(config)
    if isinstance(config, NuclearConfig):
        return NuclearNormLearner(config)
    if isinstance(config, BiasedConfig):
        return BiasedLearner(config)
    raise TypeError(f"build_learner: not a learner config: {type(config).__name__}")
