"""The model layer's contract: every kind of fitted model gives the same measures.

Learners (ALS, nuclear norm, biased MF, a restored cache entry), victims (cfpoison's learners,
Surprise SVD, cmfrec) and defended models (bagging's ensemble, detect-and-remove) are each a
:class:`cfpoison.models.FittedModel`; :mod:`cfpoison.models.measures` is checked on each of
them against brute force on the dense ``m x n`` prediction of a tiny problem.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import scipy.sparse as sp

from cfpoison.data.ratings import Ratings
from cfpoison.data.synthetic import SyntheticConfig, make_synthetic
from cfpoison.defend.defenses import BaggingConfig, DetectRemoveConfig, defend
from cfpoison.experiments.shared_fits import StoredFit
from cfpoison.learners import ALSConfig, BiasedConfig, NuclearConfig, build_learner
from cfpoison.models import FittedModel
from cfpoison.models.measures import (
    FLOOR_RESOLUTION,
    floor_ratio,
    hit_ratio,
    item_means,
    ndcg,
    predict,
    rmse,
    rmse_shift,
    target_means,
)
from cfpoison.victims.spec import VictimSpec, build_victim

ALS = ALSConfig(rank=3, lambda_u=2.0, lambda_v=2.0, threads=1)


@pytest.fixture(scope="module")
def data() -> tuple[Ratings, Ratings, sp.csr_array]:
    """A tiny synthetic train/test pair and three fake rows (shifted scale)."""
    ratings = make_synthetic(
        SyntheticConfig(n_users=40, n_items=30, n_ratings=500, rank=3, min_user_ratings=5)
    )
    rng = np.random.default_rng(3)
    rows, cols, values = ratings.triples()
    held = rng.random(len(rows)) < 0.2
    train = ratings.with_matrix(
        sp.csr_array((values[~held], (rows[~held], cols[~held])), shape=ratings.matrix.shape)
    )
    test = ratings.with_matrix(
        sp.csr_array((values[held], (rows[held], cols[held])), shape=ratings.matrix.shape)
    )
    fake = sp.random_array((3, ratings.n_items), density=0.3, rng=rng, format="csr")
    fake.data = rng.uniform(-2, 2, fake.nnz)
    return train, test, sp.csr_array(fake)


def _learner(config: object) -> Callable[[Ratings, sp.csr_array], FittedModel]:
    return lambda train, fake: build_learner(config).fit(train, fake=fake)  # type: ignore[arg-type]


def _stored(train: Ratings, fake: sp.csr_array) -> FittedModel:
    fitted = build_learner(ALS).fit(train, fake=fake)
    return StoredFit(ALS, {k: np.asarray(v) for k, v in StoredFit.entry_of(fitted).items()})


def _victim(model: str) -> Callable[[Ratings, sp.csr_array], FittedModel]:
    return lambda train, fake: build_victim(VictimSpec(model, model), 1).fit(train, fake)


def _defended(config: object) -> Callable[[Ratings, sp.csr_array], FittedModel]:
    return lambda train, fake: defend(train, fake, config, ALS, np.random.default_rng(0))  # type: ignore[arg-type]


MODELS: dict[str, Callable[[Ratings, sp.csr_array], FittedModel]] = {
    "learner-als": _learner(ALS),
    "learner-nuclear": _learner(NuclearConfig(lam=2.0, threads=1)),
    "learner-biased": _learner(BiasedConfig(rank=3, threads=1)),
    "learner-restored": _stored,
    "victim-als": _victim("als"),
    "victim-biased": _victim("biased"),
    "victim-surprise-svd": _victim("surprise-svd"),
    "victim-cmfrec": _victim("cmfrec"),
    "defended-bagging": _defended(BaggingConfig(bags=3)),
    "defended-detect-remove": _defended(DetectRemoveConfig()),
}


class FittedModelContract:
    """What every fitted model gives through the shared measures (module docstring)."""

    @pytest.fixture(scope="class")
    @staticmethod
    def model(request: pytest.FixtureRequest, data) -> FittedModel:  # type: ignore[no-untyped-def]
        train, _, fake = data
        return MODELS[request.param](train, fake)

    def test_is_a_fitted_model_with_factors_of_the_data(self, model: FittedModel, data) -> None:  # type: ignore[no-untyped-def]
        train, _, _ = data
        assert isinstance(model, FittedModel)
        assert model.user_factors.shape[0] == train.n_users
        assert model.item_factors.shape[0] == train.n_items
        assert model.user_factors.shape[1] == model.item_factors.shape[1]

    def test_measures_agree_with_the_dense_prediction(self, model: FittedModel, data) -> None:  # type: ignore[no-untyped-def]
        train, test, _ = data
        dense = model.user_factors @ model.item_factors.T
        rows, cols, values = test.triples()
        np.testing.assert_allclose(predict(model, rows, cols), dense[rows, cols], atol=1e-10)
        if hasattr(model, "predict"):
            np.testing.assert_allclose(model.predict(rows, cols), dense[rows, cols], atol=1e-8)
        span = (test.scale.high - test.scale.low) / 4.0
        expected = math.sqrt(float(np.mean((dense[rows, cols] - values) ** 2))) * span
        assert rmse(model, test) == pytest.approx(expected, rel=1e-9)
        items = np.array([0, 5, 7])
        np.testing.assert_allclose(item_means(model, items), dense[:, items].mean(0), atol=1e-10)
        assert target_means(model, train, items) == pytest.approx(
            list(train.scale.to_original(dense[:, items].mean(0)))
        )

    def test_shift_is_zero_to_itself_and_exact_on_unseen_entries(
        self,
        model: FittedModel,
        data,  # type: ignore[no-untyped-def]
    ) -> None:
        train, _, _ = data
        assert rmse_shift(train.matrix, model, model) == pytest.approx(0.0, abs=1e-6)
        rng = np.random.default_rng(0)
        other = _Plain(
            model.user_factors + 0.1 * rng.standard_normal(model.user_factors.shape),
            model.item_factors,
        )
        seen = train.matrix.toarray() != 0
        seen[train.triples()[:2]] = True
        diff = (other.user_factors - model.user_factors) @ model.item_factors.T
        expected = math.sqrt(float(np.mean(diff[~seen] ** 2)))
        assert rmse_shift(train.matrix, other, model) == pytest.approx(expected, rel=1e-8)

    def test_hit_ratio_and_ndcg_agree_with_brute_force(self, model: FittedModel, data) -> None:  # type: ignore[no-untyped-def]
        train, _, _ = data
        dense = model.user_factors @ model.item_factors.T
        rows, cols, _ = train.triples()
        dense[rows, cols] = -np.inf
        targets, k = np.array([1, 4, 9]), 5
        hits, gains = [], []
        for t in targets:
            users = [u for u in range(train.n_users) if np.isfinite(dense[u, t])]
            rank = [int(np.sum(dense[u] > dense[u, t])) for u in users]
            hits.append(np.mean([r < k for r in rank]))
            gains.append(np.mean([1 / math.log2(2 + r) if r < k else 0.0 for r in rank]))
        np.testing.assert_allclose(hit_ratio(train.matrix, model, targets, k), hits)
        np.testing.assert_allclose(ndcg(train.matrix, model, targets, k), gains)


class _Plain:
    def __init__(self, user: np.ndarray, item: np.ndarray) -> None:
        self.user_factors, self.item_factors = user, item


@pytest.mark.parametrize("model", list(MODELS), indirect=True)
class TestEveryModel(FittedModelContract):
    pass


def test_floor_ratio_is_undefined_below_the_resolution() -> None:
    assert floor_ratio(0.02, 0.01) == pytest.approx(2.0)
    assert math.isnan(floor_ratio(0.02, FLOOR_RESOLUTION / 10))
    assert math.isnan(floor_ratio(0.02, math.nan))
