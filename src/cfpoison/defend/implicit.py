"""Detect-and-remove against implicit (binary) fake profiles, refitting WRMF.

Input: the real interactions ``train`` (``m x n``), the fake rows ``fake`` (``m' x n``) and a
mask ``flagged`` over the ``m + m'`` combined rows (e.g.
:meth:`cfpoison.detect.implicit.ImplicitDetectionReport.flagged` at 1% FPR). The flagged fake
rows are dropped, the flagged real users' interactions are set aside, WRMF is refitted on the
rest, and each flagged real user is folded in against the refitted items by WRMF's exact row
minimiser (:mod:`cfpoison.learners.wrmf`)
``u = (V'V + lam I + sum_{j in I_u} a_j v_j v_j')^-1 sum_{j in I_u} t_j v_j``,
``a_j = alpha r_uj``, ``t_j = 1 + alpha r_uj``: they keep recommendations, their interactions
move no one else's.

The clean cost is measured by :func:`held_out_hit_ratio`: the share of users with a held-out
interaction who find one among their top ``k`` items not in ``train``.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from cfpoison.data.interactions import Interactions
from cfpoison.defend.model import DefendedModel
from cfpoison.errors import DataError
from cfpoison.learners import WRMFConfig, WRMFLearner
from cfpoison.models.measures import FittedModel
from cfpoison.models.ranking import top_unrated


def fold_in_wrmf(rows: sp.csr_array, item: np.ndarray, config: WRMFConfig) -> np.ndarray:
    """WRMF's exact user factors for the interaction ``rows`` against fixed ``item`` factors
    (module docstring)."""
    k = item.shape[1]
    gram = item.T @ item + config.lam * np.eye(k)
    out = np.zeros((rows.shape[0], k))
    for u in range(rows.shape[0]):
        cols = rows.indices[rows.indptr[u] : rows.indptr[u + 1]]
        r = rows.data[rows.indptr[u] : rows.indptr[u + 1]]
        v = item[cols]
        out[u] = np.linalg.solve(
            gram + (v.T * (config.alpha * r)) @ v, v.T @ (1 + config.alpha * r)
        )
    return out


def remove_and_refit(
    train: Interactions, fake: sp.csr_array, flagged: np.ndarray, learner: WRMFConfig
) -> DefendedModel:
    """WRMF on ``train`` and ``fake`` without the ``flagged`` users, the flagged real users
    folded in (module docstring)."""
    m = train.n_users
    flagged = np.asarray(flagged, dtype=bool)
    if flagged.shape != (m + fake.shape[0],):
        raise DataError(f"{len(flagged)} flags for {m} real and {fake.shape[0]} fake users")
    real_out, fake_out = flagged[:m], flagged[m:]
    keep = sp.diags_array((~real_out).astype(np.float64))
    kept = train.with_matrix(sp.csr_array(keep @ train.matrix))
    fitted = WRMFLearner(learner).fit(kept, fake=sp.csr_array(fake)[~fake_out])
    user = fitted.user_factors.copy()
    user[real_out] = fold_in_wrmf(train.matrix[real_out], fitted.item_factors, learner)
    info = {"removed_real": int(real_out.sum()), "removed_fake": int(fake_out.sum())}
    return DefendedModel(user, fitted.item_factors, real_out, fake_out, fitted.converged, info)


def held_out_hit_ratio(
    train: sp.csr_array, test: sp.csr_array, model: FittedModel, k: int = 10
) -> float:
    """The share of users with a stored entry in ``test`` who have one among their top ``k``
    items not stored in ``train`` (NaN if no user has a test entry)."""
    users = np.flatnonzero(np.diff(test.indptr) > 0)
    if len(users) == 0:
        return float("nan")
    top = top_unrated(train, model.user_factors, model.item_factors, k, users=users)
    held = test[users]
    hits = [
        np.isin(top[i], held.indices[held.indptr[i] : held.indptr[i + 1]]).any()
        for i in range(len(users))
    ]
    return float(np.mean(hits))
