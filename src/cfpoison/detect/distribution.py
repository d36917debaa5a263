"""The distribution tests a defender runs first: suspect profiles against held-out real users.

Each test compares the ``m'`` suspect rows with the ``m`` reference rows (real users the
defender trusts: the data set's users, which the suspects are not part of), one number per
user unless said otherwise, and returns a :class:`DistributionTest` (small ``p``: the
suspects do not look like the reference).

* ``length``: two-sample Kolmogorov-Smirnov test on the profile lengths ``|I_u|``.
* ``rating_histogram``: the ``2 x K`` contingency table of rating counts on the data set's
  grid (:func:`rating_bins`), suspects pooled against the reference pooled; Pearson's
  chi-square ``X^2 = sum (O - E)^2 / E`` over the bins that either group uses (a bin empty in
  both carries no information and is dropped; ``K' - 1`` degrees of freedom).
  ``pvalue_asymptotic`` is the textbook ``chi2(K' - 1)`` tail, which treats every rating as an
  independent draw; ratings of one user are not independent (users have their own
  histograms), so it rejects groups of real users too. ``pvalue`` is the calibrated one: the
  fraction of ``permutations`` random groups of ``m'`` users drawn from suspects and reference
  together whose ``X^2`` is at least the observed one (``(1 + #>=) / (1 + permutations)``).
* ``item_popularity``: two-sample KS test on each user's mean log popularity of the items
  they rated, ``s_u = mean_{j in I_u} log((c_j + 1) / (m + 1))`` with ``c_j`` the number of
  reference users who rated ``j`` (a reference user is scored against the other reference
  users, :func:`cfpoison.detect.ttest.mean_log_popularity`). Not matched on activity: heavy
  users rate more obscure items, so a group of short profiles shifts ``s_u`` upwards; the
  activity-matched t-test (``ttest_users``) separates the two effects.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.sparse as sp
from scipy import stats

from cfpoison.config import Record
from cfpoison.data.ratings import SHIFTED_HIGH, SHIFTED_LOW, RatingScale
from cfpoison.detect.ttest import mean_log_popularity
from cfpoison.errors import DataError

CONTINUOUS_BINS = 10  # equal-width bins over [-2, 2] for a continuous rating scale


@dataclasses.dataclass(frozen=True)
class DistributionTest(Record):
    """One two-sample test: its statistic, p-value and what it compared.

    ``pvalue_asymptotic`` differs from ``pvalue`` only for the rating histogram (see the
    module docstring); ``n_suspect`` and ``n_reference`` count users.
    """

    name: str
    statistic: float
    pvalue: float
    pvalue_asymptotic: float
    n_suspect: int
    n_reference: int
    description: str


def rating_bins(scale: RatingScale) -> np.ndarray:
    """Bin edges on the shifted scale: one bin per grid value (edges at the midpoints), or
    ``CONTINUOUS_BINS`` equal bins over ``[-2, 2]`` for a continuous scale."""
    step = scale.shifted_step
    if step <= 0:
        return np.linspace(SHIFTED_LOW, SHIFTED_HIGH, CONTINUOUS_BINS + 1)
    count = round((SHIFTED_HIGH - SHIFTED_LOW) / step)
    centres = SHIFTED_LOW + step * np.arange(count + 1)
    return np.r_[-np.inf, (centres[1:] + centres[:-1]) / 2, np.inf]


def user_histograms(matrix: sp.csr_array, edges: np.ndarray) -> np.ndarray:
    """``users x bins`` counts of each user's ratings in the bins of ``edges``."""
    bins = np.clip(np.searchsorted(edges, matrix.data, side="right") - 1, 0, len(edges) - 2)
    rows = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
    out = np.zeros((matrix.shape[0], len(edges) - 1))
    np.add.at(out, (rows, bins), 1.0)
    return out


def _check(reference: sp.csr_array, suspect: sp.csr_array) -> None:
    if suspect.shape[1] != reference.shape[1]:
        raise DataError(
            f"suspect profiles have {suspect.shape[1]} items, reference {reference.shape[1]}"
        )
    if reference.shape[0] < 1 or suspect.shape[0] < 1:
        raise DataError("a distribution test needs at least one reference and one suspect user")


def _ks(name: str, suspect: np.ndarray, reference: np.ndarray, what: str) -> DistributionTest:
    result = stats.ks_2samp(suspect, reference)
    p = float(result.pvalue)
    return DistributionTest(name, float(result.statistic), p, p, len(suspect), len(reference), what)


def length_test(reference: sp.csr_array, suspect: sp.csr_array) -> DistributionTest:
    """KS test on the profile lengths (module docstring)."""
    _check(reference, suspect)
    lengths = np.diff(reference.indptr), np.diff(suspect.indptr)
    return _ks("length", lengths[1], lengths[0], "KS on profile length |I_u|")


def popularity_test(reference: sp.csr_array, suspect: sp.csr_array) -> DistributionTest:
    """KS test on each user's mean log popularity of the items rated (module docstring)."""
    _check(reference, suspect)
    counts = np.bincount(reference.indices, minlength=reference.shape[1])
    normal, fake = mean_log_popularity(reference, suspect, counts)
    keep_n, keep_f = np.diff(reference.indptr) > 0, np.diff(suspect.indptr) > 0
    return _ks(
        "item_popularity",
        fake[keep_f],
        normal[keep_n],
        "KS on the mean log popularity (among reference users) of the items a user rated",
    )


def _chi_square(table: np.ndarray) -> np.ndarray:
    """Pearson's ``X^2`` of ``P`` stacked ``2 x K`` tables (``P x 2 x K``), empty bins dropped."""
    total = table.sum(axis=(1, 2), keepdims=True)
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=2, keepdims=True) / total
    with np.errstate(invalid="ignore", divide="ignore"):
        terms = np.where(expected > 0, (table - expected) ** 2 / expected, 0.0)
    return terms.sum(axis=(1, 2))


def histogram_test(
    reference: sp.csr_array,
    suspect: sp.csr_array,
    edges: np.ndarray,
    rng: np.random.Generator,
    permutations: int = 999,
) -> DistributionTest:
    """Chi-square test on the rating histograms, with a user-permutation p-value."""
    _check(reference, suspect)
    hist = np.vstack([user_histograms(suspect, edges), user_histograms(reference, edges)])
    used = hist.sum(axis=0) > 0
    hist = hist[:, used]
    n_suspect = suspect.shape[0]
    total = hist.sum(axis=0)

    def statistic(groups: np.ndarray) -> np.ndarray:
        """``X^2`` for each row of ``groups`` (``P x users`` 0/1 membership of the group)."""
        inside = groups @ hist
        return _chi_square(np.stack([inside, total - inside], axis=1))

    observed_group = np.zeros((1, hist.shape[0]))
    observed_group[0, :n_suspect] = 1.0
    observed = float(statistic(observed_group)[0])
    dof = int(used.sum()) - 1
    asymptotic = float(stats.chi2.sf(observed, dof)) if dof > 0 else float("nan")
    keys = rng.random((permutations, hist.shape[0]))
    groups = np.zeros_like(keys)
    np.put_along_axis(groups, np.argpartition(keys, n_suspect - 1, axis=1)[:, :n_suspect], 1, 1)
    exceed = int(np.sum(statistic(groups) >= observed - 1e-9 * max(1.0, observed)))
    return DistributionTest(
        "rating_histogram",
        observed,
        (1 + exceed) / (1 + permutations),
        asymptotic,
        n_suspect,
        reference.shape[0],
        f"chi-square on the pooled rating histogram over {dof + 1} grid bins; p by "
        f"{permutations} random user groups",
    )


def distribution_tests(
    reference: sp.csr_array,
    suspect: sp.csr_array,
    scale: RatingScale,
    rng: np.random.Generator,
    permutations: int = 999,
) -> dict[str, DistributionTest]:
    """All three tests of the module docstring, by name."""
    tests = (
        length_test(reference, suspect),
        histogram_test(reference, suspect, rating_bins(scale), rng, permutations),
        popularity_test(reference, suspect),
    )
    return {test.name: test for test in tests}
