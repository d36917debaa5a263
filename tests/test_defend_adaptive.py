"""The adaptive attacker: profiles projected under detect-and-remove's threshold."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from cfpoison.attacks.evasion import evade, with_evasions
from cfpoison.attacks.threat import grid_values
from cfpoison.data.preprocess import PreprocessConfig, prepare
from cfpoison.data.ratings import Ratings
from cfpoison.data.synthetic import PRESETS, make_synthetic
from cfpoison.defend import detector_score
from cfpoison.defend.model import combined


@pytest.fixture(scope="module")
def train() -> Ratings:
    return prepare(make_synthetic(PRESETS["small"]), PreprocessConfig())[0]


def push(train: Ratings, n_fake: int, budget: int, popular: bool = False) -> sp.csr_array:
    """Fake users rating ``budget`` random (or the most popular) items at the maximum."""
    rng = np.random.default_rng(0)
    if popular:
        cols = np.tile(np.argsort(-train.item_counts)[:budget], n_fake)
    else:
        cols = np.concatenate(
            [rng.choice(train.n_items, budget, replace=False) for _ in range(n_fake)]
        )
    rows = np.repeat(np.arange(n_fake), budget)
    fake = sp.csr_array((np.full(len(cols), 2.0), (rows, cols)), shape=(n_fake, train.n_items))
    fake.sort_indices()
    return fake


def test_projection_hides_the_profiles_from_their_detector(train: Ratings) -> None:
    fake = push(train, 6, 40)
    score = detector_score("rdma")
    result = evade(train, fake, score, 0.01)
    # every fake is caught before the projection, none after
    assert np.all(score(combined(train, fake))[train.n_users :] > result.threshold)
    assert result.still_flagged == 0
    assert np.all((result.shrink > 0) & (result.shrink < 1))
    # same items rated, ratings on the grid, nothing moved beyond the item means
    np.testing.assert_array_equal(result.fake.indices, fake.indices)
    grid = grid_values(train.scale, 2.0)
    assert grid is not None and np.all(np.isin(result.fake.data, grid))
    assert np.all(result.fake.data <= fake.data)


def test_profiles_under_the_threshold_are_left_alone(train: Ratings) -> None:
    fake = push(train, 3, 40, popular=True)
    fake.data[:] = 0.0  # middling ratings of popular items: nothing to hide
    result = evade(train, fake, detector_score("rdma"), 0.01)
    np.testing.assert_array_equal(result.shrink, 1.0)
    np.testing.assert_array_equal(result.fake.data, fake.data)


def test_with_evasions_adds_one_projection_per_detector(train: Ratings) -> None:
    attacks, records = with_evasions(train, {"push": push(train, 4, 40)}, ["rdma"], 0.01)
    assert list(attacks) == ["push", "push~evade-rdma"]
    assert records[0]["attack"] == "push~evade-rdma" and records[0]["still_flagged"] == 0
