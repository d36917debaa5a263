"""Metrics of a poisoned model, always against the clean model fitted on the same data.

* ``rmse_shift`` (paper footnote 4): ``sqrt(sum_{Omega^C} (Pbar - P)^2 / |Omega^C|)`` over the
  unseen entries of the normal users, on the shifted scale ``[-2, 2]``, computed in low-rank
  form (:func:`cfpoison.models.measures.unseen_shift`).
* ``rmse_shift_noise_floor``: the same quantity between two clean fits whose random
  initialisations differ (learner seeds ``s`` and ``s + 1``). ALS is non-convex; a shift below
  this floor is no evidence of an attack. (For nuclear norm it is the solver's tolerance.)
* ``target_mean_before`` / ``target_mean_after``: for each target item, the mean predicted
  rating over the normal users, ``mean_i(u_i) . v_j``, on the data set's own scale.
* ``target_hit_before`` / ``target_hit_after`` (when there are targets): for each target, the
  share of the normal users who have not rated it that see it among their top
  :data:`HIT_K` unrated items;
* ``rmse_train`` / ``rmse_test`` (and their ``_clean`` twins): RMSE of the unclipped predictions
  on the observed training / test entries of the normal users, on the data set's own scale.

The poisoned model is fitted from the same random initialisation as the clean one (same
learner config, same seed), so that the only difference between them is the fake data.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

from cfpoison.attacks.utility import Utility
from cfpoison.data.ratings import Ratings
from cfpoison.detect.ttest import rating_frequency_ttest
from cfpoison.learners import LearnerConfig
from cfpoison.learners.base import Learner
from cfpoison.models import fit_learner, noise_floor, victim_start
from cfpoison.models.measures import hit_ratio, rmse, rmse_shift, target_means

#: The top-k of ``target_hit_before`` / ``target_hit_after``.
HIT_K = 10


def evaluate_profiles(
    train: Ratings,
    fake: sp.csr_array,
    learner_config: LearnerConfig,
    targets: np.ndarray,
    test: Ratings | None = None,
    *,
    clean: Learner | None = None,
    floor: float | None = None,
    utility: Utility | None = None,
) -> dict[str, Any]:
    """Inject ``fake`` (m' x n CSR, shifted scale), retrain, and compare with the clean model.

    ``clean`` (a fit of ``learner_config`` on ``train``) and ``floor`` (its noise floor) are
    computed when not given. ``targets`` are column indices. Returns the metrics of the module
    docstring plus ``n_fake``, ``ttest_pvalue`` (the paper's paired t-test over items,
    :func:`cfpoison.detect.ttest.rating_frequency_ttest`), ``ttest_users_pvalue`` (the
    activity-matched test over fake users, which is calibrated on real users where the paper's
    is not; see that module) and, given ``utility``, its value
    at the poisoned (``utility``) and clean (``utility_clean``) models.
    """
    if clean is None:
        clean = fit_learner(learner_config, train)
    if floor is None:
        floor = noise_floor(train, learner_config, clean)
    poisoned = fit_learner(learner_config, train, fake, victim_start(learner_config, clean))
    metrics: dict[str, Any] = {
        "n_fake": int(fake.shape[0]),
        "rmse_shift": rmse_shift(train.matrix, poisoned, clean),
        "rmse_shift_noise_floor": floor,
        "target_mean_before": target_means(clean, train, targets),
        "target_mean_after": target_means(poisoned, train, targets),
        **_hits(train, clean, poisoned, targets),
        "rmse_train": rmse(poisoned, train),
        "rmse_train_clean": rmse(clean, train),
        "ttest_pvalue": _ttest_pvalue(train, fake, "items"),
        "ttest_users_pvalue": _ttest_pvalue(train, fake, "users"),
    }
    if utility is not None:
        metrics["utility"] = utility.value(poisoned.user_factors, poisoned.item_factors)
        metrics["utility_clean"] = utility.value(clean.user_factors, clean.item_factors)
    if test is not None:
        metrics["rmse_test"] = rmse(poisoned, test)
        metrics["rmse_test_clean"] = rmse(clean, test)
    return metrics


def _hits(train: Ratings, clean: Learner, poisoned: Learner, targets: np.ndarray) -> dict:
    """``target_hit_before`` / ``target_hit_after`` (none without targets)."""
    if len(targets) == 0:
        return {}
    return {
        f"target_hit_{when}": [float(h) for h in hit_ratio(train.matrix, model, targets, HIT_K)]
        for when, model in (("before", clean), ("after", poisoned))
    }


def _ttest_pvalue(train: Ratings, fake: sp.csr_array, pairing: Literal["items", "users"]) -> float:
    """p-value of :func:`rating_frequency_ttest` (NaN without fake users)."""
    return rating_frequency_ttest(train, fake, pairing).pvalue if fake.shape[0] else math.nan
