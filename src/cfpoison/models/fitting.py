"""Fitting a learner config, where a poisoned refit starts, and the seed-noise floor.

The floor is ``rmse_shift`` between two clean fits whose random starts differ (seeds ``s``
and ``s + 1``): ALS is not convex, so a shift below it is no evidence of an attack. A learner
whose every start reaches the same minimiser (nuclear norm) gives a floor at its solver's
tolerance, below :data:`cfpoison.models.measures.FLOOR_RESOLUTION`.
"""

from __future__ import annotations

from typing import Any

import scipy.sparse as sp

from cfpoison.learners import build_learner
from cfpoison.learners.base import Factors, Learner
from cfpoison.models.measures import rmse_shift


def fit_learner(
    config: Any,
    train: Any,
    fake: sp.csr_array | None = None,
    init: Factors | None = None,
) -> Learner:
    """A fresh learner of ``config`` fitted on ``train`` plus ``fake``."""
    return build_learner(config).fit(train, init=init, fake=fake)


def victim_start(config: Any, clean: Learner) -> Factors | None:
    """Where a victim's refit on poisoned data starts: its own (random) start, except for
    a learner whose every start reaches the same minimiser, which starts from ``clean``."""
    return clean.factors if config.unique_optimum else None


def noise_floor(train: Any, config: Any, clean: Learner | None = None) -> float:
    """``rmse_shift`` between clean fits of ``config`` with seeds ``s`` and ``s + 1``."""
    first = clean if clean is not None else fit_learner(config, train)
    second = fit_learner(config.replace(seed=config.seed + 1), train)
    return rmse_shift(train.matrix, first, second)
