"""Robust PGA over surrogates: the mean gradient, agreement with PGA, the panel config, the CLI."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from cfpoison.attacks.engine import AttackConfig, attack_context, run_attack
from cfpoison.attacks.gradient import ImplicitGradient, utility_gradient
from cfpoison.attacks.pga import pga_start
from cfpoison.attacks.robust import (
    PRESETS,
    RobustObjective,
    SurrogatePanel,
    SurrogateSpec,
    build_surrogates,
    load_surrogates,
    subsample,
)
from cfpoison.attacks.threat import ThreatModel, grid_values, violations
from cfpoison.attacks.utility import UtilityConfig
from cfpoison.cli import main
from cfpoison.data.ratings import Ratings, RatingScale
from cfpoison.errors import ConfigError
from cfpoison.learners import ALSConfig, BiasedConfig, BiasedLearner, build_learner

LEARNER = ALSConfig(rank=3, lambda_u=3.0, lambda_v=3.0, threads=1)
BIASED = {"rank": 3, "tol": 0.0, "kkt_tol": 1e-9, "max_sweeps": 3000, "threads": 1}
PANEL = SurrogatePanel(
    (
        SurrogateSpec("self", "als"),
        SurrogateSpec("als-split", "als", {"lambda_u": 2.0, "lambda_v": 2.0}, 1, seed=1),
        SurrogateSpec("biased", "biased", BIASED, 2, seed=2, fraction=0.8),
    )
)


@pytest.fixture(scope="module")
def tiny() -> Ratings:
    """50 users x 40 items on the 1-5 half-star scale, rank-3 signal, about 40% observed."""
    rng = np.random.default_rng(11)
    m, n = 50, 40
    signal = rng.normal(size=(m, 3)) @ rng.normal(size=(3, n)) * 0.5
    rows, cols = np.nonzero(rng.random((m, n)) < 0.4)
    stars = np.clip(
        np.round((3.0 + signal[rows, cols] + 0.3 * rng.normal(size=len(rows))) * 2) / 2, 0.5, 5
    )
    return Ratings.from_triples(rows + 1, cols + 1, stars, RatingScale(0.5, 5.0, 0.5), "tiny")


def _config(panel: SurrogatePanel = PANEL, **changes: object) -> AttackConfig:
    base = AttackConfig(
        method="robust",
        learner=LEARNER,
        threat=ThreatModel(alpha=0.06, items_per_user=8),
        utility=UtilityConfig(mu1=1.0, mu2=1.0, targets=(7,)),
        iterations=3,
        solve_tol=1e-10,
        solve_max_iter=5000,
        seed=4,
        options={"surrogates": panel.to_dict()},
    )
    return base.replace(**changes)


def test_mean_gradient_is_the_average_of_each_surrogates_own_gradient(tiny: Ratings) -> None:
    ctx = attack_context(tiny, _config())
    fake = pga_start(ctx)
    surrogates = build_surrogates(ctx, PANEL)
    objective = RobustObjective(ctx, surrogates)
    state = objective.fit(fake, None)
    mean = objective.gradient(state, fake).on_pattern(fake)
    singles = []
    for surrogate, learner in zip(surrogates, state, strict=True):
        grad = utility_gradient(
            learner, surrogate.train.matrix, fake, surrogate.utility, solve_tol=1e-10
        )
        singles.append(grad.on_pattern(fake))
    assert [s.learner.name for s in surrogates] == ["als", "als", "biased"]
    assert not np.allclose(singles[0], singles[2], rtol=0.1)  # the surrogates differ
    np.testing.assert_allclose(mean, np.mean(singles, axis=0), rtol=1e-6, atol=1e-8)
    # the soft minimum of the utilities relative to the start: there each r_s = 1 and p_s = 1/S
    worst = RobustObjective(ctx, surrogates, "worst")
    state = worst.fit(fake, None)
    start = np.array(list(worst.values(state).values()))
    assert np.all(start > 0) and worst.value(state) == pytest.approx(1.0, rel=1e-12)
    expected = np.mean([g / r for g, r in zip(singles, start, strict=True)], axis=0)
    np.testing.assert_allclose(
        worst.gradient(state, fake).on_pattern(fake), expected, rtol=1e-6, atol=1e-12
    )
    moved = fake.copy()
    moved.data = -moved.data
    later = worst.fit(moved, state)
    relative = np.array(list(worst.values(later).values())) / start
    assert relative.min() <= worst.value(later) <= relative.min() + 0.05 * np.log(3)
    with pytest.raises(ConfigError, match="aggregate"):
        RobustObjective(ctx, surrogates, "median")


def test_surrogates_see_their_own_split_and_learner(tiny: Ratings) -> None:
    ctx = attack_context(tiny, _config())
    own, split, biased = build_surrogates(ctx, PANEL)
    assert own.clean is ctx.clean and own.train is tiny
    assert split.train.nnz == round(0.9 * tiny.nnz) and biased.train.nnz == round(0.8 * tiny.nnz)
    assert split.learner == LEARNER.replace(lambda_u=2.0, lambda_v=2.0, seed=1)
    assert isinstance(biased.learner, BiasedConfig) and biased.learner.seed == 2
    dense = tiny.matrix.toarray()
    for s in (split, biased):  # a subsample of the attacker's ratings, values kept
        rows, cols = s.train.matrix.nonzero()
        np.testing.assert_array_equal(dense[rows, cols], s.train.matrix.toarray()[rows, cols])
        assert s.train.matrix.has_sorted_indices
    np.testing.assert_array_equal(biased.utility.targets, ctx.utility.targets)
    np.testing.assert_array_equal(biased.utility.clean_item, biased.clean.item_factors)


def test_subsample_keeps_explicit_zeros(tiny: Ratings) -> None:
    matrix = tiny.matrix.copy()
    matrix.data[:] = 0.0
    sub = subsample(tiny.with_matrix(matrix), 0.5, np.random.default_rng(0))
    assert sub.nnz == round(0.5 * tiny.nnz) and sub.matrix.shape == tiny.matrix.shape


def test_one_surrogate_equal_to_the_attacked_learner_takes_pgas_steps(tiny: Ratings) -> None:
    single = SurrogatePanel((SurrogateSpec("self", "als"),))
    robust = run_attack(tiny, _config(single, snap=False, iterations=2))
    plain = run_attack(tiny, _config(single, snap=False, iterations=2, method="pga", options={}))
    assert (robust.fake != plain.fake).nnz == 0
    assert robust.utility_history == plain.utility_history
    assert robust.history[1]["surrogate_utility"]["self"] == plain.history[1]["utility"]
    assert robust.history[1]["surrogates"]["self"]["solve_residual"] == pytest.approx(
        plain.history[1]["solve_residual"]
    )


def test_robust_attack_is_feasible_deterministic_and_recorded(tiny: Ratings) -> None:
    config = _config()
    first, second = run_attack(tiny, config), run_attack(tiny, config)
    assert (first.fake != second.fake).nnz == 0
    assert first.utility_history == second.utility_history
    grid = grid_values(tiny.scale, config.threat.max_rating)
    n_fake = config.threat.n_fake(tiny.n_users)
    assert violations(first.fake, config.threat, n_fake, grid) == []
    assert np.all(first.fake[:, [tiny.item_index(np.array([7]))[0]]].toarray() == 2.0)
    history = first.history
    assert len(history) > 1 and history[-1]["utility"] > history[0]["utility"]
    for record in history:
        utilities = record["surrogate_utility"]
        assert set(utilities) == {"self", "als-split", "biased"}
        assert record["utility"] == pytest.approx(np.mean(list(utilities.values())))
    for record in history[1:]:
        assert record["gradient_trustworthy"] is True
        for part in record["surrogates"].values():
            assert part["solve_residual"] <= config.solve_tol and part["fit_converged"]
    assert set(first.info["surrogates"]) == {"self", "als-split", "biased"}


def test_integrity_attack_raises_the_target_under_both_model_families(tiny: Ratings) -> None:
    """The robust integrity attack's profiles push the target in fresh ALS and biased fits."""
    config = _config(utility=UtilityConfig(mu1=0.0, mu2=1.0, targets=(7,)), iterations=4)
    result = run_attack(tiny, config)
    column = tiny.item_index(np.array([7]))
    learners: tuple[ALSConfig | BiasedConfig, ...] = (
        LEARNER.replace(seed=9),
        BiasedConfig.from_dict({**BIASED, "seed": 9}),
    )
    for learner in learners:
        means = []
        for fake in (None, result.fake):
            fit = build_learner(learner).fit(tiny, fake=fake)
            means.append(float((fit.item_factors[column] @ fit.user_factors.mean(axis=0))[0]))
        assert means[1] > means[0] + 0.05, learner.name


def test_biased_gradient_warm_starts_from_its_adjoint(tiny: Ratings) -> None:
    ctx = attack_context(tiny, _config())
    fake = pga_start(ctx)
    learner = BiasedLearner(BiasedConfig.from_dict(BIASED)).fit(tiny, fake=fake)

    def gradient(warm_start: np.ndarray | None) -> ImplicitGradient:
        return utility_gradient(
            learner, tiny.matrix, fake, ctx.utility, solve_tol=1e-8, warm_start=warm_start
        )

    cold = gradient(None)
    warm = gradient(cold.adjoint)
    assert warm.solver_iterations < cold.solver_iterations // 4
    np.testing.assert_allclose(warm.on_pattern(fake), cold.on_pattern(fake), rtol=1e-5, atol=1e-8)


def test_panel_round_trips_and_bad_panels_fail_in_one_line(tiny: Ratings, tmp_path: Path) -> None:
    for panel in (PANEL, *PRESETS.values()):
        assert SurrogatePanel.from_json(panel.to_json()) == panel
    assert load_surrogates("default") is PRESETS["default"]
    good = tmp_path / "good.toml"
    good.write_text(
        '[[surrogates]]\nname = "a"\nmodel = "als"\n\n'
        '[[surrogates]]\nname = "b"\nmodel = "biased"\nsplit_offset = 1\nfraction = 0.5\n'
    )
    loaded = load_surrogates(str(good))
    assert [s.model for s in loaded.surrogates] == ["als", "biased"]
    assert loaded.surrogates[1].fraction == 0.5
    bad = {
        "svd": '[[surrogates]]\nname = "a"\nmodel = "surprise-svd"\n',
        "dup": '[[surrogates]]\nname = "a"\nmodel = "als"\n' * 2,
        "fraction": '[[surrogates]]\nname = "a"\nmodel = "als"\nfraction = 0.0\n',
        "seed": '[[surrogates]]\nname = "a"\nmodel = "als"\nparams = { seed = 3 }\n',
        "missing": '[[surrogates]]\nname = "a"\n',
        "toml": "[[surrogates]\n",
        "empty": "surrogates = []\n",
    }
    for name, text in bad.items():
        path = tmp_path / f"{name}.toml"
        path.write_text(text)
        with pytest.raises(ConfigError) as err:
            load_surrogates(str(path))
        assert "\n" not in str(err.value) and str(path) in str(err.value), name
    with pytest.raises(ConfigError, match="neither a preset"):
        load_surrogates("nope")
    with pytest.raises(ConfigError, match="option surrogates"):
        run_attack(tiny, _config(options={"surrogates": 3}))


def test_cli_surrogates_flag_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    panel = tmp_path / "panel.toml"
    panel.write_text(
        '[[surrogates]]\nname = "self"\nmodel = "als"\n\n'
        '[[surrogates]]\nname = "biased"\nmodel = "biased"\nsplit_offset = 1\nseed = 1\n'
        "params = { rank = 5, tol = 0.0, kkt_tol = 1e-6 }\n"
    )
    report = tmp_path / "attack.json"
    argv = ["--quiet", "attack", "--dataset", "synthetic:small", "--rank", "5"]
    argv += ["--threads", "1", "--seed", "3", "--alpha", "0.02", "--items-per-user", "20"]
    argv += ["--iterations", "2", "--surrogates", str(panel), "--json", str(report)]
    assert main(argv) == 0
    payload = json.loads(report.read_text())
    assert payload["method"] == "robust"
    assert payload["config"]["options"]["surrogates"] == load_surrogates(str(panel)).to_dict()
    assert set(payload["history"][-1]["surrogate_utility"]) == {"self", "biased"}
    assert main([*argv[:-4], "--surrogates", str(tmp_path / "missing.toml")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cfpoison attack: error: surrogates:") and err.count("\n") == 1
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--method", "pga"])
    assert exit_info.value.code == 2


def test_vertex_steps_on_rare_items_ascend_within_the_pool(tiny: Ratings) -> None:
    threat = ThreatModel(alpha=0.06, items_per_user=8, item_selection="rare")
    config = _config(threat=threat, step_direction="vertex")
    result = run_attack(tiny, config)
    history = result.utility_history
    assert len(history) > 1 and all(b > a for a, b in itertools.pairwise(history))
    counts = np.bincount(tiny.matrix.indices, minlength=tiny.n_items)
    size = max(threat.n_fake(tiny.n_users), 2) * threat.items_per_user
    target = tiny.item_index(np.array([7]))[0]  # rated by every profile (integrity part)
    rated = np.setdiff1d(result.fake.indices, [target])
    assert counts[rated].max() <= np.sort(counts)[size - 1]


def test_greedy_items_are_refused(tiny: Ratings) -> None:
    config = _config(threat=ThreatModel(alpha=0.06, items_per_user=8, item_selection="greedy"))
    with pytest.raises(ConfigError, match="random"):
        run_attack(tiny, config)


def test_biased_solve_meets_the_true_residual(tiny: Ratings) -> None:
    """The biased learner's MINRES stops on the true relative residual (SciPy's stopped on a
    backward error, at a true residual near 0.1 on ml-latest-small), and says whether it met
    ``solve_tol``."""
    ctx = attack_context(tiny, _config(solve_tol=1e-4))
    fake = pga_start(ctx)
    surrogate = build_surrogates(ctx, PANEL)[2]
    learner = surrogate.fit(fake, None)
    once, capped = (
        utility_gradient(
            learner,
            surrogate.train.matrix,
            fake,
            surrogate.utility,
            solve_tol=1e-4,
            solve_max_iter=cap,
        )
        for cap in (200, 3)
    )
    assert once.solver_converged and once.solver_residual <= 1e-4
    assert not capped.solver_converged and capped.solver_residual > 1e-4
    _, diagnostics = surrogate.gradient(learner, fake, ctx)
    assert diagnostics["solve_residual"] <= 1e-4 and diagnostics["solve_converged"]


def test_ranking_attack_raises_the_targets_rank_over_both_model_families(tiny: Ratings) -> None:
    """Robust PGA on the ranking utility alone: every profile rates the target, the mean
    smoothed rank improves at every accepted step, and the target's hit ratio rises."""
    utility = UtilityConfig(mu1=0.0, mu3=1.0, targets=(7,), rank_candidates=6)
    result = run_attack(tiny, _config(utility=utility, iterations=3))
    column = int(tiny.item_index(np.array([7]))[0])
    assert np.all(result.fake[:, [column]].toarray() > 0)
    history = result.utility_history
    assert len(history) >= 3 and all(b > a for a, b in itertools.pairwise(history))
    assert result.metrics["utility"] > result.metrics["utility_clean"]
    assert result.metrics["target_hit_after"][0] > result.metrics["target_hit_before"][0]
