"""The paired t-tests: what is paired, and which profiles they separate."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from scipy import stats

from cfpoison.data.ratings import Ratings
from cfpoison.detect import rating_frequency_ttest
from cfpoison.errors import DataError
from test_detect_detectors import N_ITEMS, normal_users, profiles


def hold_out(ratings: Ratings, users: np.ndarray) -> tuple[Ratings, sp.csr_array]:
    """Split real users off as 'fake' profiles: the null hypothesis holds for them."""
    keep = np.setdiff1d(np.arange(ratings.n_users), users)
    rest = ratings.with_matrix(ratings.matrix[keep], user_ids=ratings.user_ids[keep])
    return rest, sp.csr_array(ratings.matrix[users])


def uniform_items(rng: np.random.Generator, activity: np.ndarray) -> sp.csr_array:
    """Each fake user rates as many items as a given real user, chosen uniformly at random."""
    rows = [rng.choice(N_ITEMS, int(a), replace=False) for a in activity]
    return profiles(rows, [rng.choice([-2.0, 0.0, 2.0], len(r)) for r in rows])


def test_item_pairing_is_the_fraction_of_each_group_who_rated_the_item() -> None:
    ratings = normal_users()
    fake = uniform_items(np.random.default_rng(0), np.full(5, 30))
    result = rating_frequency_ttest(ratings, fake, "items")
    x = np.bincount(ratings.matrix.indices, minlength=N_ITEMS) / ratings.n_users
    y = np.bincount(fake.indices, minlength=N_ITEMS) / 5
    expected = stats.ttest_rel(y, x)
    assert result.statistic == pytest.approx(expected.statistic)
    assert result.pvalue == pytest.approx(expected.pvalue)
    assert (result.n_pairs, result.pairing) == (N_ITEMS, "items")


def test_item_pairing_measures_activity() -> None:
    ratings = normal_users()  # 60 ratings per user on average
    rng = np.random.default_rng(1)
    heavy = rating_frequency_ttest(ratings, uniform_items(rng, np.full(8, 200)), "items")
    assert heavy.statistic > 0 and heavy.pvalue < 1e-6
    light = rating_frequency_ttest(ratings, uniform_items(rng, np.full(8, 20)), "items")
    assert light.statistic < 0 and light.pvalue < 1e-6


def test_user_pairing_separates_uniform_items_from_real_users() -> None:
    ratings = normal_users()
    rng = np.random.default_rng(2)
    real_p, fake_p = [], []
    for _ in range(5):
        rest, real = hold_out(ratings, rng.choice(ratings.n_users, 15, replace=False))
        real_p.append(rating_frequency_ttest(rest, real, "users").pvalue)
        fake = uniform_items(rng, np.diff(real.indptr))  # same activity, uniform items
        result = rating_frequency_ttest(rest, fake, "users")
        # uniform picks land on rarer items than real users' picks: lower mean log frequency
        assert result.statistic < 0 and result.n_pairs == 15
        fake_p.append(result.pvalue)
    assert max(fake_p) < 1e-3
    assert np.median(real_p) > 0.05


def test_user_pairing_is_calibrated_on_real_users() -> None:
    ratings = normal_users()
    rng = np.random.default_rng(3)
    pvalues = []
    for _ in range(20):
        rest, real = hold_out(ratings, rng.choice(ratings.n_users, 10, replace=False))
        pvalues.append(rating_frequency_ttest(rest, real, "users").pvalue)
    assert np.mean(np.array(pvalues) < 0.05) <= 0.15
    assert 0.25 < np.median(pvalues) < 0.75


def test_undefined_and_invalid_cases() -> None:
    ratings = normal_users()
    one = uniform_items(np.random.default_rng(4), np.array([20]))
    assert np.isnan(rating_frequency_ttest(ratings, one, "users").pvalue)
    with pytest.raises(DataError):
        rating_frequency_ttest(ratings, sp.csr_array((2, N_ITEMS + 1)))
    with pytest.raises(DataError):
        rating_frequency_ttest(ratings, one, "bogus")  # type: ignore[arg-type]
