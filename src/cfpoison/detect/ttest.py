"""The paper's detection test: a paired t-test on how often the items a group rates are rated.

Li et al. (2016, section 5) compare "the distributions of rated items between normal and
malicious users" with a paired t-test and do not say which numbers are paired. Two readings
are implemented; both count ratings of an item by the *normal* users only, so a defender
needs nothing but a clean reference database. What each measures, and a third reading that
was rejected: ``docs/math.md`` section 6.

``pairing="items"`` (the paper's literal test, the default; ``ttest_pvalue`` in reports):
    for every item ``j`` of the ``n`` items, ``x_j`` = fraction of the ``m`` normal users who
    rated ``j`` and ``y_j`` = fraction of the ``m'`` fake users who rated ``j``;
    ``scipy.stats.ttest_rel(y, x)`` over the ``n`` pairs. Its mean difference is
    ``(mean fake activity - mean normal activity) / n``: with ``n`` in the thousands it
    rejects whenever the fake users rate a different number of items than the average
    normal user does, whichever items they are.

``pairing="users"`` (calibrated; it measures item choice, not activity):
    each user's statistic is the mean log rating frequency of the items they rated,
    ``s_u = mean_{j in I_u} log((c_j + 1) / (m + 1))`` with ``c_j`` the number of normal users
    who rated ``j`` (a normal user is scored against the *other* normal users:
    ``log(c_j / m)``). Every fake user is paired with the average ``s`` of the ``neighbours``
    normal users whose number of ratings is closest to theirs (activity matters: heavy users
    rate more obscure items), and ``ttest_rel`` runs over the ``m'`` pairs.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np
import scipy.sparse as sp
from scipy import stats

from cfpoison.config import Record
from cfpoison.data.ratings import Ratings
from cfpoison.detect.features import row_means
from cfpoison.errors import DataError

Pairing = Literal["items", "users"]

STATISTIC_NAMES: dict[str, str] = {
    "items": "fraction of the group's users who rated the item, paired over items",
    "users": (
        "mean log rating frequency (among normal users) of the items a user rated,"
        " fake user paired with activity-matched normal users"
    ),
}


@dataclasses.dataclass(frozen=True)
class TTestResult(Record):
    """A paired t-test: ``statistic`` > 0 when the fake side's mean is the larger.

    ``n_pairs`` is the number of items (``pairing="items"``) or fake users (``"users"``).
    ``pvalue`` is NaN when the test is undefined (fewer than two pairs, zero variance).
    """

    statistic: float
    pvalue: float
    n_pairs: int
    statistic_name: str
    pairing: str


def rating_frequency_ttest(
    ratings: Ratings,
    fake: sp.csr_array,
    pairing: Pairing = "items",
    neighbours: int = 10,
) -> TTestResult:
    """Paired t-test between the normal users ``ratings`` and the fake rows ``fake``.

    ``fake`` is ``m' x n`` CSR on the same items; its stored entries are the rated items.
    See the module docstring for what is paired.
    """
    m, n = ratings.matrix.shape
    if fake.shape[1] != n:
        raise DataError(f"fake profiles have {fake.shape[1]} items, the data set has {n}")
    if m < 1 or fake.shape[0] < 1:
        raise DataError("the t-test needs at least one normal and one fake user")
    normal_counts = ratings.item_counts
    if pairing == "items":
        fake_counts = np.bincount(fake.indices, minlength=n)
        x = normal_counts / m
        y = fake_counts / fake.shape[0]
    elif pairing == "users":
        if neighbours < 1:
            raise DataError(f"neighbours must be >= 1, got {neighbours}")
        y, x = _popularity_pairs(ratings.matrix, fake, normal_counts, neighbours)
    else:
        raise DataError(f"unknown t-test pairing {pairing!r} (items or users)")
    statistic, pvalue = _paired(y, x)
    return TTestResult(statistic, pvalue, len(y), STATISTIC_NAMES[pairing], pairing)


def _paired(y: np.ndarray, x: np.ndarray) -> tuple[float, float]:
    """``ttest_rel(y, x)``, NaN where it is undefined (without scipy's warnings)."""
    diff = y - x
    if len(diff) < 2 or np.ptp(diff) == 0:
        return float("nan"), float("nan")
    result = stats.ttest_rel(y, x)
    return float(result.statistic), float(result.pvalue)


def mean_log_popularity(
    normal: sp.csr_array, fake: sp.csr_array, counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per user, the mean log rating frequency ``s_u`` of the items rated (module docstring).

    ``counts[j]`` is the number of normal users who rated ``j``; a normal user is scored
    against the other ``m - 1`` normal users, add-one smoothed (``log(c_j / m)``), a fake user
    against all of them (``log((c_j + 1) / (m + 1))``). Empty rows score 0.
    """
    m = normal.shape[0]
    normal_stat = row_means(normal, np.log(np.maximum(counts, 1) / m)[normal.indices])
    fake_stat = row_means(fake, np.log((counts + 1) / (m + 1))[fake.indices])
    return normal_stat, fake_stat


def _popularity_pairs(
    normal: sp.csr_array, fake: sp.csr_array, counts: np.ndarray, neighbours: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per fake user: its statistic and the mean statistic of its activity-matched normals."""
    normal_stat, fake_stat = mean_log_popularity(normal, fake, counts)
    normal_activity = np.diff(normal.indptr)
    keep = normal_activity > 0
    normal_stat, normal_activity = normal_stat[keep], normal_activity[keep]
    fake_activity = np.diff(fake.indptr)
    rated = fake_activity > 0
    fake_stat, fake_activity = fake_stat[rated], fake_activity[rated]
    k = min(neighbours, len(normal_stat))
    if k == 0 or len(fake_stat) == 0:
        return np.zeros(0), np.zeros(0)
    # stable sort by activity, then the k nearest in |activity difference| for each fake user
    order = np.argsort(normal_activity, kind="stable")
    sorted_activity = normal_activity[order]
    reference = np.empty(len(fake_stat))
    for i, a in enumerate(fake_activity):
        lo = max(0, int(np.searchsorted(sorted_activity, a)) - k)
        window = order[lo : lo + 2 * k]
        gap = np.abs(normal_activity[window] - a)
        nearest = window[np.argsort(gap, kind="stable")[:k]]
        reference[i] = normal_stat[nearest].mean()
    return fake_stat, reference
