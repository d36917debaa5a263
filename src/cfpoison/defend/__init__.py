"""Defenses against poisoned training data (paper section 6), and their measured cost.

:func:`defend` turns a poisoned training set (real ratings plus fake rows, shifted scale)
into a :class:`DefendedModel`, low-rank predictions for the real users; the defenses are
configured by frozen dataclasses (:data:`DefenseConfig`). :func:`evaluate_defenses` and
:func:`run_defense_grid` measure every defense against every attack; :func:`write_report`
writes the table and the cost-benefit figure.
"""

from cfpoison.defend.defenses import (
    DEFENSES,
    ALSWRConfig,
    BaggingConfig,
    DefenseConfig,
    DetectRemoveConfig,
    HuberConfig,
    InfluenceCapConfig,
    ScoreFunction,
    TrimmedConfig,
    defend,
    detector_score,
)
from cfpoison.defend.model import DefendedModel

__all__ = [
    "DEFENSES",
    "ALSWRConfig",
    "BaggingConfig",
    "DefendedModel",
    "DefenseConfig",
    "DetectRemoveConfig",
    "HuberConfig",
    "InfluenceCapConfig",
    "ScoreFunction",
    "TrimmedConfig",
    "defend",
    "detector_score",
]
