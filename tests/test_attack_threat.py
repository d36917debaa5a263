"""Threat model: budgets, projections, feasibility (hypothesis-generated budgets)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from cfpoison.attacks.baselines import (
    average_attack,
    bandwagon_attack,
    random_attack,
    uniform_attack,
)
from cfpoison.attacks.threat import (
    ThreatModel,
    clip_values,
    grid_values,
    is_feasible,
    item_pool,
    project_dense,
    random_pattern,
    snap,
    top_b_pattern,
    violations,
)
from cfpoison.data.ratings import RatingScale
from cfpoison.errors import BudgetError

SCALES = [RatingScale(0.5, 5.0, 0.5), RatingScale(1.0, 5.0, 1.0), RatingScale(1.0, 5.0, 0.0)]


@st.composite
def budgets(draw: st.DrawFn) -> tuple[ThreatModel, RatingScale, int, int]:
    scale = draw(st.sampled_from(SCALES))
    n_items = draw(st.integers(1, 40))
    n_users = draw(st.integers(1, 60))
    lam = draw(st.floats(0.23, 2.0))
    threat = ThreatModel(
        alpha=draw(st.floats(0.001, 1.0)),
        items_per_user=draw(st.integers(1, n_items)),
        max_rating=lam,
        item_selection=draw(st.sampled_from(["random", "rare"])),
    )
    return threat, scale, n_users, n_items


def test_n_fake_is_ceil_alpha_m() -> None:
    assert ThreatModel(alpha=0.03).n_fake(610) == 19
    assert ThreatModel(alpha=0.01).n_fake(100) == 1
    assert ThreatModel(alpha=0.5).n_fake(3) == 2


@pytest.mark.parametrize(
    "kwargs",
    [
        {"alpha": 0.0},
        {"alpha": -0.1},
        {"alpha": 1.5},
        {"items_per_user": 0},
        {"max_rating": 0.0},
        {"max_rating": 2.5},
        {"max_rating": float("nan")},
    ],
)
def test_impossible_budgets_raise(kwargs: dict[str, float]) -> None:
    with pytest.raises(BudgetError):
        ThreatModel(**kwargs)  # type: ignore[arg-type]


def test_check_rejects_more_items_than_exist_and_empty_grids() -> None:
    with pytest.raises(BudgetError, match="exceeds"):
        ThreatModel(items_per_user=11).check(5, 10)
    # on the 0.5..5 scale the shifted grid nearest 0 is +-0.222
    with pytest.raises(BudgetError, match="no rating"):
        ThreatModel(items_per_user=3, max_rating=0.1).check(5, 10, RatingScale(0.5, 5.0, 0.5))
    ThreatModel(items_per_user=10).check(5, 10, RatingScale(0.5, 5.0, 0.5))


def test_round_trip() -> None:
    threat = ThreatModel(0.05, 7, 1.5, "greedy")
    assert ThreatModel.from_json(threat.to_json()) == threat


def test_snap_rounds_inside_lambda() -> None:
    grid = grid_values(RatingScale(1.0, 5.0, 1.0), 1.5)
    assert grid is not None
    np.testing.assert_allclose(grid, [-1.0, 0.0, 1.0])
    np.testing.assert_allclose(
        snap(np.array([-3.0, -0.6, 0.4, 1.49, 2.0]), 1.5, grid), [-1, -1, 0, 1, 1]
    )
    np.testing.assert_allclose(snap(np.array([-3.0, 0.3]), 1.5, None), [-1.5, 0.3])


def test_snap_and_the_rating_scale_break_ties_alike() -> None:
    """Halfway between two stars rounds down on the shifted scale as on the 1-5 scale."""
    scale = RatingScale(1.0, 5.0, 1.0)
    grid = grid_values(scale, 2.0)
    stars = np.array([1.5, 2.5, 3.5, 4.5])
    on_shifted = snap(scale.to_shifted(stars), 2.0, grid)
    np.testing.assert_allclose(on_shifted, [-2.0, -1.0, 0.0, 1.0])
    np.testing.assert_allclose(scale.to_original(on_shifted), scale.snap(stars))


@settings(max_examples=60, deadline=None)
@given(budgets(), st.integers(0, 2**32 - 1))
def test_every_projection_and_baseline_is_feasible(
    case: tuple[ThreatModel, RatingScale, int, int], seed: int
) -> None:
    threat, scale, n_users, n_items = case
    grid = grid_values(scale, threat.max_rating)
    rng = np.random.default_rng(seed)
    n_fake = threat.n_fake(n_users)
    dense = rng.normal(scale=3.0, size=(n_fake, n_items))
    projected = project_dense(dense, threat, grid)
    assert violations(projected, threat, n_fake, grid) == []
    assert np.all(np.diff(projected.indptr) == threat.items_per_user)
    # the kept entries are each row's largest in absolute value
    kept = np.abs(dense[0, projected.indices[: projected.indptr[1]]])
    assert kept.min() >= np.sort(np.abs(dense[0]))[::-1][threat.items_per_user - 1] - 1e-12

    columns = random_pattern(n_fake, n_items, threat.items_per_user, rng)
    assert all(len(set(row)) == threat.items_per_user for row in columns)

    observed = rng.random((n_users, n_items)) < 0.3
    train = sp.csr_array(np.where(observed, rng.uniform(-2, 2, observed.shape), 0.0))
    targets = rng.choice(n_items, size=min(2, n_items), replace=False)
    push = np.full(len(targets), threat.max_rating)
    fakes = [uniform_attack(train, threat, n_fake, grid, rng)]
    if threat.item_selection == "rare":  # uniform's items come from the least-rated ones
        counts = np.bincount(train.indices, minlength=n_items)
        size = min(n_items, max(n_fake, 2) * threat.items_per_user)
        assert counts[fakes[0].indices].max() <= np.sort(counts)[size - 1]
    for attack in (random_attack, average_attack, bandwagon_attack):
        fake = attack(train, threat, n_fake, grid, rng, targets, push)
        fakes.append(fake)
        rated = fake[:, targets[: threat.items_per_user]].toarray()
        expected = snap(push[: threat.items_per_user], threat.max_rating, grid)
        np.testing.assert_allclose(rated, np.tile(expected, (n_fake, 1)))
    for fake in fakes:
        assert is_feasible(fake, threat, n_fake, grid), violations(fake, threat, n_fake, grid)
        assert np.all(np.diff(fake.indptr) == threat.items_per_user)


def test_violations_name_each_problem() -> None:
    threat = ThreatModel(alpha=0.5, items_per_user=2, max_rating=1.0)
    bad = sp.csr_array(np.array([[1.5, 0.3, 0.2], [0.0, 0.0, 1.0]]))
    problems = violations(bad, threat, 3, grid_values(RatingScale(1.0, 5.0, 1.0), 1.0))
    text = " | ".join(problems)
    assert "instead of 3" in text and "rates 3" in text and "Lambda" in text and "scale" in text
    fixed = clip_values(bad, 1.0)
    assert np.abs(fixed.data).max() == 1.0


def test_bandwagon_rates_popular_items_at_lambda_and_nukes_targets() -> None:
    rng = np.random.default_rng(3)
    dense = np.zeros((30, 50))
    dense[:, :5] = 1.0  # items 0..4 rated by everyone
    dense[rng.random((30, 50)) < 0.1] = 0.5
    train = sp.csr_array(dense)
    threat = ThreatModel(alpha=0.1, items_per_user=20, max_rating=2.0)
    fake = bandwagon_attack(train, threat, 3, None, rng, np.array([40]), np.array([-2.0]))
    assert np.all(fake[:, [40]].toarray() == -2.0)
    assert np.all(fake[:, [0, 1]].toarray() == 2.0)


def test_item_pool_is_the_least_rated_items() -> None:
    rng = np.random.default_rng(4)
    counts = np.array([5, 0, 3, 1, 1, 8, 2, 0, 4, 6])
    rows = np.concatenate([np.arange(c) for c in counts])
    cols = np.repeat(np.arange(10), counts)
    train = sp.csr_array((np.ones(len(rows)), (rows, cols)), shape=(8, 10))
    assert item_pool(train, ThreatModel(0.25, 2), 2, rng) is None  # random: every item
    pool = item_pool(train, ThreatModel(0.25, 2, item_selection="rare"), 2, rng)
    assert pool is not None and sorted(pool.tolist()) == [1, 3, 4, 7]  # counts 0, 1, 1, 0
    everything = item_pool(train, ThreatModel(0.25, 6, item_selection="rare"), 2, rng)
    assert everything is not None and len(everything) == 10  # fewer items than m' B


@settings(max_examples=60, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 7), st.integers(1, 40)),
    data=st.data(),
    ties=st.booleans(),
)
def test_top_b_pattern_is_a_stable_sort_of_each_row(
    shape: tuple[int, int], data: st.DataObject, ties: bool
) -> None:
    """The partition-based selection equals a stable argsort's first B, ties leftmost first
    (SGLD's clipped states hold many equal entries at +-Lambda)."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    b = data.draw(st.integers(1, shape[1]))
    scores = rng.integers(-2, 3, shape).astype(float) if ties else rng.normal(size=shape)
    expected = np.sort(np.argsort(-scores, axis=1, kind="stable")[:, :b], axis=1)
    np.testing.assert_array_equal(top_b_pattern(scores, b), expected)
    scores[:, 0] = np.nan  # a NaN ranks last, as in np.sort
    expected = np.sort(np.argsort(-scores, axis=1, kind="stable")[:, :b], axis=1)
    np.testing.assert_array_equal(top_b_pattern(scores, b), expected)
