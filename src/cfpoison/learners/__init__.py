"""The collaborative-filtering learners that the attacks target.

* :class:`ALSLearner` (:class:`ALSConfig`): alternating minimization, the paper's Eq. 2;
* :class:`NuclearNormLearner` (:class:`NuclearConfig`): nuclear-norm minimization, Eq. 3,
  with an optimality certificate;
* :func:`build_learner`: a fresh learner for either config.

Both follow :class:`cfpoison.learners.base.Learner` and the regularizer convention stated
in :mod:`cfpoison.learners.base`.
"""

from __future__ import annotations

from cfpoison.learners.als import ALSConfig, ALSLearner
from cfpoison.learners.base import Factors, Learner
from cfpoison.learners.nuclear import NuclearConfig, NuclearNormLearner

LearnerConfig = ALSConfig | NuclearConfig

__all__ = [
    "ALSConfig",
    "ALSLearner",
    "Factors",
    "Learner",
    "LearnerConfig",
    "NuclearConfig",
    "NuclearNormLearner",
    "build_learner",
]


def build_learner(config: LearnerConfig) -> ALSLearner | NuclearNormLearner:
    """A new, unfitted learner for ``config`` (dispatch on its type)."""
    if isinstance(config, ALSConfig):
        return ALSLearner(config)
    if isinstance(config, NuclearConfig):
        return NuclearNormLearner(config)
    raise TypeError(f"build_learner: not a learner config: {type(config).__name__}")
