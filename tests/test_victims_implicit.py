"""Implicit-feedback victims: implicit's WRMF and BPR-MF, cfpoison's LightGCN.

Each fits a small implicit problem plus fake rows; its factors' product is the score the
library ranks by (``model.recommend``); a seed reproduces a fit; fake users who all interact
with a rare target raise its hit ratio; and the shared measures of
:mod:`cfpoison.models.measures` agree with brute force on the dense score (the checks of
``tests/test_models.py``'s contract that apply to interactions: that file's fixture is
explicit ratings, which these victims refuse).
"""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import scipy.sparse as sp

from cfpoison.data.interactions import Interactions
from cfpoison.data.ratings import Ratings, RatingScale
from cfpoison.errors import ConfigError, DataError
from cfpoison.models import FittedModel
from cfpoison.models.measures import hit_ratio, item_means, ndcg, predict, rmse_shift
from cfpoison.models.ranking import top_unrated
from cfpoison.victims import KINDS, MissingExtraError, Victim, VictimSpec, build_victim
from cfpoison.victims.implicit import implicit_matrix
from cfpoison.victims.lightgcn import (
    LightGCNConfig,
    LightGCNVictim,
    loss_gradient,
    normalized_adjacency,
    propagate,
)

#: Small settings per kind (one thread: the suite runs two workers on two cores).
PARAMS: dict[str, dict[str, bool | int | float | str]] = {
    "implicit-als": {"factors": 8, "iterations": 10, "regularization": 0.1, "threads": 1},
    "implicit-bpr": {"factors": 8, "iterations": 100, "learning_rate": 0.05},
    "lightgcn": {"dim": 16, "epochs": 20, "batch_size": 128, "learning_rate": 0.01},
}
M, N, TARGET = 200, 50, 49  # the target: the last, rarest item


def problem(seed: int = 0) -> tuple[Interactions, sp.csr_array]:
    """200 users x 50 items with Zipf-like popularity (every item held by one user at least;
    the target by 2), and 40 fake users, each a copy of a normal user's items at weights in
    (0.2, 1], plus the target at weight 1 and one explicit zero (no interaction)."""
    rng = np.random.default_rng(seed)
    mask = rng.random((M, N)) < 0.6 * np.arange(1, N + 1) ** -0.6
    mask[np.arange(N), np.arange(N)] = True
    mask[:, TARGET] = False
    mask[:2, TARGET] = True
    rows, cols = np.nonzero(mask)
    matrix = sp.csr_array((np.ones(len(rows)), (rows, cols)), shape=(M, N))
    data = Interactions(matrix, np.arange(M), np.arange(N), "tiny")
    fake = mask[rng.choice(M, 40, replace=False)] * rng.uniform(0.2, 1.0, (40, N))
    fake[:, TARGET] = 1.0
    zeros = [rng.choice(np.flatnonzero(row == 0)) for row in fake]
    rows, cols = np.nonzero(fake)
    rows, cols = np.append(rows, np.arange(40)), np.append(cols, zeros)
    values = np.append(fake[np.nonzero(fake)], np.zeros(40))  # stored zeros: no interaction
    return data, sp.csr_array((values, (rows, cols)), shape=(40, N))


def victim(kind: str, seed: int = 1) -> Victim[Interactions]:
    return build_victim(VictimSpec(kind, kind, PARAMS[kind]), seed)  # type: ignore[arg-type]


@pytest.fixture(scope="module", params=list(PARAMS))
def fitted(request: pytest.FixtureRequest) -> Victim[Interactions]:
    data, fake = problem()
    return victim(request.param).fit(data, fake)


# -- the training matrix ----------------------------------------------------------------------


def test_implicit_matrix_appends_fakes_without_zeros_and_binarises_on_request() -> None:
    data, fake = problem()
    weighted = implicit_matrix("v", data, fake, binary=False)
    assert weighted.shape == (M + 40, N)
    assert fake.nnz == np.count_nonzero(fake.toarray()) + 40
    assert weighted.nnz == data.nnz + fake.nnz - 40  # each fake row's explicit zero is dropped
    np.testing.assert_array_equal(weighted[:M].toarray(), data.matrix.toarray())
    expected = fake.toarray()
    np.testing.assert_array_equal(weighted[M:].toarray(), expected)
    binary = implicit_matrix("v", data, fake, binary=True)
    np.testing.assert_array_equal(binary[M:].toarray(), (expected > 0).astype(float))
    assert implicit_matrix("v", data, None, binary=True).nnz == data.nnz


def test_implicit_victims_refuse_ratings_and_weights_outside_0_1() -> None:
    data, fake = problem()
    ratings = Ratings(data.matrix, data.user_ids, data.item_ids, RatingScale(1, 5, 1), "r")
    with pytest.raises(DataError, match="implicit feedback"):
        implicit_matrix("v", ratings, None, binary=False)  # type: ignore[arg-type]
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        implicit_matrix("v", data, 2 * fake, binary=False)
    with pytest.raises(DataError, match="items"):
        implicit_matrix("v", data, fake[:, :10], binary=False)


def test_the_kinds_are_registered_as_training_on_interactions() -> None:
    implicit = {k for k, info in KINDS.items() if info.data == "interactions"}
    assert implicit == {*PARAMS, "wrmf", "bpr"}
    assert KINDS["implicit-als"].module == KINDS["implicit-bpr"].module == "implicit"
    assert KINDS["lightgcn"].module is None


def test_configs_are_validated() -> None:
    for kind, field in [("implicit-als", "factors"), ("implicit-bpr", "iterations")]:
        with pytest.raises(ConfigError, match=field):
            VictimSpec("v", kind, {field: 0})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="layers"):
        VictimSpec("v", "lightgcn", {"layers": -1})


# -- the libraries' own scores ----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["implicit-als", "implicit-bpr"])
def test_factors_are_the_library_fit_and_rank_as_its_recommend(kind: str) -> None:
    """ALS gets the fake weights as confidences, BPR the fake rows binarised; the factors'
    product is the score ``recommend`` ranks by, bias column included (BPR)."""
    implicit = pytest.importorskip("implicit.cpu.als")
    bpr = pytest.importorskip("implicit.cpu.bpr")
    data, fake = problem()
    v = victim(kind).fit(data, fake)
    matrix = sp.vstack([data.matrix, fake], format="csr")
    matrix.eliminate_zeros()
    c = PARAMS[kind]
    if kind == "implicit-als":
        model = implicit.AlternatingLeastSquares(
            **{k: c[k] for k in ("factors", "iterations", "regularization")},
            dtype=np.float64,
            num_threads=1,
            random_state=1,
        )
    else:
        matrix.data[:] = 1.0
        model = bpr.BayesianPersonalizedRanking(
            **{k: c[k] for k in ("factors", "iterations", "learning_rate")},
            dtype=np.float64,
            num_threads=1,
            random_state=1,
        )
        assert v.item_factors.shape[1] == 9  # 8 factors and the item bias
        np.testing.assert_array_equal(v.user_factors[:, -1], 1.0)
    model.fit(sp.csr_matrix(matrix), show_progress=False)
    np.testing.assert_array_equal(v.user_factors, model.user_factors[:M])
    np.testing.assert_array_equal(v.item_factors, model.item_factors)
    users, k = np.arange(M), 10
    ids, scores = model.recommend(users, sp.csr_matrix(data.matrix), N=k)
    np.testing.assert_array_equal(v.top_k(k), ids)
    dense = v.user_factors @ v.item_factors.T
    np.testing.assert_allclose(np.take_along_axis(dense, ids, axis=1), scores, rtol=1e-12)


def test_lightgcn_gradient_agrees_with_finite_differences() -> None:
    """The hand-written back-propagation through the layers, in float64."""
    data, fake = problem()
    R = implicit_matrix("v", data, fake, binary=True)
    A = normalized_adjacency(R).astype(np.float64)
    rng = np.random.default_rng(5)
    E0 = 0.3 * rng.standard_normal((A.shape[0], 6))
    triples = (
        np.array([0, 3, 3, 201]),
        np.array([240, 245, 240, 285]),
        np.array([260, 250, 289, 241]),
    )
    _, grad = loss_gradient(A, E0, triples, layers=3, l2=0.1)
    for _ in range(10):
        direction = rng.standard_normal(E0.shape)
        h = 1e-6
        plus, _ = loss_gradient(A, E0 + h * direction, triples, 3, 0.1)
        minus, _ = loss_gradient(A, E0 - h * direction, triples, 3, 0.1)
        assert (plus - minus) / (2 * h) == pytest.approx(np.sum(grad * direction), rel=1e-6)


def test_lightgcn_factors_are_the_layer_mean_of_the_normalised_graph() -> None:
    """``propagate``: the mean of ``A^k E0`` for k = 0..K; ``A^`` symmetric with the
    degrees' inverse square roots on every edge."""
    data, _ = problem()
    R = implicit_matrix("v", data, None, binary=True)
    A = normalized_adjacency(R).toarray().astype(np.float64)
    degree = np.concatenate([np.ravel(R.sum(1)), np.ravel(R.sum(0))])
    rows, cols = np.nonzero(A)
    np.testing.assert_allclose(A[rows, cols], 1 / np.sqrt(degree[rows] * degree[cols]), rtol=1e-6)
    E0 = np.random.default_rng(0).standard_normal((len(A), 4))
    expected = (E0 + A @ E0 + A @ A @ E0 + A @ A @ A @ E0) / 4
    np.testing.assert_allclose(propagate(sp.csr_matrix(A), E0, 3), expected, atol=1e-12)


# -- reproducible, and moved by fake rows -----------------------------------------------------


@pytest.mark.parametrize("kind", list(PARAMS))
def test_a_seed_reproduces_a_fit_and_another_seed_does_not(kind: str) -> None:
    data, fake = problem()
    first, again, other = (victim(kind, s).fit(data, fake) for s in (1, 1, 2))
    np.testing.assert_array_equal(first.user_factors, again.user_factors)
    np.testing.assert_array_equal(first.item_factors, again.item_factors)
    assert not np.allclose(first.item_factors, other.item_factors)


@pytest.mark.parametrize(
    ("kind", "rise"), [("implicit-als", 0.3), ("implicit-bpr", 0.03), ("lightgcn", 0.3)]
)
def test_fake_users_raise_the_target_in_normal_users_rankings(kind: str, rise: float) -> None:
    """The target's hit ratio at 10 rises (measured, seeds 1-3: ALS 0 -> 0.41-0.48, LightGCN
    0.005-0.01 -> 0.51-0.61, BPR 0.22-0.27 -> 0.24-0.30). implicit's BPR draws its negatives
    from the stored entries: a rare target is hardly trained (its clean hit ratio is chance,
    10 of some 44 unrated items), and each fake interaction also makes it a negative more
    often; fakes that are not copies of real users push it down there."""
    data, fake = problem()
    targets, k = np.array([TARGET]), 10
    clean = hit_ratio(data.matrix, victim(kind).fit(data), targets, k)
    poisoned = hit_ratio(data.matrix, victim(kind).fit(data, fake), targets, k)
    assert poisoned[0] > clean[0] + rise, (clean, poisoned)


# -- the shared measures ----------------------------------------------------------------------


def test_is_a_fitted_model_whose_measures_agree_with_the_dense_score(
    fitted: Victim[Interactions],
) -> None:
    data, _ = problem()
    assert isinstance(fitted, FittedModel)
    assert fitted.user_factors.shape[0] == data.n_users
    assert fitted.item_factors.shape == (data.n_items, fitted.user_factors.shape[1])
    dense = fitted.user_factors @ fitted.item_factors.T
    rng = np.random.default_rng(0)
    rows, cols = rng.integers(M, size=50), rng.integers(N, size=50)
    np.testing.assert_allclose(predict(fitted, rows, cols), dense[rows, cols], atol=1e-10)
    np.testing.assert_allclose(fitted.predict(rows, cols), dense[rows, cols], atol=1e-10)
    items = np.array([0, 5, TARGET])
    np.testing.assert_allclose(item_means(fitted, items), dense[:, items].mean(0), atol=1e-10)


def test_shift_is_zero_to_itself_and_exact_on_unseen_entries(
    fitted: Victim[Interactions],
) -> None:
    data, _ = problem()
    assert rmse_shift(data.matrix, fitted, fitted) == pytest.approx(0.0, abs=1e-6)
    rng = np.random.default_rng(0)
    other = _Plain(
        fitted.user_factors + 0.1 * rng.standard_normal(fitted.user_factors.shape),
        fitted.item_factors,
    )
    seen = data.matrix.toarray() != 0
    diff = (other.user_factors - fitted.user_factors) @ fitted.item_factors.T
    expected = math.sqrt(float(np.mean(diff[~seen] ** 2)))
    assert rmse_shift(data.matrix, other, fitted) == pytest.approx(expected, rel=1e-8)


def test_hit_ratio_ndcg_and_top_k_agree_with_brute_force(fitted: Victim[Interactions]) -> None:
    data, _ = problem()
    dense = fitted.user_factors @ fitted.item_factors.T
    dense[data.matrix.toarray() != 0] = -np.inf
    targets, k = np.array([1, 20, TARGET]), 5
    hits, gains = [], []
    for t in targets:
        users = [u for u in range(data.n_users) if np.isfinite(dense[u, t])]
        rank = [int(np.sum(dense[u] > dense[u, t])) for u in users]
        hits.append(np.mean([r < k for r in rank]))
        gains.append(np.mean([1 / math.log2(2 + r) if r < k else 0.0 for r in rank]))
    np.testing.assert_allclose(hit_ratio(data.matrix, fitted, targets, k), hits)
    np.testing.assert_allclose(ndcg(data.matrix, fitted, targets, k), gains)
    np.testing.assert_array_equal(fitted.top_k(k), np.argsort(-dense, axis=1, kind="stable")[:, :k])


class _Plain:
    def __init__(self, user: np.ndarray, item: np.ndarray) -> None:
        self.user_factors, self.item_factors = user, item


# -- a missing library ------------------------------------------------------------------------


def test_a_missing_implicit_is_reported_with_the_command_that_installs_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data, fake = problem()
    for kind in ("implicit-als", "implicit-bpr"):
        assert VictimSpec("v", kind).missing() is None  # type: ignore[arg-type]
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    spec = VictimSpec("v", "implicit-bpr")
    assert spec.missing() == "victim 'v' needs implicit: pip install \"cfpoison[victims]\""
    assert VictimSpec("v", "lightgcn").missing() is None  # cfpoison's own
    monkeypatch.setitem(sys.modules, "implicit.cpu.bpr", None)
    with pytest.raises(MissingExtraError, match=r"pip install \"cfpoison\[victims\]\""):
        build_victim(spec, 0).fit(data, fake)


# -- LightGCN on MovieLens --------------------------------------------------------------------


@pytest.mark.slow
def test_lightgcn_beats_popularity_on_held_out_movielens(ml_small: Ratings) -> None:
    """ml-latest-small binarised at 4 stars, 20% of the interactions held out: LightGCN at
    the paper's settings but a 10x step (20 epochs; measured recall at 20: 0.242, popularity
    0.173; at the paper's step 1e-3, 20 epochs reach 0.167) ranks more of them into users'
    top 20 than popularity does."""
    data = Interactions.from_ratings(ml_small)
    rng = np.random.default_rng(0)
    coo = data.matrix.tocoo()
    held = rng.random(coo.nnz) < 0.2
    train = data.with_matrix(
        sp.csr_array((coo.data[~held], (coo.row[~held], coo.col[~held])), shape=coo.shape)
    )
    test = sp.csr_array((coo.data[held], (coo.row[held], coo.col[held])), shape=coo.shape)
    held_out = test.toarray() > 0

    def recall(user: np.ndarray, item: np.ndarray, k: int = 20) -> float:
        found = np.take_along_axis(held_out, top_unrated(train.matrix, user, item, k), axis=1)
        counts = np.diff(test.indptr)
        has = counts > 0
        return float(np.mean(found[has].sum(1) / np.minimum(k, counts[has])))

    popularity = recall(np.ones((data.n_users, 1)), train.item_counts[:, None].astype(float))
    model = LightGCNVictim(LightGCNConfig(epochs=20, learning_rate=1e-2)).fit(train)
    assert recall(model.user_factors, model.item_factors) > 1.2 * popularity
