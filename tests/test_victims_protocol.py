"""The victim contract for every kind: shapes, predictions, item means, top-k, seeds."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import scipy.sparse as sp

from cfpoison.data.preprocess import PreprocessConfig, prepare
from cfpoison.data.ratings import Ratings, RatingScale
from cfpoison.data.synthetic import SyntheticConfig, make_synthetic
from cfpoison.models.measures import hit_ratio, item_means, rmse
from cfpoison.victims import KINDS, Victim, VictimSpec, build_victim

SMALL = {"threads": 1}


def installed(model: str) -> bool:
    module = KINDS[model].module
    return module is None or importlib.util.find_spec(module) is not None


MODELS = [
    pytest.param(m, marks=pytest.mark.skipif(not installed(m), reason=f"{m} not installed"))
    for m in KINDS
    if KINDS[m].data == "ratings"
]


@pytest.fixture(scope="module")
def data() -> tuple[Ratings, Ratings, sp.csr_array]:
    raw = make_synthetic(SyntheticConfig(n_users=80, n_items=150, n_ratings=3000, seed=4))
    train, test = prepare(raw, PreprocessConfig(min_user_ratings=5))
    rng = np.random.default_rng(0)
    rows, cols = np.repeat(np.arange(3), 20), rng.integers(0, train.n_items, 60)
    fake = sp.csr_array((rng.choice([-2.0, 2.0], 60), (rows, cols)), shape=(3, train.n_items))
    fake.sum_duplicates()
    return train, test, fake


def spec(model: str) -> VictimSpec:
    params = SMALL if model in ("als", "nuclear", "biased") else {}
    if model == "cmfrec":
        params = {"nthreads": 1}
    return VictimSpec(model, model, dict(params))


@pytest.mark.parametrize("model", MODELS)
def test_contract(model: str, data: tuple[Ratings, Ratings, sp.csr_array]) -> None:
    train, test, fake = data
    m, n = train.n_users, train.n_items
    victim = build_victim(spec(model), 5)
    assert isinstance(victim, Victim)
    with pytest.raises(RuntimeError, match="fit"):
        victim.user_factors  # noqa: B018
    victim.fit(train, fake)
    U, V = victim.user_factors, victim.item_factors
    assert U.shape[0] == m and V.shape[0] == n and U.shape[1] == V.shape[1]
    dense = U @ V.T
    users, items = np.array([0, 3, m - 1]), np.array([n - 1, 0, 7])
    np.testing.assert_allclose(victim.predict(users, items), dense[users, items], atol=1e-12)
    np.testing.assert_allclose(item_means(victim, items), dense[:, items].mean(0), atol=1e-12)
    assert np.isfinite(rmse(victim, test)) and rmse(victim, test) < 2.0  # stars, a sane fit
    assert victim.converged in (True, False, None)

    top = victim.top_k(5)
    assert top.shape == (m, 5)
    rows, cols, _ = train.triples()
    masked = dense.copy()
    masked[rows, cols] = -np.inf  # every stored entry is a rating, zeros included
    rated = train.matrix
    for u in range(m):
        assert not set(top[u]) & set(rated.indices[rated.indptr[u] : rated.indptr[u + 1]])
        np.testing.assert_allclose(dense[u, top[u]], np.sort(masked[u])[::-1][:5], atol=1e-12)

    same = build_victim(spec(model), 5).fit(train, fake)
    np.testing.assert_array_equal(same.user_factors, U)  # deterministic by seed
    np.testing.assert_array_equal(same.item_factors, V)


def test_top_k_pads_users_with_few_unrated_items_and_hit_ratio_counts_them() -> None:
    matrix = sp.csr_array((np.array([1.0, 0.5, 0.0]), ([0, 0, 0], [0, 1, 2])), shape=(2, 3))
    train = Ratings(matrix, np.array([1, 2]), np.array([1, 2, 3]), RatingScale(1, 5, 1))

    class Fixed(Victim):
        def _fit(self, train, fake):  # type: ignore[no-untyped-def]
            return np.array([[1.0], [1.0]]), np.array([[3.0], [2.0], [1.0]]), None

    victim = Fixed().fit(train)
    top = victim.top_k(2)
    np.testing.assert_array_equal(top, [[-1, -1], [0, 1]])  # user 0 rated everything
    # user 0 rated item 2, user 1 sees items 0 and 1 in its top 2 but not item 2
    np.testing.assert_array_equal(hit_ratio(train.matrix, victim, np.array([0, 2]), 2), [1.0, 0.0])
    np.testing.assert_array_equal(hit_ratio(train.matrix, victim, np.array([2]), 3), [1.0])
