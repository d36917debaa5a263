"""Generic shilling-detection attributes: one suspicion score per user (higher = more suspect).

All take the combined rating matrix (normal and fake rows, CSR ``users x items``, shifted
scale, stored entries = rated items) and are vectorised over its stored entries. ``r_j`` is
item ``j``'s mean rating and ``NR_j`` its number of ratings, both over every row of the matrix
(the detector cannot tell fakes apart). Definitions follow Chirita, Nejdl and Zamfir (2005) and
Burke, Mobasher, Williams and Bhaumik (2006); ``I_u`` is the set of items user ``u`` rated.

* RDMA  (rating deviation from mean agreement): ``sum_{j in I_u} |r_uj - r_j| / NR_j / |I_u|``
* WDMA  (weighted deviation from mean agreement): ``sum_{j in I_u} |r_uj - r_j| / NR_j^2 / |I_u|``
* WDA   (weighted degree of agreement): ``sum_{j in I_u} |r_uj - r_j| / NR_j``
* LengthVar: ``| |I_u| - mean |I| | / sum_v (|I_v| - mean |I|)^2``

Rows with no ratings score 0.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def row_ids(matrix: sp.csr_array) -> np.ndarray:
    """The row index of every stored entry of a CSR matrix."""
    return np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))


def row_sums(matrix: sp.csr_array, values: np.ndarray) -> np.ndarray:
    """Per row, the sum of ``values`` (one per stored entry)."""
    return np.bincount(row_ids(matrix), weights=values, minlength=matrix.shape[0])


def row_means(matrix: sp.csr_array, values: np.ndarray) -> np.ndarray:
    """Per row, the mean of ``values`` (one per stored entry); 0 for empty rows."""
    counts = np.diff(matrix.indptr)
    return row_sums(matrix, values) / np.maximum(counts, 1)


def item_stats(matrix: sp.csr_array) -> tuple[np.ndarray, np.ndarray]:
    """``(NR_j, r_j)``: ratings per item and mean rating per item (0 for unrated items)."""
    n = matrix.shape[1]
    counts = np.bincount(matrix.indices, minlength=n)
    sums = np.bincount(matrix.indices, weights=matrix.data, minlength=n)
    return counts, sums / np.maximum(counts, 1)


def _deviation_over_popularity(matrix: sp.csr_array, power: int) -> np.ndarray:
    """Per stored entry ``|r_uj - r_j| / NR_j^power``."""
    counts, means = item_stats(matrix)
    return np.abs(matrix.data - means[matrix.indices]) / counts[matrix.indices] ** power


def rdma(matrix: sp.csr_array) -> np.ndarray:
    """Rating deviation from mean agreement (Chirita et al. 2005)."""
    return row_means(matrix, _deviation_over_popularity(matrix, 1))


def wdma(matrix: sp.csr_array) -> np.ndarray:
    """Weighted deviation from mean agreement: rare items weigh more (Burke et al. 2006)."""
    return row_means(matrix, _deviation_over_popularity(matrix, 2))


def wda(matrix: sp.csr_array) -> np.ndarray:
    """Weighted degree of agreement: RDMA's numerator, not divided by |I_u| (Burke 2006)."""
    return row_sums(matrix, _deviation_over_popularity(matrix, 1))


def length_var(matrix: sp.csr_array) -> np.ndarray:
    """Length variance: how far a profile's length is from the mean length (Burke 2006)."""
    lengths = np.diff(matrix.indptr).astype(np.float64)
    centred = lengths - lengths.mean()
    total = float(np.sum(centred**2))
    return np.abs(centred) / total if total > 0 else np.zeros_like(lengths)
