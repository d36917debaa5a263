"""``cfpoison attack`` and ``cfpoison evaluate`` end to end on ml-latest-small."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cfpoison.cli import main
from cfpoison.data.ratings import Ratings

COMMON = ["--dataset", "ml-latest-small", "--rank", "5", "--seed", "2", "--threads", "1"]


def test_attack_writes_profiles_and_json_that_evaluate_reproduces(
    movielens_dir: Path, ml_small: Ratings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    profiles, report = tmp_path / "fake.csv", tmp_path / "attack.json"
    argv = [
        "--quiet",
        "attack",
        *COMMON,
        "--data-dir",
        str(movielens_dir),
        "--method",
        "pga",
        "--alpha",
        "0.01",
        "--items-per-user",
        "30",
        "--mu1",
        "1",
        "--mu2",
        "1",
        "--iterations",
        "2",
        "--profiles",
        str(profiles),
        "--json",
        str(report),
    ]
    assert main(argv) == 0
    payload = json.loads(report.read_text())
    for key in (
        "rmse_shift",
        "rmse_shift_noise_floor",
        "targets",
        "target_mean_before",
        "target_mean_after",
        "utility_history",
        "seconds",
        "ttest_pvalue",
        "ttest_users_pvalue",
        "config",
        "rmse_train",
        "rmse_test",
    ):
        assert key in payload, key
    assert payload["config"]["threat"]["items_per_user"] == 30
    assert payload["config"]["learner"]["rank"] == 5

    lines = profiles.read_text().splitlines()
    assert lines[0] == "userId,movieId,rating"
    rows = np.array([[float(x) for x in line.split(",")] for line in lines[1:]])
    users, counts = np.unique(rows[:, 0], return_counts=True)
    assert len(users) == 7 and np.all(counts == 30)  # ceil(0.01 * 610) fake users, B each
    assert users.min() > ml_small.user_ids.max()
    assert np.all(np.isin(rows[:, 1], ml_small.item_ids))
    assert np.all(ml_small.scale.contains(rows[:, 2]))

    evaluated = tmp_path / "evaluate.json"
    argv = ["--quiet", "evaluate", *COMMON, "--data-dir", str(movielens_dir)]
    argv += ["--profiles", str(profiles), "--json", str(evaluated)]
    assert main(argv) == 0
    again = json.loads(evaluated.read_text())
    assert again["targets"] == payload["targets"]
    for key in ("rmse_shift", "rmse_shift_noise_floor", "target_mean_after", "ttest_pvalue"):
        assert again[key] == pytest.approx(payload[key], rel=1e-9), key


def test_attack_reports_impossible_budgets_in_one_line(
    movielens_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["attack", *COMMON, "--data-dir", str(movielens_dir), "--items-per-user", "100000"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("cfpoison: error:") and "exceeds" in err and "\n" not in err


def test_attack_help_and_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["attack", "--help"])
    assert exit_info.value.code == 0
    assert "--items-per-user" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["attack", "--dataset", "x", "--target", "1,a"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:
        main(["attack", "--dataset", "x", "--method", "pga", "--beta", "0.6"])
    assert exit_info.value.code == 2
