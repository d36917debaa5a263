"""Gradient of the attacker's utility with respect to the fake ratings (paper Eq. 11).

At a stationary point ``theta = (U, U~, V)`` of L (see :mod:`cfpoison.learners.hessian`), the
implicit function theorem and the adjoint trick give, for every fake entry (i, j) at once::

    z = H^{-1} g,   g = dR/dtheta = (dR/dU, 0, dR/dV)
    dR/dM~_ij = 2 (v_j . z[u~_i] + u~_i . z[v_j])

because the mixed partial of grad L with respect to ``M~_ij`` is ``-2 v_j`` in the block of
``u~_i`` and ``-2 u~_i`` in the block of ``v_j`` (``docs/math.md`` section 3).

* ``exact``: z from block-Jacobi-preconditioned MINRES on Hessian-vector products
  (:func:`cfpoison.learners.hessian.solve`).
* ``paper``: z from H's diagonal blocks alone (Eq. 12: other factors held fixed), which gives
  ``dR/dM~_ij = u~_i' (lam_V I + Sigma_V^(j))^{-1} dR/dv_j``.

A weighted objective (:class:`cfpoison.learners.hessian.FactorHessian` with rating weights, a
Huber threshold or per-row regularization: the reweighting defenses) has the mixed partial
``-2 h_ij`` times ``v_j`` and ``u~_i``, ``h = c rho''(E) / 2`` its curvature at the rating, so
``dR/dM~_ij = 2 h_ij (v_j . z[u~_i] + u~_i . z[v_j])`` (``docs/math.md`` section 3.6):
:func:`hessian_gradient` on such a Hessian.

Nuclear norm uses the same code at its balanced factors ``U = A S^(1/2)``, ``V = B S^(1/2)``,
a stationary point of L with ``lam_U = lam_V = lam`` (``docs/math.md`` section 4).

The formula extends to items a fake user has not rated (a rating equal to the current
prediction leaves theta stationary), which is what dense rows (SGLD) and greedy item
selection use: :meth:`ImplicitGradient.dense`.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

from cfpoison.attacks.utility import Utility
from cfpoison.learners._sparse import sddmm
from cfpoison.learners.base import Learner
from cfpoison.learners.hessian import FactorHessian, solve

GradientMethod = Literal["exact", "paper"]


@dataclasses.dataclass(frozen=True)
class ImplicitGradient:
    """The adjoint solution z at the learner's solution, and what it yields.

    The gradient is exact only where the fit is stationary and the solve converged; both are
    carried here so that every caller can check and report them (:meth:`diagnostics`).

    Attributes:
        fake_user, item: ``U~`` and ``V`` at the solution.
        adjoint_fake_user, adjoint_item: ``z[U~]`` and ``z[V]``.
        adjoint: the whole flat z (the warm start of the next solve).
        utility: ``R`` at the solution.
        kkt_residual: the fit's relative KKT residual where the gradient was taken.
        fit_converged: whether the fit reached its own KKT tolerance.
        solver_iterations, solver_residual: of the solve; the residual is the true
            ``|g - H z| / |g|`` (0 and 0.0 for ``paper``, which solves nothing).
        solver_converged: whether the solve reached its tolerance within its cap.
        seconds: wall time of the whole computation.
        fake_curvature: a weighted objective's ``h`` on the fake ratings (CSR order), which
            scales their gradient; None: 1 (the mixed partial of the unweighted L).
    """

    fake_user: np.ndarray
    item: np.ndarray
    adjoint_fake_user: np.ndarray
    adjoint_item: np.ndarray
    adjoint: np.ndarray
    utility: float
    kkt_residual: float
    fit_converged: bool
    solver_iterations: int
    solver_residual: float
    solver_converged: bool
    seconds: float
    fake_curvature: np.ndarray | None = None

    @property
    def trustworthy(self) -> bool:
        """Whether the fit was stationary and the solve converged (both to tolerance)."""
        return self.fit_converged and self.solver_converged

    def diagnostics(self) -> dict[str, Any]:
        """The JSON-able record of where and how well the gradient was computed."""
        return {
            "kkt_residual": self.kkt_residual,
            "fit_converged": self.fit_converged,
            "solve_iterations": self.solver_iterations,
            "solve_residual": self.solver_residual,
            "solve_converged": self.solver_converged,
            "gradient_trustworthy": self.trustworthy,
        }

    def on_pattern(self, pattern: sp.csr_array) -> np.ndarray:
        """``dR/dM~_ij`` for the stored entries of ``pattern`` (m' x n CSR), in CSR order (a
        weighted objective's: on the pattern it was computed on)."""
        values = 2.0 * sddmm(
            pattern,
            np.hstack([self.adjoint_fake_user, self.fake_user]),
            np.hstack([self.item, self.adjoint_item]),
        )
        if self.fake_curvature is None:
            return values
        if len(self.fake_curvature) != pattern.nnz:
            raise ValueError("weighted gradient: asked on another pattern than its own")
        return self.fake_curvature * values

    def dense(self) -> np.ndarray:
        """``dR/dM~`` on all ``m' x n`` entries: ``2 (z[U~] V' + U~ z[V]')`` (unweighted only:
        a weighted objective gives no weight to a rating it does not hold)."""
        if self.fake_curvature is not None:
            raise ValueError("weighted gradient: defined on the fake pattern only")
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
    warm_start: np.ndarray | None = None,
) -> ImplicitGradient:
    """dR/dM~ at a learner fitted on ``train`` (normal users) plus ``fake`` (m' x n CSR).

    ``solve_tol`` bounds the true relative residual of the adjoint solve; ``warm_start`` is
    the adjoint of an earlier, nearby solve (``ImplicitGradient.adjoint``; ignored when its
    size differs). Pass the same ``train`` object on repeated calls: its transpose is
    cached per object.
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
    return hessian_gradient(
        hessian,
        utility,
        method,
        kkt_residual=float(learner.kkt_residual()),
        fit_converged=bool(learner.converged),
        solve_tol=solve_tol,
        solve_max_iter=solve_max_iter,
        warm_start=warm_start,
        start=start,
    )


def hessian_gradient(
    hessian: FactorHessian,
    utility: Utility,
    method: GradientMethod = "exact",
    *,
    kkt_residual: float,
    fit_converged: bool,
    solve_tol: float = 1e-6,
    solve_max_iter: int = 200,
    warm_start: np.ndarray | None = None,
    start: float | None = None,
) -> ImplicitGradient:
    """dR/dM~ at the stationary point ``hessian`` was built at (of its objective, weighted or
    not); ``kkt_residual`` and ``fit_converged`` say how stationary the fit is, ``start``
    (``time.perf_counter()``) when the computation began (default: now); the rest as in
    :func:`utility_gradient`."""
    start = time.perf_counter() if start is None else start
    value, grad_user, grad_item = utility.gradient(hessian.user, hessian.item)
    rhs = np.concatenate([grad_user.ravel(), np.zeros(hessian.fake_user.size), grad_item.ravel()])
    preconditioner = hessian.block_jacobi()
    if method == "exact":
        x0 = warm_start if warm_start is not None and warm_start.shape == rhs.shape else None
        result = solve(hessian, rhs, preconditioner, solve_tol, solve_max_iter, x0=x0)
        adjoint, iterations = result.x, result.iterations
        residual, converged = result.relative_residual, result.converged
    elif method == "paper":
        adjoint, iterations, residual, converged = preconditioner(rhs), 0, 0.0, True
    else:
        raise ValueError(f"unknown gradient method {method!r}")
    _, adj_fake, adj_item = hessian.split(adjoint)
    return ImplicitGradient(
        fake_user=hessian.fake_user,
        item=hessian.item,
        adjoint_fake_user=adj_fake.copy(),
        adjoint_item=adj_item.copy(),
        adjoint=adjoint,
        utility=value,
        kkt_residual=kkt_residual,
        fit_converged=fit_converged,
        solver_iterations=iterations,
        solver_residual=residual,
        solver_converged=converged,
        seconds=time.perf_counter() - start,
        fake_curvature=hessian.fake_curvature,
    )
