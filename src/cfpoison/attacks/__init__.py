"""Data poisoning attacks on factorization-based collaborative filtering (paper sections 3-4).

* :class:`ThreatModel`: the budget (alpha, B, Lambda, item selection) and its projections;
* :class:`UtilityConfig` / :class:`Utility`: availability, integrity and hybrid utilities
  (Eq. 7-9) in low-rank form;
* :func:`utility_gradient`: dR/dM~ by implicit differentiation (``exact``) or Eq. 12
  (``paper``), on the fake pattern or on dense rows;
* :func:`run_attack` with an :class:`AttackConfig`: PGA (Algorithm 1), the baselines, and any
  method registered with :func:`register_method` (SGLD; ``robust``: PGA on the mean utility
  over a :class:`SurrogatePanel` of surrogate learners);
* :func:`evaluate_profiles`: the metrics of a poisoned model against the clean one.
"""

from __future__ import annotations

from cfpoison.attacks.engine import (
    AttackConfig,
    AttackContext,
    AttackResult,
    MethodOutput,
    get_method,
    register_method,
    run_attack,
)
from cfpoison.attacks.gradient import ImplicitGradient, utility_gradient
from cfpoison.attacks.metrics import evaluate_profiles
from cfpoison.attacks.robust import SurrogatePanel, SurrogateSpec, load_surrogates
from cfpoison.attacks.threat import ThreatModel, is_feasible, project_dense
from cfpoison.attacks.utility import Utility, UtilityConfig, build_utility

__all__ = [
    "AttackConfig",
    "AttackContext",
    "AttackResult",
    "ImplicitGradient",
    "MethodOutput",
    "SurrogatePanel",
    "SurrogateSpec",
    "ThreatModel",
    "Utility",
    "UtilityConfig",
    "build_utility",
    "evaluate_profiles",
    "get_method",
    "is_feasible",
    "load_surrogates",
    "project_dense",
    "register_method",
    "run_attack",
    "utility_gradient",
]
