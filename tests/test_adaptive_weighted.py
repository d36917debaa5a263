"""The weighted Hessian and the adaptive attacker of the reweighting defenses (Huber, influence
caps, ALS-WR): Hessian-vector products against finite differences of the weighted gradient,
unit weights against the unweighted Hessian, and the implicit gradient through each defense
against central differences of re-solved defended models (``docs/math.md`` section 3.6)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from cfpoison.attacks import run_attack
from cfpoison.attacks.adaptive import ReweightedObjective, defense_option, reweighted_hessian
from cfpoison.attacks.engine import attack_context
from cfpoison.attacks.gradient import system_gradient, utility_gradient
from cfpoison.attacks.threat import ThreatModel
from cfpoison.attacks.utility import Utility
from cfpoison.cli import main
from cfpoison.data.preprocess import PreprocessConfig, prepare
from cfpoison.data.ratings import Ratings
from cfpoison.data.synthetic import PRESETS, make_synthetic
from cfpoison.defend.defenses import (
    ALSWRConfig,
    DefenseConfig,
    HuberConfig,
    InfluenceCapConfig,
    defend,
)
from cfpoison.experiments.defense_grid import run_defense_grid
from cfpoison.learners import ALSConfig, ALSLearner
from cfpoison.learners.hessian import FactorHessian, solve
from contracts import AttackCase, AttackMethodContract
from test_attack_adaptive import _config
from test_attack_engine import _config as _engine_config
from test_attack_gradient import LEARNERS, STEP, _problem

#: The reweighting defenses on the tiny problem of ``test_attack_gradient``: Huber with a
#: threshold that leaves fake ratings on both sides of it (the defense's 60 IRLS steps reach
#: the fixed point that the attacker's fit stops at, KKT 1e-10, so their models agree); a cap
#: that binds on fake and real users; ALS-WR.
CASES: dict[str, DefenseConfig] = {
    "huber": HuberConfig(delta=1.0, iterations=60),
    "influence_cap": InfluenceCapConfig(cap=0.5),
    "als_wr": ALSWRConfig(lam=0.2),
}


def _random_hessian(
    rng: np.random.Generator, weighted: bool, delta: float, per_row: bool
) -> tuple[FactorHessian, dict[str, object]]:
    """H at a random (not stationary) point of a random problem: 10 + 3 users, 8 items."""
    m, m_fake, n, k = 10, 3, 8, 3

    def ratings(rows: int, density: float) -> sp.csr_array:
        mask = rng.random((rows, n)) < density
        mask[:, 0] = True
        r, c = np.nonzero(mask)
        return sp.csr_array((rng.uniform(-2, 2, len(r)), (r, c)), shape=(rows, n))

    train, fake = ratings(m, 0.5), ratings(m_fake, 0.6)
    settings: dict[str, object] = {
        "lambda_u": rng.uniform(0.3, 2.0, m + m_fake) if per_row else 0.7,
        "lambda_v": rng.uniform(0.3, 2.0, n) if per_row else 1.1,
        "weights": (rng.uniform(0.1, 1.0, train.nnz), rng.uniform(0.1, 1.0, fake.nnz))
        if weighted
        else None,
        "delta": delta,
    }
    factors = [rng.normal(size=(rows, k)) for rows in (m, m_fake, n)]
    return FactorHessian(train, fake, *factors, **settings), settings  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("weighted", "delta", "per_row"),
    [(True, np.inf, False), (False, np.inf, True), (True, 0.8, True), (False, 0.8, False)],
)
def test_weighted_hessian_is_the_derivative_of_its_gradient(
    weighted: bool, delta: float, per_row: bool
) -> None:
    rng = np.random.default_rng(17)
    hessian, settings = _random_hessian(rng, weighted, delta, per_row)
    theta = np.concatenate([hessian.user.ravel(), hessian.fake_user.ravel(), hessian.item.ravel()])

    def gradient(flat: np.ndarray) -> np.ndarray:
        user, fake_user, item = hessian.split(flat)
        return FactorHessian(
            hessian.train,
            hessian.fake,
            user,
            fake_user,
            item,
            **settings,  # type: ignore[arg-type]
        ).gradient()

    dense = np.column_stack([hessian.matvec(e) for e in np.eye(hessian.size)])
    np.testing.assert_allclose(dense, dense.T, atol=1e-12)
    eps = 1e-6
    for _ in range(3):
        x = rng.normal(size=hessian.size)
        fd = (gradient(theta + eps * x) - gradient(theta - eps * x)) / (2 * eps)
        assert np.linalg.norm(dense @ x - fd) <= 1e-7 * np.linalg.norm(fd)
    # the diagonal blocks are H's, and block Jacobi inverts them
    k = hessian.rank
    blocks = np.concatenate([*hessian.user_blocks(), hessian.item_blocks()])
    inverses = np.concatenate([*hessian.user_blocks(invert=True), hessian.item_blocks(True)])
    for r, (block, inverse) in enumerate(zip(blocks, inverses, strict=True)):
        np.testing.assert_allclose(block, dense[r * k : (r + 1) * k, r * k : (r + 1) * k])
        np.testing.assert_allclose(block @ inverse, np.eye(k), atol=1e-10)
    rhs = dense @ rng.normal(size=hessian.size)
    result = solve(hessian, rhs, tol=1e-10, max_iter=5000)
    assert result.converged
    assert np.linalg.norm(rhs - dense @ result.x) <= 1e-9 * np.linalg.norm(rhs)


def test_huber_hessian_drops_the_curvature_of_outliers_only() -> None:
    rng = np.random.default_rng(4)
    hessian, _ = _random_hessian(rng, False, 0.8, False)
    residual = hessian.fake.data - np.einsum(
        "pk,pk->p",
        hessian.fake_user[np.repeat(np.arange(3), np.diff(hessian.fake.indptr))],
        hessian.item[hessian.fake.indices],
    )
    assert hessian.fake_curvature is not None
    np.testing.assert_array_equal(hessian.fake_curvature, np.abs(residual) <= 0.8)
    assert 0 < hessian.fake_curvature.sum() < len(residual)


def test_unit_weights_reproduce_the_unweighted_hessian() -> None:
    rng = np.random.default_rng(8)
    plain, _ = _random_hessian(rng, False, np.inf, False)
    m, m_fake, n = len(plain.user), len(plain.fake_user), len(plain.item)
    ones = (np.ones(plain.train.nnz), np.ones(plain.fake.nnz))
    unit = FactorHessian(
        plain.train,
        plain.fake,
        plain.user,
        plain.fake_user,
        plain.item,
        np.full(m + m_fake, 0.7),
        np.full(n, 1.1),
        weights=ones,
    )
    assert not plain.weighted and unit.weighted and plain.fake_curvature is None
    x = rng.normal(size=plain.size)
    np.testing.assert_array_equal(unit.matvec(x), plain.matvec(x))
    np.testing.assert_array_equal(unit.gradient(), plain.gradient())
    np.testing.assert_array_equal(
        unit.couple_to_items(*plain.split(x)[:2]), plain.couple_to_items(*plain.split(x)[:2])
    )
    for a, b in zip(
        [*unit.user_blocks(), unit.item_blocks()],
        [*plain.user_blocks(), plain.item_blocks()],
        strict=True,
    ):
        np.testing.assert_allclose(a, b, rtol=1e-14, atol=1e-14)
    assert unit.kkt_residual() == pytest.approx(plain.kkt_residual(), rel=1e-14)


def test_unit_weights_give_the_learners_implicit_gradient() -> None:
    ratings, fake = _problem()
    config = LEARNERS["als"].replace(kkt_tol=1e-9)
    assert isinstance(config, ALSConfig)
    clean = ALSLearner(config).fit(ratings)
    model = ALSLearner(config).fit(ratings, fake=fake)
    utility = Utility(
        1.0, 1.0, ratings.matrix, clean.user_factors, clean.item_factors, np.array([2]), np.ones(1)
    )
    expected = utility_gradient(model, ratings.matrix, fake, utility, solve_tol=1e-10)
    f = model.factors
    m_all = ratings.n_users + fake.shape[0]
    unit = FactorHessian(
        ratings.matrix,
        fake,
        f.user,
        f.fake_user,
        f.item,
        np.full(m_all, config.lambda_u),
        np.full(ratings.n_items, config.lambda_v),
        weights=(np.ones(ratings.nnz), np.ones(fake.nnz)),
    )
    got = system_gradient(
        unit, utility, kkt_residual=0.0, fit_converged=True, solve_tol=1e-10, solve_max_iter=5000
    )
    np.testing.assert_allclose(
        got.on_pattern(fake), expected.on_pattern(fake), rtol=1e-6, atol=1e-9
    )
    with pytest.raises(ValueError):
        got.dense()  # a weighted objective's gradient lives on its pattern


@pytest.mark.parametrize("case", sorted(CASES))
def test_gradient_through_the_reweighting_defense_matches_finite_differences(case: str) -> None:
    defense = CASES[case]
    learner = LEARNERS["als"].replace(kkt_tol=1e-10)
    assert isinstance(learner, ALSConfig)
    ratings, fake = _problem()
    config = _config(learner, defense, solve_tol=1e-10, solve_max_iter=5000)
    ctx = attack_context(ratings, config)
    objective = ReweightedObjective(ctx, defense)  # type: ignore[arg-type]
    state = objective.fit(fake, None)
    # the attacker's model is the defense's own
    model = defend(ratings, fake, defense, learner, np.random.default_rng(config.seed))
    assert objective.value(state) == pytest.approx(ctx.utility.value(model.user, model.item))
    hessian = reweighted_hessian(state, ratings.matrix, fake)
    assert hessian.kkt_residual() <= 1e-8  # a stationary point of the weighted objective
    if isinstance(defense, HuberConfig):  # fake ratings in- and outside the threshold
        assert hessian.fake_curvature is not None
        assert 0 < hessian.fake_curvature.sum() < fake.nnz
    if isinstance(defense, InfluenceCapConfig):
        assert state.info["capped_fake"] > 0 and state.info["capped_real"] > 0
    grad = objective.gradient(state, fake)
    assert grad.trustworthy
    values = grad.on_pattern(fake)
    fd = np.zeros(fake.nnz)
    for entry in range(fake.nnz):
        sides = []
        for sign in (1.0, -1.0):
            moved = fake.copy()
            moved.data[entry] += sign * STEP
            sides.append(objective.value(objective.fit(moved, state)))
        fd[entry] = (sides[0] - sides[1]) / (2 * STEP)
    cosine = values @ fd / (np.linalg.norm(values) * np.linalg.norm(fd))
    relative = np.linalg.norm(values - fd) / np.linalg.norm(fd)
    print(f"{case}: cosine {cosine:.6f}, relative error {relative:.2e}")
    assert cosine >= 0.99, (case, cosine)
    assert relative <= 1e-2, (case, relative)


def test_every_reweighting_defense_has_an_adaptive_attacker() -> None:
    for name in ("huber", "influence_cap", "als_wr"):
        assert defense_option(name).name == name


@pytest.fixture(scope="module")
def small() -> Ratings:
    """The ``small`` synthetic preset's training split."""
    return prepare(make_synthetic(PRESETS["small"]), PreprocessConfig())[0]


class TestAdaptiveAgainstReweighting(AttackMethodContract):
    """The attack contract for adaptive PGA against each reweighting defense."""

    @pytest.fixture(scope="class", params=sorted(CASES))
    @classmethod
    def attack_case(cls, request: pytest.FixtureRequest, small: Ratings) -> AttackCase:
        defense = {"huber": HuberConfig(), "influence_cap": InfluenceCapConfig(cap=0.5)}.get(
            request.param, CASES[request.param]
        )
        options = {"defense": defense.to_dict()}
        return AttackCase(small, _engine_config(method="adaptive", iterations=1, options=options))


def test_the_defense_grid_has_an_adaptive_row_for_each() -> None:
    ratings, _ = _problem()
    threat = ThreatModel(alpha=0.1, items_per_user=6)
    config = _engine_config(method="pga", iterations=1, threat=threat)
    defenses = [HuberConfig(), InfluenceCapConfig(), ALSWRConfig()]
    report = run_defense_grid(ratings, ratings, [config], defenses, seed=3, adaptive=True)
    assert [(r["defense"], r["kind"]) for r in report["adaptive"]] == [
        (d.label, "adaptive") for d in defenses
    ]


def test_adaptive_pga_ascends_the_defended_utility(small: Ratings) -> None:
    config = _engine_config(
        method="adaptive", iterations=2, options={"defense": InfluenceCapConfig().to_dict()}
    )
    result = run_attack(small, config)
    assert result.utility_history[-1] > result.utility_history[0]
    assert result.info["defense"] == InfluenceCapConfig().to_dict()


def test_cli_against_a_reweighting_defense(tmp_path: Path) -> None:
    out = tmp_path / "a.json"
    args = ["attack", "--dataset", "synthetic:small", "--against", "huber:delta=0.5"]
    settings = ["--iterations", "1", "--alpha", "0.02", "--items-per-user", "20"]
    assert main([*args, *settings, "--json", str(out), "--quiet"]) == 0
    payload = json.loads(out.read_text())
    assert payload["method"] == "adaptive"
    assert payload["config"]["options"]["defense"] == HuberConfig(delta=0.5).to_dict()
