"""Alternating minimization: KKT, independent objective/gradient, fake rows, warm start."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from cfpoison.attacks.sgld import dense_pattern
from cfpoison.data.preprocess import PreprocessConfig, prepare
from cfpoison.data.ratings import Ratings, RatingScale
from cfpoison.errors import ConfigError, DataError
from cfpoison.learners import (
    ALSConfig,
    ALSLearner,
    Factors,
    Learner,
    LearnerConfig,
    NuclearConfig,
    NuclearNormLearner,
    build_learner,
)
from cfpoison.learners.base import cached_csc, caps_expected
from cfpoison.learners.factored import (
    Anderson,
    Engine,
    Problem,
    backend_module,
    random_factors,
)
from contracts import LearnerCase, LearnerContract

TIGHT = {"tol": 0.0, "kkt_tol": 1e-9, "max_sweeps": 5000}


def tiny_problem(
    seed: int, m: int = 30, n: int = 20, m_fake: int = 3, density: float = 0.4
) -> tuple[Ratings, sp.csr_array, np.ndarray, np.ndarray]:
    """Low-rank-plus-noise ratings on the shifted scale, a sparse fake block, dense copies."""
    rng = np.random.default_rng(seed)
    mask = rng.random((m, n)) < density
    mask[:, 0] = True  # every item observed at least once
    M = np.clip(rng.normal(size=(m, 3)) @ rng.normal(size=(n, 3)).T / 1.5, -2, 2)
    M = np.round(M + 0.2 * rng.normal(size=(m, n)), 1)
    M[mask & (rng.random((m, n)) < 0.1)] = 0.0  # stored zeros are observations too
    rows, cols = np.nonzero(mask)
    matrix = sp.csr_array((M[rows, cols], (rows, cols)), shape=(m, n))
    ratings = Ratings(matrix, np.arange(m) + 1, np.arange(n) + 1, RatingScale(1, 5, 0.5), "tiny")
    fake_mask = rng.random((m_fake, n)) < 0.5
    fake_values = np.where(fake_mask, rng.uniform(-2, 2, (m_fake, n)), 0.0)
    fr, fc = np.nonzero(fake_mask)
    fake = sp.csr_array((fake_values[fr, fc], (fr, fc)), shape=(m_fake, n))
    stacked_mask = np.vstack([mask, fake_mask])
    stacked = np.vstack([np.where(mask, M, 0.0), fake_values])
    return ratings, fake, stacked, stacked_mask


def dense_objective(f: Factors, data: np.ndarray, mask: np.ndarray, lu: float, lv: float) -> float:
    users = np.vstack([f.user, f.fake_user])
    residual = mask * (data - users @ f.item.T)
    return float(np.sum(residual**2) + lu * np.sum(users**2) + lv * np.sum(f.item**2))


def dense_gradient(f: Factors, data: np.ndarray, mask: np.ndarray, lu: float, lv: float):
    users = np.vstack([f.user, f.fake_user])
    residual = mask * (data - users @ f.item.T)
    return -2 * residual @ f.item + 2 * lu * users, -2 * residual.T @ users + 2 * lv * f.item


@pytest.mark.parametrize("memory", [0, 5])
@pytest.mark.parametrize("with_fake", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_als_reaches_kkt_and_matches_dense_formulas(
    seed: int, with_fake: bool, memory: int
) -> None:
    ratings, fake, data, mask = tiny_problem(seed)
    if not with_fake:
        fake, data, mask = None, data[: ratings.n_users], mask[: ratings.n_users]
    config = ALSConfig(rank=3, lambda_u=0.6, lambda_v=0.9, anderson_memory=memory, **TIGHT)
    learner = ALSLearner(config).fit(ratings, fake=fake)
    assert learner.converged
    assert learner.kkt_residual() < 1e-6
    f = learner.factors
    assert f.fake_user.shape == (0 if fake is None else fake.shape[0], 3)
    # independent dense formulas: objective, gradient (zero), and the residual's definition
    assert learner.objective() == pytest.approx(dense_objective(f, data, mask, 0.6, 0.9), 1e-12)
    assert learner.history[-1] == pytest.approx(learner.objective(), rel=1e-12)
    g_users, g_items = dense_gradient(f, data, mask, 0.6, 0.9)
    reg = 2 * np.sqrt(
        0.36 * np.sum(np.vstack([f.user, f.fake_user]) ** 2) + 0.81 * np.sum(f.item**2)
    )
    kkt = np.sqrt(np.sum(g_users**2) + np.sum(g_items**2)) / reg
    assert learner.kkt_residual() == pytest.approx(kkt, rel=1e-6, abs=1e-12)
    # accepted sweeps descend, plain or extrapolated (an ascending extrapolation is discarded)
    assert np.all(np.diff(learner.history) <= 1e-9 * learner.history[0])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_anderson_reaches_the_same_stationary_point_in_fewer_sweeps(seed: int) -> None:
    ratings, fake, _, _ = tiny_problem(seed)
    plain, fast = (
        ALSLearner(
            ALSConfig(rank=3, lambda_u=0.6, lambda_v=0.9, anderson_memory=memory, **TIGHT)
        ).fit(ratings, fake=fake)
        for memory in (0, 5)
    )
    assert plain.converged and fast.converged
    assert fast.n_sweeps < plain.n_sweeps
    assert fast.objective() == pytest.approx(plain.objective(), rel=1e-9)
    np.testing.assert_allclose(
        fast.user_factors @ fast.item_factors.T,
        plain.user_factors @ plain.item_factors.T,
        atol=1e-5,
    )


def test_a_fit_leaving_a_saddle_is_over_relaxed_along_its_sweeps(ml_small: Ratings) -> None:
    """ml-latest-small (split seed 0), rank 20, seed 9: from KKT 2e-5 at sweep 350 the
    sweeps crawl away from a saddle along one direction for 1,200 sweeps (the residual rises
    by 0.2-0.4% a sweep) before dropping into a lower minimum. Anderson alone took 2,264
    sweeps (691 extrapolations discarded); over-relaxing the plain step where Anderson fails
    takes 284 to the same objective."""
    train, _ = prepare(ml_small, PreprocessConfig(seed=0))
    fit = ALSLearner(ALSConfig(rank=20, seed=9)).fit(train)
    assert fit.converged
    assert fit.n_sweeps <= 400
    assert fit.objective() == pytest.approx(53558.8907, abs=0.01)
    assert np.all(np.diff(fit.history) <= 0.0)


@pytest.mark.parametrize("cap", [1, 2, 7, 12])
def test_a_capped_anderson_fit_returns_the_point_its_history_ends_at(cap: int) -> None:
    """Stopped by its cap, a mixed fit returns its last plain sweep's output, whose objective
    is the last one in its history (never an extrapolated point, never an earlier sweep)."""
    ratings, fake, _, _ = tiny_problem(0)
    config = ALSConfig(rank=3, max_sweeps=cap, kkt_tol=1e-14, anderson_memory=5)
    fit = ALSLearner(config).fit(ratings, fake=fake)
    assert not fit.converged
    assert fit.n_sweeps == cap
    assert fit.objective() == pytest.approx(fit._trace.history[-1], rel=1e-12)


def test_kkt_residual_of_a_non_stationary_point_is_large() -> None:
    ratings, fake, _, _ = tiny_problem(3)
    learner = ALSLearner(ALSConfig(rank=3, max_sweeps=1, tol=0, kkt_tol=0)).fit(ratings, fake=fake)
    assert not learner.converged
    assert learner.n_sweeps == 1
    assert learner.kkt_residual() > 1e-3


def test_numba_and_numpy_backends_agree() -> None:
    ratings, fake, _, _ = tiny_problem(4)
    # plain sweeps: Anderson's least squares would amplify the kernels' rounding differences
    config = ALSConfig(
        rank=4, lambda_u=0.5, lambda_v=0.5, tol=0, kkt_tol=0, max_sweeps=40, anderson_memory=0
    )
    fast = ALSLearner(config).fit(ratings, fake=fake)
    slow = ALSLearner(config.replace(backend="numpy")).fit(ratings, fake=fake)
    for a, b in zip(
        (fast.user_factors, fast.item_factors, fast.fake_user_factors),
        (slow.user_factors, slow.item_factors, slow.fake_user_factors),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(fast.history, slow.history, rtol=1e-12)
    assert fast.kkt_residual() == pytest.approx(slow.kkt_residual(), rel=1e-6)


def test_fake_rows_equal_stacking_them_onto_the_data() -> None:
    ratings, fake, _, _ = tiny_problem(5)
    # plain sweeps: an extrapolated sweep is kept or discarded on comparing two objectives,
    # and the two layouts' rounding can tip a near-tie either way
    config = ALSConfig(rank=3, tol=0, kkt_tol=0, max_sweeps=25, anderson_memory=0)
    appended = ALSLearner(config).fit(ratings, fake=fake)
    stacked = Ratings(
        sp.csr_array(sp.vstack([ratings.matrix, fake])),
        np.arange(ratings.n_users + fake.shape[0]),
        ratings.item_ids,
        ratings.scale,
    )
    together = ALSLearner(config).fit(stacked)
    np.testing.assert_allclose(
        np.vstack([appended.user_factors, appended.fake_user_factors]),
        together.user_factors,
        rtol=1e-10,
        atol=1e-12,
    )
    np.testing.assert_allclose(appended.item_factors, together.item_factors, rtol=1e-10)


def test_dense_fake_rows() -> None:
    """SGLD's fake rows rate every item; stored zeros included."""
    ratings, _, _, _ = tiny_problem(6)
    rng = np.random.default_rng(6)
    dense = rng.uniform(-2, 2, (5, ratings.n_items))
    dense[:, 3] = 0.0
    fake = dense_pattern(dense)
    assert fake.nnz == dense.size
    learner = ALSLearner(ALSConfig(rank=3, lambda_u=1, lambda_v=1, **TIGHT))
    learner.fit(ratings, fake=fake)
    assert learner.kkt_residual() < 1e-6
    assert learner.fake_user_factors.shape == (5, 3)


def test_warm_start_from_a_solution_stops_after_one_sweep() -> None:
    ratings, fake, _, _ = tiny_problem(7)
    config = ALSConfig(rank=3, lambda_u=0.8, lambda_v=0.8, **TIGHT)
    solved = ALSLearner(config).fit(ratings, fake=fake)
    warm = ALSLearner(config.replace(tol=1e-10, kkt_tol=1e-8)).fit(
        ratings, init=solved.factors, fake=fake
    )
    assert warm.n_sweeps == 1 and warm.converged
    np.testing.assert_allclose(warm.item_factors, solved.item_factors, atol=1e-7)
    # the init is copied, never modified in place
    assert warm.factors.item is not solved.factors.item


def test_warm_start_with_another_number_of_fake_rows() -> None:
    ratings, fake, _, _ = tiny_problem(8)
    clean = ALSLearner(ALSConfig(rank=3, **TIGHT)).fit(ratings)
    poisoned = ALSLearner(ALSConfig(rank=3, **TIGHT)).fit(ratings, init=clean.factors, fake=fake)
    assert poisoned.fake_user_factors.shape == (fake.shape[0], 3)
    assert poisoned.kkt_residual() < 1e-6


def test_seeded_and_deterministic() -> None:
    ratings, _, _, _ = tiny_problem(9)
    a = ALSLearner(ALSConfig(rank=3, seed=11, max_sweeps=5)).fit(ratings)
    b = ALSLearner(ALSConfig(rank=3, seed=11, max_sweeps=5)).fit(ratings)
    c = ALSLearner(ALSConfig(rank=3, seed=12, max_sweeps=5)).fit(ratings)
    np.testing.assert_array_equal(a.item_factors, b.item_factors)
    assert not np.allclose(a.item_factors, c.item_factors)


def test_predict() -> None:
    ratings, _, _, _ = tiny_problem(10)
    learner = ALSLearner(ALSConfig(rank=3, max_sweeps=3)).fit(ratings)
    users, items = np.array([0, 5, 29]), np.array([19, 0, 7])
    expected = np.sum(learner.user_factors[users] * learner.item_factors[items], axis=1)
    np.testing.assert_allclose(learner.predict(users, items), expected, rtol=1e-12)
    with pytest.raises(DataError):
        learner.predict(np.array([30]), np.array([0]))
    with pytest.raises(DataError):
        learner.predict(np.array([0, 1]), np.array([0]))


def test_errors() -> None:
    ratings, _, _, _ = tiny_problem(11)
    with pytest.raises(RuntimeError):
        ALSLearner().objective()
    with pytest.raises(DataError):
        ALSLearner().fit(ratings, fake=sp.csr_array((2, ratings.n_items + 1)))
    bad = Factors(np.zeros((3, 10)), np.zeros((ratings.n_items, 10)), np.zeros((0, 10)))
    with pytest.raises(DataError):
        ALSLearner().fit(ratings, init=bad)
    wrong_rank = Factors(
        np.zeros((ratings.n_users, 4)), np.zeros((ratings.n_items, 4)), np.zeros((0, 4))
    )
    with pytest.raises(DataError):
        ALSLearner(ALSConfig(rank=3)).fit(ratings, init=wrong_rank)
    for bad_field in ({"rank": 0}, {"lambda_u": 0.0}, {"tol": -1.0}, {"threads": -1}):
        with pytest.raises(ConfigError):
            ALSConfig(**bad_field)


def test_configs_round_trip_and_dispatch() -> None:
    for config in (ALSConfig(rank=7, lambda_u=2.5), NuclearConfig(lam=3.0, max_rank=40)):
        assert type(config).from_json(config.to_json()) == config
        ratings, _, _, _ = tiny_problem(13)
        learner = build_learner(config).fit(ratings)
        assert isinstance(learner, Learner)
    assert isinstance(build_learner(ALSConfig()), ALSLearner)
    assert isinstance(build_learner(NuclearConfig()), NuclearNormLearner)
    from cfpoison.config import JsonConfig, _convert

    for config in (ALSConfig(seed=3), NuclearConfig(seed=4)):
        back = _convert(config.to_dict(), LearnerConfig, "learner")
        assert back == config and isinstance(back, JsonConfig)
    with pytest.raises(TypeError):
        build_learner("als")  # type: ignore[arg-type]


def test_item_major_copy_is_cached_per_matrix() -> None:
    ratings, _, _, _ = tiny_problem(12)
    first = cached_csc(ratings.matrix)
    assert cached_csc(ratings.matrix) is first
    np.testing.assert_array_equal(first.toarray(), ratings.matrix.toarray())
    other = sp.csr_array(ratings.matrix.copy())
    assert cached_csc(other) is not first


class TestALSContract(LearnerContract):
    @pytest.fixture(scope="class")
    @classmethod
    def learner_case(cls) -> LearnerCase:
        ratings, fake, _, _ = tiny_problem(31)
        return LearnerCase(
            ALSConfig(rank=3, lambda_u=0.8, lambda_v=0.8, threads=1, **TIGHT), ratings, fake
        )


def test_anderson_mixing_matches_the_least_squares_definition() -> None:
    """The ring buffer and incremental Gram give Walker-Ni's step, also after wrapping."""
    rng = np.random.default_rng(3)
    n, memory = 12, 3
    a = rng.normal(size=(n, n))
    a *= 0.9 / np.linalg.norm(a, 2)
    b = rng.normal(size=n)
    mixer = Anderson(memory)
    x, images, residuals = rng.normal(size=n), [], []
    for _ in range(8):
        image = a @ x + b
        images.append(image)
        residuals.append(image - x)
        d_images = np.diff(np.array(images[-memory - 1 :]), axis=0)
        d_residuals = np.diff(np.array(residuals[-memory - 1 :]), axis=0)
        if len(d_images):
            gamma = np.linalg.lstsq(d_residuals.T, residuals[-1], rcond=None)[0]
            expected = image - gamma @ d_images
        else:
            expected = image
        x = mixer.mix(x, image)
        np.testing.assert_allclose(x, expected, rtol=1e-8, atol=1e-10)
    mixer.reset()
    np.testing.assert_array_equal(mixer.mix(x, a @ x + b), a @ x + b)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_dense_fake_block_takes_the_sparse_paths_sweeps(backend: str) -> None:
    """Fully dense fake rows go through one shared k x k system (``Problem.fake_dense``);
    every half-step, objective and KKT residual equals the per-row sparse path's."""
    ratings, _, _, _ = tiny_problem(7)
    rng = np.random.default_rng(7)
    dense = rng.uniform(-2, 2, (4, ratings.n_items))
    dense[:, 5] = 0.0
    fake = dense_pattern(dense)
    ops = backend_module(backend)
    engines = [
        Engine(Problem.build(ratings, fake, dense_block=block), 0.6, 0.9, ops)
        for block in (True, False)
    ]
    assert engines[0].problem.fake_dense is not None and engines[1].problem.fake_dense is None
    runs = [random_factors(np.random.default_rng(1), ratings.n_users, 4, ratings.n_items, 3, 0.5)]
    runs.append(runs[0].copy())
    for _ in range(6):
        for engine, f in zip(engines, runs, strict=True):
            engine.update_users(f)
        fits = [engine.update_items(f) for engine, f in zip(engines, runs, strict=True)]
        assert fits[0] == pytest.approx(fits[1], rel=1e-10)
        for a, b in zip(*((f.user, f.fake_user, f.item) for f in runs), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    evaluations = [engine.evaluate(f) for engine, f in zip(engines, runs, strict=True)]
    assert evaluations[0] == pytest.approx(evaluations[1], rel=1e-9)


def test_a_capped_fit_warns_unless_the_caller_expects_it(caplog: pytest.LogCaptureFixture) -> None:
    ratings, fake, _, _ = tiny_problem(3)
    config = ALSConfig(rank=3, max_sweeps=2, tol=0, kkt_tol=1e-12)
    with caplog.at_level("DEBUG", logger="cfpoison.learners.als"):
        ALSLearner(config).fit(ratings, fake=fake)
        with caps_expected():
            quiet = ALSLearner(config).fit(ratings, fake=fake)
    levels = [r.levelname for r in caplog.records if "max_sweeps=2" in r.getMessage()]
    assert levels == ["WARNING", "DEBUG"] and not quiet.converged
