"""Plain NumPy versions of :mod:`cfpoison.learners.kernels`, for cross-checking.

Same names, signatures and conventions as the numba kernels, written the obvious way (a
Python loop over rows, ``np.linalg.solve`` instead of a hand-written Cholesky), so that the
tests can check the kernels against an independent implementation to 1e-10. Select it for
a whole fit with ``ALSConfig(backend="numpy")``; it is slow on anything but tiny problems.
"""

from __future__ import annotations

import numpy as np

from cfpoison.learners.kernels import Source, empty_source

__all__ = [
    "Source",
    "csr_dot",
    "csr_matmul",
    "dot_rows",
    "empty_source",
    "residual_rows",
    "set_threads",
    "solve_rows",
    "solve_rows_shared",
]


def set_threads(threads: int) -> None:
    """The NumPy path has no threads of its own (BLAS decides)."""


def _gather(
    indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, Y: np.ndarray, r: int
) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = indptr[r], indptr[r + 1]
    return Y[indices[lo:hi]], data[lo:hi]


def _stacked(
    p1: np.ndarray,
    i1: np.ndarray,
    d1: np.ndarray,
    Y1: np.ndarray,
    p2: np.ndarray,
    i2: np.ndarray,
    d2: np.ndarray,
    Y2: np.ndarray,
    r: int,
) -> tuple[np.ndarray, np.ndarray]:
    G1, v1 = _gather(p1, i1, d1, Y1, r)
    G2, v2 = _gather(p2, i2, d2, Y2, r)
    return np.vstack([G1, G2]), np.concatenate([v1, v2])


def solve_rows(
    p1: np.ndarray,
    i1: np.ndarray,
    d1: np.ndarray,
    Y1: np.ndarray,
    p2: np.ndarray,
    i2: np.ndarray,
    d2: np.ndarray,
    Y2: np.ndarray,
    lam: float,
    out: np.ndarray,
) -> np.ndarray:
    """out[r] = argmin_x sum_sources sum_p (d_p - x.y_p)^2 + lam |x|^2; returns the fit
    term ``sum_p (d_p - x.y_p)^2`` of each row at its solution."""
    k = out.shape[1]
    fit = np.zeros(out.shape[0])
    for r in range(out.shape[0]):
        G, d = _stacked(p1, i1, d1, Y1, p2, i2, d2, Y2, r)
        out[r] = np.linalg.solve(G.T @ G + lam * np.eye(k), G.T @ d)
        fit[r] = np.sum((d - G @ out[r]) ** 2)
    return fit


def solve_rows_shared(
    p: np.ndarray,
    i: np.ndarray,
    d: np.ndarray,
    Y: np.ndarray,
    gram: np.ndarray,
    rhs: np.ndarray,
    dd: np.ndarray,
    lam: float,
    out: np.ndarray,
) -> np.ndarray:
    """:func:`solve_rows` with one sparse source plus a shared dense block (``Z'Z``, ``Z'D_r``,
    ``D_r.D_r``); returns each row's fit term, sparse part plus dense part."""
    k = out.shape[1]
    fit = np.zeros(out.shape[0])
    for r in range(out.shape[0]):
        G, v = _gather(p, i, d, Y, r)
        out[r] = np.linalg.solve(G.T @ G + gram + lam * np.eye(k), G.T @ v + rhs[r])
        x = out[r]
        fit[r] = np.sum((v - G @ x) ** 2) + dd[r] - 2 * x @ rhs[r] + x @ gram @ x
    return fit


def ridge_blocks(
    p1: np.ndarray,
    i1: np.ndarray,
    d1: np.ndarray,
    Y1: np.ndarray,
    p2: np.ndarray,
    i2: np.ndarray,
    d2: np.ndarray,
    Y2: np.ndarray,
    lam: float,
    scale: float,
    invert: bool,
) -> np.ndarray:
    """out[r] = scale (sum_sources sum_p y_p y_p^T + lam I) for every row r, or its inverse."""
    k = Y1.shape[1]
    out = np.empty((len(p1) - 1, k, k))
    for r in range(len(p1) - 1):
        G, _ = _stacked(p1, i1, d1, Y1, p2, i2, d2, Y2, r)
        block = scale * (G.T @ G + lam * np.eye(k))
        out[r] = np.linalg.inv(block) if invert else block
    return out


def residual_rows(
    p1: np.ndarray,
    i1: np.ndarray,
    d1: np.ndarray,
    Y1: np.ndarray,
    p2: np.ndarray,
    i2: np.ndarray,
    d2: np.ndarray,
    Y2: np.ndarray,
    X: np.ndarray,
    grad: np.ndarray,
) -> np.ndarray:
    """Per row r: grad[r] = sum (d - x_r.y) y and the return value[r] = sum (d - x_r.y)^2."""
    sq = np.zeros(X.shape[0])
    for r in range(X.shape[0]):
        G, d = _stacked(p1, i1, d1, Y1, p2, i2, d2, Y2, r)
        e = d - G @ X[r]
        sq[r] = e @ e
        grad[r] = G.T @ e
    return sq


def csr_dot(indptr: np.ndarray, indices: np.ndarray, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """out[p] = X[r] . Y[indices[p]] for every stored entry p of row r."""
    rows = np.repeat(np.arange(X.shape[0]), np.diff(indptr))
    return np.einsum("pk,pk->p", X[rows], Y[indices])


def dot_rows(A: np.ndarray, B: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """out[t] = A[rows[t]] . B[cols[t]]."""
    return np.einsum("tk,tk->t", A[rows], B[cols])


def csr_matmul(
    indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, Y: np.ndarray
) -> np.ndarray:
    """out = S @ Y for the sparse S = (indptr, indices, data)."""
    out = np.zeros((len(indptr) - 1, Y.shape[1]))
    for r in range(out.shape[0]):
        G, d = _gather(indptr, indices, data, Y, r)
        out[r] = d @ G
    return out
