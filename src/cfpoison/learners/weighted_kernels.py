"""Numba kernel of the weighted ALS half-step: per-rating weights, per-row regularization.

For every row ``r`` of a compressed structure ``(indptr, indices, data)`` with per-entry
weights ``w`` and the factor matrix ``Y`` its column indices point into::

    x_r = argmin_x sum_p w_p (d_p - x.y_p)^2 + lam_r |x|^2
        = (sum_p w_p y_p y_p^T + lam_r I)^(-1) sum_p w_p d_p y_p

(Gram accumulation and a k x k Cholesky solve). The fit term at the solution is
``sum w d^2 - x.b - lam_r |x|^2`` (with ``A x = b``), returned per row at no extra pass.
The unweighted kernels of :mod:`cfpoison.learners.kernels` are the special case ``w = 1``,
``lam_r = lam``.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True, parallel=True, fastmath=False)
def weighted_solve_rows(
    indptr: np.ndarray,
    indices: np.ndarray,
    data: np.ndarray,
    weights: np.ndarray,
    Y: np.ndarray,
    lam: np.ndarray,
    out: np.ndarray,
) -> np.ndarray:
    """out[r] = the weighted ridge solution of row r (module docstring); returns fit terms."""
    n_rows, k = out.shape
    fit = np.empty(n_rows)
    for r in prange(n_rows):
        A = np.zeros((k, k))
        b = np.zeros(k)
        wdd = 0.0
        for p in range(indptr[r], indptr[r + 1]):
            y = Y[indices[p]]
            w = weights[p]
            wd = w * data[p]
            wdd += wd * data[p]
            for a in range(k):
                wya = w * y[a]
                b[a] += wd * y[a]
                for c in range(a + 1):
                    A[a, c] += wya * y[c]
        for a in range(k):
            A[a, a] += lam[r]
        L = np.linalg.cholesky(_symmetric(A))
        x = np.linalg.solve(L.T, np.linalg.solve(L, b))
        fit[r] = max(wdd - np.dot(x, b) - lam[r] * np.dot(x, x), 0.0)
        out[r] = x
    return fit


@njit(cache=True, inline="always")
def _symmetric(A: np.ndarray) -> np.ndarray:
    """Fill the upper triangle of ``A`` from its lower triangle (in place)."""
    k = A.shape[0]
    for a in range(k):
        for c in range(a + 1, k):
            A[a, c] = A[c, a]
    return A
