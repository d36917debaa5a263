"""Gradient of the attacker's utility with respect to the fake rows (paper Eq. 11).

One path for every differentiable learner: at a stationary point ``theta`` of its objective,
the learner's :class:`cfpoison.learners.adjoint.AdjointSystem` gives ``g = dR/dtheta``, solves
``H z = g`` and turns z into ``dR/dM~`` (``docs/math.md`` section 3)::

    z = H^{-1} g,   dR/dM~_ij = -(d grad_theta L / dM~_ij) . z

For the squared loss of ALS and nuclear norm (at its balanced factors) the mixed partial is
``-2 v_j`` in the block of ``u~_i`` and ``-2 u~_i`` in the block of ``v_j``, so
``dR/dM~_ij = 2 (v_j . z[u~_i] + u~_i . z[v_j])``; weighted objectives (the reweighting
defenses) scale it by their curvature at the rating (section 3.6); biased MF adds the
global mean's share; implicit-feedback learners differentiate their interaction weights.

* ``exact``: z from the system's solve, stopped on the true residual;
* ``paper``: z from H's diagonal blocks alone (Eq. 12: other factors held fixed).

Off the fake pattern the derivative is taken at the system's ``unstored_values`` (a rating
equal to the prediction leaves the fit stationary), which is what dense rows (SGLD) and
greedy item selection use: :meth:`ImplicitGradient.dense`.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

from cfpoison.attacks.utility import Utility
from cfpoison.learners.adjoint import AdjointSystem, Differentiable

GradientMethod = Literal["exact", "paper"]


@dataclasses.dataclass(frozen=True)
class ImplicitGradient:
    """The adjoint solution z at the learner's solution, and what it yields.

    The gradient is exact only where the fit is stationary and the solve converged; both are
    carried here so that every caller can check and report them (:meth:`diagnostics`).

    Attributes:
        system: the learner's adjoint system at the fit.
        adjoint: the flat z (the warm start of the next solve).
        utility: ``R`` at the solution.
        kkt_residual: the fit's relative KKT residual where the gradient was taken.
        fit_converged: whether the fit reached its own KKT tolerance.
        solver_iterations, solver_residual: of the solve; the residual is the true
            ``|g - H z| / |g|`` (0 and 0.0 for ``paper``, which solves nothing).
        solver_converged: whether the solve reached its tolerance within its cap.
        seconds: wall time of the whole computation.
    """

    system: AdjointSystem
    adjoint: np.ndarray
    utility: float
    kkt_residual: float
    fit_converged: bool
    solver_iterations: int
    solver_residual: float
    solver_converged: bool
    seconds: float

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
        """``dR/dM~_ij`` for the stored entries of ``pattern`` (m' x n CSR), in CSR order."""
        return self.system.fake_gradient(self.adjoint, pattern)

    def dense(self) -> np.ndarray:
        """``dR/dM~`` on all ``m' x n`` entries (module docstring)."""
        return self.system.fake_gradient_dense(self.adjoint)


def utility_gradient(
    learner: Differentiable,
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
    return system_gradient(
        learner.adjoint_system(train, fake),
        utility,
        method,
        kkt_residual=float(learner.kkt_residual()),
        fit_converged=bool(learner.converged),
        solve_tol=solve_tol,
        solve_max_iter=solve_max_iter,
        warm_start=warm_start,
        start=start,
    )


def system_gradient(
    system: AdjointSystem,
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
    """dR/dM~ at the stationary point ``system`` was built at; ``kkt_residual`` and
    ``fit_converged`` say how stationary the fit is, ``start`` (``time.perf_counter()``)
    when the computation began (default: now); the rest as in :func:`utility_gradient`."""
    start = time.perf_counter() if start is None else start
    value, grad_user, grad_item = utility.gradient(system.user, system.item)
    rhs = system.rhs(grad_user, grad_item)
    if method == "exact":
        x0 = warm_start if warm_start is not None and warm_start.shape == rhs.shape else None
        result = system.solve(rhs, solve_tol, solve_max_iter, x0)
        adjoint, iterations = result.x, result.iterations
        residual, converged = result.relative_residual, result.converged
    elif method == "paper":
        adjoint, iterations, residual, converged = system.precondition(rhs), 0, 0.0, True
    else:
        raise ValueError(f"unknown gradient method {method!r}")
    return ImplicitGradient(
        system=system,
        adjoint=adjoint,
        utility=value,
        kkt_residual=kkt_residual,
        fit_converged=fit_converged,
        solver_iterations=iterations,
        solver_residual=residual,
        solver_converged=converged,
        seconds=time.perf_counter() - start,
    )
