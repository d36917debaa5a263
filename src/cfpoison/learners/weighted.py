"""Weighted alternating minimization: the fitting engine of the reweighting defenses.

On one combined ``N x n`` matrix ``X`` (real users, then fake users; shifted scale; stored
entries = Omega) with per-rating weights ``w >= 0`` and per-row regularization::

    L_w(U, V) = sum_Omega w_ij (X_ij - u_i.v_j)^2 + sum_i a_i |u_i|^2 + sum_j b_j |v_j|^2

One sweep solves every user row exactly with ``V`` fixed, then every item row with ``U``
fixed (:func:`cfpoison.learners.weighted_kernels.weighted_solve_rows`). ``w = 1``, ``a = lam_U``,
``b = lam_V`` is the objective ``L`` of :mod:`cfpoison.learners.base`. Stopping: relative
objective change of a sweep ``<= tol`` or relative KKT residual ``<= kkt_tol`` (the learner's
two tolerances), at most ``max_sweeps`` sweeps; whether a tolerance was reached is returned,
never hidden.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import scipy.sparse as sp

from cfpoison.errors import DataError
from cfpoison.learners.base import Factors
from cfpoison.learners.factored import sweep_until
from cfpoison.learners.kernels import csr_dot, csr_matmul
from cfpoison.learners.weighted_kernels import weighted_solve_rows


@dataclasses.dataclass(frozen=True)
class WeightedProblem:
    """``X`` in both orientations, the weights in both orders and the regularization."""

    rows: tuple[np.ndarray, np.ndarray, np.ndarray]
    cols: tuple[np.ndarray, np.ndarray, np.ndarray]
    to_cols: np.ndarray  # entry p of the CSC order is entry to_cols[p] of the CSR order
    lam_users: np.ndarray
    lam_items: np.ndarray

    @classmethod
    def build(
        cls, matrix: sp.csr_array, lam_users: np.ndarray, lam_items: np.ndarray
    ) -> WeightedProblem:
        matrix = sp.csr_array(matrix, dtype=np.float64)
        matrix.sort_indices()
        m, n = matrix.shape
        lam_users = np.ascontiguousarray(lam_users, dtype=np.float64)
        lam_items = np.ascontiguousarray(lam_items, dtype=np.float64)
        if lam_users.shape != (m,) or lam_items.shape != (n,):
            raise DataError(f"regularization of shapes {lam_users.shape}, {lam_items.shape}")
        if not (np.all(lam_users > 0) and np.all(lam_items > 0)):
            raise DataError("weighted ALS: every row's regularization must be > 0")
        # the position + 1 of each entry, carried to CSC order (+1: no stored zero is lost)
        position = sp.csr_array(
            (np.arange(1, matrix.nnz + 1, dtype=np.float64), matrix.indices, matrix.indptr),
            shape=matrix.shape,
        ).tocsc()
        position.sort_indices()
        to_cols = position.data.astype(np.int64) - 1
        return cls(
            rows=(
                matrix.indptr.astype(np.int64),
                matrix.indices.astype(np.int32),
                np.ascontiguousarray(matrix.data),
            ),
            cols=(
                position.indptr.astype(np.int64),
                position.indices.astype(np.int32),
                np.ascontiguousarray(matrix.data[to_cols]),
            ),
            to_cols=to_cols,
            lam_users=lam_users,
            lam_items=lam_items,
        )

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.rows[0]) - 1, len(self.cols[0]) - 1

    def solve_users(self, weights: np.ndarray, item: np.ndarray, user: np.ndarray) -> float:
        """``U`` exactly minimises ``L_w`` for fixed ``V`` (in place); returns the data term."""
        return float(np.sum(weighted_solve_rows(*self.rows, weights, item, self.lam_users, user)))

    def solve_items(self, weights: np.ndarray, user: np.ndarray, item: np.ndarray) -> float:
        """``V`` exactly minimises ``L_w`` for fixed ``U`` (in place); returns the data term."""
        w = np.ascontiguousarray(weights[self.to_cols])
        return float(np.sum(weighted_solve_rows(*self.cols, w, user, self.lam_items, item)))

    def residuals(self, user: np.ndarray, item: np.ndarray) -> np.ndarray:
        """``X_ij - u_i.v_j`` at every stored entry, in CSR order."""
        indptr, indices, data = self.rows
        return data - csr_dot(indptr, indices, user, item)

    def penalty(self, user: np.ndarray, item: np.ndarray) -> float:
        return float(self.lam_users @ np.sum(user**2, 1) + self.lam_items @ np.sum(item**2, 1))

    def kkt_residual(self, weights: np.ndarray, user: np.ndarray, item: np.ndarray) -> float:
        """``||grad L_w||_F / ||grad penalty||_F`` (0 at a stationary point, scale-free)."""
        weighted = weights * self.residuals(user, item)
        g_user = self.lam_users[:, None] * user - csr_matmul(*self.rows[:2], weighted, item)
        g_item = self.lam_items[:, None] * item - csr_matmul(
            *self.cols[:2], weighted[self.to_cols], user
        )
        grad = math.sqrt(float(np.sum(g_user**2) + np.sum(g_item**2)))
        reg = math.sqrt(
            float(np.sum((self.lam_users[:, None] * user) ** 2))
            + float(np.sum((self.lam_items[:, None] * item) ** 2))
        )
        return grad / reg if reg > 0 else math.inf


@dataclasses.dataclass
class WeightedFit:
    """Factors of the whole combined matrix and how the sweeps ended."""

    user: np.ndarray
    item: np.ndarray
    objective: float
    sweeps: int
    converged: bool


class WeightedHalfSteps:
    """The half-steps of ``L_w`` with fixed ``weights``, for
    :func:`cfpoison.learners.factored.sweep_until` (no fake block: the combined matrix)."""

    def __init__(self, problem: WeightedProblem, weights: np.ndarray):
        self.problem = problem
        self.weights = weights

    def update_users(self, f: Factors) -> None:
        self.problem.solve_users(self.weights, f.item, f.user)

    def update_items(self, f: Factors) -> float:
        return self.problem.solve_items(self.weights, f.user, f.item)

    def penalty(self, f: Factors) -> float:
        return self.problem.penalty(f.user, f.item)

    def kkt_after_items(self, f: Factors) -> float:
        return self.problem.kkt_residual(self.weights, f.user, f.item)


def weighted_als(
    problem: WeightedProblem,
    weights: np.ndarray,
    item: np.ndarray,
    max_sweeps: int,
    tol: float,
    kkt_tol: float = 0.0,
    memory: int = 0,
) -> WeightedFit:
    """Sweep ``L_w`` from the item factors ``item`` (copied) until the relative objective
    change is ``<= tol`` or the relative KKT residual ``<= kkt_tol`` (either 0: off, as for the
    learners), at most ``max_sweeps`` sweeps; ``memory > 0``: Anderson-accelerated as ALS
    (:func:`cfpoison.learners.factored.sweep_until`)."""
    m, _ = problem.shape
    weights = np.ascontiguousarray(weights, dtype=np.float64)
    if not np.all(weights >= 0):  # the row solve takes sqrt(w); NaN fails too
        raise DataError("weighted ALS: every rating weight must be >= 0")
    item = np.array(item, dtype=np.float64, order="C")
    f = Factors(np.zeros((m, item.shape[1])), item, np.zeros((0, item.shape[1])))
    trace = sweep_until(
        WeightedHalfSteps(problem, weights), f, max_sweeps, tol, kkt_tol, memory=memory
    )
    return WeightedFit(f.user, f.item, trace.history[-1], trace.sweeps, trace.converged)


def fold_in(
    matrix: sp.csr_array, item: np.ndarray, lam_u: float, rows: np.ndarray | None = None
) -> np.ndarray:
    """User factors of ``rows`` of ``matrix`` (all rows by default) against fixed items:
    ``u_i = (V_i^T V_i + lam_u I)^(-1) V_i^T m_i``, ALS's user half-step."""
    sub = sp.csr_array(matrix if rows is None else matrix[np.asarray(rows, dtype=np.int64)])
    sub.sort_indices()
    out = np.zeros((sub.shape[0], item.shape[1]))
    weighted_solve_rows(
        sub.indptr.astype(np.int64),
        sub.indices.astype(np.int32),
        np.ascontiguousarray(sub.data, dtype=np.float64),
        np.ones(sub.nnz),
        np.ascontiguousarray(item, dtype=np.float64),
        np.full(sub.shape[0], float(lam_u)),
        out,
    )
    return out
