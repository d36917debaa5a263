"""Biased MF by ALS: KKT, a dense reference solver, augmented factors, warm start, config."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from cfpoison.attacks.gradient import utility_gradient
from cfpoison.attacks.utility import Utility
from cfpoison.data.ratings import Ratings, RatingScale
from cfpoison.errors import ConfigError, DataError
from cfpoison.learners import BiasedConfig, BiasedLearner, Factors, Learner, build_learner
from cfpoison.learners.biased import BiasedHessian
from contracts import LearnerCase, LearnerContract, assert_gauged_solve

TIGHT = {"tol": 0.0, "kkt_tol": 1e-10, "max_sweeps": 20_000}
LAMBDAS = {"lambda_u": 1.0, "lambda_v": 2.0, "lambda_bias": 0.5}


def tiny(seed: int = 0, m: int = 25, n: int = 15, m_fake: int = 3):
    """Biased low-rank ratings (shifted scale), fake rows, and dense data + masks."""
    rng = np.random.default_rng(seed)
    mask = rng.random((m, n)) < 0.45
    mask[:, 0] = True
    M = rng.normal(size=(m, 2)) @ rng.normal(size=(n, 2)).T / 2
    M = np.clip(M + rng.normal(0, 0.5, (m, 1)) + rng.normal(0, 0.5, (1, n)) + 0.4, -2, 2)
    M[mask & (rng.random((m, n)) < 0.1)] = 0.0  # stored zeros are ratings
    rows, cols = np.nonzero(mask)
    matrix = sp.csr_array((M[rows, cols], (rows, cols)), shape=(m, n))
    ratings = Ratings(matrix, np.arange(m) + 1, np.arange(n) + 1, RatingScale(1, 5, 0.5), "t")
    fake_mask = rng.random((m_fake, n)) < 0.5
    fr, fc = np.nonzero(fake_mask)
    fake = sp.csr_array((rng.uniform(-2, 2, len(fr)), (fr, fc)), shape=(m_fake, n))
    data = np.vstack([np.where(mask, M, 0.0), fake.toarray()])
    return ratings, fake, data, np.vstack([mask, fake_mask])


def dense_reference(
    data: np.ndarray, mask: np.ndarray, item: np.ndarray, rank: int, sweeps: int
) -> tuple[np.ndarray, ...]:
    """Alternating ridge solves written out densely, with the bias as an explicit unknown:
    ``[u_i, b_i] = (Y_i^T Y_i + diag(lam_u, .., lam_b))^-1 Y_i^T (m_i - mu - c)``."""
    lu, lv, lb = LAMBDAS["lambda_u"], LAMBDAS["lambda_v"], LAMBDAS["lambda_bias"]
    mu = data[mask].mean()
    V, c = item.copy(), np.zeros(len(item))
    U, b = np.zeros((len(data), rank)), np.zeros(len(data))
    for _ in range(sweeps):
        Y = np.column_stack([V, np.ones(len(V))])
        reg = np.diag([lu] * rank + [lb])
        for i in range(len(data)):
            w = mask[i]
            x = np.linalg.solve(Y[w].T @ Y[w] + reg, Y[w].T @ (data[i, w] - mu - c[w]))
            U[i], b[i] = x[:rank], x[rank]
        X = np.column_stack([U, np.ones(len(U))])
        reg = np.diag([lv] * rank + [lb])
        for j in range(data.shape[1]):
            w = mask[:, j]
            x = np.linalg.solve(X[w].T @ X[w] + reg, X[w].T @ (data[w, j] - mu - b[w]))
            V[j], c[j] = x[:rank], x[rank]
    return U, V, b, c, mu


def test_iterates_match_a_dense_reference_solver() -> None:
    ratings, fake, data, mask = tiny()
    config = BiasedConfig(
        rank=2, seed=3, max_sweeps=7, tol=0.0, kkt_tol=0.0, anderson_memory=0, **LAMBDAS
    )
    learner = BiasedLearner(config).fit(ratings, fake=fake)
    item = config.init_scale * np.random.default_rng(3).standard_normal((15, 2))
    U, V, b, c, mu = dense_reference(data, mask, item, 2, 7)
    s = learner.state
    assert s.mu == pytest.approx(mu, rel=1e-12)
    np.testing.assert_allclose(np.vstack([s.user, s.fake_user]), U, atol=1e-10)
    np.testing.assert_allclose(np.concatenate([s.user_bias, s.fake_user_bias]), b, atol=1e-10)
    np.testing.assert_allclose(s.item, V, atol=1e-10)
    np.testing.assert_allclose(s.item_bias, c, atol=1e-10)
    assert not learner.converged and learner.n_sweeps == 7  # never silent about the cap


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_converged_fit_is_stationary_by_an_independent_dense_gradient(backend: str) -> None:
    ratings, fake, data, mask = tiny(1)
    learner = BiasedLearner(BiasedConfig(rank=3, backend=backend, **LAMBDAS, **TIGHT))
    learner.fit(ratings, fake=fake)
    assert learner.converged and learner.kkt_residual() < 1e-9
    s = learner.state
    users = np.vstack([s.user, s.fake_user])
    ub = np.concatenate([s.user_bias, s.fake_user_bias])
    E = mask * (data - s.mu - ub[:, None] - s.item_bias[None, :] - users @ s.item.T)
    lu, lv, lb = LAMBDAS["lambda_u"], LAMBDAS["lambda_v"], LAMBDAS["lambda_bias"]
    for grad in (
        -E @ s.item + lu * users,
        -E.sum(axis=1) + lb * ub,
        -E.T @ users + lv * s.item,
        -E.sum(axis=0) + lb * s.item_bias,
    ):
        assert np.abs(grad).max() < 1e-8
    dense = np.sum(E**2) + lu * np.sum(users**2) + lv * np.sum(s.item**2)
    dense += lb * (np.sum(ub**2) + np.sum(s.item_bias**2))
    assert learner.objective() == pytest.approx(dense, rel=1e-12)
    assert learner.history[-1] == pytest.approx(dense, rel=1e-9)
    assert np.all(np.diff(learner.history) <= 1e-9 * dense)  # ALS never goes uphill


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_anderson_mixing_of_items_and_biases_reaches_the_same_point(seed: int) -> None:
    """Mixed ``[V, c]`` sweeps reach the plain sweeps' stationary point (KKT criterion), in
    fewer sweeps, with the state's views and the augmented factors consistent."""
    ratings, fake, _, _ = tiny(seed)
    plain, mixed = (
        BiasedLearner(BiasedConfig(rank=3, anderson_memory=memory, **LAMBDAS, **TIGHT)).fit(
            ratings, fake=fake
        )
        for memory in (0, 5)
    )
    assert plain.converged and mixed.converged and mixed.kkt_residual() < 1e-9
    assert mixed.n_sweeps < plain.n_sweeps
    assert mixed.objective() == pytest.approx(plain.objective(), rel=1e-9)
    assert mixed.objective() == pytest.approx(mixed.history[-1], rel=1e-12)
    rows, cols = np.nonzero(np.ones((25, 15)))
    np.testing.assert_allclose(mixed.predict(rows, cols), plain.predict(rows, cols), atol=1e-6)


def test_augmented_factors_reproduce_predictions_and_warm_start() -> None:
    ratings, fake, _, _ = tiny(2)
    learner = build_learner(BiasedConfig(rank=2, **LAMBDAS, **TIGHT)).fit(ratings, fake=fake)
    assert isinstance(learner, Learner)
    f = learner.factors
    assert f.user.shape == (25, 4) and f.item.shape == (15, 4) and f.fake_user.shape == (3, 4)
    users, items = np.meshgrid(np.arange(25), np.arange(15), indexing="ij")
    np.testing.assert_allclose(
        learner.predict(users.ravel(), items.ravel()), (f.user @ f.item.T).ravel(), atol=1e-12
    )
    again = BiasedLearner(BiasedConfig(rank=2, **LAMBDAS, **TIGHT)).fit(ratings, f, fake)
    assert again.n_sweeps <= 2
    np.testing.assert_allclose(again.factors.item, f.item, atol=1e-8)
    with pytest.raises(DataError, match="augmented"):
        BiasedLearner(BiasedConfig(rank=2)).fit(ratings, Factors(f.user, f.item[:, :2], f.user))


def test_one_sweep_cap_is_reported_and_config_round_trips() -> None:
    ratings, _, _, _ = tiny(3)
    learner = BiasedLearner(BiasedConfig(rank=2, max_sweeps=1, tol=0.0)).fit(ratings)
    assert not learner.converged and learner.kkt_residual() > 1e-6
    config = BiasedConfig(rank=4, lambda_bias=3.0, seed=9)
    assert BiasedConfig.from_json(config.to_json()) == config
    with pytest.raises(ConfigError, match="lambda_bias"):
        BiasedConfig(lambda_bias=0.0)


class TestBiasedContract(LearnerContract):
    @pytest.fixture(scope="class")
    @classmethod
    def learner_case(cls) -> LearnerCase:
        ratings, fake, _, _ = tiny(5)
        return LearnerCase(BiasedConfig(rank=2, threads=1, **LAMBDAS, **TIGHT), ratings, fake)


@pytest.mark.parametrize(("mu1", "mu2"), [(1.0, 0.0), (0.0, 1.0), (1.0, 0.5)])
def test_implicit_gradient_matches_finite_differences(mu1: float, mu2: float) -> None:
    """Central differences of R at refits (warm-started, KKT 1e-12) on a sample of fake
    entries; the global mean moves with the fake ratings and is part of the gradient."""
    ratings, fake, _, _ = tiny(4)
    config = BiasedConfig(rank=2, **LAMBDAS, tol=0.0, kkt_tol=1e-12, max_sweeps=50_000)
    learner = BiasedLearner(config).fit(ratings, fake=fake)
    clean = BiasedLearner(config).fit(ratings)
    utility = Utility(
        mu1,
        mu2,
        ratings.matrix,
        clean.user_factors,
        clean.item_factors,
        np.array([3]),
        np.array([2.0]),
    )
    f = learner.factors
    fake = sp.csr_array(fake)
    fake.sort_indices()
    result = utility_gradient(
        learner, ratings.matrix, fake, utility, solve_tol=1e-10, solve_max_iter=2000
    )
    assert result.solver_converged and result.solver_residual < 1e-8
    assert result.kkt_residual < 1e-11
    analytic_all = result.on_pattern(fake)
    eps, pairs = 1e-5, []
    for t in range(0, fake.nnz, 4):
        values = []
        for sign in (1, -1):
            moved = fake.copy()
            moved.data = moved.data.copy()
            moved.data[t] += sign * eps
            refit = BiasedLearner(config).fit(ratings, init=f, fake=moved)
            values.append(utility.value(refit.user_factors, refit.item_factors))
        pairs.append(((values[0] - values[1]) / (2 * eps), analytic_all[t]))
    numeric, analytic = np.array(pairs).T
    assert np.max(np.abs(numeric - analytic)) <= 1e-5 * np.max(np.abs(numeric))


def test_kkt_without_the_item_block_after_a_sweep_equals_the_full_residual() -> None:
    """The sweep ends on the item half-step, so the items' gradient is zero to rounding and
    the stopping test may skip it (what ``sweep_until`` calls after each sweep)."""
    ratings, fake, _, _ = tiny(2)
    learner = BiasedLearner(BiasedConfig(rank=3, max_sweeps=4, **LAMBDAS)).fit(ratings, fake=fake)
    full, users_only = learner.kkt_residual(), learner.kkt_residual(item_block=False)
    assert full > 1e-4  # a capped fit: far from stationary, so the check means something
    assert users_only == pytest.approx(full, rel=1e-9)


def _biased_system(kkt_tol: float) -> tuple[BiasedHessian, np.ndarray]:
    """The adjoint system of a rank-4 biased fit stationary to ``kkt_tol`` (60 users, 5 fake,
    40 items) and the gradient of a utility of its augmented ``U V'``: rotation-free."""
    ratings, fake, _, _ = tiny(3, m=60, n=40, m_fake=5)
    config = BiasedConfig(
        rank=4, **LAMBDAS, tol=0.0, kkt_tol=kkt_tol, max_sweeps=50_000, anderson_memory=0
    )
    learner = BiasedLearner(config).fit(ratings, fake=fake)
    system = learner.adjoint_system(ratings.matrix, fake)
    weights = np.random.default_rng(7).normal(size=(60, 40))
    return system, system.rhs(weights @ system.item, weights.T @ system.user)


def test_biased_solve_gauges_its_rotations_and_keeps_the_gradient() -> None:
    """As ALS's Schur solve (``test_learners_hessian``), on the whole system."""
    _, fake, _, _ = tiny(3, m=60, n=40, m_fake=5)
    assert_gauged_solve(_biased_system(1e-12), _biased_system(1e-5), fake)
