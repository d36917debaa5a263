"""What a differentiable learner gives the attacks: its Hessian at the fit, as one system.

Every learner whose fit is a stationary point ``theta`` of a smooth objective
``L(theta; M~)`` (``M~``: the fake users' rows, the attacker's variables) exposes an
:class:`AdjointSystem` through ``learner.adjoint_system(train, fake)``. For a utility
``R(U, V)`` of the normal users' and the items' factors, the implicit function theorem and
the adjoint trick give, for every fake entry at once (``docs/math.md`` section 3)::

    g = dR/dtheta,   z = H^{-1} g,   dR/dM~_ij = -(d grad_theta L / dM~_ij) . z  (+ direct terms)

so a system provides ``g`` from ``(dR/dU, dR/dV)`` (:meth:`AdjointSystem.rhs`), solves
``H z = g`` to a true residual (:meth:`AdjointSystem.solve`), applies H's block diagonal
inverse (:meth:`AdjointSystem.precondition`: the paper's Eq. 12 when used alone), and turns
z into ``dR/dM~`` on a pattern of fake entries (:meth:`AdjointSystem.fake_gradient`) or on
all ``m' x n`` entries (:meth:`AdjointSystem.fake_gradient_dense`, at
:meth:`AdjointSystem.unstored_values` off the pattern). One gradient path,
:func:`cfpoison.attacks.gradient.utility_gradient`, works on any of them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np
import scipy.sparse as sp

from cfpoison.learners.hessian import Rotations, SolveResult, minres

__all__ = ["AdjointSystem", "Differentiable", "SolveResult", "minres_solve"]


@runtime_checkable
class AdjointSystem(Protocol):
    """H of a learner's objective at its fit, and the mixed partials ``d grad L / dM~``.

    ``user`` and ``item`` are the factors the utility sees (the normal users' and the items';
    with biases riding along as columns where the learner has them), so that
    ``utility.gradient(system.user, system.item)`` gives the ``(dR/dU, dR/dV)`` that
    :meth:`rhs` takes.
    """

    @property
    def user(self) -> np.ndarray: ...

    @property
    def item(self) -> np.ndarray: ...

    def rhs(self, grad_user: np.ndarray, grad_item: np.ndarray) -> np.ndarray:
        """``g = dR/dtheta`` as a flat vector (zero in the fake users' block)."""
        ...

    def solve(
        self, rhs: np.ndarray, tol: float, max_iter: int, x0: np.ndarray | None = None
    ) -> SolveResult:
        """``H z = rhs`` to a true relative residual ``|rhs - H z| / |rhs| <= tol`` (a solve
        that gauges the rotations leaves out the gauge's term: ``docs/math.md`` 3.3)."""
        ...

    def precondition(self, rhs: np.ndarray) -> np.ndarray:
        """H's block-diagonal inverse applied to ``rhs`` (Eq. 12 when used as the solve)."""
        ...

    def fake_gradient(self, adjoint: np.ndarray, pattern: sp.csr_array) -> np.ndarray:
        """``dR/dM~_ij`` for the stored entries of ``pattern`` (``m' x n``), CSR order."""
        ...

    def fake_gradient_dense(self, adjoint: np.ndarray) -> np.ndarray:
        """``dR/dM~`` on every ``m' x n`` entry (raises where the objective defines it on
        the fitted pattern only)."""
        ...

    def unstored_values(self) -> np.ndarray:
        """``m' x n``: the value at which an entry the fake rows do not store leaves the fit
        unchanged (the prediction for a rating objective; 0 for interaction weights), the
        point :meth:`fake_gradient_dense` differentiates at off the pattern."""
        ...


@runtime_checkable
class Differentiable(Protocol):
    """A fitted learner whose fit can be differentiated with respect to the fake rows."""

    @property
    def converged(self) -> bool: ...

    def kkt_residual(self) -> float: ...

    def adjoint_system(self, train: sp.csr_array, fake: sp.csr_array) -> AdjointSystem:
        """The system at the current fit on ``train`` (normal users) plus ``fake``."""
        ...


def minres_solve(
    matvec: Callable[[np.ndarray], np.ndarray],
    precondition: Callable[[np.ndarray], np.ndarray],
    rhs: np.ndarray,
    tol: float,
    max_iter: int,
    x0: np.ndarray | None = None,
    rotations: Rotations | None = None,
) -> SolveResult:
    """Preconditioned MINRES on the whole system (:func:`cfpoison.learners.hessian.minres`),
    stopped on the true residual, re-measured and resumed until ``tol`` or ``max_iter``: the
    solve of a system with no cheaper structure to exploit. With ``rotations`` (of every
    row of the flat vector) their gauge term is added to H and the residual is the gauged
    system's, as in :func:`cfpoison.learners.hessian.solve`."""
    prec = precondition
    norm_b = float(np.linalg.norm(rhs))
    if norm_b == 0.0:
        return SolveResult(np.zeros_like(rhs), 0, 0.0, True)

    def apply(x: np.ndarray) -> np.ndarray:
        return matvec(x) if rotations is None else matvec(x) + rotations.term(x)

    x = np.zeros_like(rhs) if x0 is None or x0.shape != rhs.shape else np.asarray(x0, float)
    iterations = 0
    residual = float(np.linalg.norm(rhs - apply(x))) / norm_b
    while residual > tol and iterations < max_iter:
        x, done, _ = minres(apply, prec, rhs, x, tol * norm_b, max_iter - iterations)
        iterations += max(done, 1)
        residual = float(np.linalg.norm(rhs - apply(x))) / norm_b
    return SolveResult(x, iterations, residual, residual <= tol)
