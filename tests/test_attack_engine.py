"""run_attack on a small synthetic problem: PGA ascends, every method is feasible and seeded."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.sparse as sp

from cfpoison.attacks import engine
from cfpoison.attacks.engine import AttackConfig, MethodOutput, get_method, run_attack
from cfpoison.attacks.metrics import evaluate_profiles
from cfpoison.attacks.threat import ThreatModel, grid_values, is_feasible
from cfpoison.attacks.utility import UtilityConfig
from cfpoison.data.preprocess import train_test_split
from cfpoison.data.ratings import Ratings, RatingScale
from cfpoison.errors import BudgetError, ConfigError
from cfpoison.learners import ALSConfig, NuclearConfig
from cfpoison.models import fit_learner
from contracts import AttackCase, AttackMethodContract

LEARNER = ALSConfig(rank=4, lambda_u=3.0, lambda_v=3.0, threads=1)


@pytest.fixture(scope="module")
def small() -> Ratings:
    """80 users x 60 items on the 1-5 half-star scale, rank-4 signal, about 35% observed."""
    rng = np.random.default_rng(5)
    m, n = 80, 60
    signal = rng.normal(size=(m, 4)) @ rng.normal(size=(4, n)) * 0.5
    rows, cols = np.nonzero(rng.random((m, n)) < 0.35)
    stars = np.clip(
        np.round((3.0 + signal[rows, cols] + 0.3 * rng.normal(size=len(rows))) * 2) / 2, 0.5, 5
    )
    return Ratings.from_triples(rows + 1, cols + 1, stars, RatingScale(0.5, 5.0, 0.5), "small")


def _config(**changes: object) -> AttackConfig:
    base = AttackConfig(
        learner=LEARNER,
        threat=ThreatModel(alpha=0.05, items_per_user=10),
        iterations=6,
        seed=3,
    )
    return base.replace(**changes)


def test_config_round_trips_with_either_learner() -> None:
    config = _config(
        learner=NuclearConfig(lam=2.0),
        utility=UtilityConfig(mu1=1.0, mu2=-1.0, targets=(3, 4)),
        method="sgld",
        options={"beta": 0.6, "chains": 2},
    )
    again = AttackConfig.from_json(config.to_json())
    assert again == config and isinstance(again.learner, NuclearConfig)
    assert AttackConfig.from_json(AttackConfig().to_json()) == AttackConfig()
    with pytest.raises(ConfigError):
        AttackConfig(step_size=0.0)


@pytest.mark.parametrize(
    ("method", "direction", "selection"),
    [
        ("robust", "vertex", "rare"),
        ("pga", "gradient", "random"),
        ("adaptive", "gradient", "random"),
    ],
)
def test_auto_steps_and_items_resolve_to_the_method_s_own(
    method: str, direction: str, selection: str
) -> None:
    """``auto`` becomes the method's default when the config is built (robust: its strongest
    measured transfer; the rest: Algorithm 1), so the stored config says what ran; a value
    given is kept."""
    config = AttackConfig(method=method)
    assert (config.step_direction, config.threat.item_selection) == (direction, selection)
    assert config.to_dict()["step_direction"] == direction
    assert AttackConfig.from_dict(config.to_dict()) == config
    given = AttackConfig(
        method=method, step_direction="gradient", threat=ThreatModel(item_selection="random")
    )
    assert (given.step_direction, given.threat.item_selection) == ("gradient", "random")
    assert ThreatModel().item_selection == "auto"  # outside an attack: read as random


@pytest.mark.parametrize(
    ("method", "options", "message"),
    [
        ("pga", {"beta": 0.6}, "PGAOptions: unknown field"),
        ("pga", {"start": "nowhere"}, "is not one of"),
        ("robust", {"surrogates": "nope"}, "surrogates must be a preset"),
        ("robust", {"aggregate": "median"}, "is not one of"),
        ("adaptive", {"defense": "moat"}, "must name a defense"),
        ("sgld", {"chains": 0}, "chains"),
        ("sgld", {"iterations": 3}, "with the attack's iterations"),
        ("uniform", {"start": "average"}, "uniform takes no options"),
    ],
)
def test_each_method_checks_its_typed_options_when_the_config_is_built(
    method: str, options: dict[str, object], message: str
) -> None:
    """``AttackConfig.options`` is parsed by the method's own typed config
    (:func:`method_options`) as the config is built: before any work, in the CLI, the sweep
    runner and the library alike."""
    with pytest.raises(ConfigError, match=message):
        AttackConfig(method=method, options=options)


@pytest.mark.parametrize(
    ("learner", "mu1", "mu2", "items", "direction"),
    [
        ("als", 1.0, 0.0, "random", "gradient"),
        ("als", 0.0, 1.0, "greedy", "gradient"),
        ("nuclear", 1.0, 0.0, "random", "gradient"),
        ("als", 1.0, 0.0, "random", "vertex"),
        ("als", 1.0, 0.0, "rare", "vertex"),
    ],
)
def test_pga_ascends_is_feasible_and_deterministic(
    small: Ratings, learner: str, mu1: float, mu2: float, items: str, direction: str
) -> None:
    config = _config(
        learner=LEARNER if learner == "als" else NuclearConfig(lam=3.0, threads=1),
        utility=UtilityConfig(mu1=mu1, mu2=mu2),
        threat=ThreatModel(alpha=0.05, items_per_user=10, item_selection=items),  # type: ignore[arg-type]
        step_direction=direction,
    )
    result = run_attack(small, config)
    history = result.utility_history
    assert len(history) >= 3
    assert all(b > a for a, b in itertools.pairwise(history))  # backtracking ascent
    assert history[-1] > 1.2 * history[0]
    grid = grid_values(small.scale, config.threat.max_rating)
    assert is_feasible(result.fake, config.threat, 4, grid)
    for record in result.history[1:]:
        assert record["seconds"] >= record["retrain_seconds"] + record["gradient_seconds"] - 1e-9
        assert record["gradient_norm"] > 0 and record["step"] > 0
    if learner == "nuclear":  # convex: two seeds reach the same solution
        assert result.metrics["rmse_shift_noise_floor"] < 1e-4 < result.metrics["rmse_shift"]
    again = run_attack(small, config)
    assert (again.fake != result.fake).nnz == 0 and again.utility_history == history
    payload = result.to_dict()
    for key in (
        "rmse_shift",
        "rmse_shift_noise_floor",
        "target_mean_before",
        "target_mean_after",
        "utility_history",
        "seconds",
        "ttest_pvalue",
        "ttest_users_pvalue",
        "config",
        "targets",
    ):
        assert key in payload
    assert AttackConfig.from_dict(payload["config"]) == config


def test_integrity_pga_beats_uniform_on_its_target(small: Ratings) -> None:
    config = _config(
        utility=UtilityConfig(mu1=0.0, mu2=1.0),
        threat=ThreatModel(alpha=0.05, items_per_user=10, item_selection="greedy"),
    )
    pga = run_attack(small, config).metrics
    uniform = run_attack(small, config.replace(method="uniform")).metrics
    gain = pga["target_mean_after"][0] - pga["target_mean_before"][0]
    assert gain > 0.05
    assert gain > uniform["target_mean_after"][0] - uniform["target_mean_before"][0]


@pytest.mark.parametrize("method", ["uniform", "random", "average", "bandwagon"])
def test_baselines_are_feasible_and_push_or_nuke(small: Ratings, method: str) -> None:
    for mu2, sign in ((1.0, 1.0), (-1.0, -1.0)):
        config = _config(
            method=method, utility=UtilityConfig(mu1=0.0, mu2=mu2, targets=(7,)), iterations=0
        )
        result = run_attack(small, config)
        assert result.targets == [7]
        assert is_feasible(result.fake, config.threat, 4, grid_values(small.scale, 2.0))
        column = small.item_index([7])[0]
        rated = result.fake[:, [column]].toarray().ravel()
        if method != "uniform":
            np.testing.assert_allclose(rated, sign * 2.0)


def test_evaluate_profiles_reports_against_the_clean_model(small: Ratings) -> None:
    train, test = train_test_split(small, 0.2, np.random.default_rng(0))
    result = run_attack(train, _config(method="uniform"))
    clean = fit_learner(LEARNER, train)
    metrics = evaluate_profiles(train, result.fake, LEARNER, np.array([0, 1]), test, clean=clean)
    assert metrics["rmse_shift"] == pytest.approx(result.metrics["rmse_shift"], rel=1e-9)
    assert metrics["rmse_shift_noise_floor"] > 0
    assert len(metrics["target_mean_after"]) == 2
    # held-out RMSE (stars) of the poisoned and the clean model, recomputed on the test entries
    poisoned = fit_learner(LEARNER, train, result.fake)
    rows, cols, shifted = test.triples()
    stars = small.scale.to_original(shifted)
    for key, model in (("rmse_test", poisoned), ("rmse_test_clean", clean)):
        predicted = small.scale.to_original(model.predict(rows, cols))
        assert metrics[key] == pytest.approx(np.sqrt(np.mean((predicted - stars) ** 2)), rel=1e-9)
    assert metrics["rmse_test"] > metrics["rmse_train"]  # unseen entries are harder
    no_attack = evaluate_profiles(train, result.fake[:0], LEARNER, np.array([0]), clean=clean)
    assert no_attack["rmse_shift"] == pytest.approx(0.0, abs=1e-12)
    assert no_attack["target_mean_after"] == no_attack["target_mean_before"]


def test_impossible_budget_and_unknown_method(small: Ratings) -> None:
    with pytest.raises(BudgetError, match="exceeds"):
        run_attack(small, _config(threat=ThreatModel(items_per_user=61)))
    with pytest.raises(ConfigError, match="not available"):
        get_method("no-such-attack")


def test_registered_methods_are_checked_against_the_budget(small: Ratings) -> None:
    @engine.register_method("too-many")
    def too_many(ctx: engine.AttackContext) -> MethodOutput:
        dense = np.ones((ctx.n_fake, ctx.train.n_items))
        return MethodOutput(sp.csr_array(dense))

    try:
        with pytest.raises(RuntimeError, match="broke the threat model"):
            run_attack(small, _config(method="uniform").replace(method="too-many"))  # type: ignore[arg-type]
    finally:
        engine._METHODS.pop("too-many")


#: Per method, what keeps the contract run small (the rest is ``_config``'s).
CONTRACT_CHANGES: dict[str, dict[str, object]] = {
    "pga": {"iterations": 2},
    "adaptive": {"iterations": 1, "options": {"defense": {"name": "bagging", "bags": 2}}},
    "sgld": {"iterations": 2, "options": {"chains": 1, "samples": 1}},
}


class TestEveryMethod(AttackMethodContract):
    """The attack contract for every registered method, on ``small`` (4 fake users, B = 10)."""

    @pytest.fixture(scope="class", params=engine.available_methods())
    @classmethod
    def attack_case(cls, request: pytest.FixtureRequest, small: Ratings) -> AttackCase:
        changes = {"iterations": 0, **CONTRACT_CHANGES.get(request.param, {})}
        utility = UtilityConfig(mu1=1.0, mu2=1.0, targets=(7,))
        return AttackCase(small, _config(method=request.param, utility=utility, **changes))


def test_backtracking_sets_aside_refits_that_are_not_stationary(
    small: Ratings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A candidate refit not stationary after CANDIDATE_SWEEPS is set aside for smaller steps;
    only when none of them ascends at a stationary fit does it finish (FINISH_SWEEPS more);
    the last step is never finished."""
    from cfpoison.attacks import pga

    reachable = run_attack(small, _config(iterations=3))
    assert len(reachable.history) == 4
    assert all(0 < r["fit_sweeps"] <= pga.CANDIDATE_SWEEPS for r in reachable.history[1:])
    # two sweeps never reach KKT 1e-5 here: every candidate is set aside, and every step
    # taken is a finished one, stationary
    monkeypatch.setattr(pga, "CANDIDATE_SWEEPS", 2)
    finished = run_attack(small, _config(iterations=3))
    assert finished.info["stop_reason"] == "last step set aside"
    assert len(finished.history) == 3  # the start and two finished steps
    for record in finished.history[1:]:
        assert record["fit_converged"] and record["kkt_residual"] <= LEARNER.kkt_tol
        assert 0 < record["fit_sweeps"] <= pga.FINISH_SWEEPS
        assert record["candidates"] == pga.MAX_HALVINGS + 1
    # a KKT tolerance no fit meets: every step is a finished candidate that is still not
    # stationary, and the history says so
    unreachable = run_attack(
        small, _config(iterations=3, learner=LEARNER.replace(kkt_tol=1e-300, tol=0.0))
    )
    assert unreachable.info["stop_reason"] == "last step set aside"
    assert len(unreachable.history) == 3
    for record in unreachable.history[1:]:
        assert record["fit_sweeps"] == min(LEARNER.max_sweeps, pga.FINISH_SWEEPS)
    assert not unreachable.history[2]["fit_converged"]


def test_backtracking_does_not_retry_a_step_that_was_just_halved() -> None:
    from cfpoison.attacks.pga import _step_size

    assert _step_size("backtracking", 1.0, 3, 0.25) == 0.5
    assert _step_size("backtracking", 1.0, 3, 0.25, grow=False) == 0.25
    assert _step_size("backtracking", 1.0, 3, 0.75) == 1.0


def test_vertex_step_moves_toward_lambda_sign_gradient() -> None:
    from cfpoison.attacks.pga import _vertex_step

    fake = sp.csr_array(np.array([[0.5, 0.0, -1.0], [2.0, 1.5, 0.0]]))
    gradient = np.array([3.0, -0.1, 0.0, 2.0])  # per stored entry (0.5, -1, 2, 1.5)
    full = _vertex_step(fake, gradient, 5.0, 2.0)  # a step > 1 is the whole way
    np.testing.assert_array_equal(full.data, [2.0, -2.0, 2.0, 2.0])  # G = 0 keeps its rating
    half = _vertex_step(fake, gradient, 0.5, 2.0)
    np.testing.assert_allclose(half.data, [1.25, -1.5, 2.0, 1.75])
    assert np.array_equal(half.indices, fake.indices) and np.abs(half.data).max() <= 2.0


def test_vertex_direction_needs_random_items(small: Ratings) -> None:
    config = _config(
        threat=ThreatModel(alpha=0.05, items_per_user=10, item_selection="greedy"),
        step_direction="vertex",
    )
    with pytest.raises(ConfigError, match="vertex"):
        run_attack(small, config)
