"""Adaptive PGA: the gradient through a defense against finite differences of re-solved
defended models, the attacker's model against the defense's own, and a short attack."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cfpoison.attacks import AttackConfig, run_attack
from cfpoison.attacks.adaptive import DefendedObjective, defense_option
from cfpoison.attacks.engine import attack_context
from cfpoison.attacks.threat import ThreatModel
from cfpoison.attacks.utility import UtilityConfig
from cfpoison.cli import main
from cfpoison.data.preprocess import PreprocessConfig, prepare
from cfpoison.data.synthetic import PRESETS, make_synthetic
from cfpoison.defend.defenses import (
    LEARNED,
    BaggingConfig,
    DefenseConfig,
    DetectRemoveConfig,
    HuberConfig,
    TrimmedConfig,
    defend,
    flagged_subset,
)
from cfpoison.errors import ConfigError
from cfpoison.learners import ALSConfig
from test_attack_gradient import LEARNERS, STEP, _problem

#: Each differentiable defense, with settings that make the tiny problem exercise it: bags
#: that leave real users out (fold-in) or thin the ratings, trimmed ratings and users, and a
#: detector at 10% that flags real users (fold-in) and fake rows (dropped).
CASES: dict[str, DefenseConfig] = {
    "bagging-users": BaggingConfig(bags=2, fraction=0.8, unit="users"),
    "bagging-ratings": BaggingConfig(bags=2, fraction=0.7, unit="ratings"),
    "trimmed-ratings": TrimmedConfig(fraction=0.1, unit="ratings"),
    "trimmed-users": TrimmedConfig(fraction=0.1, unit="users"),
    "detect-rdma": DetectRemoveConfig(detector="rdma", fpr=0.1),
}


def _config(learner: ALSConfig, defense: DefenseConfig, **changes: object) -> AttackConfig:
    settings: dict[str, object] = {
        "method": "adaptive",
        "learner": learner,
        "threat": ThreatModel(alpha=0.1, items_per_user=6),
        "utility": UtilityConfig(mu1=1.0, mu2=0.0),
        "seed": 3,
        "options": {"defense": defense.to_dict()},
        **changes,
    }
    return AttackConfig.from_dict(
        {k: v.to_dict() if hasattr(v, "to_dict") else v for k, v in settings.items()}
    )


@pytest.mark.parametrize("case", sorted(CASES))
def test_gradient_through_the_defense_matches_finite_differences(case: str) -> None:
    defense = CASES[case]
    learner = LEARNERS["als"]
    assert isinstance(learner, ALSConfig)
    ratings, fake = _problem()
    config = _config(learner, defense, solve_tol=1e-10, solve_max_iter=5000)
    ctx = attack_context(ratings, config)
    objective = DefendedObjective(ctx, defense)
    state = objective.fit(fake, None)
    # the attacker's model is the defense's own (same bags, same kept ratings)
    model = defend(ratings, fake, defense, learner, np.random.default_rng(config.seed))
    assert objective.value(state) == pytest.approx(ctx.utility.value(model.user, model.item))
    if isinstance(defense, DetectRemoveConfig):  # the case folds in real users, drops fakes
        subset, _ = flagged_subset(ratings, fake, defense)
        assert subset.set_aside.any() and not subset.fake_rows.all()
    grad = objective.gradient(state, fake).values
    fd = np.zeros(fake.nnz)
    for entry in range(fake.nnz):
        values = []
        for sign in (1.0, -1.0):
            moved = fake.copy()
            moved.data[entry] += sign * STEP
            values.append(objective.value(objective.fit(moved, state)))
        fd[entry] = (values[0] - values[1]) / (2 * STEP)
    cosine = grad @ fd / (np.linalg.norm(grad) * np.linalg.norm(fd))
    assert cosine >= 0.99, (case, cosine)
    assert np.linalg.norm(grad - fd) <= 1e-2 * np.linalg.norm(fd), case


def test_defense_option_round_trips_and_refuses_what_is_not_built() -> None:
    config = _config(ALSConfig(), BaggingConfig(bags=3))
    assert AttackConfig.from_dict(config.to_dict()) == config
    assert defense_option(config.options["defense"]) == BaggingConfig(bags=3)
    assert defense_option("trimmed") == TrimmedConfig()
    assert defense_option("huber") == HuberConfig()  # tests/test_adaptive_weighted.py
    learned = DetectRemoveConfig(detector=LEARNED).to_dict()
    for bad in (learned, DetectRemoveConfig(calibration="poisoned").to_dict(), "nonsense"):
        with pytest.raises(ConfigError):
            defense_option(bad)


@pytest.mark.parametrize("defense", [BaggingConfig(bags=2), DetectRemoveConfig(detector="rdma")])
def test_adaptive_pga_ascends_the_defended_utility(defense: DefenseConfig) -> None:
    train, test = prepare(make_synthetic(PRESETS["small"]), PreprocessConfig())
    config = _config(
        ALSConfig(),
        defense,
        threat=ThreatModel(alpha=0.03, items_per_user=40),
        iterations=2,
    )
    result = run_attack(train, config, test=test)
    utilities = result.utility_history
    assert len(utilities) == 3 and utilities[-1] > utilities[0]
    assert result.info["defense"] == defense.to_dict()
    if isinstance(defense, DetectRemoveConfig):
        assert result.info["still_flagged"] == 0
        subset, _ = flagged_subset(train, result.fake, defense)
        assert subset.fake_rows.all()  # the defense removes none of the fakes


def test_cli_against_runs_the_adaptive_method(tmp_path: Path) -> None:
    out = tmp_path / "a.json"
    args = ["attack", "--dataset", "synthetic:small", "--against", "trimmed:fraction=0.02"]
    settings = ["--iterations", "1", "--alpha", "0.02", "--items-per-user", "20"]
    assert main([*args, *settings, "--json", str(out), "--quiet"]) == 0
    payload = json.loads(out.read_text())
    assert payload["method"] == "adaptive"
    assert payload["config"]["options"]["defense"] == TrimmedConfig(fraction=0.02).to_dict()
    with pytest.raises(SystemExit):  # --against is the adaptive method's
        main(["attack", "--dataset", "synthetic:small", "--method", "pga", "--against", "trimmed"])
