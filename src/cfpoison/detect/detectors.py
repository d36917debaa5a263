"""Neighbourhood and model-specific shilling detectors: higher score = more suspect.

* DegSim (Chirita et al. 2005): the mean Pearson similarity of a user to its ``k`` most
  similar other users. Attack profiles built from one template are similar to each other.
  Similarity is Pearson over co-rated items with each user's mean over all their ratings,
  ``w_uv = sum_C x_uj x_vj / sqrt(sum_C x_uj^2 sum_C x_vj^2)`` (``x`` = rating minus the
  user's mean, ``C`` = items both rated), times Herlocker's significance weight
  ``min(|C|, shrink) / shrink`` (``shrink = 0``: no weighting). Computed in row blocks of
  sparse products, so memory is ``O(block * m)``, never ``m x m``.
* FMTD, filler mean target difference (Mobasher et al. 2007): a profile is split into its
  target ``P_T`` (items at the user's maximum rating, the push-attack hypothesis) and filler
  ``P_F`` (the rest); ``FMTD_u = |mean_{P_T} r_uj - mean_{P_F} r_uj|`` (0 if ``P_F`` is empty).
* MeanVar, filler mean variance (Mobasher et al. 2007):
  ``sum_{j in P_F} (r_uj - r_j)^2 / |P_F|`` with ``r_j`` the item's mean rating. Average
  attacks give filler ratings close to item means, so a *low* variance is suspect: the score
  is its negative (an empty filler scores 0, the most suspect).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from cfpoison.detect.features import item_stats, row_ids, row_means

BLOCK_ELEMENTS = 1 << 22  # dense similarity entries held at once (32 MiB of float64)


def _pattern(matrix: sp.csr_array, values: np.ndarray) -> sp.csr_array:
    """``matrix``'s sparsity pattern with other stored values (explicit zeros kept)."""
    return sp.csr_array((values, matrix.indices, matrix.indptr), shape=matrix.shape)


def degsim(matrix: sp.csr_array, k: int = 10, shrink: float = 50.0) -> np.ndarray:
    """Mean similarity to the ``k`` nearest other users (see module docstring)."""
    m = matrix.shape[0]
    centred = matrix.data - row_means(matrix, matrix.data)[row_ids(matrix)]
    X = _pattern(matrix, centred)
    X2 = _pattern(matrix, centred**2)
    ones = _pattern(matrix, np.ones_like(centred))
    X_t, X2_t, ones_t = X.T.tocsr(), X2.T.tocsr(), ones.T.tocsr()

    def similarities(start: int, stop: int) -> np.ndarray:
        num = (X[start:stop] @ X_t).toarray()
        den = (X2[start:stop] @ ones_t).toarray() * (ones[start:stop] @ X2_t).toarray()
        with np.errstate(invalid="ignore", divide="ignore"):
            sim = np.where(den > 0, num / np.sqrt(den), 0.0)
        if shrink > 0:
            co_rated = (ones[start:stop] @ ones_t).toarray()
            sim *= np.minimum(co_rated, shrink) / shrink
        return sim

    return nearest_mean(m, k, similarities)


def nearest_mean(m: int, k: int, similarities: Callable[[int, int], np.ndarray]) -> np.ndarray:
    """Each of ``m`` users' mean similarity to its ``k`` most similar other users (DegSim),
    from ``similarities(start, stop)``: rows ``start:stop`` of the ``m x m`` similarity
    matrix, computed in blocks of :data:`BLOCK_ELEMENTS`, never whole."""
    k = min(k, m - 1)
    scores = np.zeros(m)
    if k < 1:
        return scores
    block = max(1, BLOCK_ELEMENTS // m)
    for start in range(0, m, block):
        stop = min(m, start + block)
        sim = similarities(start, stop)
        sim[np.arange(stop - start), np.arange(start, stop)] = -np.inf  # not its own neighbour
        scores[start:stop] = np.partition(sim, m - k, axis=1)[:, m - k :].mean(axis=1)
    return scores


def _target_filler(matrix: sp.csr_array) -> tuple[np.ndarray, np.ndarray]:
    """Per stored entry: is it at its user's maximum rating (target), and the row ids."""
    m = matrix.shape[0]
    rows = row_ids(matrix)
    row_max = np.full(m, -np.inf)
    np.maximum.at(row_max, rows, matrix.data)
    return matrix.data == row_max[rows], rows


def fmtd(matrix: sp.csr_array) -> np.ndarray:
    """Filler mean target difference (see module docstring)."""
    m = matrix.shape[0]
    target, rows = _target_filler(matrix)
    n_target = np.bincount(rows, weights=target, minlength=m)
    n_filler = np.bincount(rows, weights=~target, minlength=m)
    sum_target = np.bincount(rows, weights=matrix.data * target, minlength=m)
    sum_filler = np.bincount(rows, weights=matrix.data * ~target, minlength=m)
    diff = sum_target / np.maximum(n_target, 1) - sum_filler / np.maximum(n_filler, 1)
    return np.where(n_filler > 0, np.abs(diff), 0.0)


def mean_var(matrix: sp.csr_array) -> np.ndarray:
    """Negative filler mean variance (see module docstring)."""
    m = matrix.shape[0]
    target, rows = _target_filler(matrix)
    _, item_mean = item_stats(matrix)
    filler = ~target
    sq = (matrix.data - item_mean[matrix.indices]) ** 2 * filler
    n_filler = np.bincount(rows, weights=filler, minlength=m)
    return -np.bincount(rows, weights=sq, minlength=m) / np.maximum(n_filler, 1)
