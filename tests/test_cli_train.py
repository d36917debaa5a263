"""``cfpoison train`` end to end: real ml-latest-small for ALS, the built-in set for nuclear."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cfpoison.cli import main
from cfpoison.data.preprocess import PreprocessConfig, prepare
from cfpoison.data.registry import load_dataset
from cfpoison.learners import NuclearConfig, NuclearNormLearner


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
    # history: the accepted sweeps; sweeps also counts the Anderson extrapolations discarded
    assert report["converged"] and report["sweeps"] >= len(report["history"]) > 1
    assert report["rank"] == 10 and report["config"]["name"] == "als"
    assert report["kkt_residual"] <= report["config"]["kkt_tol"] == 1e-5
    for key in ("objective", "seconds", "preprocess", "steps"):
        assert key in report
    assert "test" in capsys.readouterr().out


def test_train_nuclear_reports_its_certificate(tmp_path: Path) -> None:
    out = tmp_path / "nuclear.json"
    args = ["--quiet", "train", "--dataset", "synthetic:small", "--learner", "nuclear"]
    assert main([*args, "--lambda", "12", "--seed", "3", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["learner"] == "nuclear" and report["config"]["lam"] == 12.0
    assert report["certificate"]["ok"] and report["rank"] >= 1
    assert report["preprocess"]["seed"] == 3
    # The same fit, and its certificate recomputed densely. The duality gap is clamped at 0
    # in the code, so a wrong dual value (one above the primal) shows only here.
    preprocess = PreprocessConfig.from_dict(report["preprocess"])
    train, _ = prepare(load_dataset("synthetic:small"), preprocess)
    learner = NuclearNormLearner(NuclearConfig.from_dict(report["config"])).fit(train)
    assert learner.certificate() == report["certificate"]
    lam = report["config"]["lam"]
    observed = train.matrix.copy()
    observed.data = np.ones_like(observed.data)
    mask = observed.toarray() > 0
    target = train.matrix.toarray()
    x = learner.user_factors @ learner.item_factors.T
    residual = np.where(mask, target - x, 0.0)
    spectral = np.linalg.norm(residual, 2)
    objective = np.sum(residual**2) + 2 * lam * np.linalg.svd(x, compute_uv=False).sum()
    shrink = min(1.0, lam / spectral)
    dual = shrink * np.sum(residual * target) - 0.5 * shrink**2 * np.sum(residual**2)
    gap = objective - 2 * dual  # weak duality: >= 0 for every dual-feasible point
    assert report["objective"] == pytest.approx(objective, rel=1e-9)
    assert report["spectral_ratio"] == pytest.approx(spectral / lam, rel=1e-6)
    assert 0 < gap <= report["config"]["certificate_tol"] * objective
    assert report["gap"] == pytest.approx(gap, rel=1e-3, abs=1e-9 * objective)
    assert report["relative_gap"] == pytest.approx(report["gap"] / objective, rel=1e-9)


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
    assert main(["train", "--dataset", "synthetic:small", "--rank", "0"]) == 2  # a bad setting
    first, second = capsys.readouterr().err.strip().split("\n")
    assert first.startswith("cfpoison train: error:") and "rank" in first
    assert second == "Try 'cfpoison train --help'."
