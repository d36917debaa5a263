"""RatingScale (the linear map onto [-2, 2]) and the Ratings container."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given
from hypothesis import strategies as st

from cfpoison.data.ratings import Ratings, RatingScale, item_moments, round_to_grid
from cfpoison.errors import ConfigError, DataError

HALF_STARS = RatingScale(0.5, 5.0, 0.5)
STARS = RatingScale(1.0, 5.0, 1.0)


def test_scale_end_points_map_onto_minus_two_and_two() -> None:
    np.testing.assert_allclose(HALF_STARS.to_shifted([0.5, 2.75, 5.0]), [-2.0, 0.0, 2.0])
    np.testing.assert_allclose(STARS.to_shifted([1, 3, 5]), [-2.0, 0.0, 2.0])
    assert STARS.shifted_step == pytest.approx(1.0)
    assert HALF_STARS.shifted_step == pytest.approx(4 / 9)


@given(
    st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=1, max_size=50),
    st.sampled_from([HALF_STARS, STARS, RatingScale(-10.0, 10.0, 0.0)]),
)
def test_scale_round_trip(values: list[float], scale: RatingScale) -> None:
    values_arr = np.asarray(values)
    back = scale.to_original(scale.to_shifted(values_arr))
    np.testing.assert_allclose(back, values_arr, rtol=1e-12, atol=1e-9)


@given(st.lists(st.floats(-10, 10, allow_nan=False), min_size=1, max_size=50))
def test_snap_lands_on_the_scale(values: list[float]) -> None:
    snapped = HALF_STARS.snap(values)
    assert HALF_STARS.contains(snapped).all()
    inside = (np.asarray(values) >= 0.5) & (np.asarray(values) <= 5.0)
    assert np.all(np.abs(snapped - np.asarray(values))[inside] <= 0.25 + 1e-12)


def test_ties_round_to_the_lower_rating_on_either_scale() -> None:
    ties = [1.25, 2.75, 4.75]  # halfway between half-stars
    np.testing.assert_array_equal(HALF_STARS.snap(ties), [1.0, 2.5, 4.5])
    np.testing.assert_array_equal(STARS.snap([1.5, 2.5, 3.5, 4.5]), [1.0, 2.0, 3.0, 4.0])
    np.testing.assert_array_equal(
        round_to_grid([-0.5, 0.5, 0.49], np.array([-1.0, 0.0, 1.0])), [-1.0, 0.0, 0.0]
    )


def test_contains_rejects_off_grid_and_out_of_range() -> None:
    assert HALF_STARS.contains([0.5, 1.0, 4.5, 5.0]).all()
    assert not HALF_STARS.contains([0.0, 0.75, 5.5]).any()


@pytest.mark.parametrize(("low", "high", "step"), [(5, 1, 1), (1, 5, -1), (1, 5, 0.3)])
def test_bad_scales(low: float, high: float, step: float) -> None:
    with pytest.raises(ConfigError):
        RatingScale(low, high, step)


def test_from_triples_keeps_explicit_zero_ratings_and_maps_ids() -> None:
    r = Ratings.from_triples(
        users=np.array([10, 10, 3, 7]),
        items=np.array([200, 100, 100, 300]),
        ratings=np.array([3.0, 5.0, 1.0, 3.0]),
        scale=STARS,
        name="tiny",
    )
    assert (r.n_users, r.n_items, r.nnz) == (3, 3, 4)
    np.testing.assert_array_equal(r.user_ids, [3, 7, 10])
    np.testing.assert_array_equal(r.item_ids, [100, 200, 300])
    # 3 stars maps to 0.0 on the shifted scale and is still an observed entry.
    assert r.matrix[2, 1] == 0.0
    np.testing.assert_array_equal(r.user_counts, [1, 1, 2])
    np.testing.assert_array_equal(r.item_counts, [2, 1, 1])
    np.testing.assert_array_equal(r.user_index([10, 3]), [2, 0])
    np.testing.assert_array_equal(r.item_index(300), [2])
    rows, cols, vals = r.triples()
    np.testing.assert_array_equal(rows, [0, 1, 2, 2])
    np.testing.assert_array_equal(cols, [0, 2, 0, 1])
    np.testing.assert_allclose(vals, [-2.0, 0.0, 2.0, 0.0])
    summary = r.summary()
    assert summary["ratings"] == 4 and summary["scale"] == {"low": 1.0, "high": 5.0, "step": 1.0}


def test_unknown_ids_and_duplicates_are_data_errors() -> None:
    r = Ratings.from_triples(np.array([1]), np.array([2]), np.array([4.0]), STARS, "tiny")
    with pytest.raises(DataError, match="unknown user id 5"):
        r.user_index([1, 5])
    with pytest.raises(DataError, match="unknown item id 9"):
        r.item_index(9)
    with pytest.raises(DataError, match="duplicate"):
        Ratings.from_triples(np.array([1, 1]), np.array([2, 2]), np.array([4.0, 3.0]), STARS)


def test_item_moments_are_per_column_population_moments_with_a_global_fallback() -> None:
    matrix = sp.csr_array(([1.0, 3.0, 0.0, -2.0], ([0, 1, 0, 1], [0, 0, 1, 1])), shape=(2, 3))
    counts, mean, variance = item_moments(matrix)
    np.testing.assert_array_equal(counts, [2, 2, 0])
    np.testing.assert_allclose(mean, [2.0, -1.0, matrix.data.mean()])
    np.testing.assert_allclose(variance, [1.0, 1.0, matrix.data.var()])
