"""Preprocessing: scale round trip, minimum-count filter, top subset, per-user split."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cfpoison.data.preprocess import (
    PreprocessConfig,
    filter_min_ratings,
    prepare,
    top_subset,
    train_test_split,
)
from cfpoison.data.ratings import Ratings, RatingScale
from cfpoison.data.synthetic import PRESETS, make_synthetic
from cfpoison.errors import ConfigError


@pytest.fixture(scope="module")
def small() -> Ratings:
    return make_synthetic(PRESETS["small"])


@given(
    low=st.floats(-10, 10),
    span=st.floats(0.5, 20),
    values=st.lists(st.floats(0, 1), min_size=1, max_size=20),
)
def test_scale_round_trip(low: float, span: float, values: list[float]) -> None:
    scale = RatingScale(low, low + span, 0.0)
    original = low + span * np.array(values)
    shifted = scale.to_shifted(original)
    assert np.all(shifted >= -2 - 1e-9) and np.all(shifted <= 2 + 1e-9)
    np.testing.assert_allclose(scale.to_original(shifted), original, atol=1e-9 * span)


def test_movielens_scale_endpoints() -> None:
    half = RatingScale(0.5, 5, 0.5)
    np.testing.assert_allclose(half.to_shifted([0.5, 2.75, 5]), [-2, 0, 2])
    five = RatingScale(1, 5, 1)
    np.testing.assert_allclose(five.to_shifted([1, 2, 3, 4, 5]), [-2, -1, 0, 1, 2])
    np.testing.assert_allclose(five.snap(five.to_original([-2.2, 0.4, 0.6, 9])), [1, 3, 4, 5])


def test_filter_reaches_fixed_point(small: Ratings) -> None:
    f = filter_min_ratings(small, 30, 8)
    assert f.user_counts.min() >= 30 and f.item_counts.min() >= 8
    assert f.n_users < small.n_users and f.n_items < small.n_items
    assert f.nnz < small.nnz
    (step,) = f.steps
    assert step["step"] == "filter_min_ratings"
    assert step["users_removed"] == small.n_users - f.n_users
    assert step["ratings_removed"] == small.nnz - f.nnz
    # the kept entries are exactly the original ones (explicit zeros included)
    rows = small.user_index(f.user_ids)
    cols = small.item_index(f.item_ids)
    sub = small.matrix[rows][:, cols]
    np.testing.assert_array_equal(sub.toarray(), f.matrix.toarray())
    assert np.count_nonzero(f.matrix.data == 0) > 0


def test_filter_on_ml_small_keeps_everyone(ml_small: Ratings) -> None:
    f = filter_min_ratings(ml_small, 20, 0)
    assert (f.n_users, f.n_items, f.nnz) == (610, 9724, 100836)


def test_top_subset(ml_small: Ratings) -> None:
    s = top_subset(ml_small, 300, 1700)
    assert (s.n_users, s.n_items) == (300, 1700)
    counts = ml_small.user_counts
    assert counts[ml_small.user_index(s.user_ids)].min() >= np.sort(counts)[-300]
    assert np.all(np.diff(s.user_ids) > 0) and np.all(np.diff(s.item_ids) > 0)
    assert s.steps[-1] == {
        "step": "top_subset", "top_users": 300, "top_items": 1700,
        "users": 300, "items": 1700, "ratings": s.nnz,
    }  # fmt: skip


def test_split_properties(ml_small: Ratings) -> None:
    train, test = train_test_split(ml_small, 0.1, np.random.default_rng(3))
    assert train.matrix.shape == test.matrix.shape == ml_small.matrix.shape
    assert train.user_ids is ml_small.user_ids and test.item_ids is ml_small.item_ids
    assert train.nnz + test.nnz == ml_small.nnz
    assert abs(test.nnz / ml_small.nnz - 0.1) < 0.005
    assert train.user_counts.min() >= 1
    # disjoint, and together exactly the original (explicit zeros included)
    a = set(zip(*train.triples()[:2], strict=True))
    b = set(zip(*test.triples()[:2], strict=True))
    assert not a & b and len(a | b) == ml_small.nnz
    np.testing.assert_array_equal((train.matrix + test.matrix).toarray(), ml_small.matrix.toarray())
    assert train.steps[-1]["test"] == test.nnz


def test_split_is_seeded_and_keeps_one_training_rating() -> None:
    r = make_synthetic(PRESETS["small"])
    a, _ = train_test_split(r, 0.5, np.random.default_rng(1))
    b, _ = train_test_split(r, 0.5, np.random.default_rng(1))
    c, _ = train_test_split(r, 0.5, np.random.default_rng(2))
    assert np.array_equal(a.matrix.indices, b.matrix.indices)
    assert not np.array_equal(a.matrix.indices, c.matrix.indices)
    tiny = Ratings.from_triples(
        np.array([1, 1, 2]), np.array([1, 2, 1]), np.array([1.0, 2, 3]), RatingScale(1, 5, 1)
    )
    train, test = train_test_split(tiny, 0.9, np.random.default_rng(0))
    assert list(train.user_counts) == [1, 1] and list(test.user_counts) == [1, 0]


def test_zero_test_fraction(small: Ratings) -> None:
    train, test = train_test_split(small, 0.0, np.random.default_rng(0))
    assert train.nnz == small.nnz and test.nnz == 0
    assert test.matrix.shape == small.matrix.shape


def test_prepare_applies_and_records_steps(ml_small: Ratings) -> None:
    cfg = PreprocessConfig(top_users=100, top_items=500, test_fraction=0.2, seed=4)
    train, _ = prepare(ml_small, cfg)
    assert [s["step"] for s in train.steps] == [
        "filter_min_ratings", "top_subset", "train_test_split",
    ]  # fmt: skip
    assert train.matrix.shape == (100, 500)
    again, _ = prepare(ml_small, cfg, np.random.default_rng(4))
    assert np.array_equal(again.matrix.indices, train.matrix.indices)
    assert PreprocessConfig.from_json(cfg.to_json()) == cfg


@pytest.mark.parametrize(
    "changes", [{"test_fraction": 1.0}, {"min_user_ratings": -1}, {"top_users": 0}]
)
def test_invalid_preprocess_config(changes: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        PreprocessConfig(**changes)  # type: ignore[arg-type]
