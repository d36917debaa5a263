"""BPR-MF on its fixed-sample objective: values, derivatives, fit, and the implicit gradient."""

from __future__ import annotations

import dataclasses
import json
import logging

import numpy as np
import pytest
import scipy.sparse as sp

from cfpoison.attacks.utility import Utility, candidate_pattern
from cfpoison.data.interactions import Interactions
from cfpoison.errors import ConfigError, DataError
from cfpoison.learners import bpr_kernels as kern
from cfpoison.learners._sparse import checked_fake
from cfpoison.learners.adjoint import AdjointSystem, Differentiable
from cfpoison.learners.bpr import BPRConfig, BPRLearner, BPRSystem, Pairs
from cfpoison.models.ranking import top_unrated
from contracts import LearnerCase, LearnerContract, assert_gauged_solve

CONFIG = BPRConfig(rank=3, lam=0.3, negatives=3, tol=1e-10, max_iters=200, seed=4, threads=1)


@dataclasses.dataclass(frozen=True)
class Case:
    train: Interactions
    fake: sp.csr_array


def make_case(rng: np.random.Generator, m: int = 14, n: int = 12, m_fake: int = 3) -> Case:
    """Random interactions (about a third of the cells) and fake rows of relaxed weights."""
    dense = rng.random((m, n)) < 0.35
    dense[np.arange(m), rng.integers(0, n, m)] = True  # every user has a positive
    dense[:, 0] = False  # item 0: never a positive, only a negative
    matrix = sp.csr_array(dense.astype(np.float64))
    matrix.sort_indices()
    train = Interactions(matrix, np.arange(m), np.arange(n), "tiny")
    fake_dense = np.where(rng.random((m_fake, n)) < 0.4, rng.uniform(0.2, 0.9, (m_fake, n)), 0)
    fake = sp.csr_array(fake_dense)
    fake.sort_indices()
    return Case(train, fake)


@pytest.fixture(scope="module")
def case() -> Case:
    return make_case(np.random.default_rng(11))


@pytest.fixture(scope="module")
def fitted(case: Case) -> BPRLearner:
    return BPRLearner(CONFIG).fit(case.train, fake=case.fake)


def system_at(case: Case, theta: np.ndarray, config: BPRConfig = CONFIG) -> BPRSystem:
    fake = checked_fake(case.fake, case.train.n_items, "bpr")
    pairs = Pairs.build(case.train.matrix, fake, config.negatives, config.seed)
    return BPRSystem(pairs, theta, config.rank, config.lam, config.negatives, config.seed)


def numpy_objective(case: Case, theta: np.ndarray, config: BPRConfig = CONFIG) -> float:
    """L from its definition, looping over users, positives and their drawn negatives."""
    m, n, k, s = case.train.n_users, case.train.n_items, config.rank, config.negatives
    W = theta[: (m + case.fake.shape[0]) * k].reshape(-1, k)
    V = theta[len(W) * k :].reshape(n, k)
    negatives = iter(Pairs.build(case.train.matrix, case.fake, s, config.seed).neg)
    total = 0.0
    for offset, block in ((0, case.train.matrix), (m, case.fake)):
        for u in range(block.shape[0]):
            for e in range(block.indptr[u], block.indptr[u + 1]):
                i, c = block.indices[e], block.data[e]
                for _ in range(s):
                    j = next(negatives)
                    total += c * np.logaddexp(0.0, -(W[offset + u] @ (V[i] - V[j])))
    return total + config.lam * float(theta @ theta)


def random_theta(case: Case, rng: np.random.Generator, scale: float = 0.7) -> np.ndarray:
    rows = case.train.n_users + case.fake.shape[0] + case.train.n_items
    return scale * rng.standard_normal(rows * CONFIG.rank)


# ---------------------------------------------------------------------------- configuration
def test_config_validates_and_round_trips_json() -> None:
    assert BPRConfig.from_json(CONFIG.to_json()) == CONFIG
    assert json.loads(CONFIG.to_json())["name"] == "bpr"
    for bad in (
        {"rank": 0},
        {"lam": 0.0},
        {"lam": float("inf")},
        {"negatives": 0},
        {"max_iters": 0},
        {"tol": 0.0},
        {"init_scale": -1.0},
        {"seed": -1},
        {"threads": -1},
    ):
        with pytest.raises(ConfigError):
            CONFIG.replace(**bad)


# ---------------------------------------------------------------------------- the objective
def test_negatives_are_fixed_uninteracted_and_defined_for_every_fake_cell(case: Case) -> None:
    pairs = Pairs.build(case.train.matrix, case.fake, 4, 7)
    again = Pairs.build(case.train.matrix, case.fake, 4, 7)
    np.testing.assert_array_equal(pairs.neg, again.neg)
    assert (Pairs.build(case.train.matrix, case.fake, 4, 8).neg != pairs.neg).any()
    dense = case.train.matrix.toarray() > 0
    m = case.train.n_users
    real = pairs.rows < m
    assert not dense[pairs.rows[real], pairs.neg[real]].any()
    assert np.all(pairs.neg != pairs.pos)
    # a fake cell's negatives do not depend on the fake rows' pattern or weights
    key, n = kern.stream_key(7, 1), case.train.n_items
    fake = pairs.rows >= m
    expected = [
        kern.fake_negative(key, f - m, i, t % 4, n)
        for t, (f, i) in enumerate(zip(pairs.rows[fake], pairs.pos[fake], strict=True))
    ]
    np.testing.assert_array_equal(pairs.neg[fake], expected)
    # the first negatives are the same whatever S
    fewer = Pairs.build(case.train.matrix, case.fake, 2, 7)
    np.testing.assert_array_equal(fewer.neg.reshape(-1, 2), pairs.neg.reshape(-1, 4)[:, :2])


def test_objective_and_gradient_match_numpy_and_finite_differences(
    case: Case, rng: np.random.Generator
) -> None:
    theta = random_theta(case, rng)
    system = system_at(case, theta)
    assert system.value == pytest.approx(numpy_objective(case, theta), rel=1e-12)
    h = 1e-6
    for index in rng.choice(len(theta), 25, replace=False):
        step = np.zeros_like(theta)
        step[index] = h
        numeric = (system_at(case, theta + step).value - system_at(case, theta - step).value) / (
            2 * h
        )
        assert system.grad[index] == pytest.approx(numeric, rel=1e-6, abs=1e-7)


def test_a_zero_weight_is_no_interaction(case: Case, rng: np.random.Generator) -> None:
    theta = random_theta(case, rng)
    zeros = case.fake.copy()
    zeros.data[::3] = 0.0
    dropped = zeros.copy()
    dropped.eliminate_zeros()
    with_zeros = system_at(dataclasses.replace(case, fake=zeros), theta)
    without = system_at(dataclasses.replace(case, fake=dropped), theta)
    assert with_zeros.value == pytest.approx(without.value, rel=1e-13)
    np.testing.assert_allclose(with_zeros.grad, without.grad, rtol=1e-12, atol=1e-14)


def test_hessian_products_match_finite_differences_of_the_gradient(
    case: Case, rng: np.random.Generator
) -> None:
    theta = random_theta(case, rng)
    system = system_at(case, theta)
    h = 1e-6
    for _ in range(3):
        d = rng.standard_normal(theta.shape)
        numeric = (system_at(case, theta + h * d).grad - system_at(case, theta - h * d).grad) / (
            2 * h
        )
        np.testing.assert_allclose(system.matvec(d), numeric, rtol=1e-5, atol=1e-6)
    a, b = rng.standard_normal((2, len(theta)))
    assert a @ system.matvec(b) == pytest.approx(b @ system.matvec(a), rel=1e-12)


def test_the_preconditioner_inverts_the_exact_diagonal_blocks(
    case: Case, rng: np.random.Generator
) -> None:
    theta = random_theta(case, rng)
    system = system_at(case, theta)
    k, rows = CONFIG.rank, len(theta) // CONFIG.rank
    for row in rng.choice(rows, 6, replace=False):
        block = np.empty((k, k))
        for a in range(k):
            unit = np.zeros_like(theta)
            unit[row * k + a] = 1.0
            block[:, a] = system.matvec(unit)[row * k : (row + 1) * k]
        x = np.zeros_like(theta)
        x[row * k : (row + 1) * k] = rng.standard_normal(k)
        np.testing.assert_allclose(
            system.precondition(x)[row * k : (row + 1) * k],
            np.linalg.solve(block, x[row * k : (row + 1) * k]),
            rtol=1e-10,
        )


# ---------------------------------------------------------------------------- fitting
def test_fit_reaches_tol_and_a_warm_refit_stops_at_once(case: Case, fitted: BPRLearner) -> None:
    assert fitted.converged and fitted.kkt_residual() <= CONFIG.tol
    f = fitted.factors
    assert f.user.shape == (case.train.n_users, CONFIG.rank)
    assert f.item.shape == (case.train.n_items, CONFIG.rank)
    assert f.fake_user.shape == (case.fake.shape[0], CONFIG.rank)
    assert isinstance(fitted, Differentiable)
    again = BPRLearner(CONFIG).fit(case.train, init=f, fake=case.fake)
    assert again.n_sweeps == 0 and again.converged
    np.testing.assert_array_equal(again.user_factors, f.user)
    assert again.objective() == fitted.objective()
    # a refit after a change of the fake rows starts from the given factors
    moved = case.fake.copy()
    moved.data *= 0.9
    refit = BPRLearner(CONFIG).fit(case.train, init=f, fake=moved)
    assert refit.converged and 0 < refit.n_sweeps <= 10


def test_a_fixed_seed_gives_the_same_fit(case: Case, fitted: BPRLearner) -> None:
    again = BPRLearner(CONFIG).fit(case.train, fake=case.fake)
    np.testing.assert_array_equal(again.user_factors, fitted.user_factors)
    np.testing.assert_array_equal(again.item_factors, fitted.item_factors)
    np.testing.assert_array_equal(again.fake_user_factors, fitted.fake_user_factors)
    other = BPRLearner(CONFIG.replace(seed=5)).fit(case.train, fake=case.fake)
    assert not np.array_equal(other.item_factors, fitted.item_factors)


def test_a_fit_at_its_cap_says_so(case: Case, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="cfpoison.learners.bpr"):
        learner = BPRLearner(CONFIG.replace(max_iters=1)).fit(case.train, fake=case.fake)
    assert not learner.converged and learner.n_sweeps == 1
    assert "max_iters=1" in caplog.text


def test_predict_is_the_dot_product_and_bad_inputs_raise(case: Case, fitted: BPRLearner) -> None:
    users, items = np.array([0, 3, 13]), np.array([11, 0, 5])
    expected = np.sum(fitted.user_factors[users] * fitted.item_factors[items], axis=1)
    np.testing.assert_allclose(fitted.predict(users, items), expected, rtol=1e-12)
    m, n = case.train.n_users, case.train.n_items
    for bad_users, bad_items in (([m], [0]), ([0], [n]), ([-1], [0]), ([0, 1], [0])):
        with pytest.raises(DataError):
            fitted.predict(np.array(bad_users), np.array(bad_items))
    with pytest.raises(RuntimeError):
        BPRLearner(CONFIG).objective()
    learner = BPRLearner(CONFIG)
    for value in (-0.1, np.nan, np.inf):
        bad = case.fake.copy()
        bad.data[0] = value
        with pytest.raises(DataError, match="finite and >= 0"):
            learner.fit(case.train, fake=bad)
    with pytest.raises(DataError, match="shape"):
        learner.fit(case.train, fake=sp.csr_array((2, n + 1)))
    wrong = dataclasses.replace(fitted.factors, item=fitted.factors.item[:-1])
    with pytest.raises(DataError, match="initial factors"):
        learner.fit(case.train, init=wrong, fake=case.fake)
    with pytest.raises(DataError, match="do not fit"):
        fitted.adjoint_system(case.train.matrix, case.fake[:2])
    with pytest.raises(DataError, match="pattern"):
        fitted.adjoint_system(case.train.matrix, case.fake).fake_gradient(
            np.zeros(1), sp.csr_array((1, n))
        )


# ---------------------------------------------------------------------------- the implicit gradient
def utilities(case: Case, fitted: BPRLearner) -> dict[str, Utility]:
    """Integrity and ranking utilities for a target few users rank high."""
    train, f = case.train.matrix, fitted.factors
    target = int(np.argmin(f.item @ f.user.mean(axis=0)))
    common = dict(
        omega=train,
        clean_user=f.user.copy(),
        clean_item=f.item.copy(),
        targets=np.array([target]),
        weights=np.array([1.0]),
    )
    top = top_unrated(train, f.user, f.item, 4, exclude=np.array([target]))
    return {
        "integrity": Utility(mu1=0.0, mu2=1.0, **common),
        "ranking": Utility(
            mu1=0.0,
            mu2=0.0,
            mu3=1.0,
            candidates=candidate_pattern(top, case.train.n_items),
            temperature=0.5,
            **common,
        ),
    }


def refit_value(case: Case, fitted: BPRLearner, fake: sp.csr_array, utility: Utility) -> float:
    learner = BPRLearner(CONFIG.replace(tol=1e-12)).fit(case.train, init=fitted.factors, fake=fake)
    assert learner.converged
    return utility.value(learner.user_factors, learner.item_factors)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.parametrize("goal", ["integrity", "ranking"])
def test_implicit_gradient_matches_finite_differences_of_refits(
    case: Case, fitted: BPRLearner, goal: str, rng: np.random.Generator
) -> None:
    utility = utilities(case, fitted)[goal]
    system = fitted.adjoint_system(case.train.matrix, case.fake)
    assert isinstance(system, AdjointSystem)
    _, g_user, g_item = utility.gradient(system.user, system.item)
    solved = system.solve(system.rhs(g_user, g_item), tol=1e-11, max_iter=2000)
    assert solved.converged
    pattern = system.fake_gradient(solved.x, case.fake)
    dense = system.fake_gradient_dense(solved.x)
    np.testing.assert_allclose(dense[case.fake.nonzero()], pattern, rtol=1e-12, atol=1e-15)

    h = 1e-4
    rows = case.fake.nonzero()[0]
    numeric = np.empty(len(rows))
    for e in range(len(rows)):  # stored entries: central differences
        up, down = case.fake.copy(), case.fake.copy()
        up.data[e] += h
        down.data[e] -= h
        numeric[e] = (
            refit_value(case, fitted, up, utility) - refit_value(case, fitted, down, utility)
        ) / (2 * h)
    assert cosine(pattern, numeric) >= 0.999
    np.testing.assert_allclose(pattern, numeric, rtol=1e-3, atol=1e-3 * np.abs(numeric).max())

    # entries not stored (w = 0): one-sided second-order differences at w = 0
    stored = case.fake.toarray() > 0
    free = np.argwhere(~stored)
    picks = free[rng.choice(len(free), 8, replace=False)]
    base = refit_value(case, fitted, case.fake, utility)
    numeric_free = np.empty(len(picks))
    for e, (f, i) in enumerate(picks):
        values = []
        for step in (h, 2 * h):
            grown = case.fake.toarray()
            grown[f, i] = step
            values.append(refit_value(case, fitted, sp.csr_array(grown), utility))
        numeric_free[e] = (-3 * base + 4 * values[0] - values[1]) / (2 * h)
    assert cosine(dense[picks[:, 0], picks[:, 1]], numeric_free) >= 0.999


class TestBPRContract(LearnerContract):
    """The learner contract, on ``Interactions``."""

    @pytest.fixture(scope="class")
    @classmethod
    def learner_case(cls) -> LearnerCase:
        case = make_case(np.random.default_rng(11))
        return LearnerCase(CONFIG, case.train, case.fake)


def test_solve_gauges_the_rotations_and_keeps_the_gradient() -> None:
    """As ALS's Schur solve (``test_learners_hessian``), on the whole system: at
    stationarity 5e-7 the plain MINRES took 304 iterations, the gauged one 73."""
    case = make_case(np.random.default_rng(5), m=60, n=40, m_fake=5)
    weights = np.random.default_rng(7).normal(size=(60, 40))

    def at(tol: float) -> tuple[BPRSystem, np.ndarray]:
        learner = BPRLearner(CONFIG.replace(rank=4, tol=tol, max_iters=500))
        system = learner.fit(case.train, fake=case.fake).adjoint_system(
            case.train.matrix, case.fake
        )
        return system, system.rhs(weights @ system.item, weights.T @ system.user)

    assert_gauged_solve(at(1e-12), at(1e-5), case.fake)
