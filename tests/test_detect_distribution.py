"""Two-sided AUC, the distribution tests and the learned detector on planted and real groups."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import scipy.sparse as sp

from cfpoison.data.ratings import Ratings, RatingScale
from cfpoison.data.registry import load_dataset
from cfpoison.detect import (
    DetectConfig,
    detection_metrics,
    distribution_tests,
    learned_detector,
    run_detectors,
    two_sided,
)
from cfpoison.detect.distribution import rating_bins, user_histograms
from cfpoison.errors import DataError

N_FAKE = 12


@functools.cache
def normal_users() -> Ratings:
    """The built-in synthetic set ``synthetic:small``: 200 users, 800 items, 1-5 stars."""
    return load_dataset("synthetic:small")


def held_out(ratings: Ratings, size: int, seed: int) -> tuple[Ratings, sp.csr_array]:
    """``size`` real users taken out of ``ratings`` (the suspects) and the rest (reference)."""
    order = np.random.default_rng(seed).permutation(ratings.n_users)
    rest, group = np.sort(order[size:]), np.sort(order[:size])
    reference = ratings.with_matrix(sp.csr_array(ratings.matrix[rest]), ratings.user_ids[rest])
    return reference, sp.csr_array(ratings.matrix[group])


def crude(ratings: Ratings, rng: np.random.Generator, size: int = 40) -> sp.csr_array:
    """Every fake rates ``size`` uniformly random items at the top of the scale."""
    n = ratings.n_items
    cols = np.concatenate([np.sort(rng.choice(n, size, replace=False)) for _ in range(N_FAKE)])
    indptr = np.arange(N_FAKE + 1) * size
    return sp.csr_array((np.full(len(cols), 2.0), cols, indptr), shape=(N_FAKE, n))


def at_item_means(ratings: Ratings) -> sp.csr_array:
    """Fakes rating the 40 most popular items exactly at their mean: RDMA's lowest scores."""
    counts = ratings.item_counts
    means = np.bincount(ratings.matrix.indices, ratings.matrix.data, ratings.n_items) / counts
    top = np.sort(np.argsort(-counts, kind="stable")[:40])
    cols = np.tile(top, N_FAKE)
    indptr = np.arange(N_FAKE + 1) * 40
    return sp.csr_array((means[cols], cols, indptr), shape=(N_FAKE, ratings.n_items))


def test_two_sided_auc_counts_an_inverted_separation() -> None:
    is_fake = np.array([False, False, False, True, True])
    flipped = two_sided(np.array([0.9, 0.8, 0.7, 0.2, 0.1]), is_fake)
    assert (flipped.auc, flipped.auc_two_sided, flipped.inverted) == (0.0, 1.0, True)
    assert flipped.to_dict()["note"] == "inverted"
    metrics = detection_metrics(np.array([0.9, 0.8, 0.7, 0.2, 0.1]), is_fake)
    assert (metrics.f1, metrics.f1_two_sided, metrics.inverted) == (0.0, 1.0, True)
    straight = detection_metrics(np.array([0.1, 0.2, 0.3, 0.8, 0.9]), is_fake)
    assert (straight.auc_two_sided, straight.f1_two_sided, straight.inverted) == (1.0, 1.0, False)
    assert straight.to_dict()["note"] is None


def test_planted_inverted_attack_is_caught_two_sided() -> None:
    ratings = normal_users()
    report = run_detectors(ratings, at_item_means(ratings), DetectConfig(permutations=99))
    rdma = report.metrics["rdma"]
    assert rdma.auc < 0.05 and rdma.inverted
    assert rdma.auc_two_sided > 0.95 and rdma.f1_two_sided > 0.9 and rdma.f1 == 0.0
    summary = report.to_dict()
    assert summary["detectors"]["rdma"]["note"] == "inverted"  # type: ignore[index]
    assert report.best()[1] > 0.95


def test_rating_bins_follow_the_grid() -> None:
    edges = rating_bins(RatingScale(1.0, 5.0, 1.0))  # shifted grid -2, -1, 0, 1, 2
    matrix = sp.csr_array(np.array([[-2.0, 2.0, 2.0], [0.0, 0.0, 1.0]]))
    np.testing.assert_array_equal(
        user_histograms(matrix, edges), [[1, 0, 0, 0, 2], [0, 0, 0, 1, 0]]
    )
    assert len(rating_bins(RatingScale(1.0, 5.0, 0.0))) == 11  # continuous: 10 bins


def test_every_distribution_test_rejects_a_planted_group() -> None:
    ratings = normal_users()
    rng = np.random.default_rng(0)
    tests = distribution_tests(ratings.matrix, crude(ratings, rng), ratings.scale, rng, 199)
    assert set(tests) == {"length", "rating_histogram", "item_popularity"}
    for test in tests.values():
        assert test.pvalue < 0.01, test
        assert test.n_suspect == N_FAKE and test.n_reference == ratings.n_users


def test_distribution_tests_do_not_reject_held_out_real_users() -> None:
    ratings = normal_users()
    pvalues = []
    for seed in range(8):
        reference, group = held_out(ratings, N_FAKE, seed)
        rng = np.random.default_rng(seed)
        tests = distribution_tests(reference.matrix, group, reference.scale, rng, 199)
        pvalues.append([t.pvalue for t in tests.values()])
    rejected = (np.array(pvalues) < 0.05).sum(axis=0)
    assert np.all(rejected <= 1), rejected  # 8 groups at level 0.05: 0.4 expected per test


def test_histogram_permutation_p_is_calibrated_where_the_chi2_tail_is_not() -> None:
    ratings = normal_users()
    reference, group = held_out(ratings, 30, 3)
    rng = np.random.default_rng(3)
    test = distribution_tests(reference.matrix, group, reference.scale, rng, 199)
    histogram = test["rating_histogram"]
    # users have their own histograms: the pooled-ratings chi2 tail rejects a real group
    assert histogram.pvalue_asymptotic < 0.05 < histogram.pvalue


def test_distribution_tests_check_their_input() -> None:
    ratings = normal_users()
    rng = np.random.default_rng(0)
    with pytest.raises(DataError):
        distribution_tests(ratings.matrix, sp.csr_array((2, 5)), ratings.scale, rng)
    with pytest.raises(DataError):
        distribution_tests(ratings.matrix, sp.csr_array((0, ratings.n_items)), ratings.scale, rng)


def combined(reference: Ratings, fake: sp.csr_array) -> tuple[sp.csr_array, np.ndarray]:
    matrix = sp.csr_array(sp.vstack([reference.matrix, fake], format="csr"))
    matrix.sort_indices()
    return matrix, np.r_[np.zeros(reference.n_users, bool), np.ones(fake.shape[0], bool)]


def test_learned_detector_catches_a_crude_attack() -> None:
    ratings = normal_users()
    matrix, is_fake = combined(ratings, crude(ratings, np.random.default_rng(1)))
    report = learned_detector(matrix, is_fake, ratings.scale, folds=5, seed=0)
    assert report.auc.auc > 0.9 and not report.auc.inverted
    assert len(report.fold_aucs) == 5 and report.folds == 5
    assert report.scores.shape == is_fake.shape
    summary = report.to_dict()
    assert summary["n_fake"] == N_FAKE and "length" in summary["features"]  # type: ignore[operator]
    again = learned_detector(matrix, is_fake, ratings.scale, folds=5, seed=0)
    np.testing.assert_array_equal(report.scores, again.scores)


def test_learned_detector_is_near_chance_on_real_users() -> None:
    ratings = normal_users()
    aucs = []
    for seed in range(3):
        reference, group = held_out(ratings, N_FAKE, seed)
        matrix, is_fake = combined(reference, group)
        aucs.append(learned_detector(matrix, is_fake, ratings.scale, seed=seed).auc.auc)
    assert abs(float(np.mean(aucs)) - 0.5) < 0.12, aucs


def test_learned_detector_needs_two_of_each() -> None:
    ratings = normal_users()
    matrix, is_fake = combined(ratings, crude(ratings, np.random.default_rng(1))[:1])
    with pytest.raises(DataError):
        learned_detector(matrix, is_fake, ratings.scale)
    report = run_detectors(ratings, crude(ratings, np.random.default_rng(1))[:1])
    assert report.learned is None and report.learned_skipped
    assert report.to_dict()["learned"] is None
