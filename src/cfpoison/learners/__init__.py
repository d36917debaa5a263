"""The collaborative-filtering learners that the attacks target.

* :class:`ALSLearner` (:class:`ALSConfig`): alternating minimization, the paper's Eq. 2;
* :class:`NuclearNormLearner` (:class:`NuclearConfig`): nuclear-norm minimization, Eq. 3,
  with an optimality certificate;
* :class:`BiasedLearner` (:class:`BiasedConfig`): biased MF (global mean, user and item
  biases, factors) by ALS, with augmented factors whose product is the prediction;
* :func:`build_learner`: a fresh learner for any config, by the config's ``name``
  (:data:`LEARNERS`).

Every learner follows :class:`cfpoison.learners.base.Learner`: a fit is a stationary point of
its objective (the regularizer convention of :mod:`cfpoison.learners.base`; biased MF adds
``lam_b`` on the biases), and ``adjoint_system`` differentiates it with respect to the fake
rows (:mod:`cfpoison.learners.adjoint`).
"""

from __future__ import annotations

from cfpoison.learners.als import ALSConfig, ALSLearner
from cfpoison.learners.base import Factors, Learner
from cfpoison.learners.biased import BiasedConfig, BiasedLearner
from cfpoison.learners.nuclear import NuclearConfig, NuclearNormLearner

#: The configs of the learners on explicit ratings (the ones ``AttackConfig.learner`` takes).
LearnerConfig = ALSConfig | NuclearConfig | BiasedConfig

#: Every learner, keyed by its config's ``name``.
LEARNERS: dict[str, tuple[type, type]] = {
    "als": (ALSConfig, ALSLearner),
    "nuclear": (NuclearConfig, NuclearNormLearner),
    "biased": (BiasedConfig, BiasedLearner),
}

__all__ = [
    "LEARNERS",
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


def build_learner(config: LearnerConfig) -> ALSLearner | NuclearNormLearner | BiasedLearner:
    """A new, unfitted learner for ``config`` (by its ``name``, :data:`LEARNERS`)."""
    entry = LEARNERS.get(getattr(config, "name", ""))
    if entry is None or not isinstance(config, entry[0]):
        raise TypeError(f"build_learner: not a learner config: {type(config).__name__}")
    learner: ALSLearner | NuclearNormLearner | BiasedLearner = entry[1](config)
    return learner
