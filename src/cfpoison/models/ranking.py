"""Top-k lists from low-rank factors (scores ``s_ij = u_i . v_j``).

Shared by the attacks (the ranking utility's candidates), the measures (hit ratio, NDCG) and
the victims (their top-k lists): scores are computed for blocks of users at a time, never as a
dense ``m x n`` array. A user's candidates are the items without a stored entry in the user's
row of the training matrix (an explicit stored zero is a rating).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

#: Score entries per block of users (32 MiB of float64).
BLOCK_ENTRIES = 1 << 22


def top_unrated(
    omega: sp.csr_array,
    user: np.ndarray,
    item: np.ndarray,
    k: int,
    users: np.ndarray | None = None,
    exclude: np.ndarray | None = None,
) -> np.ndarray:
    """Each user's ``k`` highest-scored items (``u_i . v_j``) among those not stored in
    ``omega``'s row and not in ``exclude``.

    ``len(users) x k`` column indices, best first; ``-1`` pads a user with fewer than ``k``
    such items. Scores are computed for blocks of users at a time (never ``m x n``).
    """
    users = np.arange(len(user)) if users is None else np.asarray(users, dtype=np.int64)
    n = len(item)
    k = min(k, n)
    out = np.empty((len(users), k), dtype=np.int64)
    step = max(1, BLOCK_ENTRIES // max(n, 1))
    for start in range(0, len(users), step):
        block = users[start : start + step]
        scores = user[block] @ item.T
        rated = omega[block]
        rows = np.repeat(np.arange(len(block)), np.diff(rated.indptr))
        scores[rows, rated.indices] = -np.inf
        if exclude is not None:
            scores[:, exclude] = -np.inf
        best = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, best, axis=1), axis=1, kind="stable")
        best = np.take_along_axis(best, order, axis=1)
        best[np.take_along_axis(scores, best, axis=1) == -np.inf] = -1
        out[start : start + len(block)] = best
    return out


def unrated_pairs(omega: sp.csr_array, targets: np.ndarray) -> np.ndarray:
    """``m x |J0|`` booleans: user i has no stored rating of target t in ``omega``."""
    rated = omega[:, np.asarray(targets, dtype=np.int64)].tocsc()
    unrated = np.ones((omega.shape[0], len(targets)), dtype=bool)
    for t in range(len(targets)):
        unrated[rated.indices[rated.indptr[t] : rated.indptr[t + 1]], t] = False
    return unrated
