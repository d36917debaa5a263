"""Detection and detect-and-remove on implicit (binary) profiles (``cfpoison.detect.implicit``,
``cfpoison.defend.implicit``) and ``detect --feedback implicit``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from cfpoison.cli import main
from cfpoison.data.interactions import Interactions
from cfpoison.defend.implicit import fold_in_wrmf, held_out_hit_ratio, remove_and_refit
from cfpoison.detect.implicit import (
    LEARNED,
    degsim_binary,
    judge,
    pca_binary,
    popularity,
    profile_length,
    run_implicit_detectors,
)
from cfpoison.learners import WRMFConfig, WRMFLearner

#: u0 {0, 1}, u1 {0, 1, 2}, u2 {0, 3}, u3 {0}: item counts 4, 2, 1, 1.
HAND = sp.csr_array(np.array([[1, 1, 0, 0], [1, 1, 1, 0], [1, 0, 0, 1], [1, 0, 0, 0]], float))
LEARNER = WRMFConfig(rank=3, threads=1, kkt_tol=1e-10)


@pytest.fixture(scope="module")
def data() -> Interactions:
    """60 users x 40 items with a popularity tail: low-rank preferences, thresholded."""
    rng = np.random.default_rng(4)
    scores = rng.normal(size=(60, 3)) @ rng.normal(size=(3, 40)) - np.linspace(0, 3, 40)
    users, items = np.nonzero(scores > 0.5)
    return Interactions.from_triples(users + 1, items + 1, name="tiny")


def template_fakes(n_items: int, n_fake: int, rng: np.random.Generator) -> sp.csr_array:
    """Fakes sharing 4 fixed items (the targets) and 4 random others each."""
    rows = [np.r_[np.arange(4), rng.choice(np.arange(4, n_items), 4, replace=False)]]
    rows += [
        np.r_[np.arange(4), rng.choice(np.arange(4, n_items), 4, replace=False)]
        for _ in range(n_fake - 1)
    ]
    cols = np.concatenate(rows)
    return sp.csr_array(
        (np.ones(len(cols)), (np.repeat(np.arange(n_fake), 8), cols)), shape=(n_fake, n_items)
    )


def test_length_and_popularity_on_hand_made_profiles() -> None:
    assert profile_length(HAND).tolist() == [2, 3, 2, 1]
    mean, std = popularity(HAND)
    log2 = math.log(2)
    np.testing.assert_allclose(mean, [1.5 * log2, log2, log2, 2 * log2])
    np.testing.assert_allclose(std, [0.5 * log2, math.sqrt(2 / 3) * log2, log2, 0.0])


def test_degsim_jaccard_and_cosine_are_exact() -> None:
    # Jaccard: 01 2/3, 02 1/3, 03 1/2, 12 1/4, 13 1/3, 23 1/2
    np.testing.assert_allclose(degsim_binary(HAND, 1), [2 / 3, 2 / 3, 1 / 2, 1 / 2])
    np.testing.assert_allclose(degsim_binary(HAND, 2), [7 / 12, 1 / 2, 5 / 12, 1 / 2])
    cosine = [2 / math.sqrt(6), 2 / math.sqrt(6), 1 / math.sqrt(2), 1 / math.sqrt(2)]
    np.testing.assert_allclose(degsim_binary(HAND, 1, "cosine"), cosine)
    assert np.all(degsim_binary(HAND[:1], 3) == 0)  # no other user


def test_pca_matches_a_dense_svd_of_row_z_scores(data: Interactions) -> None:
    X = data.matrix.toarray()
    X = X[X.sum(axis=1) > 0]
    p = X.mean(axis=1, keepdims=True)
    left = np.linalg.svd((X - p) / np.sqrt(p * (1 - p)))[0]
    expected = -np.sum(left[:, :3] ** 2, axis=1)
    np.testing.assert_allclose(pca_binary(sp.csr_array(X), 3), expected, atol=1e-8)


def test_scores_are_judged_two_sided() -> None:
    is_fake = np.r_[np.zeros(100, bool), np.ones(5, bool)]
    scores = np.r_[np.linspace(1, 2, 100), np.zeros(5)]  # fakes score lowest
    judged = judge(scores, is_fake, 0.01)
    assert judged.auc.inverted and judged.auc.auc == 0 and judged.auc.auc_two_sided == 1
    assert judged.at_fpr.recall == 1 and judged.at_fpr.precision == 1
    assert judged.at_fpr.flagged == 5 and judged.at_fpr.fpr == 0


def test_template_fakes_are_caught_and_removed(data: Interactions) -> None:
    fake = template_fakes(data.n_items, 6, np.random.default_rng(0))
    report = run_implicit_detectors(data, fake)
    assert set(report.judged) >= {"length", "degsim_jaccard", "pca", LEARNED}
    assert report.judged["degsim_jaccard"].auc.auc_two_sided > 0.9
    assert report.learned is not None and len(report.learned.fold_aucs) == 5
    best, auc = report.best()
    flagged = report.flagged(best)
    assert auc >= 0.9 and flagged.sum() == report.judged[best].at_fpr.flagged
    assert flagged[data.n_users :].sum() >= 1
    assert json.dumps(report.to_dict())
    model = remove_and_refit(data, fake, flagged, LEARNER)
    assert model.user_factors.shape == (data.n_users, LEARNER.rank)
    assert np.array_equal(model.removed_fake, flagged[data.n_users :])


def test_removing_only_fakes_refits_on_the_clean_data(data: Interactions) -> None:
    fake = template_fakes(data.n_items, 3, np.random.default_rng(1))
    flagged = np.r_[np.zeros(data.n_users, bool), np.ones(3, bool)]
    model = remove_and_refit(data, fake, flagged, LEARNER)
    clean = WRMFLearner(LEARNER).fit(data)
    np.testing.assert_allclose(model.user_factors, clean.user_factors, atol=1e-10)
    # a converged fit's user rows are WRMF's row minimisers: folding them in reproduces them
    again = fold_in_wrmf(data.matrix, clean.item_factors, LEARNER)
    np.testing.assert_allclose(again, clean.user_factors, atol=1e-6)


def test_held_out_hit_ratio_counts_users_with_a_held_out_hit() -> None:
    class Model:
        user_factors = np.eye(2)
        item_factors = np.array([[3.0, 0.5], [2.0, 0.0], [0.0, 1.0], [1.0, 0.0]])

    train = sp.csr_array(np.array([[1, 0, 0, 0], [0, 0, 1, 0]], float))
    test = sp.csr_array(np.array([[0, 1, 0, 0], [0, 0, 0, 1]], float))
    # user 0's best unrated item is 1 (2.0; held out: a hit); user 1's is 0 (0.5 against
    # item 1's and item 3's 0.0): its held-out item 3 is not first
    assert held_out_hit_ratio(train, test, Model(), k=1) == 0.5


def test_detect_command_on_promoted_profiles(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    profiles, out = tmp_path / "fake.csv", tmp_path / "d.json"
    promote = ["--quiet", "promote", "--dataset", "synthetic:small", "--method", "popular"]
    promote += ["--rank", "4", "--threads", "1", "--profiles", str(profiles)]
    assert main(promote) == 0
    capsys.readouterr()
    detect = ["detect", "--dataset", "synthetic:small", "--feedback", "implicit"]
    detect += ["--profiles", str(profiles)]
    assert main([*detect, "--json", str(out)]) == 0
    assert "degsim_jaccard" in capsys.readouterr().out
    payload = json.loads(out.read_text())
    assert payload["feedback"] == "implicit" and payload["n_fake"] == len(payload["fake_user_ids"])
    for name, row in payload["detectors"].items():
        assert row["auc_two_sided"] >= 0.5 and set(row["at_fpr"]) >= {"precision", "recall"}, name
    assert payload["best_detector"] in payload["detectors"]
    for extra in (["--protocol", "cross-family"], ["--degsim-shrink", "5"], ["--alpha", "0.1"]):
        assert main([*detect, *extra]) == 2
        assert "does not apply" in capsys.readouterr().err.splitlines()[0]
    assert main(detect[:-2]) == 2  # no --profiles
