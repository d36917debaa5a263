"""Sparse kernels of the attack engine, on CSR patterns.

* :func:`sddmm`: ``A[i] . B[j]`` at every stored entry (i, j), without the ``nnz x k``
  temporaries that ``einsum`` over gathered rows would make (1.6 GB each on MovieLens-20M at
  k = 10); it wraps the learners' ``csr_dot`` kernel;
* :func:`hessian_rows`: one side of a Hessian-vector product of the factored objective,
  optionally with per-rating curvature weights, parallel over rows
  (:class:`cfpoison.learners.hessian.FactorHessian`);
* :func:`weighted_blocks`: the diagonal ``k x k`` blocks of a weighted objective's Hessian
  (per-rating weights, per-row regularization), or their inverses;
* :func:`block_apply`: many small ``k x k`` blocks times one vector each (the block-Jacobi
  preconditioner, whose blocks come from :func:`cfpoison.learners.kernels.ridge_inverses`),
  parallel over blocks.
"""

from __future__ import annotations

import numba
import numpy as np
import scipy.sparse as sp

from cfpoison.errors import DataError
from cfpoison.learners import kernels


def sddmm(pattern: sp.csr_array, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """``left[i] . right[j]`` for every stored entry (i, j) of ``pattern``, in CSR order."""
    left = np.ascontiguousarray(left, dtype=np.float64)
    right = np.ascontiguousarray(right, dtype=np.float64)
    if left.shape[1] != right.shape[1]:
        raise ValueError(f"factor widths differ: {left.shape[1]} != {right.shape[1]}")
    return np.asarray(
        kernels.csr_dot(
            np.asarray(pattern.indptr, dtype=np.int64),
            np.asarray(pattern.indices, dtype=np.int64),
            left,
            right,
        )
    )


def checked_fake(fake: sp.csr_array | None, n_items: int, learner: str) -> sp.csr_array:
    """``fake`` as a canonical float64 CSR (a copy, never the caller's matrix), or a one-line
    DataError naming ``learner``: ``m' x n_items``, weights finite and ``>= 0``; None is
    ``0 x n_items``. The attacker's box ``[0, 1]`` belongs to the threat model, not to the
    learner: weights above 1 are counts (and the gradient check's differences at ``w = 1``)."""
    if fake is None:
        return sp.csr_array((0, n_items), dtype=np.float64)
    if not sp.issparse(fake) or fake.ndim != 2 or fake.shape[1] != n_items:
        shape = getattr(fake, "shape", None)
        raise DataError(
            f"{learner}: fake rows have shape {shape}, expected a sparse (m', {n_items})"
        )
    out = sp.csr_array(fake, dtype=np.float64, copy=True)
    out.sum_duplicates()
    out.sort_indices()
    data = out.data
    if data.size and not (np.all(np.isfinite(data)) and data.min() >= 0):
        raise DataError(f"{learner}: fake weights must be finite and >= 0")
    return out


def with_values(pattern: sp.csr_array, values: np.ndarray) -> sp.csr_array:
    """The CSR array with ``pattern``'s structure and the given stored values."""
    return sp.csr_array(
        (np.asarray(values, dtype=np.float64), pattern.indices, pattern.indptr),
        shape=pattern.shape,
    )


@numba.njit(parallel=True, cache=True, nogil=True, fastmath=True)
def _hessian_rows(
    indptr: np.ndarray,
    indices: np.ndarray,
    residual: np.ndarray,
    weight: np.ndarray,
    own: np.ndarray,
    d_own: np.ndarray,
    other: np.ndarray,
    d_other: np.ndarray,
    out: np.ndarray,
) -> None:  # pragma: no cover - compiled
    rows = indptr.shape[0] - 1
    k = own.shape[1]
    weighted = weight.shape[0] > 0
    for r in numba.prange(rows):
        acc = np.zeros(k)
        x = own[r]
        dx = d_own[r]
        for e in range(indptr[r], indptr[r + 1]):
            y = other[indices[e]]
            dy = d_other[indices[e]]
            change = 0.0
            for a in range(k):
                change += dx[a] * y[a] + x[a] * dy[a]
            if weighted:
                change *= weight[e]
            res = residual[e]
            for a in range(k):
                acc[a] += change * y[a] - res * dy[a]
        for a in range(k):
            out[r, a] += 2.0 * acc[a]


def hessian_rows(
    pattern: sp.csr_array | sp.csc_array,
    residual: np.ndarray,
    own: np.ndarray,
    d_own: np.ndarray,
    other: np.ndarray,
    d_other: np.ndarray,
    out: np.ndarray,
    weight: np.ndarray | None = None,
) -> None:
    """``out[r] += sum_{c in row r} 2 (h_rc (dx_r.y_c + x_r.dy_c) y_c - E_rc dy_c)`` in place.

    Rows ``r`` of the compressed ``pattern`` (CSR: users; CSC: items) with factors ``own``
    (direction ``d_own``), columns with ``other`` (``d_other``), ``residual`` the stored
    residuals ``E = M - x_r.y_c`` in the pattern's order: the data term of ``H x`` for the
    row block (:mod:`cfpoison.learners.hessian`), without the ``nnz``-sized temporaries of the
    SciPy route. A weighted loss ``sum rho_rc(E_rc)`` passes ``E = rho'(E) / 2`` and its
    curvature ``h = rho''(E) / 2`` in ``weight`` (pattern order; None: ``h = 1``).
    """
    _hessian_rows(
        np.asarray(pattern.indptr, dtype=np.int64),
        np.asarray(pattern.indices, dtype=np.int64),
        np.ascontiguousarray(residual, dtype=np.float64),
        np.zeros(0) if weight is None else np.ascontiguousarray(weight, dtype=np.float64),
        own,
        np.ascontiguousarray(d_own),
        other,
        np.ascontiguousarray(d_other),
        out,
    )


@numba.njit(parallel=True, cache=True, nogil=True)
def _weighted_blocks(
    indptr: np.ndarray,
    indices: np.ndarray,
    weight: np.ndarray,
    other: np.ndarray,
    out: np.ndarray,
) -> None:  # pragma: no cover - compiled
    rows = indptr.shape[0] - 1
    k = other.shape[1]
    for r in numba.prange(rows):
        for e in range(indptr[r], indptr[r + 1]):
            y = other[indices[e]]
            h = weight[e]
            for a in range(k):
                hy = h * y[a]
                for b in range(k):
                    out[r, a, b] += hy * y[b]


def weighted_blocks(
    sources: list[tuple[sp.csr_array | sp.csc_array, np.ndarray, np.ndarray]],
    lam: np.ndarray,
    invert: bool,
) -> np.ndarray:
    """``2 (lam_r I + sum_sources sum_{c in row r} h_rc y_c y_c')`` for every row r (``rows x
    k x k``; inverted if ``invert``): the diagonal blocks of a weighted objective's Hessian.

    Each source is ``(pattern, h, Y)``: a compressed pattern whose rows are the blocks' rows,
    its curvature weights ``h >= 0`` in pattern order and the factors its columns index;
    ``lam`` is each row's regularization (``> 0``, so every block is positive definite).
    """
    k = sources[0][2].shape[1]
    out = np.zeros((len(lam), k, k))
    for pattern, weight, other in sources:
        _weighted_blocks(
            np.asarray(pattern.indptr, dtype=np.int64),
            np.asarray(pattern.indices, dtype=np.int64),
            np.ascontiguousarray(weight, dtype=np.float64),
            np.ascontiguousarray(other, dtype=np.float64),
            out,
        )
    out += np.asarray(lam, dtype=np.float64)[:, None, None] * np.eye(k)
    out *= 2.0
    return np.linalg.inv(out) if invert else out


@numba.njit(parallel=True, cache=True, nogil=True, fastmath=True)
def _block_apply(blocks: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover
    rows, k = blocks.shape[0], blocks.shape[1]
    for r in numba.prange(rows):
        for a in range(k):
            t = 0.0
            for b in range(k):
                t += blocks[r, a, b] * x[r, b]
            out[r, a] = t


def block_apply(blocks: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """``out[r] = blocks[r] @ x[r]`` for every row (``rows x k x k`` times ``rows x k``)."""
    _block_apply(blocks, np.ascontiguousarray(x), out)
