"""The synthetic generator: exact shape, long tails, minimum activity, determinism per seed."""

from __future__ import annotations

import numpy as np
import pytest

from cfpoison.data.ratings import RatingScale
from cfpoison.data.synthetic import PRESETS, SyntheticConfig, make_synthetic
from cfpoison.errors import ConfigError


@pytest.fixture(scope="module")
def default_set():  # type: ignore[no-untyped-def]
    return make_synthetic()


def test_default_shape_is_close_to_ml_latest_small(default_set) -> None:  # type: ignore[no-untyped-def]
    r = default_set
    assert (r.n_users, r.n_items, r.nnz) == (600, 5000, 100_000)
    assert list(r.user_ids) == list(range(1, 601)) and list(r.item_ids) == list(range(1, 5001))
    assert r.scale == RatingScale(1, 5, 1)
    assert r.matrix.has_sorted_indices and r.matrix.has_canonical_format


def test_every_user_has_min_ratings_and_every_item_one(default_set) -> None:  # type: ignore[no-untyped-def]
    assert default_set.user_counts.min() >= 20
    assert default_set.item_counts.min() >= 1
    assert default_set.user_counts.max() <= 0.5 * default_set.n_items


def test_long_tails(default_set) -> None:  # type: ignore[no-untyped-def]
    users = np.sort(default_set.user_counts)[::-1]
    items = np.sort(default_set.item_counts)[::-1]
    # user activity: a few very active users (MovieLens: max / median about 40)
    assert users[0] > 10 * np.median(users)
    assert users[: len(users) // 10].sum() > 0.35 * users.sum()
    # item popularity: the top 10% of items take a large share, many items are rare
    assert items[: len(items) // 10].sum() > 0.3 * items.sum()
    assert np.mean(items <= 5) > 0.1
    assert items[0] > 10 * np.median(items)


def test_ratings_look_like_movielens(default_set) -> None:  # type: ignore[no-untyped-def]
    stars = default_set.scale.to_original(default_set.matrix.data)
    assert set(np.unique(stars)) == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert 3.3 < stars.mean() < 3.7 and 0.8 < stars.std() < 1.2


def _explained(noise: float) -> float:
    """Share of the centred variance of a fully observed set in its top rank + 2 components."""
    cfg = SyntheticConfig(
        n_users=80, n_items=80, n_ratings=6400, max_user_fraction=1.0, rank=5, noise=noise
    )
    r = make_synthetic(cfg)
    dense = r.matrix.toarray()
    assert r.nnz == 6400
    s = np.linalg.svd(dense - dense.mean(), compute_uv=False)
    return float((s[: cfg.rank + 2] ** 2).sum() / (s**2).sum())


def test_low_rank_plus_noise() -> None:
    # low noise: the stars are a low-rank matrix up to rounding; high noise: far from it
    assert _explained(0.05) > 0.85
    assert _explained(3.0) < 0.5


def test_deterministic_per_seed() -> None:
    cfg = PRESETS["small"]
    a, b = make_synthetic(cfg), make_synthetic(cfg)
    assert (a.matrix != b.matrix).nnz == 0 and np.array_equal(a.matrix.indices, b.matrix.indices)
    c = make_synthetic(cfg.replace(seed=1))
    assert not (
        np.array_equal(a.matrix.indices, c.matrix.indices)
        and np.array_equal(a.matrix.data, c.matrix.data)
    )


def test_half_stars() -> None:
    r = make_synthetic(PRESETS["small"].replace(half_stars=True))
    assert r.scale == RatingScale(1, 5, 0.5)
    assert 3.5 in set(r.scale.to_original(r.matrix.data))


def test_ml_1m_shape() -> None:
    r = make_synthetic(PRESETS["ml-1m"])
    assert (r.n_users, r.n_items, r.nnz) == (6040, 3706, 1_000_209)
    assert r.user_counts.min() >= 20 and r.item_counts.min() >= 1


def test_presets_have_movielens_shapes() -> None:
    shape = {k: (c.n_users, c.n_items, c.n_ratings) for k, c in PRESETS.items()}
    assert shape["ml-100k"] == (943, 1682, 100_000)
    assert shape["ml-20m"] == (138_493, 26_744, 20_000_263)


@pytest.mark.parametrize(
    "changes",
    [
        {"n_ratings": 600 * 19},  # fewer than 20 per user
        {"n_ratings": 3000, "n_items": 5000, "n_users": 100},  # not every item rated
        {"max_user_fraction": 0.001},
        {"rank": 0},
        {"noise": -1.0},
    ],
)
def test_invalid_configs(changes: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        SyntheticConfig().replace(**changes)


def test_config_json_round_trip() -> None:
    cfg = PRESETS["ml-1m"].replace(half_stars=True, seed=5)
    assert SyntheticConfig.from_json(cfg.to_json()) == cfg
