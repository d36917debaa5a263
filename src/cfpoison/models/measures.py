"""The measures of a fitted model, one definition each, used by attacks, victims and defenses.

Every fitted model in cfpoison (a learner, a victim from another library, a defended model)
is seen through :class:`FittedModel`: factors of the ``m`` normal users and the ``n`` items
whose product ``P = U V^T`` is its score on the shifted scale (biases ride along as extra
columns; an ensemble is one wider model). Nothing here forms the ``m x n`` array:

* ``rmse_shift`` (paper footnote 4): ``sqrt(sum_{Omega^C} (P - Pref)^2 / |Omega^C|)`` over the
  entries the normal users did not rate, by :func:`unseen_shift` in low-rank form;
* ``rmse``: RMSE of the unclipped predictions on stored entries, on the data set's own scale;
* ``target_means``: each target's mean predicted rating over the normal users,
  ``mean_i(u_i) . v_j``, on the data set's own scale;
* ``hit_ratio`` / ``ndcg``: per target, over the users who have no stored entry of it, the
  share who see it in their top ``k`` unrated items, and its mean ``1 / log2(1 + rank)`` there;
* ``floor_ratio``: a shift in units of a noise floor, undefined below :data:`FLOOR_RESOLUTION`.
"""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

import numpy as np
import scipy.sparse as sp

from cfpoison.data.ratings import SHIFTED_HIGH, SHIFTED_LOW, Ratings
from cfpoison.learners._sparse import sddmm, with_values
from cfpoison.models.ranking import top_unrated, unrated_pairs

#: A noise floor below this (shifted scale) is not resolved: two fits that agree to the
#: solver's tolerance say nothing about how far an attack must move a model to be evidence,
#: so a shift's ratio to it is reported as undefined, not as thousands of floors.
FLOOR_RESOLUTION = 1e-3


@runtime_checkable
class FittedModel(Protocol):
    """A fitted model seen through its factors (module docstring)."""

    @property
    def user_factors(self) -> np.ndarray:
        """``m x k`` factors of the normal users."""
        ...

    @property
    def item_factors(self) -> np.ndarray:
        """``n x k`` item factors."""
        ...


def predict(model: FittedModel, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """``u_i . v_j`` (shifted scale, unclipped) for parallel arrays of indices."""
    return np.einsum("pk,pk->p", model.user_factors[users], model.item_factors[items])


def unseen_shift(
    omega: sp.csr_array,
    user: np.ndarray,
    item: np.ndarray,
    clean_user: np.ndarray,
    clean_item: np.ndarray,
) -> tuple[float, sp.csr_array]:
    """``sum_{Omega^C} (u_i.v_j - ubar_i.vbar_j)^2`` and the differences D on Omega (CSR).

    ``sum_all = tr(U'U V'V) - 2 tr((Ubar'U)(V'Vbar)) + tr(Ubar'Ubar Vbar'Vbar)`` minus the sum
    over Omega, whose differences come from one sampled product of ``[U, Ubar]`` and
    ``[V, -Vbar]``.
    """
    total = (
        np.sum((user.T @ user) * (item.T @ item))
        - 2.0 * np.sum((clean_user.T @ user) * (clean_item.T @ item))
        + np.sum((clean_user.T @ clean_user) * (clean_item.T @ clean_item))
    )
    diff = sddmm(omega, np.hstack([user, clean_user]), np.hstack([item, -clean_item]))
    return float(total - diff @ diff), with_values(omega, diff)


def rmse_shift(omega: sp.csr_array, model: FittedModel, reference: FittedModel) -> float:
    """Footnote 4's RMSE between two models on the unseen entries of ``omega`` (the normal
    users' training matrix), shifted scale; 0 when every entry is seen."""
    m, n = omega.shape
    unseen = m * n - omega.nnz
    if unseen <= 0:
        return 0.0
    total, _ = unseen_shift(
        omega,
        model.user_factors,
        model.item_factors,
        reference.user_factors,
        reference.item_factors,
    )
    return math.sqrt(max(total, 0.0) / unseen)


def rmse(model: FittedModel, ratings: Ratings) -> float:
    """RMSE of the unclipped predictions on the stored entries of ``ratings`` (the model's
    rows and columns), on the data set's own scale; NaN without entries."""
    if ratings.nnz == 0:
        return math.nan
    rows, cols, values = ratings.triples()
    span = (ratings.scale.high - ratings.scale.low) / (SHIFTED_HIGH - SHIFTED_LOW)
    return float(np.sqrt(np.mean((predict(model, rows, cols) - values) ** 2)) * span)


def item_means(model: FittedModel, items: np.ndarray) -> np.ndarray:
    """Mean predicted score (shifted scale) of each item over the normal users."""
    return model.item_factors[np.asarray(items, dtype=np.int64)] @ model.user_factors.mean(0)


def target_means(model: FittedModel, ratings: Ratings, targets: np.ndarray) -> list[float]:
    """Each target's mean predicted rating over the normal users, on ``ratings``' own scale."""
    return [float(v) for v in ratings.scale.to_original(item_means(model, targets))]


def target_ranks(
    omega: sp.csr_array, model: FittedModel, targets: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(unrated, position)``: ``m x |J0|`` booleans (user i has no stored entry of target t)
    and the target's 0-based position in user i's top ``k`` unrated items (-1: not there)."""
    targets = np.asarray(targets, dtype=np.int64)
    top = top_unrated(omega, model.user_factors, model.item_factors, k)
    position = np.full((omega.shape[0], len(targets)), -1, dtype=np.int64)
    for t, target in enumerate(targets):
        rows, cols = np.nonzero(top == target)
        position[rows, t] = cols
    return unrated_pairs(omega, targets), position


def hit_ratio(omega: sp.csr_array, model: FittedModel, targets: np.ndarray, k: int) -> np.ndarray:
    """Per target: the share of the users without a stored entry of it who see it among their
    top ``k`` unrated items (NaN when every user has it)."""
    unrated, position = target_ranks(omega, model, targets, k)
    return _mean_over_unrated(unrated, (position >= 0).astype(np.float64))


def ndcg(omega: sp.csr_array, model: FittedModel, targets: np.ndarray, k: int) -> np.ndarray:
    """Per target: NDCG at ``k`` with the target as the one relevant item, ``1 / log2(2 + p)``
    at 0-based position ``p`` of the top ``k`` (0 outside), averaged over the users without a
    stored entry of it (NaN when every user has it)."""
    unrated, position = target_ranks(omega, model, targets, k)
    gain = np.where(position >= 0, 1.0 / np.log2(2.0 + np.maximum(position, 0)), 0.0)
    return _mean_over_unrated(unrated, gain)


def _mean_over_unrated(unrated: np.ndarray, values: np.ndarray) -> np.ndarray:
    out = np.full(unrated.shape[1], math.nan)
    for t in range(unrated.shape[1]):
        if unrated[:, t].any():
            out[t] = float(values[unrated[:, t], t].mean())
    return out


def floor_ratio(shift: float, floor: float, resolution: float = FLOOR_RESOLUTION) -> float:
    """``shift / floor``, or NaN (undefined) when the floor is below ``resolution``."""
    if not (math.isfinite(floor) and floor >= resolution):
        return math.nan
    return shift / floor
