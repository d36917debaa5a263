"""Promotion attacks on implicit feedback (``cfpoison.attacks.promotion``) and ``promote``."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

from cfpoison.attacks import promotion
from cfpoison.attacks.promotion import (
    PromotionConfig,
    _swap,
    baseline_profiles,
    budget,
    candidate_items,
    covisitation,
    draw_targets,
    fit_implicit,
    promotion_utility,
    run_promotion,
)
from cfpoison.cli import main
from cfpoison.data.interactions import Interactions
from cfpoison.errors import BudgetError, ConfigError
from cfpoison.learners import WRMFConfig

LEARNER = WRMFConfig(rank=4, threads=1, kkt_tol=1e-8)


@pytest.fixture(scope="module")
def data() -> Interactions:
    """80 users x 50 items with a popularity tail: low-rank preferences, thresholded."""
    rng = np.random.default_rng(4)
    m, n = 80, 50
    scores = rng.normal(size=(m, 3)) @ rng.normal(size=(3, n)) - np.linspace(0, 3, n)
    users, items = np.nonzero(scores > 0.5)
    return Interactions.from_triples(users + 1, items + 1, name="tiny")


def _feasible(fake: sp.csr_array, targets: np.ndarray, b: int) -> None:
    assert np.all(fake.data == 1.0)
    for f in range(fake.shape[0]):
        row = fake.indices[fake.indptr[f] : fake.indptr[f + 1]]
        assert len(row) <= b and set(targets) <= set(row)


@pytest.mark.parametrize("method", ["random", "popular", "covisitation"])
def test_baselines_hold_every_target_within_the_budget(data: Interactions, method: str) -> None:
    rng = np.random.default_rng(0)
    targets = draw_targets(data, 2, rng)
    fake = baseline_profiles(method, data, targets, 3, 8, rng)
    assert fake.shape == (3, data.n_items)
    _feasible(fake, targets, 8)
    assert all(np.diff(fake.indptr) == 8)


def test_covisitation_fillers_come_from_the_targets_users(data: Interactions) -> None:
    rng = np.random.default_rng(1)
    targets = draw_targets(data, 1, rng)
    likers = np.flatnonzero(data.matrix[:, targets].toarray().ravel() > 0)
    theirs = set(data.matrix[likers].indices)
    fake = baseline_profiles("covisitation", data, targets, 4, 4, rng)
    fillers = set(fake.indices) - set(targets)
    assert fillers <= theirs or len(theirs - set(targets)) < 3


def test_targets_are_unpopular_and_budgets_are_checked(data: Interactions) -> None:
    targets = draw_targets(data, 3, np.random.default_rng(2))
    counts = data.item_counts
    assert np.all(counts[targets] >= 1)
    assert np.all(counts[targets] <= np.median(counts[counts > 0]))
    with pytest.raises(BudgetError, match="cannot hold"):
        budget(data, PromotionConfig(items_per_user=2), 3)
    n_fake, b = budget(data, PromotionConfig(alpha=0.05), 3)
    assert n_fake == 4 and b == int(np.median(data.user_counts))


def test_a_swap_trades_the_worst_fillers_for_the_best_items_and_keeps_targets() -> None:
    fake = sp.csr_array(np.array([[1.0, 1.0, 1.0, 0.0, 0.0, 0.0]]))
    gradient = np.array([[5.0, -1.0, 0.5, 2.0, 0.2, 3.0]])
    moved, made = _swap(fake, gradient, np.array([0]), swaps=2)
    assert made == 2
    np.testing.assert_array_equal(moved.indices, [0, 3, 5])  # 1 and 2 out, 5 and 3 in
    kept, none = _swap(moved, -np.abs(gradient) + 10 * moved.toarray(), np.array([0]), 2)
    assert none == 0 and np.array_equal(kept.indices, moved.indices)


def test_swaps_bring_in_only_the_allowed_items() -> None:
    fake = sp.csr_array(np.array([[1.0, 1.0, 1.0, 0.0, 0.0, 0.0]]))
    gradient = np.array([[5.0, -1.0, 0.5, 2.0, 0.2, 3.0]])
    allowed = np.array([True, True, True, True, True, False])
    moved, made = _swap(fake, gradient, np.array([0]), 2, allowed)
    assert made == 1  # 5 is not allowed; 4 for 2 would lose
    np.testing.assert_array_equal(moved.indices, [0, 2, 3])


def test_the_pool_is_the_items_most_co_interacted_with_the_targets(data: Interactions) -> None:
    targets = draw_targets(data, 2, np.random.default_rng(0))
    weights = covisitation(data, targets)
    allowed = candidate_items(data, targets, 5)
    assert allowed.sum() == 5 and weights[allowed].min() >= weights[~allowed].max()
    assert candidate_items(data, targets, 0).all()
    assert not candidate_items(data, targets, data.n_items)[weights == 0].any()


def test_pga_ascends_and_beats_its_random_start(
    data: Interactions, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = PromotionConfig(
        method="pga", learner=LEARNER, alpha=0.05, n_targets=2, top_k=10, iterations=3
    )
    refits: list[int] = []
    refit = promotion.attack_refit

    def counted(*args: Any) -> Any:
        fitted = refit(*args)
        refits.append(fitted.n_sweeps)
        return fitted

    monkeypatch.setattr(promotion, "attack_refit", counted)
    result = run_promotion(data, config)
    # every refit's sweeps are in the step that made it, none twice
    assert sum(h["sweeps"] for h in result.history) == sum(refits) > 0
    utilities = [h["utility"] for h in result.history]
    assert all(b >= a for a, b in itertools.pairwise(utilities))
    assert utilities[-1] > utilities[0]
    _feasible(result.fake, result.targets, budget(data, config, 2)[1])
    assert result.metrics["untrustworthy_gradients"] == 0
    steps = [h for h in result.history if h.get("gradients")]
    assert steps and all(d["gradient_trustworthy"] for h in steps for d in h["gradients"])
    assert PromotionConfig.from_json(config.to_json()) == config
    assert json.loads(json.dumps(result.to_dict()))["targets"] == result.target_ids


def test_the_utility_rewards_a_target_that_rises(data: Interactions) -> None:
    clean = fit_implicit(LEARNER, data)
    targets = draw_targets(data, 1, np.random.default_rng(3))
    utility = promotion_utility(data, clean, targets, 10)
    item = clean.item_factors.copy()
    base = utility.value(clean.user_factors, item)
    item[targets[0]] += 0.5 * clean.user_factors.mean(axis=0)
    assert utility.value(clean.user_factors, item) > base


def test_promote_command_end_to_end(tmp_path: Path) -> None:
    out, profiles = tmp_path / "p.json", tmp_path / "fake.csv"
    argv = [
        "--quiet",
        "promote",
        "--dataset",
        "synthetic:small",
        "--method",
        "pga",
        "--rank",
        "4",
        "--iterations",
        "1",
        "--threads",
        "1",
        "--json",
        str(out),
        "--profiles",
        str(profiles),
    ]
    assert main(argv) == 0
    payload = json.loads(out.read_text())
    assert payload["config"]["method"] == "pga" and len(payload["targets"]) == 5
    for key in ("hr@50_before", "hr@50_after", "hr@50_floor", "ndcg@50_after"):
        assert key in payload["metrics"]
    lines = profiles.read_text().splitlines()
    assert lines[0] == "userId,movieId,weight" and len(lines) > 1
    with pytest.raises(SystemExit) as usage:
        main([*argv[:-4], "--feedback", "explicit"])
    assert usage.value.code == 2
    assert main([*argv[:-4], "--compare", "nope", "--victims", "implicit"]) == 2


def test_no_interactions_at_the_threshold_is_an_error() -> None:
    with pytest.raises(ConfigError):
        PromotionConfig(alpha=0.0)
    assert (
        main(["--quiet", "promote", "--dataset", "synthetic:small", "--feedback", "implicit:9"])
        == 2
    )


def test_victim_lift_is_after_minus_before_per_seed(data: Interactions) -> None:
    """``evaluate_promotion``: every victim x attack x measure row, the lift the mean of
    poisoned minus clean at each seed, a baseline's ratio, and the victim's fit count."""
    from cfpoison.victims.promotion import PromotionTransferConfig, evaluate_promotion
    from cfpoison.victims.spec import VictimSpec

    rng = np.random.default_rng(5)
    targets = draw_targets(data, 1, rng)
    attacks = {
        name: baseline_profiles(name, data, targets, 4, 10, rng)
        for name in ("covisitation", "random")
    }
    spec = VictimSpec("w", "wrmf", {"rank": 3, "threads": 1, "kkt_tol": 1e-6})
    out = evaluate_promotion(
        data, [spec], attacks, targets, PromotionTransferConfig(), baseline="random"
    )
    rows = {(r["attack"], r["measure"]): r for r in out["rows"]}
    assert len(rows) == 2 * 3 and out["victims"][0]["fits"] == 3 * 3
    row = rows[("covisitation", "hr@50")]
    assert row["lift"] == pytest.approx(row["after"] - row["before"])
    assert isinstance(row["above_floor"], bool) and row["floor"] >= 0
    assert "lift_vs_baseline" in row and "lift_vs_baseline" not in rows[("random", "hr@50")]
