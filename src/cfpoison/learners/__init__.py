"""The collaborative-filtering learners that the attacks target.

* :class:`ALSLearner` (:class:`ALSConfig`): alternating minimization, the paper's Eq. 2;
* :class:`NuclearNormLearner` (:class:`NuclearConfig`): nuclear-norm minimization, Eq. 3,
  with an optimality certificate;
* :class:`BiasedLearner` (:class:`BiasedConfig`): biased MF (global mean, user and item
  biases, factors) by ALS, with augmented factors whose product is the prediction;
* :class:`WRMFLearner` (:class:`WRMFConfig`) and :class:`BPRLearner` (:class:`BPRConfig`):
  implicit-feedback rankers on :class:`cfpoison.data.interactions.Interactions`, whose fake
  rows are relaxed interaction weights in ``[0, 1]``;
* :func:`build_learner`: a fresh learner for any config, by the config's ``name``
  (:data:`LEARNERS`).

Every learner follows :class:`cfpoison.learners.base.Learner`: a fit is a stationary point of
its objective (the regularizer convention of :mod:`cfpoison.learners.base`; biased MF adds
``lam_b`` on the biases), and ``adjoint_system`` differentiates it with respect to the fake
rows (:mod:`cfpoison.learners.adjoint`).
"""

from __future__ import annotations

from typing import Any, overload

from cfpoison.learners.als import ALSConfig, ALSLearner
from cfpoison.learners.base import Factors, Learner
from cfpoison.learners.biased import BiasedConfig, BiasedLearner
from cfpoison.learners.bpr import BPRConfig, BPRLearner
from cfpoison.learners.nuclear import NuclearConfig, NuclearNormLearner
from cfpoison.learners.wrmf import WRMFConfig, WRMFLearner

#: The configs of the learners on explicit ratings (the ones ``AttackConfig.learner`` takes).
LearnerConfig = ALSConfig | NuclearConfig | BiasedConfig

#: The configs of the learners on implicit feedback.
ImplicitLearnerConfig = WRMFConfig | BPRConfig

#: Every learner, keyed by its config's ``name``.
LEARNERS: dict[str, tuple[type, type]] = {
    "als": (ALSConfig, ALSLearner),
    "nuclear": (NuclearConfig, NuclearNormLearner),
    "biased": (BiasedConfig, BiasedLearner),
    "wrmf": (WRMFConfig, WRMFLearner),
    "bpr": (BPRConfig, BPRLearner),
}

__all__ = [
    "LEARNERS",
    "ALSConfig",
    "ALSLearner",
    "BPRConfig",
    "BPRLearner",
    "BiasedConfig",
    "BiasedLearner",
    "Factors",
    "ImplicitLearnerConfig",
    "Learner",
    "LearnerConfig",
    "NuclearConfig",
    "NuclearNormLearner",
    "WRMFConfig",
    "WRMFLearner",
    "build_learner",
]


@overload
def build_learner(config: LearnerConfig) -> ALSLearner | NuclearNormLearner | BiasedLearner: ...


@overload
def build_learner(config: ImplicitLearnerConfig) -> WRMFLearner | BPRLearner: ...


def build_learner(config: LearnerConfig | ImplicitLearnerConfig) -> Any:
    """A new, unfitted learner for ``config`` (by its ``name``, :data:`LEARNERS`)."""
    entry = LEARNERS.get(getattr(config, "name", ""))
    if entry is None or not isinstance(config, entry[0]):
        raise TypeError(f"build_learner: not a learner config: {type(config).__name__}")
    return entry[1](config)
