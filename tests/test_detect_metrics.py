"""Detection metrics on hand-made cases: precision/recall/F1 at k with ties, ROC AUC."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from cfpoison.detect import detection_metrics, roc_auc
from cfpoison.errors import DataError


def brute_auc(scores: np.ndarray, is_fake: np.ndarray) -> float:
    """P(fake outscores normal) + 0.5 P(tie), over all pairs."""
    pos, neg = scores[is_fake], scores[~is_fake]
    wins = sum((p > q) + 0.5 * (p == q) for p, q in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def test_perfect_and_inverted_ranking() -> None:
    is_fake = np.array([False, False, False, True, True])
    good = detection_metrics(np.array([0.1, 0.2, 0.3, 0.8, 0.9]), is_fake)
    assert (good.precision, good.recall, good.f1, good.auc, good.k) == (1.0, 1.0, 1.0, 1.0, 2)
    bad = detection_metrics(np.array([0.9, 0.8, 0.3, 0.2, 0.1]), is_fake)
    assert (bad.precision, bad.recall, bad.f1, bad.auc) == (0.0, 0.0, 0.0, 0.0)


def test_one_of_two_found() -> None:
    is_fake = np.array([True, False, True, False])
    metrics = detection_metrics(np.array([0.9, 0.8, 0.1, 0.2]), is_fake)
    assert metrics.precision == metrics.recall == metrics.f1 == 0.5
    assert metrics.auc == 0.5  # fake 0.9 beats both, fake 0.1 beats none


def test_ties_at_the_cut_are_shared() -> None:
    # k = 2: one user clearly above, three tied for the last place, one of them fake
    is_fake = np.array([True, True, False, False, False])
    metrics = detection_metrics(np.array([5.0, 1.0, 1.0, 1.0, 0.0]), is_fake)
    assert metrics.precision == pytest.approx((1 + 1 / 3) / 2)
    assert metrics.auc == pytest.approx(brute_auc(np.array([5.0, 1, 1, 1, 0]), is_fake))


def test_precision_recall_at_other_k() -> None:
    is_fake = np.array([True, False, True, False, False, False])
    scores = np.array([6.0, 5.0, 4.0, 3.0, 2.0, 1.0])
    metrics = detection_metrics(scores, is_fake, k=3)
    assert metrics.precision == pytest.approx(2 / 3)
    assert metrics.recall == 1.0
    assert metrics.f1 == pytest.approx(2 * (2 / 3) / (2 / 3 + 1))


def test_auc_matches_pairwise_count_with_many_ties() -> None:
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 4, size=60).astype(float)
    is_fake = rng.random(60) < 0.3
    assert roc_auc(scores, is_fake) == pytest.approx(brute_auc(scores, is_fake), abs=1e-12)


def test_constant_scores_are_chance() -> None:
    is_fake = np.array([True, False, False, False])
    metrics = detection_metrics(np.zeros(4), is_fake)
    assert metrics.auc == 0.5
    assert metrics.precision == pytest.approx(0.25)


def test_undefined_cases() -> None:
    assert np.isnan(roc_auc(np.arange(3.0), np.zeros(3, bool)))
    assert np.isnan(detection_metrics(np.arange(3.0), np.zeros(3, bool)).precision)
    with pytest.raises(DataError):
        detection_metrics(np.array([0.0, np.nan]), np.array([True, False]))
    with pytest.raises(DataError):
        detection_metrics(np.zeros(3), np.zeros(2, bool))
