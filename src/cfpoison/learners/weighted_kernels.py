"""Numba kernel of the weighted ALS half-step: per-rating weights, per-row regularization.

For every row ``r`` of a compressed structure ``(indptr, indices, data)`` with per-entry
weights ``w >= 0`` and the factor matrix ``Y`` its column indices point into::

    x_r = argmin_x sum_p w_p (d_p - x.y_p)^2 + lam_r |x|^2
        = (sum_p w_p y_p y_p^T + lam_r I)^(-1) sum_p w_p d_p y_p

It is the unweighted row problem of :mod:`cfpoison.learners.kernels` for the rows
``sqrt(w_p) y_p`` and values ``sqrt(w_p) d_p``, and is solved by the same code: Gram
accumulation and the in-place Cholesky solve, or for a row with ``c < 3k/4`` entries
Woodbury's ``c x c`` system (:func:`cfpoison.learners.kernels.dual_solve` with
``S = lam_r I``). The fit term at the solution, ``sum w d^2 - x.b - lam_r |x|^2``
(``A x = b``), is returned per row at no extra pass.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from cfpoison.learners.kernels import dual_solve, ridge_solve


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
        start, end = indptr[r], indptr[r + 1]
        c = end - start
        b = np.zeros(k)
        if 4 * c < 3 * k:
            rows, scaled, d = np.empty((c, k)), np.empty((c, k)), np.empty(c)
            for q in range(c):
                root = math.sqrt(weights[start + q])
                y = Y[indices[start + q]]
                for a in range(k):
                    rows[q, a] = root * y[a]
                    scaled[q, a] = rows[q, a] / lam[r]
                d[q] = root * data[start + q]
            inverse = np.eye(k) / lam[r]
            fit[r] = dual_solve(rows, scaled, d, inverse, b, 0.0, lam[r], out[r])
            continue
        A = np.zeros((k, k))
        wdd = 0.0
        for p in range(start, end):
            y = Y[indices[p]]
            w = weights[p]
            wd = w * data[p]
            wdd += wd * data[p]
            for a in range(k):
                wya = w * y[a]
                b[a] += wd * y[a]
                row = A[a]
                for e in range(a + 1):
                    row[e] += wya * y[e]
        for a in range(k):
            A[a, a] += lam[r]
        fit[r] = ridge_solve(A, b, wdd, lam[r], out[r])
    return fit
