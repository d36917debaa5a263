"""Numba kernels of WRMF (implicit ALS, :mod:`cfpoison.learners.wrmf`), parallel over rows.

A *source* is ``(indptr, indices, a, t, Y)``: a compressed structure whose rows are the rows
being solved for (CSR: users; CSC: items), per stored entry the extra confidence
``a = c - 1 >= 0`` and the target ``t = c p``, and the factors ``Y`` its column indices point
into. With ``S = Y_all'Y_all + lam I`` (the Gram of every row of the other side plus the
ridge: the unobserved entries' share, shared by all rows), row r's exact minimiser is

    x_r = (S + sum_p a_p y_p y_p')^-1 sum_p t_p y_p

(Hu, Koren and Volinsky's Gram trick: ``O(c_r k^2 + k^3)`` for a row of ``c_r`` entries).
The item side has two sources (the real users' CSC with ``Y = U``, the fake users' CSC with
``Y = U~``); a missing one is :func:`empty_source`. The Hessian-vector products' sparse parts
are :func:`cfpoison.learners._sparse.hessian_rows` (residual ``t - a s``, curvature ``a``).
All kernels use ``fastmath=False``.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from cfpoison.learners.kernels import cholesky_inverse, cholesky_solve, dual_solve

Source = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def empty_source(n_rows: int, k: int) -> Source:
    """A source with ``n_rows`` empty rows."""
    none = np.zeros(0, dtype=np.float64)
    return (
        np.zeros(n_rows + 1, dtype=np.int64),
        np.zeros(0, dtype=np.int32),
        none,
        none,
        np.zeros((0, k), dtype=np.float64),
    )


@njit(cache=True, inline="always")
def _accumulate(
    indptr: np.ndarray,
    indices: np.ndarray,
    a: np.ndarray,
    t: np.ndarray,
    Y: np.ndarray,
    r: int,
    A: np.ndarray,
    b: np.ndarray,
) -> None:
    """``A += sum a y y'`` (lower triangle, rows padded to a multiple of 4) and
    ``b += sum t y`` over row ``r`` of one source, four entries at a time (SIMD inner loops
    over contiguous memory, one load/store of ``A`` per four rank-one updates)."""
    k = Y.shape[1]
    p, end = indptr[r], indptr[r + 1]
    while p + 4 <= end:
        y0 = Y[indices[p]]
        y1 = Y[indices[p + 1]]
        y2 = Y[indices[p + 2]]
        y3 = Y[indices[p + 3]]
        a0, a1, a2, a3 = a[p], a[p + 1], a[p + 2], a[p + 3]
        t0, t1, t2, t3 = t[p], t[p + 1], t[p + 2], t[p + 3]
        for i in range(k):
            b[i] += t0 * y0[i] + t1 * y1[i] + t2 * y2[i] + t3 * y3[i]
            w0, w1, w2, w3 = a0 * y0[i], a1 * y1[i], a2 * y2[i], a3 * y3[i]
            row = A[i]
            for c in range(min(k, (i // 4 + 1) * 4)):
                row[c] += w0 * y0[c] + w1 * y1[c] + w2 * y2[c] + w3 * y3[c]
        p += 4
    while p < end:
        y = Y[indices[p]]
        ap, tp = a[p], t[p]
        for i in range(k):
            b[i] += tp * y[i]
            wi = ap * y[i]
            row = A[i]
            for c in range(i + 1):
                row[c] += wi * y[c]
        p += 1


@njit(cache=True, inline="always")
def _gather(
    indptr: np.ndarray,
    indices: np.ndarray,
    a: np.ndarray,
    t: np.ndarray,
    Y: np.ndarray,
    YS: np.ndarray,
    r: int,
    rows: np.ndarray,
    weighted: np.ndarray,
    b: np.ndarray,
    start: int,
) -> int:
    """Row ``r``'s ``sqrt(a) y`` and (unless ``weighted`` has no rows) ``sqrt(a) y S^-1`` to
    ``rows`` and ``weighted`` from position ``start``, ``b += sum t y``; returns the next free
    position."""
    c = start
    k = Y.shape[1]
    both = weighted.shape[0] > 0
    for p in range(indptr[r], indptr[r + 1]):
        y = Y[indices[p]]
        root, tp = np.sqrt(a[p]), t[p]
        for i in range(k):
            rows[c, i] = root * y[i]
            b[i] += tp * y[i]
        if both:
            ys = YS[indices[p]]
            for i in range(k):
                weighted[c, i] = root * ys[i]
        c += 1
    return c


@njit(cache=True)
def _times(Y: np.ndarray, M: np.ndarray) -> np.ndarray:
    """``Y @ M`` (BLAS), also for a ``Y`` without rows."""
    return Y @ M if Y.shape[0] else np.zeros((0, M.shape[1]))


@njit(cache=True, parallel=True, fastmath=False)
def solve_rows(
    p1: np.ndarray,
    i1: np.ndarray,
    a1: np.ndarray,
    t1: np.ndarray,
    Y1: np.ndarray,
    p2: np.ndarray,
    i2: np.ndarray,
    a2: np.ndarray,
    t2: np.ndarray,
    Y2: np.ndarray,
    shared: np.ndarray,
    out: np.ndarray,
) -> None:
    """``out[r] = (S + sum a y y')^-1 sum t y`` over both sources, for every row r
    (``shared = S``, symmetric positive definite).

    A row with ``c < 3k/4`` entries goes through Woodbury's ``c x c`` system
    (:func:`cfpoison.learners.kernels.dual_solve` with the rows ``sqrt(a) y`` and ``S^-1``
    inverted once): ``O(c^2 k)`` instead of ``O(c k^2 + k^3)``, the common case for items.
    A longer row gathers its rows ``G = sqrt(a) y`` and forms ``S + G'G`` by one BLAS product
    (1.2-2.1x faster than rank-one updates at rank 32 for 24-512 entries, single-threaded).
    """
    n_rows, k = out.shape
    inverse = np.empty((k, k))
    YS1, YS2 = Y1, Y2  # Y S^-1, computed only if some row takes the dual route
    for r in range(n_rows):
        if 4 * (p1[r + 1] - p1[r] + p2[r + 1] - p2[r]) < 3 * k:
            cholesky_inverse(shared.copy(), inverse)
            YS1, YS2 = _times(Y1, inverse), _times(Y2, inverse)
            break
    for r in prange(n_rows):
        c = p1[r + 1] - p1[r] + p2[r + 1] - p2[r]
        b = np.zeros(k)
        if 4 * c < 3 * k:
            rows, weighted = np.empty((c, k)), np.empty((c, k))
            end = _gather(p1, i1, a1, t1, Y1, YS1, r, rows, weighted, b, 0)
            _gather(p2, i2, a2, t2, Y2, YS2, r, rows, weighted, b, end)
            dual_solve(rows, weighted, np.zeros(c), inverse, b, 0.0, 0.0, out[r])
            continue
        rows = np.empty((c, k))
        end = _gather(p1, i1, a1, t1, Y1, Y1, r, rows, rows[:0], b, 0)
        _gather(p2, i2, a2, t2, Y2, Y2, r, rows, rows[:0], b, end)
        A = np.dot(rows.T, rows)
        A += shared
        cholesky_solve(A, b)
        out[r] = b


@njit(cache=True, parallel=True, fastmath=False)
def ridge_blocks(
    p1: np.ndarray,
    i1: np.ndarray,
    a1: np.ndarray,
    t1: np.ndarray,
    Y1: np.ndarray,
    p2: np.ndarray,
    i2: np.ndarray,
    a2: np.ndarray,
    t2: np.ndarray,
    Y2: np.ndarray,
    shared: np.ndarray,
    scale: float,
    invert: bool,
) -> np.ndarray:
    """``scale (S + sum a y y')`` for every row (``rows x k x k``; inverted if ``invert``):
    the matrix :func:`solve_rows` factorizes, and with ``scale = 2`` H's diagonal blocks."""
    n_rows = p1.shape[0] - 1
    k = shared.shape[0]
    out = np.empty((n_rows, k, k))
    for r in prange(n_rows):
        A = shared.copy()
        b = np.zeros(k)
        _accumulate(p1, i1, a1, t1, Y1, r, A, b)
        _accumulate(p2, i2, a2, t2, Y2, r, A, b)
        for i in range(k):
            for c in range(i + 1):
                A[i, c] *= scale
        if invert:
            cholesky_inverse(A, out[r])
        else:
            for i in range(k):
                for c in range(i + 1):
                    out[r, i, c] = A[i, c]
                    out[r, c, i] = A[i, c]
    return out


@njit(cache=True, parallel=True, fastmath=False)
def residual_rows(
    indptr: np.ndarray,
    indices: np.ndarray,
    a: np.ndarray,
    t: np.ndarray,
    Y: np.ndarray,
    X: np.ndarray,
    out: np.ndarray,
) -> np.ndarray:
    """With ``s = x_r.y`` on row r's stored entries: ``out[r] += sum (a s - t) y`` (the
    stored entries' share of ``grad L / 2``) and returns ``sum (a s^2 - 2 t s)`` per row
    (their share of ``L`` beyond ``sum_all s^2`` and the constant ``sum c p^2``)."""
    n_rows, k = X.shape
    value = np.zeros(n_rows)
    for r in prange(n_rows):
        x = X[r]
        g = np.zeros(k)
        total = 0.0
        for p in range(indptr[r], indptr[r + 1]):
            y = Y[indices[p]]
            s = 0.0
            for i in range(k):
                s += x[i] * y[i]
            total += (a[p] * s - 2.0 * t[p]) * s
            coef = a[p] * s - t[p]
            for i in range(k):
                g[i] += coef * y[i]
        value[r] = total
        for i in range(k):
            out[r, i] += g[i]
    return value
