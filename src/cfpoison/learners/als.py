"""Alternating minimization (the paper's Eq. 2 and Eq. 4), with appended fake users.

Objective (the convention of :mod:`cfpoison.learners.base`; our ``lam_U`` is the paper's
``2 lam_U``)::

    L(U, U~, V) = sum_Omega (M_ij - u_i.v_j)^2 + sum_Omega~ (M~_ij - u~_i.v_j)^2
                  + lam_U (||U||^2 + ||U~||^2) + lam_V ||V||^2

One sweep solves every user row exactly with ``V`` fixed (``u_i = (V_i^T V_i + lam_U I)^-1
V_i^T m_i``, the same for the fake rows), then every item row with ``U, U~`` fixed; the item
half sums over the data set's CSC and the fake matrix's CSC separately, so fake rows never
require rebuilding the data set's matrices. The real CSC is cached per matrix object.

Stopping: after each sweep, the relative objective change ``|L_prev - L| / L <= tol`` or the
relative KKT residual ``<= kkt_tol`` (see :meth:`Engine.evaluate`), at most ``max_sweeps``
sweeps. A warm start from a solution therefore stops after one sweep. The shared machinery
(problem data, half-steps, KKT) lives in :mod:`cfpoison.learners.factored`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any, Literal, Self

import numpy as np
import scipy.sparse as sp

from cfpoison.config import require_ranges
from cfpoison.data.ratings import Ratings
from cfpoison.learners.base import Factors, LearnerSettings
from cfpoison.learners.factored import (
    SWEEP_BOUNDS,
    Backend,
    Engine,
    Problem,
    SweptLearner,
    Trace,
    backend_module,
    starting_factors,
    sweep_until,
)
from cfpoison.learners.hessian import SquaredLossLearner

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ALSConfig(LearnerSettings):
    """Alternating minimization of ``L`` (module docstring).

    Attributes:
        rank: number of latent factors k.
        lambda_u, lambda_v: regularization of user (and fake user) and item factors; the
            defaults (8) give test RMSE 0.900 at rank 10 on ml-latest-small.
        max_sweeps: cap on the number of sweeps (one sweep = users, then items); a fit that
            hits it is reported (``converged`` False, a logged warning). Warm refits usually
            need tens of sweeps, but an availability attack can push the model onto a plateau
            that takes about 1,000 (measured on ml-latest-small after 9 PGA steps: 143 sweeps
            to KKT 5e-4, where the gradient had cos 0.02 with the true one, 986 to 1e-4).
        tol: stop when the relative objective change of a sweep is at most this (0: off, the
            default: a small change of the objective does not make the factors stationary).
        kkt_tol: stop when the relative KKT residual is at most this (0: off). The default
            1e-5 makes the implicit gradient exact to cos 0.9999 on ml-latest-small
            (``cfpoison gradcheck``; docs/math.md).
        anderson_memory: sweeps mixed by Anderson acceleration, over-relaxed where it fails
            (0: plain ALS); see :func:`cfpoison.learners.factored.sweep_until`.
        init_scale: standard deviation of the random initial item factors.
        seed: seed of the random initialisation (``np.random.default_rng(seed)``).
        threads: numba threads (0 = all cores).
        backend: ``numba`` kernels, or the plain ``numpy`` reference path (tests only).
    """

    name: Literal["als"] = "als"
    rank: int = 10
    lambda_u: float = 8.0
    lambda_v: float = 8.0
    max_sweeps: int = 3000
    tol: float = 0.0
    kkt_tol: float = 1e-5
    anderson_memory: int = 5
    init_scale: float = 0.1
    seed: int = 0
    threads: int = 0
    backend: Backend = "numba"

    def __post_init__(self) -> None:
        require_ranges(self, "als", rank=">= 1", lambda_u="> 0", lambda_v="> 0", **SWEEP_BOUNDS)


class ALSLearner(SweptLearner[tuple[Engine, Factors]], SquaredLossLearner):
    """Alternating minimization; see the module docstring for objective and stopping."""

    def __init__(self, config: ALSConfig | None = None):
        self.config = config or ALSConfig()
        self._ops = backend_module(self.config.backend)
        self._trace = Trace([], math.inf, False)

    # ------------------------------------------------------------------ fitting
    def fit(
        self, ratings: Ratings, init: Factors | None = None, fake: sp.csr_array | None = None
    ) -> Self:
        """Fit on ``ratings`` plus the fake rows ``fake`` (``m' x n`` CSR, shifted scale).

        ``init`` warm-starts from given factors; otherwise the item factors are drawn from
        ``np.random.default_rng(config.seed)``.
        """
        c = self.config
        self._ops.set_threads(c.threads)
        problem = Problem.build(ratings, fake)
        engine = Engine(problem, c.lambda_u, c.lambda_v, self._ops)
        rng = np.random.default_rng(c.seed)
        f, start = starting_factors(engine, init, rng, c.rank, c.init_scale)
        self._trace = sweep_until(
            engine, f, c.max_sweeps, c.tol, c.kkt_tol, start, c.anderson_memory
        )
        self._fit = engine, f
        self._log_if_capped(log)
        return self

    def _saved_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return self.factors.named(), {}

    def _restored_state(
        self, problem: Problem, arrays: dict[str, np.ndarray], record: dict[str, Any]
    ) -> tuple[Engine, Factors]:
        c = self.config
        return Engine(problem, c.lambda_u, c.lambda_v, self._ops), Factors.of_named(arrays)

    # ------------------------------------------------------------------ fitted state
    def objective(self) -> float:
        """``L`` at the fitted factors."""
        engine, f = self._fitted()
        return engine.objective(f)

    def kkt_residual(self) -> float:
        """Relative KKT residual ``||grad L||_F / ||grad P||_F`` (both blocks, recomputed)."""
        engine, f = self._fitted()
        return engine.evaluate(f)[1]
