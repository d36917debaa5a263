"""Gradient of the attacker's utility with respect to the fake ratings (paper Eq. 11).

At a stationary point ``theta = (U, U~, V)`` of L (see :mod:`cfpoison.attacks.hessian`), the
implicit function theorem and the adjoint trick give, for every fake entry (i, j) at once::

    z = H^{-1} g,   g = dR/dtheta = (dR/dU, 0, dR/dV)
    dR/dM~_ij = 2 (v_j . z[u~_i] + u~_i . z[v_j])

because the mixed partial of grad L with respect to ``M~_ij`` is ``-2 v_j`` in the block of
``u~_i`` and ``-2 u~_i`` in the block of ``v_j`` (``docs/math.md`` section 3).

* ``exact``: z from block-Jacobi-preconditioned MINRES on Hessian-vector products
  (:func:`cfpoison.attacks.hessian.solve`).
* ``paper``: z from H's diagonal blocks alone (Eq. 12: other factors held fixed), which gives
  ``dR/dM~_ij = u~_i' (lam_V I + Sigma_V^(j))^{-1} dR/dv_j``.

Nuclear norm uses the same code at its balanced factors ``U = A S^(1/2)``, ``V = B S^(1/2)``,
a stationary point of L with ``lam_U = lam_V = lam`` (``docs/math.md`` section 4).

The formula extends to items a fake user has not rated (a rating equal to the current
prediction leaves theta stationary), which is what dense rows (SGLD) and greedy item
selection use: :meth:`ImplicitGradient.dense`.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Literal

import numpy as np
import scipy.sparse as sp

from cfpoison.attacks._sparse import sddmm
from cfpoison.attacks.hessian import FactorHessian, solve
from cfpoison.attacks.utility import Utility
from cfpoison.learners.base import Learner

GradientMethod = Literal["exact", "paper"]


@dataclasses.dataclass(frozen=True)
class ImplicitGradient:
    """The adjoint solution z at the learner's solution, and what it yields.

    Attributes:
        fake_user, item: ``U~`` and ``V`` at the solution.
        adjoint_fake_user, adjoint_item: ``z[U~]`` and ``z[V]``.
        utility: ``R`` at the solution.
        solver_iterations, solver_residual: of the solve (0 and 0.0 for ``paper``).
        seconds: wall time of the whole computation.
    """

    fake_user: np.ndarray
    item: np.ndarray
    adjoint_fake_user: np.ndarray
    adjoint_item: np.ndarray
    utility: float
    solver_iterations: int
    solver_residual: float
    seconds: float

    def on_pattern(self, pattern: sp.csr_array) -> np.ndarray:
        """``dR/dM~_ij`` for the stored entries of ``pattern`` (m' x n CSR), in CSR order."""
        return 2.0 * sddmm(
            pattern,
            np.hstack([self.adjoint_fake_user, self.fake_user]),
            np.hstack([self.item, self.adjoint_item]),
        )

    def dense(self) -> np.ndarray:
        """``dR/dM~`` on all ``m' x n`` entries: ``2 (z[U~] V' + U~ z[V]')``."""
        return 2.0 * (self.adjoint_fake_user @ self.item.T + self.fake_user @ self.adjoint_item.T)


def utility_gradient(
    learner: Learner,
    train: sp.csr_array,
    fake: sp.csr_array,
    utility: Utility,
    method: GradientMethod = "exact",
    *,
    solve_tol: float = 1e-6,
    solve_max_iter: int = 200,
) -> ImplicitGradient:
    """dR/dM~ at a learner fitted on ``train`` (normal users) plus ``fake`` (m' x n CSR).

    Pass the same ``train`` object on repeated calls: its transpose is cached per object.
    """
    start = time.perf_counter()
    factors = learner.factors
    hessian = FactorHessian(
        train,
        fake,
        factors.user,
        factors.fake_user,
        factors.item,
        float(learner.lambda_u),
        float(learner.lambda_v),
    )
    value, grad_user, grad_item = utility.gradient(hessian.user, hessian.item)
    rhs = np.concatenate([grad_user.ravel(), np.zeros(hessian.fake_user.size), grad_item.ravel()])
    preconditioner = hessian.block_jacobi()
    if method == "exact":
        result = solve(hessian, rhs, preconditioner, solve_tol, solve_max_iter)
        adjoint, iterations, residual = result.x, result.iterations, result.relative_residual
    elif method == "paper":
        adjoint, iterations, residual = preconditioner(rhs), 0, 0.0
    else:
        raise ValueError(f"unknown gradient method {method!r}")
    _, adj_fake, adj_item = hessian.split(adjoint)
    return ImplicitGradient(
        hessian.fake_user,
        hessian.item,
        adj_fake.copy(),
        adj_item.copy(),
        value,
        iterations,
        residual,
        time.perf_counter() - start,
    )
