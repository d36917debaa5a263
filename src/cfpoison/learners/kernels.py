"""Numba kernels for the learners' hot loops, parallel over rows (all cores by default).

A *source* is a compressed sparse structure ``(indptr, indices, data)`` whose rows are the
rows being solved for, with the factor matrix ``Y`` its column indices point into. ALS's user
side has one source (the ratings' CSR, ``Y = V``); the item side two (the real ratings' CSC
with ``Y = U``, the fake ratings' with ``Y = U~``), so fake rows are never stacked onto the
data set's matrix. A missing second source is empty (:func:`empty_source`).

Functions (same names and signatures in :mod:`cfpoison.learners.reference`, the plain NumPy
path that the tests cross-check against):

* :func:`solve_rows`: ridge least squares per row, ``x_r = (sum y y^T + lam I)^(-1) sum d y``
  (Gram accumulation and a k x k Cholesky solve in one pass, or for a row with few entries
  Woodbury's c x c system), returning each row's fit term;
* :func:`solve_rows_shared`: one sparse source plus a dense block shared by every row (its
  Gram ``G``, each row's ``rhs`` and ``d.d`` given): the item side when the fake rows rate
  every item (SGLD's chains), ``O(nnz k^2 + n k^2)`` per sweep, not ``O((nnz + m' n) k^2)``;
* :func:`ridge_blocks`: per row, ``scale (sum y y^T + lam I)`` or its inverse (the Hessian's
  diagonal blocks, with ``scale = 2``);
* :func:`residual_rows`: per row, ``sum (d - x_r.y)^2`` and ``sum (d - x_r.y) y`` (objective
  and gradient in one pass);
* :func:`csr_dot`: ``x_r . y_c`` at every stored entry; :func:`dot_rows`:
  ``A[rows[t]] . B[cols[t]]`` for parallel index arrays; :func:`csr_matmul`: ``S @ Y``.

All kernels use ``fastmath=False``: results agree with the NumPy path to rounding.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

Source = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def set_threads(threads: int) -> None:
    """Use ``threads`` numba threads (0 = all available)."""
    limit = int(numba.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]
    numba.set_num_threads(limit if threads <= 0 else min(threads, limit))


def empty_source(n_rows: int, k: int) -> Source:
    """A source with ``n_rows`` empty rows (no entries)."""
    return (
        np.zeros(n_rows + 1, dtype=np.int64),
        np.zeros(0, dtype=np.int32),
        np.zeros(0, dtype=np.float64),
        np.zeros((0, k), dtype=np.float64),
    )


@njit(cache=True, inline="always")
def _accumulate(
    indptr: np.ndarray,
    indices: np.ndarray,
    data: np.ndarray,
    Y: np.ndarray,
    r: int,
    A: np.ndarray,
    b: np.ndarray,
) -> float:
    """A += sum y y^T and b += sum d y over row ``r`` of one source; returns sum d^2.

    Only the lower triangle of ``A`` is needed; each of its rows is updated up to the next
    multiple of 4 (a few exact entries above the diagonal too), and the entries are taken
    four at a time, so that the inner loop is a fixed-stride SIMD loop over contiguous
    memory and each load/store of ``A`` serves four rank-one updates.
    """
    k = Y.shape[1]
    dd = 0.0
    p, end = indptr[r], indptr[r + 1]
    while p + 4 <= end:
        y0 = Y[indices[p]]
        y1 = Y[indices[p + 1]]
        y2 = Y[indices[p + 2]]
        y3 = Y[indices[p + 3]]
        d0, d1, d2, d3 = data[p], data[p + 1], data[p + 2], data[p + 3]
        dd += d0 * d0 + d1 * d1 + d2 * d2 + d3 * d3
        for a in range(k):
            a0, a1, a2, a3 = y0[a], y1[a], y2[a], y3[a]
            b[a] += d0 * a0 + d1 * a1 + d2 * a2 + d3 * a3
            row = A[a]
            for c in range(min(k, (a // 4 + 1) * 4)):
                row[c] += a0 * y0[c] + a1 * y1[c] + a2 * y2[c] + a3 * y3[c]
        p += 4
    while p < end:
        y = Y[indices[p]]
        d = data[p]
        dd += d * d
        for a in range(k):
            ya = y[a]
            b[a] += d * ya
            row = A[a]
            for c in range(a + 1):
                row[c] += ya * y[c]
        p += 1
    return dd


@njit(cache=True, inline="always")
def _dot_prefix(x: np.ndarray, y: np.ndarray, n: int) -> float:
    """sum_{c < n} x[c] y[c] with four interleaved partial sums (a fixed order, SIMD-able)."""
    s0 = s1 = s2 = s3 = 0.0
    c = 0
    while c + 4 <= n:
        s0 += x[c] * y[c]
        s1 += x[c + 1] * y[c + 1]
        s2 += x[c + 2] * y[c + 2]
        s3 += x[c + 3] * y[c + 3]
        c += 4
    while c < n:
        s0 += x[c] * y[c]
        c += 1
    return (s0 + s1) + (s2 + s3)


@njit(cache=True, inline="always")
def cholesky_solve(A: np.ndarray, b: np.ndarray) -> None:
    """Solve A x = b in place (b becomes x) from the lower triangle of SPD ``A``.

    Row-oriented Cholesky ``A = L L^T`` (L overwrites the lower triangle), then the forward
    solve ``L y = b`` with row dot products and the backward solve ``L^T x = y`` as row
    updates, so that every inner loop runs over contiguous memory.
    """
    k = A.shape[0]
    for j in range(k):
        Aj = A[j]
        djj = np.sqrt(Aj[j] - _dot_prefix(Aj, Aj, j))
        Aj[j] = djj
        for i in range(j + 1, k):
            Ai = A[i]
            Ai[j] = (Ai[j] - _dot_prefix(Ai, Aj, j)) / djj
    for i in range(k):
        b[i] = (b[i] - _dot_prefix(A[i], b, i)) / A[i, i]
    for i in range(k - 1, -1, -1):
        bi = b[i] / A[i, i]
        b[i] = bi
        Ai = A[i]
        for c in range(i):
            b[c] -= Ai[c] * bi


@njit(cache=True, inline="always")
def ridge_solve(A: np.ndarray, b: np.ndarray, dd: float, lam: float, x: np.ndarray) -> float:
    """``x = A^-1 b`` (``A`` destroyed) and the fit term ``d.d - x.b - lam |x|^2`` from the
    normal equations, ``dd = d.d``: one row of :func:`solve_rows` after accumulation."""
    x[:] = b
    cholesky_solve(A, x)
    xb = 0.0
    xx = 0.0
    for a in range(x.shape[0]):
        xb += x[a] * b[a]
        xx += x[a] * x[a]
    return max(dd - xb - lam * xx, 0.0)


@njit(cache=True, inline="always")
def _gather(
    indptr: np.ndarray,
    indices: np.ndarray,
    data: np.ndarray,
    Y: np.ndarray,
    W: np.ndarray,
    r: int,
    rows: np.ndarray,
    weighted: np.ndarray,
    d: np.ndarray,
    start: int,
) -> int:
    """Copy row ``r``'s ``y_p``, ``w_p`` and ``d_p`` of one source to ``rows``, ``weighted``
    and ``d`` from position ``start``; returns the next free position."""
    c = start
    for p in range(indptr[r], indptr[r + 1]):
        rows[c] = Y[indices[p]]
        weighted[c] = W[indices[p]]
        d[c] = data[p]
        c += 1
    return c


@njit(cache=True, inline="always")
def dual_solve(
    rows: np.ndarray,
    weighted: np.ndarray,
    d: np.ndarray,
    inverse: np.ndarray,
    b: np.ndarray,
    dd: float,
    lam: float,
    x: np.ndarray,
) -> float:
    """``x = (S + Y^T Y)^-1 (b + Y^T d)`` for a row with ``c`` entries (``Y``: ``rows``, c x k),
    by Woodbury through a c x c system: ``g = S^-1 b'``, ``(I + Y S^-1 Y^T) z = Y g``,
    ``x = g - S^-1 Y^T z``, given ``inverse = S^-1`` and ``weighted = Y S^-1``. ``b`` and
    ``dd`` arrive without the row's entries, which are added here; returns the fit term as
    :func:`ridge_solve` (``d.d - x.b' - lam |x|^2``). ``O(c^2 k + k^2)`` instead of the
    ``O(c k^2 + k^3)`` of the k x k system: the cheaper one when ``c < 3k/4``
    (``docs/math.md`` section 4, "Few ratings per row")."""
    c, k = rows.shape
    for p in range(c):
        dd += d[p] * d[p]
        for a in range(k):
            b[a] += d[p] * rows[p, a]
    g = inverse @ b
    C = np.empty((c, c))
    t = np.empty(c)
    for p in range(c):
        t[p] = _dot_prefix(rows[p], g, k)
        for q in range(p + 1):
            C[p, q] = _dot_prefix(rows[p], weighted[q], k)
        C[p, p] += 1.0
    cholesky_solve(C, t)
    x[:] = g
    for p in range(c):
        for a in range(k):
            x[a] -= t[p] * weighted[p, a]
    xb = 0.0
    xx = 0.0
    for a in range(k):
        xb += x[a] * b[a]
        xx += x[a] * x[a]
    return max(dd - xb - lam * xx, 0.0)


@njit(cache=True, parallel=True, fastmath=False)
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
    """out[r] = argmin_x sum_sources sum_p (d_p - x.y_p)^2 + lam |x|^2, for every row r.

    Returns the fit term of each row at its solution, ``sum_p (d_p - x.y_p)^2``, computed
    from the normal equations as ``d.d - x.b - lam |x|^2`` (``A x = b``), at no extra pass.
    A row with ``c < 3k/4`` entries is solved through its c x c system (:func:`dual_solve`
    with ``S = lam I``).
    """
    n_rows, k = out.shape
    fit = np.empty(n_rows)
    inverse = np.eye(k) / lam
    W1, W2 = Y1, Y2  # Y S^-1, needed (and copied) only if some row takes the dual route
    for r in range(n_rows):
        if 4 * (p1[r + 1] - p1[r] + p2[r + 1] - p2[r]) < 3 * k:
            W1, W2 = Y1 / lam, Y2 / lam
            break
    for r in prange(n_rows):
        c = p1[r + 1] - p1[r] + p2[r + 1] - p2[r]
        b = np.zeros(k)
        if 4 * c < 3 * k:
            rows, weighted, d = np.empty((c, k)), np.empty((c, k)), np.empty(c)
            end = _gather(p1, i1, d1, Y1, W1, r, rows, weighted, d, 0)
            _gather(p2, i2, d2, Y2, W2, r, rows, weighted, d, end)
            fit[r] = dual_solve(rows, weighted, d, inverse, b, 0.0, lam, out[r])
            continue
        A = np.zeros((k, k))
        for a in range(k):
            A[a, a] = lam
        dd = _accumulate(p1, i1, d1, Y1, r, A, b) + _accumulate(p2, i2, d2, Y2, r, A, b)
        fit[r] = ridge_solve(A, b, dd, lam, out[r])
    return fit


@njit(cache=True, parallel=True, fastmath=False)
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
    """out[r] = argmin_x sum_p (d_p - x.y_p)^2 + |D_r - Z x|^2 + lam |x|^2, for every row r,
    where the dense block enters only through ``gram = Z'Z``, ``rhs[r] = Z'D_r`` and
    ``dd[r] = D_r.D_r``. Returns each row's fit term (both parts), as :func:`solve_rows`.
    Rows with ``c < 3k/4`` entries go through :func:`dual_solve` with the shared
    ``S = Z'Z + lam I``, inverted once."""
    n_rows, k = out.shape
    fit = np.empty(n_rows)
    shared = gram + lam * np.eye(k)
    inverse = np.empty((k, k))
    cholesky_inverse(shared.copy(), inverse)
    W = Y @ inverse
    for r in prange(n_rows):
        c = p[r + 1] - p[r]
        b = rhs[r].copy()
        if 4 * c < 3 * k:
            rows, weighted, values = np.empty((c, k)), np.empty((c, k)), np.empty(c)
            _gather(p, i, d, Y, W, r, rows, weighted, values, 0)
            fit[r] = dual_solve(rows, weighted, values, inverse, b, dd[r], lam, out[r])
            continue
        A = shared.copy()
        total = _accumulate(p, i, d, Y, r, A, b) + dd[r]
        fit[r] = ridge_solve(A, b, total, lam, out[r])
    return fit


@njit(cache=True, inline="always")
def cholesky_inverse(A: np.ndarray, out: np.ndarray) -> None:
    """``out = A^-1`` (full, symmetric) from the lower triangle of SPD ``A`` (destroyed)."""
    k = A.shape[0]
    for j in range(k):  # A = L L^T, L in the lower triangle
        Aj = A[j]
        djj = np.sqrt(Aj[j] - _dot_prefix(Aj, Aj, j))
        Aj[j] = djj
        for i in range(j + 1, k):
            Ai = A[i]
            Ai[j] = (Ai[j] - _dot_prefix(Ai, Aj, j)) / djj
    inv_l = np.zeros((k, k))  # L^-1, lower triangular, by forward substitution
    for j in range(k):
        inv_l[j, j] = 1.0 / A[j, j]
        for i in range(j + 1, k):
            t = 0.0
            for c in range(j, i):
                t -= A[i, c] * inv_l[c, j]
            inv_l[i, j] = t / A[i, i]
    for a in range(k):  # A^-1 = L^-T L^-1
        for b in range(a, k):
            t = 0.0
            for c in range(b, k):
                t += inv_l[c, a] * inv_l[c, b]
            out[a, b] = t
            out[b, a] = t


@njit(cache=True, parallel=True, fastmath=False)
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
    """out[r] = scale (sum_sources sum_p y_p y_p^T + lam I) for every row r (``rows x k x
    k``), inverted if ``invert``: the Gram of :func:`solve_rows`, accumulated the same way."""
    n_rows = p1.shape[0] - 1
    k = Y1.shape[1]
    out = np.empty((n_rows, k, k))
    for r in prange(n_rows):
        A = np.zeros((k, k))
        b = np.zeros(k)
        for a in range(k):
            A[a, a] = lam
        _accumulate(p1, i1, d1, Y1, r, A, b)
        _accumulate(p2, i2, d2, Y2, r, A, b)
        for a in range(k):
            for c in range(a + 1):
                A[a, c] *= scale
        if invert:
            cholesky_inverse(A, out[r])
        else:
            for a in range(k):
                for c in range(a + 1):
                    out[r, a, c] = A[a, c]
                    out[r, c, a] = A[a, c]
    return out


@njit(cache=True, inline="always")
def _residual(
    indptr: np.ndarray,
    indices: np.ndarray,
    data: np.ndarray,
    Y: np.ndarray,
    x: np.ndarray,
    r: int,
    g: np.ndarray,
) -> float:
    """g += sum (d - x.y) y over row ``r`` of one source; returns sum (d - x.y)^2.

    Four entries at a time, so that the inner loops over the k factors are SIMD loops.
    """
    k = Y.shape[1]
    sq = 0.0
    p, end = indptr[r], indptr[r + 1]
    while p + 4 <= end:
        y0 = Y[indices[p]]
        y1 = Y[indices[p + 1]]
        y2 = Y[indices[p + 2]]
        y3 = Y[indices[p + 3]]
        e0, e1, e2, e3 = data[p], data[p + 1], data[p + 2], data[p + 3]
        for a in range(k):
            xa = x[a]
            e0 -= xa * y0[a]
            e1 -= xa * y1[a]
            e2 -= xa * y2[a]
            e3 -= xa * y3[a]
        sq += e0 * e0 + e1 * e1 + e2 * e2 + e3 * e3
        for a in range(k):
            g[a] += e0 * y0[a] + e1 * y1[a] + e2 * y2[a] + e3 * y3[a]
        p += 4
    while p < end:
        y = Y[indices[p]]
        e = data[p]
        for a in range(k):
            e -= x[a] * y[a]
        sq += e * e
        for a in range(k):
            g[a] += e * y[a]
        p += 1
    return sq


@njit(cache=True, parallel=True, fastmath=False)
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
    n_rows, k = X.shape
    sq = np.zeros(n_rows)
    for r in prange(n_rows):
        g = np.zeros(k)
        sq[r] = _residual(p1, i1, d1, Y1, X[r], r, g) + _residual(p2, i2, d2, Y2, X[r], r, g)
        grad[r] = g
    return sq


@njit(cache=True, parallel=True, fastmath=False)
def offset_values(indices: np.ndarray, data: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """``data - shift[indices]``: the stored values of a compressed matrix less a per-column
    (CSR) or per-row (CSC) offset, in one pass."""
    out = np.empty_like(data)
    for p in prange(data.shape[0]):
        out[p] = data[p] - shift[indices[p]]
    return out


@njit(cache=True, parallel=True, fastmath=False)
def csr_dot(indptr: np.ndarray, indices: np.ndarray, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """out[p] = X[r] . Y[indices[p]] for every stored entry p of row r."""
    n_rows, k = X.shape
    out = np.empty(indices.shape[0])
    for r in prange(n_rows):
        for p in range(indptr[r], indptr[r + 1]):
            y = Y[indices[p]]
            s = 0.0
            for a in range(k):
                s += X[r, a] * y[a]
            out[p] = s
    return out


@njit(cache=True, parallel=True, fastmath=False)
def dot_rows(A: np.ndarray, B: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """out[t] = A[rows[t]] . B[cols[t]]."""
    k = A.shape[1]
    out = np.empty(rows.shape[0])
    for t in prange(rows.shape[0]):
        s = 0.0
        for a in range(k):
            s += A[rows[t], a] * B[cols[t], a]
        out[t] = s
    return out


@njit(cache=True, parallel=True, fastmath=False)
def csr_matmul(
    indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, Y: np.ndarray
) -> np.ndarray:
    """out = S @ Y for the sparse S = (indptr, indices, data)."""
    n_rows = indptr.shape[0] - 1
    k = Y.shape[1]
    out = np.zeros((n_rows, k))
    for r in prange(n_rows):
        for p in range(indptr[r], indptr[r + 1]):
            y = Y[indices[p]]
            d = data[p]
            for a in range(k):
                out[r, a] += d * y[a]
    return out
