"""``cfpoison detect`` and the t-tests on ml-latest-small (real data, run in CI)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from cfpoison.cli import main
from cfpoison.data.profiles import write_profiles
from cfpoison.data.ratings import Ratings
from cfpoison.detect import rating_frequency_ttest


def uniform_profiles(ratings: Ratings, n_fake: int, budget: int, seed: int) -> sp.csr_array:
    """PGA's random-item pattern: B items uniformly at random per fake user, random ratings."""
    rng = np.random.default_rng(seed)
    cols = np.concatenate(
        [rng.choice(ratings.n_items, budget, replace=False) for _ in range(n_fake)]
    )
    rows = np.repeat(np.arange(n_fake), budget)
    values = rng.choice([-2.0, -1.0, 0.0, 1.0, 2.0], len(cols))
    fake = sp.csr_array((values, (rows, cols)), shape=(n_fake, ratings.n_items))
    fake.sort_indices()
    return fake


@pytest.mark.slow
def test_detect_command_on_ml_latest_small(
    ml_small: Ratings, movielens_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    profiles = tmp_path / "fakes.csv"
    write_profiles(profiles, uniform_profiles(ml_small, 19, 100, seed=0), ml_small)
    out = tmp_path / "detect.json"
    code = main(
        [
            "detect",
            "--dataset",
            "ml-latest-small",
            "--profiles",
            str(profiles),
            "--data-dir",
            str(movielens_dir),
            "--offline",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "rdma" in printed and "t-test (paper)" in printed
    report = json.loads(out.read_text())
    assert report["n_normal"] == 610 and report["n_fake"] == 19
    assert len(report["fake_user_ids"]) == 19 and min(report["fake_user_ids"]) > 610
    assert report["detectors"]["rdma"]["auc"] > 0.95  # rare random items, far from their means
    assert report["ttest_pvalue"] < 0.05
    assert report["ttest_users"]["pvalue"] < 0.05
    assert report["config"]["degsim_k"] == 10
    # two-sided verdicts, the learned detector and the distribution tests
    assert "learned detector: AUC" in printed and "distribution tests" in printed
    assert report["detectors"]["rdma"]["auc_two_sided"] == report["detectors"]["rdma"]["auc"]
    assert report["learned"]["auc_two_sided"] > 0.9 and len(report["learned"]["fold_aucs"]) == 5
    assert report["best_auc_two_sided"] > 0.95
    tests = report["distribution"]
    assert set(tests) == {"length", "rating_histogram", "item_popularity"}
    assert tests["length"]["pvalue"] < 1e-4  # every fake rates exactly 100 items
    assert tests["item_popularity"]["pvalue"] < 1e-6  # uniformly random items are obscure


def test_detect_command_errors(
    ml_small: Ratings, movielens_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("userId,movieId,rating\n1,1,4.0\n")  # user 1 is a real user
    args = ["detect", "--dataset", "ml-latest-small", "--data-dir", str(movielens_dir)]
    assert main([*args, "--offline", "--profiles", str(bad)]) == 1
    assert "real user" in capsys.readouterr().err
    fine = tmp_path / "fine.csv"
    write_profiles(fine, uniform_profiles(ml_small, 3, 10, seed=1), ml_small)
    assert main([*args, "--offline", "--profiles", str(fine), "--degsim-k", "0"]) == 2
    assert "DegSim k" in capsys.readouterr().err
    assert main([*args, "--offline", "--profiles", str(fine), "--folds", "1"]) == 2
    assert "folds" in capsys.readouterr().err


def test_ttests_on_ml_latest_small(ml_small: Ratings) -> None:
    """What each t-test separates at alpha = 3% (m' = 19), B = 100 (the numbers in ttest.py)."""
    uniform = uniform_profiles(ml_small, 19, 100, seed=2)
    assert rating_frequency_ttest(ml_small, uniform, "items").pvalue < 1e-10
    assert rating_frequency_ttest(ml_small, uniform, "users").pvalue < 1e-10
    rng = np.random.default_rng(3)
    held_p, item_p = [], []
    for _ in range(10):  # real users held out of the normal set: the null hypothesis holds
        held = rng.choice(ml_small.n_users, 19, replace=False)
        keep = np.setdiff1d(np.arange(ml_small.n_users), held)
        rest = ml_small.with_matrix(ml_small.matrix[keep], user_ids=ml_small.user_ids[keep])
        real = sp.csr_array(ml_small.matrix[held])
        held_p.append(rating_frequency_ttest(rest, real, "users").pvalue)
        item_p.append(rating_frequency_ttest(rest, real, "items").pvalue)
    assert np.median(held_p) > 0.2 and np.mean(np.array(held_p) < 0.05) <= 0.2
    # the item-paired test measures activity: it rejects most sets of real users too
    assert np.mean(np.array(item_p) < 0.05) >= 0.5
