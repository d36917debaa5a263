"""Low-rank utilities against dense references; Hessian-vector products; the Krylov solve."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from cfpoison.attacks.utility import (
    Utility,
    UtilityConfig,
    build_utility,
    candidate_pattern,
    choose_auto_target,
)
from cfpoison.data.ratings import Ratings, RatingScale
from cfpoison.errors import ConfigError
from cfpoison.learners._sparse import sddmm
from cfpoison.learners.hessian import FactorHessian, solve
from cfpoison.models.ranking import top_unrated


def _sparse(rng: np.random.Generator, rows: int, cols: int, density: float) -> sp.csr_array:
    mask = rng.random((rows, cols)) < density
    values = np.where(mask, rng.uniform(-2, 2, (rows, cols)), 0.0)
    out = sp.csr_array(values)
    assert out.nnz == mask.sum()
    return out


@pytest.fixture
def problem() -> tuple[sp.csr_array, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    m, n = 25, 18
    omega = _sparse(rng, m, n, 0.3)
    return (
        omega,
        rng.normal(size=(m, 3)),
        rng.normal(size=(n, 3)),
        rng.normal(size=(m, 2)),
        rng.normal(size=(n, 2)),
    )


def _utility(problem, mu1: float, mu2: float, mu3: float = 0.0) -> Utility:  # type: ignore[no-untyped-def]
    omega, _, _, ubar, vbar = problem
    targets = np.array([1, 4])
    top = top_unrated(omega, ubar, vbar, 6, exclude=targets)
    candidates = candidate_pattern(top, omega.shape[1])
    weights = np.array([2.0, -0.5])
    return Utility(mu1, mu2, omega, ubar, vbar, targets, weights, mu3, candidates, 0.3)


def test_low_rank_values_match_dense(problem) -> None:  # type: ignore[no-untyped-def]
    omega, user, item, ubar, vbar = problem
    utility = _utility(problem, 1.5, -0.7)
    unseen = omega.toarray() == 0
    unseen[omega.nonzero()] = False
    dense_av = (((user @ item.T) - ubar @ vbar.T) ** 2)[unseen].sum()
    dense_in = 2.0 * (user @ item[1]).sum() - 0.5 * (user @ item[4]).sum()
    assert utility.availability(user, item) == pytest.approx(dense_av, rel=1e-12)
    assert utility.integrity(user, item) == pytest.approx(dense_in, rel=1e-12)
    assert utility.value(user, item) == pytest.approx(1.5 * dense_av - 0.7 * dense_in, rel=1e-12)


def test_explicit_zero_ratings_count_as_seen() -> None:
    omega = sp.csr_array((np.array([0.0, 1.0]), np.array([0, 1]), np.array([0, 2])), shape=(1, 3))
    user, item = np.ones((1, 1)), np.ones((3, 1))
    utility = Utility(
        1.0, 0.0, omega, np.zeros((1, 1)), np.zeros((3, 1)), np.array([]), np.array([])
    )
    assert utility.availability(user, item) == pytest.approx(1.0)  # only column 2 is unseen


def test_ranking_value_matches_dense_smoothed_rank(problem) -> None:  # type: ignore[no-untyped-def]
    omega, user, item, _, _ = problem
    utility = _utility(problem, 0.0, 0.0, 1.0)
    pattern = utility.candidates
    assert pattern is not None
    rated = np.zeros(omega.shape, dtype=bool)
    rated[omega.nonzero()] = True
    scores = user @ item.T
    total, pairs = 0.0, 0
    for target, weight in zip(utility.targets, utility.weights, strict=True):
        for i in np.flatnonzero(~rated[:, target]):
            columns = pattern.indices[pattern.indptr[i] : pattern.indptr[i + 1]]
            assert len(columns) == 6 and not rated[i, columns].any()
            assert not np.isin(columns, utility.targets).any()
            beat = 1.0 / (1.0 + np.exp(-(scores[i, columns] - scores[i, target]) / 0.3))
            total += weight * beat.sum()
            pairs += 1
    assert utility.ranking(user, item) == pytest.approx(-total / pairs, rel=1e-12)
    # the clean top-6 lists beat a target they outscore: at the clean model the count is high
    assert utility.value(user, item) == pytest.approx(-total / pairs, rel=1e-12)


def test_top_unrated_skips_rated_and_excluded_items(problem) -> None:  # type: ignore[no-untyped-def]
    omega, _, _, ubar, vbar = problem
    top = top_unrated(omega, ubar, vbar, 4, exclude=np.array([0]))
    scores = ubar @ vbar.T
    scores[omega.nonzero()] = -np.inf
    scores[:, 0] = -np.inf
    np.testing.assert_array_equal(top, np.argsort(-scores, axis=1, kind="stable")[:, :4])


@pytest.mark.parametrize(
    ("mu1", "mu2", "mu3"),
    [
        (1.0, 0.0, 0.0),
        (0.0, 1.0, 0.0),
        (1.0, -1.0, 0.0),
        (-1.0, 1.0, 0.0),
        (0.0, 0.0, 1.0),
        (1.0, 0.5, -2.0),
    ],
)
def test_utility_gradient_matches_finite_differences(  # type: ignore[no-untyped-def]
    problem, mu1: float, mu2: float, mu3: float
) -> None:
    _, user, item, _, _ = problem
    utility = _utility(problem, mu1, mu2, mu3)
    value, grad_user, grad_item = utility.gradient(user, item)
    assert value == pytest.approx(utility.value(user, item), rel=1e-12)
    rng = np.random.default_rng(1)
    du, dv = rng.normal(size=user.shape), rng.normal(size=item.shape)
    eps = 1e-6
    fd = (
        utility.value(user + eps * du, item + eps * dv)
        - utility.value(user - eps * du, item - eps * dv)
    ) / (2 * eps)
    assert np.sum(grad_user * du) + np.sum(grad_item * dv) == pytest.approx(fd, rel=1e-6)


def test_hessian_vector_product_matches_gradient_differences() -> None:
    rng = np.random.default_rng(3)
    train, fake = _sparse(rng, 20, 15, 0.4), _sparse(rng, 3, 15, 0.5)
    k = 3
    factors = [rng.normal(size=(20, k)), rng.normal(size=(3, k)), rng.normal(size=(15, k))]
    hessian = FactorHessian(train, fake, *factors, 0.3, 0.8)
    direction = rng.normal(size=hessian.size)
    theta = np.concatenate([f.ravel() for f in factors])

    def grad(flat: np.ndarray) -> np.ndarray:
        parts = hessian.split(flat)
        return FactorHessian(train, fake, *parts, 0.3, 0.8).gradient()

    eps = 1e-6
    fd = (grad(theta + eps * direction) - grad(theta - eps * direction)) / (2 * eps)
    np.testing.assert_allclose(hessian.matvec(direction), fd, rtol=1e-6, atol=1e-6)

    # the diagonal blocks are the exact diagonal blocks of H
    inv_user, _, inv_item = hessian.block_inverse()
    probe = np.zeros(hessian.size)
    probe[0] = 1.0
    column = hessian.matvec(probe)
    np.testing.assert_allclose(np.linalg.inv(inv_user[0])[:, 0], column[:k], rtol=1e-10)
    last = hessian.size - k
    probe[:] = 0.0
    probe[last] = 1.0
    np.testing.assert_allclose(
        np.linalg.inv(inv_item[-1])[:, 0], hessian.matvec(probe)[last:], rtol=1e-10
    )

    # the solver solves a positive definite system (zero residuals) to the requested tolerance
    exact_train = sp.csr_array(
        (sddmm(train, factors[0], factors[2]), train.indices, train.indptr), shape=train.shape
    )
    exact_fake = sp.csr_array(
        (sddmm(fake, factors[1], factors[2]), fake.indices, fake.indptr), shape=fake.shape
    )
    convex = FactorHessian(exact_train, exact_fake, *factors, 0.3, 0.8)
    rhs = rng.normal(size=convex.size)
    result = solve(convex, rhs, convex.block_jacobi(), tol=1e-10, max_iter=2000)
    assert result.relative_residual <= 1e-8
    np.testing.assert_allclose(convex.matvec(result.x), rhs, atol=1e-8 * np.linalg.norm(rhs))


def test_auto_target_is_near_level_and_seeded() -> None:
    rng = np.random.default_rng(0)
    user = rng.normal(size=(50, 2)) + 1.0
    item = rng.normal(size=(200, 2))
    means = item @ user.mean(axis=0)
    picks = {choose_auto_target(user, item, np.random.default_rng(s)) for s in range(30)}
    nearest = set(np.argsort(np.abs(means - 0.8))[:20].tolist())
    assert picks <= nearest and len(picks) > 1
    assert choose_auto_target(user, item, np.random.default_rng(5)) == choose_auto_target(
        user, item, np.random.default_rng(5)
    )


def test_utility_config_validation_and_round_trip() -> None:
    config = UtilityConfig(mu1=1.0, mu2=-1.0, targets=(10, 20), weights=(2.0, 1.0))
    assert UtilityConfig.from_json(config.to_json()) == config
    assert UtilityConfig.from_json(UtilityConfig().to_json()).targets == "auto"
    ranking = UtilityConfig(mu1=0.0, mu3=1.0, targets=(3,), rank_candidates=5, rank_temperature=0.2)
    assert UtilityConfig.from_json(ranking.to_json()) == ranking
    with pytest.raises(ConfigError):
        UtilityConfig(mu1=0.0, mu2=0.0)
    for bad in ({"rank_candidates": 0}, {"rank_temperature": 0.0}, {"mu3": float("nan")}):
        with pytest.raises(ConfigError):
            UtilityConfig(**bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        UtilityConfig(targets=(1, 2), weights=(1.0,))
    with pytest.raises(ConfigError):
        UtilityConfig(targets=())


def test_build_utility_takes_the_ranking_candidates_from_the_clean_model(problem) -> None:  # type: ignore[no-untyped-def]
    omega, _, _, ubar, vbar = problem
    rows, cols = omega.nonzero()
    ratings = Ratings.from_triples(rows, cols, omega[rows, cols], RatingScale(-2, 2, 0), "tiny")
    config = UtilityConfig(mu1=0.0, mu3=1.0, targets=(4,), rank_candidates=3)
    utility = build_utility(config, ratings, ubar, vbar, np.random.default_rng(0))
    assert utility.candidates is not None and utility.temperature == 0.1
    expected = top_unrated(ratings.matrix, ubar, vbar, 3, exclude=np.array([4]))
    np.testing.assert_array_equal(utility.candidates.indices, np.sort(expected, axis=1).ravel())
    assert (
        build_utility(UtilityConfig(), ratings, ubar, vbar, np.random.default_rng(0)).candidates
        is None
    )
    with pytest.raises(ConfigError, match="candidates"):
        Utility(0.0, 0.0, omega, ubar, vbar, np.array([4]), np.array([1.0]), mu3=1.0)
