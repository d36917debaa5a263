"""Shilling detectors: hand-computed values, brute-force checks, planted fakes ranked first."""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import pytest
import scipy.sparse as sp

from cfpoison.data.ratings import Ratings
from cfpoison.data.registry import load_dataset
from cfpoison.detect import (
    DETECTORS,
    DetectConfig,
    degsim,
    detection_metrics,
    fmtd,
    length_var,
    mean_var,
    pca_select,
    rdma,
    run_detectors,
    wda,
    wdma,
)
from cfpoison.detect import detectors as detectors_module

N_FAKE = 12


@functools.cache
def normal_users() -> Ratings:
    """The built-in synthetic set ``synthetic:small``: 200 users, 800 items, 1-5 stars."""
    return load_dataset("synthetic:small")


N_USERS, N_ITEMS = normal_users().matrix.shape


def profiles(rows: list[np.ndarray], values: list[np.ndarray]) -> sp.csr_array:
    """Fake rows from per-user item indices and shifted values."""
    r = np.repeat(np.arange(len(rows)), [len(x) for x in rows])
    fake = sp.csr_array(
        (np.concatenate(values), (r, np.concatenate(rows))), shape=(len(rows), N_ITEMS)
    )
    fake.sort_indices()
    return fake


def random_at_max(rng: np.random.Generator, size: int = 40) -> sp.csr_array:
    """Random items, every rating at the top of the scale."""
    rows = [rng.choice(N_ITEMS, size, replace=False) for _ in range(N_FAKE)]
    return profiles(rows, [np.full(size, 2.0) for _ in rows])


def push_attack(rng: np.random.Generator, ratings: Ratings) -> sp.csr_array:
    """Average push attack: a target at the maximum, filler at the rounded item means."""
    counts = ratings.item_counts
    means = np.bincount(ratings.matrix.indices, ratings.matrix.data, N_ITEMS) / counts.clip(1)
    target = int(np.argmin(counts))
    rated = np.setdiff1d(np.flatnonzero(counts), [target])
    rows, values = [], []
    for _ in range(N_FAKE):
        filler = rng.choice(rated, 40, replace=False)
        rows.append(np.r_[target, filler])
        values.append(np.r_[2.0, np.clip(np.round(means[filler]), -2, 1)])
    return profiles(rows, values)


def bandwagon(rng: np.random.Generator, ratings: Ratings) -> sp.csr_array:
    """Bandwagon push: the 40 most popular items and a target at the max, 10 random low."""
    order = np.argsort(-ratings.item_counts, kind="stable")
    head, target, rest = order[:40], order[-1], order[40:-1]
    rows, values = [], []
    for _ in range(N_FAKE):
        rows.append(np.r_[head, target, rng.choice(rest, 10, replace=False)])
        values.append(np.r_[np.full(41, 2.0), rng.choice([-2.0, -1.0], 10)])
    return profiles(rows, values)


def long_profiles(rng: np.random.Generator) -> sp.csr_array:
    """Random profiles rating 600 of the 800 items (normal users rate 20-400)."""
    rows = [rng.choice(N_ITEMS, 600, replace=False) for _ in range(N_FAKE)]
    return profiles(rows, [rng.choice([-2.0, -1.0, 0.0, 1.0, 2.0], 600) for _ in rows])


Planter = Callable[[np.random.Generator, Ratings], sp.csr_array]

PLANTED: dict[str, Planter] = {
    "rdma": lambda rng, ratings: random_at_max(rng),
    "wdma": lambda rng, ratings: random_at_max(rng),
    # WDA sums over the profile: long random profiles (heavy normal users rate up to 400)
    "wda": lambda rng, ratings: random_at_max(rng, 300),
    "pca": lambda rng, ratings: random_at_max(rng),
    "mean_var": push_attack,
    "fmtd": bandwagon,
    "degsim": bandwagon,
    "length_var": lambda rng, ratings: long_profiles(rng),
}


def test_every_detector_has_a_planted_attack() -> None:
    assert set(PLANTED) == set(DETECTORS)


@pytest.mark.parametrize("name", sorted(PLANTED))
def test_planted_fakes_rank_above_normal_users(name: str) -> None:
    ratings = normal_users()
    report = run_detectors(ratings, PLANTED[name](np.random.default_rng(7), ratings))
    metrics = report.metrics[name]
    assert metrics.auc > 0.95, (name, metrics)
    assert metrics.precision >= 0.75, (name, metrics)
    assert report.scores[name].shape == (N_USERS + N_FAKE,)


TINY = sp.csr_array(
    np.array(
        [
            [2.0, 1.0, 0.0, 0.0],
            [0.0, -1.0, 0.0, 1.0],
            [1.0, 0.0, -2.0, 0.0],
        ]
    )
)
# stored pattern: explicit entries where written, including the rating 0.0 at (0, 2)
TINY_PATTERN = sp.csr_array(
    (
        np.array([2.0, 1.0, 0.0, -1.0, 1.0, 1.0, -2.0]),
        np.array([0, 1, 2, 1, 3, 0, 2]),
        np.array([0, 3, 5, 7]),
    ),
    shape=(3, 4),
)


def test_agreement_features_by_hand() -> None:
    # item means over stored entries: j0 (2+1)/2 = 1.5, j1 (1-1)/2 = 0, j2 (0-2)/2 = -1, j3 1
    # user 0: |2-1.5|/2 + |1-0|/2 + |0+1|/2 = 1.25 over 3 items
    expected_wda = np.array([1.25, 1.0 / 2 + 0.0, 0.5 / 2 + 1.0 / 2])
    np.testing.assert_allclose(wda(TINY_PATTERN), expected_wda)
    np.testing.assert_allclose(rdma(TINY_PATTERN), expected_wda / np.array([3, 2, 2]))
    expected_wdma = np.array([0.5 / 4 + 1 / 4 + 1 / 4, 1 / 4, 0.5 / 4 + 1 / 4]) / [3, 2, 2]
    np.testing.assert_allclose(wdma(TINY_PATTERN), expected_wdma)
    lengths = np.array([3.0, 2.0, 2.0])
    centred = lengths - lengths.mean()
    np.testing.assert_allclose(length_var(TINY_PATTERN), np.abs(centred) / np.sum(centred**2))


def test_explicit_zero_is_a_rating() -> None:
    # TINY (built from a dense array) drops the 0.0 at (0, 2); TINY_PATTERN keeps it
    assert not np.allclose(wda(TINY), wda(TINY_PATTERN))


def test_fmtd_and_mean_var_by_hand() -> None:
    # user 0: target {2.0}, filler {1.0, 0.0}: FMTD |2 - 0.5| = 1.5
    # user 1: target {1.0}, filler {-1.0}: 2.0; user 2: target {1.0}, filler {-2.0}: 3.0
    np.testing.assert_allclose(fmtd(TINY_PATTERN), [1.5, 2.0, 3.0])
    # filler deviations from item means (0, -1, -1 for items 1, 2, 1 / 2):
    # user 0: ((1-0)^2 + (0+1)^2)/2 = 1; user 1: (-1-0)^2 = 1; user 2: (-2+1)^2 = 1
    np.testing.assert_allclose(mean_var(TINY_PATTERN), [-1.0, -1.0, -1.0])
    flat = sp.csr_array(np.array([[2.0, 2.0, 0.0], [1.0, -1.0, 2.0]]))
    assert fmtd(flat)[0] == 0.0 and mean_var(flat)[0] == 0.0  # empty filler


def brute_degsim(dense: np.ndarray, mask: np.ndarray, k: int, shrink: float) -> np.ndarray:
    m = dense.shape[0]
    means = np.array([dense[u, mask[u]].mean() for u in range(m)])
    x = np.where(mask, dense - means[:, None], 0.0)
    sim = np.full((m, m), -np.inf)
    for u in range(m):
        for v in range(m):
            if u == v:
                continue
            both = mask[u] & mask[v]
            den = np.sqrt(np.sum(x[u, both] ** 2) * np.sum(x[v, both] ** 2))
            w = np.sum(x[u, both] * x[v, both]) / den if den > 0 else 0.0
            sim[u, v] = w * (min(both.sum(), shrink) / shrink if shrink > 0 else 1.0)
    return np.sort(sim, axis=1)[:, -k:].mean(axis=1)


@pytest.mark.parametrize("shrink", [0.0, 5.0])
def test_degsim_matches_brute_force_in_small_blocks(
    monkeypatch: pytest.MonkeyPatch, shrink: float
) -> None:
    rng = np.random.default_rng(1)
    mask = rng.random((17, 12)) < 0.5
    mask[np.arange(17), rng.integers(0, 12, 17)] = True
    dense = np.where(mask, rng.integers(-2, 3, (17, 12)).astype(float), 0.0)
    rows, cols = np.nonzero(mask)
    matrix = sp.csr_array((dense[rows, cols], (rows, cols)), shape=mask.shape)
    monkeypatch.setattr(detectors_module, "BLOCK_ELEMENTS", 17 * 3)  # blocks of 3 rows
    np.testing.assert_allclose(
        degsim(matrix, k=4, shrink=shrink), brute_degsim(dense, mask, 4, shrink), atol=1e-12
    )


def test_pca_is_deterministic_and_flags_zero_variance_profiles() -> None:
    ratings = normal_users()
    fake = random_at_max(np.random.default_rng(2))
    combined = sp.csr_array(sp.vstack([ratings.matrix, fake], format="csr"))
    first, second = pca_select(combined, 3), pca_select(combined, 3)
    np.testing.assert_array_equal(first, second)
    # constant profiles z-score to 0 rows: no contribution, the highest possible score
    assert np.all(first[N_USERS:] == pytest.approx(0.0, abs=1e-12))
    # every score, against a dense z-score and a full SVD
    dense = combined.toarray()
    mask = sp.csr_array((np.ones(combined.nnz), combined.indices, combined.indptr)).toarray() > 0
    z = np.zeros_like(dense)
    for user in range(len(dense)):
        rated = dense[user, mask[user]]
        if rated.std() > 0:
            z[user, mask[user]] = (rated - rated.mean()) / rated.std()
    left = np.linalg.svd(z, full_matrices=False)[0][:, :3]
    np.testing.assert_allclose(first, -np.sum(left**2, axis=1), atol=1e-10)


def test_config_round_trip_and_validation() -> None:
    config = DetectConfig(degsim_k=5, pca_components=2)
    assert DetectConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError):
        DetectConfig(degsim_k=0)


def test_report_is_json_ready() -> None:
    rng = np.random.default_rng(4)
    report = run_detectors(normal_users(), random_at_max(rng), DetectConfig(degsim_k=3))
    summary = report.to_dict()
    assert set(summary["detectors"]) == set(DETECTORS)  # type: ignore[call-overload]
    assert summary["ttest_pvalue"] == report.ttest.pvalue
    assert summary["n_fake"] == N_FAKE
    # the fakes are the last rows: each detector's metrics are those of its scores against
    # that labelling, and the ones that must see random profiles at the maximum rank them first
    is_fake = np.r_[np.zeros(N_USERS, bool), np.ones(N_FAKE, bool)]
    for name, scores in report.scores.items():
        assert scores.shape == (N_USERS + N_FAKE,)
        assert summary["detectors"][name] == detection_metrics(scores, is_fake).to_dict()  # type: ignore[index]
    for name in ("rdma", "wdma", "mean_var", "pca"):
        metrics = summary["detectors"][name]  # type: ignore[index]
        assert metrics["k"] == N_FAKE and metrics["precision"] == metrics["auc"] == 1.0
