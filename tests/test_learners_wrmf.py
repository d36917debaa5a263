"""WRMF (implicit ALS) and its exact implicit gradient, against dense NumPy references.

Tiny problems: a dense reference of the objective, one sweep and the gradient; the
Hessian-vector product against finite differences of that gradient; ``dR/dw`` from one
adjoint solve against central finite differences of re-solved fits (KKT 1e-11).
``tests/contracts.py::LearnerContract`` takes ``Ratings`` and ``build_learner``; its checks
are restated here for ``Interactions`` (:class:`TestContractEquivalent`).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from cfpoison.attacks.utility import Utility, candidate_pattern
from cfpoison.data.interactions import Interactions
from cfpoison.errors import ConfigError, DataError
from cfpoison.learners.adjoint import AdjointSystem, minres_solve
from cfpoison.learners.base import Factors
from cfpoison.learners.wrmf import WRMFConfig, WRMFLearner, _apply
from cfpoison.models.ranking import top_unrated
from contracts import LearnerCase, LearnerContract

KKT_TOL = 1e-6


@dataclasses.dataclass(frozen=True)
class Case:
    """A tiny problem: real interactions (weights in [1, 3], some empty rows and columns),
    relaxed fake rows in (0.2, 0.8), and a tight config."""

    interactions: Interactions
    fake: sp.csr_array
    config: WRMFConfig

    def fit(self, **changes: object) -> WRMFLearner:
        config = dataclasses.replace(self.config, **changes)  # type: ignore[arg-type]
        return WRMFLearner(config).fit(self.interactions, fake=self.fake)


def make_case(rng: np.random.Generator, m: int = 14, n: int = 11, m_fake: int = 3) -> Case:
    mask = rng.random((m, n)) < 0.35
    mask[0] = False  # a user without interactions
    mask[:, -1] = False  # an item without real interactions
    weights = np.where(mask, 1.0 + 2.0 * rng.random((m, n)), 0.0)
    fake = np.where(rng.random((m_fake, n)) < 0.4, 0.2 + 0.6 * rng.random((m_fake, n)), 0.0)
    fake[0, -1] = 0.5
    interactions = Interactions(sp.csr_array(weights), np.arange(m), np.arange(n))
    config = WRMFConfig(rank=4, lam=0.5, alpha=3.0, kkt_tol=KKT_TOL, threads=1, seed=3)
    return Case(interactions, sp.csr_array(fake), config)


@pytest.fixture(scope="module")
def case() -> Case:
    return make_case(np.random.default_rng(20240))


@pytest.fixture(scope="module")
def fitted(case: Case) -> WRMFLearner:
    return case.fit()


def dense_parts(case: Case) -> tuple[np.ndarray, np.ndarray]:
    """Confidence and preference of every entry of ``[U; U~] V'`` (module docstring)."""
    r, w, alpha = case.interactions.matrix.toarray(), case.fake.toarray(), case.config.alpha
    confidence = np.vstack([1.0 + alpha * r, 1.0 + alpha * w])
    preference = np.vstack([(r > 0).astype(float), w])
    return confidence, preference


def dense_objective(case: Case, f: Factors) -> float:
    c, p = dense_parts(case)
    w = np.vstack([f.user, f.fake_user])
    norms = sum(float(np.sum(x**2)) for x in (f.user, f.fake_user, f.item))
    return float(np.sum(c * (p - w @ f.item.T) ** 2)) + case.config.lam * norms


def dense_gradient(case: Case, theta: np.ndarray, k: int) -> np.ndarray:
    """``grad L`` at rank k (flat ``[U, U~, V]``) from the dense formula."""
    c, p = dense_parts(case)
    n = case.interactions.n_items
    w, v = theta[: -n * k].reshape(-1, k), theta[-n * k :].reshape(n, k)
    e = c * (p - w @ v.T)
    lam = case.config.lam
    return np.concatenate(
        [(-2 * e @ v + 2 * lam * w).ravel(), (-2 * e.T @ w + 2 * lam * v).ravel()]
    )


def flat(f: Factors) -> np.ndarray:
    return np.concatenate([f.user.ravel(), f.fake_user.ravel(), f.item.ravel()])


# ---------------------------------------------------------------------- fit


def test_objective_and_one_sweep_match_the_dense_reference(case: Case) -> None:
    rng = np.random.default_rng(5)
    n, k, lam = case.interactions.n_items, 8, case.config.lam  # k = 8: both row routes
    item = rng.standard_normal((n, k))
    init = Factors(np.zeros((case.interactions.n_users, k)), item, np.zeros((0, k)))
    learner = WRMFLearner(
        dataclasses.replace(case.config, rank=k, max_sweeps=1, kkt_tol=0, anderson_memory=0)
    )
    learner.fit(case.interactions, init=init, fake=case.fake)
    assert learner.n_sweeps == 1 and not learner.converged
    c, p = dense_parts(case)
    w = np.stack(
        [
            np.linalg.solve(item.T @ (ci[:, None] * item) + lam * np.eye(k), item.T @ (ci * pi))
            for ci, pi in zip(c, p, strict=True)
        ]
    )
    v = np.stack(
        [
            np.linalg.solve(w.T @ (cj[:, None] * w) + lam * np.eye(k), w.T @ (cj * pj))
            for cj, pj in zip(c.T, p.T, strict=True)
        ]
    )
    f = learner.factors
    np.testing.assert_allclose(np.vstack([f.user, f.fake_user]), w, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(f.item, v, rtol=1e-9, atol=1e-12)
    assert learner.objective() == pytest.approx(dense_objective(case, f), rel=1e-12)
    gradient = dense_gradient(case, flat(f), k)
    penalty = 2 * lam * np.linalg.norm(flat(f))
    assert learner.kkt_residual() == pytest.approx(np.linalg.norm(gradient) / penalty, rel=1e-8)


def test_fit_reaches_kkt_tol_and_a_warm_refit_stops_at_once(
    case: Case, fitted: WRMFLearner
) -> None:
    assert fitted.converged and fitted.kkt_residual() <= KKT_TOL
    assert np.all(np.diff(fitted.history) <= 1e-9 * abs(fitted.history[0]))
    again = WRMFLearner(case.config).fit(case.interactions, init=fitted.factors, fake=case.fake)
    assert again.n_sweeps <= 2 and again.converged and again.kkt_residual() <= KKT_TOL
    users, items = np.nonzero(np.ones((case.interactions.n_users, case.interactions.n_items)))
    np.testing.assert_allclose(
        again.predict(users, items), fitted.predict(users, items), rtol=0, atol=1e-5
    )
    assert again.objective() <= fitted.objective() * (1 + 1e-9)


def test_a_fixed_seed_gives_the_same_factors_and_another_seed_others(
    case: Case, fitted: WRMFLearner
) -> None:
    again = case.fit()
    for name in ("user", "item", "fake_user"):
        np.testing.assert_array_equal(getattr(again.factors, name), getattr(fitted.factors, name))
    other = case.fit(seed=case.config.seed + 1)
    assert not np.array_equal(other.item_factors, fitted.item_factors)


def test_hitting_the_sweep_cap_is_reported(case: Case, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="cfpoison.learners.wrmf"):
        learner = case.fit(max_sweeps=2, kkt_tol=1e-14)
    assert not learner.converged and learner.n_sweeps == 2
    assert "max_sweeps=2" in caplog.text


@pytest.mark.parametrize("cap", [1, 2, 7, 12])
def test_a_capped_mixed_fit_returns_the_point_its_history_ends_at(case: Case, cap: int) -> None:
    """Stopped by its cap, an Anderson-mixed fit returns its last plain sweep's output, whose
    objective is the last one in its history (never an earlier sweep)."""
    learner = case.fit(max_sweeps=cap, kkt_tol=1e-14, anderson_memory=5)
    assert not learner.converged and learner.n_sweeps == cap
    assert learner.objective() == pytest.approx(learner.history[-1], rel=1e-12)


# ---------------------------------------------------------------------- the learner contract


class TestWRMFContract(LearnerContract):
    """The learner contract, on ``Interactions``."""

    @pytest.fixture(scope="class")
    @classmethod
    def learner_case(cls) -> LearnerCase:
        case = make_case(np.random.default_rng(20240))
        return LearnerCase(case.config, case.interactions, case.fake)


# ---------------------------------------------------------------------- bad inputs


def one_line(error: pytest.ExceptionInfo[Exception]) -> bool:
    return "\n" not in str(error.value) and str(error.value).startswith("wrmf:")


@pytest.mark.parametrize(
    "change",
    [
        {"rank": 0},
        {"lam": 0.0},
        {"lam": float("inf")},
        {"alpha": -1.0},
        {"max_sweeps": 0},
        {"kkt_tol": -1e-6},
        {"anderson_memory": -1},
        {"init_scale": 0.0},
        {"threads": -1},
    ],
)
def test_bad_config_raises_a_one_line_config_error(change: dict[str, object]) -> None:
    with pytest.raises(ConfigError) as error:
        WRMFConfig(**change)  # type: ignore[arg-type]
    assert one_line(error)


@given(value=st.one_of(st.floats(max_value=-1e-12), st.just(np.nan), st.just(np.inf)))
@settings(max_examples=25, deadline=None)
def test_negative_or_non_finite_fake_weights_are_refused(value: float) -> None:
    """Weights above 1 are the learner's to take (counts); the box [0, 1] is the threat
    model's."""
    case = make_case(np.random.default_rng(1), m=5, n=4, m_fake=1)
    fake = case.fake.toarray()
    fake[0, 1] = value
    with pytest.raises(DataError) as error:
        WRMFLearner(case.config).fit(case.interactions, fake=sp.csr_array(fake))
    assert one_line(error)


def test_bad_shapes_and_types_raise_one_line_data_errors(case: Case, fitted: WRMFLearner) -> None:
    m, n, k = case.interactions.n_users, case.interactions.n_items, case.config.rank
    learner = WRMFLearner(case.config)
    attempts = [
        lambda: learner.fit(case.interactions, fake=sp.csr_array(np.zeros((2, n + 1)))),
        lambda: learner.fit(case.interactions, fake=np.zeros((2, n))),  # type: ignore[arg-type]
        lambda: learner.fit(case.interactions.matrix),  # type: ignore[arg-type]
        lambda: learner.fit(
            case.interactions, init=Factors(np.zeros((m, k)), np.zeros((n, k + 1)), np.zeros(0))
        ),
        lambda: fitted.adjoint_system(case.interactions.matrix, case.fake[:1]),
        lambda: fitted.adjoint_system(case.interactions.matrix[:, :-1], case.fake),
    ]
    system = fitted.adjoint_system(case.interactions.matrix, case.fake)
    attempts += [
        lambda: system.rhs(np.zeros((m, k + 1)), np.zeros((n, k))),
        lambda: system.fake_gradient(np.zeros(3), case.fake),
        lambda: system.fake_gradient(np.zeros((m + case.fake.shape[0] + n) * k), case.fake.T),
    ]
    for attempt in attempts:
        with pytest.raises(DataError) as error:
            attempt()
        assert one_line(error)


# ---------------------------------------------------------------------- the adjoint system


def test_hessian_vector_products_match_finite_differences(case: Case, fitted: WRMFLearner) -> None:
    system = fitted.adjoint_system(case.interactions.matrix, case.fake)
    assert isinstance(system, AdjointSystem)
    theta = flat(fitted.factors)
    rng = np.random.default_rng(11)
    h = 1e-6
    k = case.config.rank
    x = rng.standard_normal(theta.size)
    plus, minus = theta + h * x, theta - h * x
    fd = (dense_gradient(case, plus, k) - dense_gradient(case, minus, k)) / (2 * h)
    np.testing.assert_allclose(system.matvec(x), fd, rtol=0, atol=1e-7 * np.abs(fd).max())
    hessian = np.stack([system.matvec(e) for e in np.eye(theta.size)])
    np.testing.assert_allclose(hessian, hessian.T, rtol=0, atol=1e-10)
    # the block-Jacobi preconditioner inverts H's exact diagonal blocks
    blocks = [hessian[i : i + k, i : i + k] for i in range(0, theta.size, k)]
    expected = np.concatenate(
        [np.linalg.solve(b, part) for b, part in zip(blocks, x.reshape(-1, k), strict=True)]
    )
    np.testing.assert_allclose(system.precondition(x), expected, rtol=1e-9, atol=1e-12)


def test_schur_solve_and_whole_system_minres_agree(case: Case, fitted: WRMFLearner) -> None:
    system = fitted.adjoint_system(case.interactions.matrix, case.fake)
    utility = integrity_utility(case, fitted)
    _, grad_user, grad_item = utility.gradient(system.user, system.item)
    rhs = system.rhs(grad_user, grad_item)
    schur = system.solve(rhs, 1e-10, 500)
    whole = minres_solve(system.matvec, system.precondition, rhs, 1e-10, 500)
    assert schur.converged and whole.converged
    # what the solve leaves of the residual lies along the kept side's rotations, scaled by
    # its diagonal blocks (the gauge term D Y, hessian.Rotations): off them it is <= tol
    residual = rhs - system.matvec(schur.x)
    keep = 1 if system.n <= system.m + system.m_fake else 0
    factors = (np.vstack([system.user, system.fake_user]), system.item)[keep]
    k = factors.shape[1]
    skews = [np.eye(k)[:, [a]] @ np.eye(k)[[b]] for a in range(k) for b in range(a + 1, k)]
    blocks = system._blocks(keep, invert=False)
    gauge = np.column_stack([_apply(blocks, factors @ (e - e.T)).ravel() for e in skews])
    cut = (system.m + system.m_fake) * k
    kept = residual[cut:] if keep else residual[:cut]
    off = kept - gauge @ np.linalg.lstsq(gauge, kept, rcond=None)[0]
    others = residual[:cut] if keep else residual[cut:]
    assert np.hypot(np.linalg.norm(off), np.linalg.norm(others)) <= 1e-10 * np.linalg.norm(rhs)
    np.testing.assert_allclose(
        system.fake_gradient_dense(schur.x), system.fake_gradient_dense(whole.x), rtol=1e-6
    )
    warm = system.solve(rhs, 1e-10, 500, x0=schur.x)
    assert warm.iterations <= 1


# ---------------------------------------------------------------------- the gradient check


def integrity_utility(case: Case, fitted: WRMFLearner) -> Utility:
    return Utility(
        mu1=0.0,
        mu2=1.0,
        omega=case.interactions.matrix,
        clean_user=fitted.user_factors.copy(),
        clean_item=fitted.item_factors.copy(),
        targets=np.array([case.interactions.n_items - 1]),
        weights=np.array([1.0]),
    )


def utilities(case: Case, fitted: WRMFLearner) -> dict[str, Utility]:
    clean = WRMFLearner(case.config).fit(case.interactions)
    target = case.interactions.n_items - 1
    top = top_unrated(
        case.interactions.matrix,
        clean.user_factors,
        clean.item_factors,
        4,
        exclude=np.array([target]),
    )
    base = integrity_utility(case, fitted)
    return {
        "integrity": base,
        "availability": dataclasses.replace(
            base, mu1=1.0, mu2=0.0, clean_user=clean.user_factors, clean_item=clean.item_factors
        ),
        "ranking": dataclasses.replace(
            base,
            mu2=0.0,
            mu3=1.0,
            candidates=candidate_pattern(top, case.interactions.n_items),
            temperature=0.3,
        ),
    }


def cosine_and_error(ours: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    cosine = float(ours @ reference / (np.linalg.norm(ours) * np.linalg.norm(reference)))
    return cosine, float(np.linalg.norm(ours - reference) / np.linalg.norm(reference))


@pytest.mark.parametrize("goal", ["integrity", "availability", "ranking"])
def test_gradient_matches_finite_differences_of_resolved_fits(case: Case, goal: str) -> None:
    config = dataclasses.replace(case.config, kkt_tol=1e-11)
    learner = WRMFLearner(config).fit(case.interactions, fake=case.fake)
    utility = utilities(case, learner)[goal]
    system = learner.adjoint_system(case.interactions.matrix, case.fake)
    _, grad_user, grad_item = utility.gradient(system.user, system.item)
    solved = system.solve(system.rhs(grad_user, grad_item), 1e-10, 1000)
    assert solved.converged
    on_pattern = system.fake_gradient(solved.x, case.fake)
    dense = system.fake_gradient_dense(solved.x)
    fake = case.fake.toarray()
    rows, cols = case.fake.nonzero()
    np.testing.assert_allclose(on_pattern, dense[rows, cols], rtol=1e-12, atol=1e-14)

    def value(weights: np.ndarray) -> float:
        again = WRMFLearner(config).fit(
            case.interactions, init=learner.factors, fake=sp.csr_array(weights)
        )
        assert again.converged
        return utility.value(again.user_factors, again.item_factors)

    h = 1e-4
    base = value(fake)
    reference = np.empty_like(dense)
    for f, j in np.ndindex(*fake.shape):
        step = np.zeros_like(fake)
        step[f, j] = h
        if fake[f, j] > 0:  # central differences inside (0, 1)
            reference[f, j] = (value(fake + step) - value(fake - step)) / (2 * h)
        else:  # w = 0 is the domain's edge: one-sided, second order
            reference[f, j] = (-3 * base + 4 * value(fake + step) - value(fake + 2 * step)) / (
                2 * h
            )
    cosine, error = cosine_and_error(on_pattern, reference[rows, cols])
    assert cosine >= 0.999 and error <= 1e-5, (cosine, error)
    cosine, error = cosine_and_error(dense.ravel(), reference.ravel())
    assert cosine >= 0.999 and error <= 1e-5, (cosine, error)
