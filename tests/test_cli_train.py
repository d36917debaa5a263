"""``cfpoison train`` end to end: real ml-latest-small for ALS, the built-in set for nuclear."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cfpoison.cli import main


def test_train_als_on_movielens(
    movielens_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "als.json"
    args = ["train", "--dataset", "ml-latest-small", "--data-dir", str(movielens_dir)]
    assert main([*args, "--offline", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["users"] == 610 and report["items"] == 9724
    assert report["ratings_train"] + report["ratings_test"] == 100836
    assert 0.85 <= report["rmse_test"] <= 0.95  # a sensible model on the star scale
    assert report["rmse_train"] < report["rmse_test"]
    assert report["converged"] and report["sweeps"] == len(report["history"])
    assert report["rank"] == 10 and report["config"]["name"] == "als"
    assert report["kkt_residual"] < 1e-2
    for key in ("objective", "seconds", "preprocess", "steps"):
        assert key in report
    assert "test" in capsys.readouterr().out


def test_train_nuclear_reports_its_certificate(tmp_path: Path) -> None:
    out = tmp_path / "nuclear.json"
    args = ["--quiet", "train", "--dataset", "synthetic:small", "--learner", "nuclear"]
    assert main([*args, "--lambda", "12", "--seed", "3", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["learner"] == "nuclear" and report["config"]["lam"] == 12.0
    assert report["certificate"]["ok"]
    assert report["spectral_ratio"] <= 1 + report["config"]["certificate_tol"]
    assert report["relative_gap"] <= report["config"]["certificate_tol"]
    assert report["gap"] >= 0 and report["rank"] >= 1
    assert report["preprocess"]["seed"] == 3


@pytest.mark.parametrize(
    "flags",
    [
        ["--learner", "als", "--lambda", "3"],
        ["--learner", "nuclear", "--lambda-u", "3"],
        ["--lambda-u", "-1"],
    ],
)
def test_usage_errors_exit_2(flags: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["train", "--dataset", "synthetic:small", *flags])
    assert exc.value.code == 2
    assert "cfpoison train: error" in capsys.readouterr().err


def test_bad_config_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--dataset", "synthetic:small", "--rank", "0"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("cfpoison: error:") and "rank" in err and "\n" not in err
