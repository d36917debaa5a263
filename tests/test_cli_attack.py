"""``cfpoison attack`` and ``cfpoison evaluate`` end to end on ml-latest-small."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from cfpoison.attacks.engine import AttackConfig, attack_settings
from cfpoison.cli import build_parser, main
from cfpoison.cli._options import flags_of
from cfpoison.cli.attack import attack_config, result_text
from cfpoison.data.ratings import Ratings
from cfpoison.experiments.attack_runner import RUNNER
from cfpoison.learners import NuclearConfig

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
    assert payload["ttest_data"].startswith("train split (90% of each user's ratings")
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
    assert again["ttest_data"] == payload["ttest_data"]


def test_attack_reports_impossible_budgets_in_one_line(
    movielens_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["attack", *COMMON, "--data-dir", str(movielens_dir), "--items-per-user", "100000"]
    assert main(argv) == 2  # a bad setting (BudgetError is a ConfigError)
    first, second = capsys.readouterr().err.strip().split("\n")
    assert first.startswith("cfpoison attack: error:") and "exceeds" in first
    assert second == "Try 'cfpoison attack --help'."


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


def _payload(**extra: object) -> dict[str, object]:
    return {
        "dataset": "d",
        "n_fake": 2,
        "rmse_shift": 0.1,
        "rmse_shift_noise_floor": 0.01,
        "targets": [],
        "target_mean_before": [],
        "target_mean_after": [],
        "rmse_train": 0.9,
        "ttest_pvalue": 0.2,
        "seconds": 1.0,
        **extra,
    }


def test_result_text_reports_the_final_utility_and_labels_the_method_record() -> None:
    pga = result_text(
        _payload(
            method="pga",
            utility=2.5,
            utility_clean=1.0,
            utility_history=[1.0, 3.0, 3.5],
            info={"best_utility": 3.5},
            ttest_data="train split (x)",
        )
    )
    assert "t-test (paper) p = 0.2 on the train split (x)" in pga
    assert "1 clean -> 2.5 with the final profiles (rounded, retrained)" in pga
    assert "pga iterates 1 -> 3.5 (best 3.5, 2 steps, before rounding)" in pga
    sgld = result_text(
        _payload(
            method="sgld",
            utility=2.0,
            utility_clean=1.0,
            utility_history=[1.0, 9.0, 0.5, 7.0],  # two chains, joined: never printed
            info={"best_utility": 2.25, "candidates": [{}, {}, {}]},
        )
    )
    assert "sgld's best of 3 candidates 2.25 (projected, retrained)" in sgld
    assert "9" not in sgld.split("utility", 1)[1] and "iterates" not in sgld
    assert "utility" not in result_text(_payload())  # evaluate: no utility configured


def test_result_text_says_when_the_noise_floor_is_unresolved() -> None:
    assert "seed-noise floor 0.0100\n" in result_text(_payload())
    text = result_text(_payload(rmse_shift_noise_floor=2e-6))
    assert "seed-noise floor 0.0000, unresolved (< 1e-3): the seeds' clean fits agree" in text


def _attack_args(flags: list[str]) -> AttackConfig:
    parser = build_parser()
    args = parser.parse_args(["attack", "--dataset", "x", *flags])
    return attack_config(args, parser)


def test_every_sweep_setting_of_an_attack_is_a_flag_giving_the_same_config() -> None:
    """One source: `cfpoison attack --NAME V` and a sweep's `NAME = V` build the same config."""
    values = {  # settings that pga reads together (a flag it would ignore is refused)
        "method": "pga",
        "alpha": 0.05,
        "items_per_user": 7,
        "max_rating": 1.5,
        "item_selection": "greedy",
        "mu1": 0.5,
        "mu2": -1.0,
        "targets": (1, 50),
        "weights": (2.0, 3.0),
        "gradient": "exact",
        "iterations": 3,
        "step_schedule": "constant",
        "step_size": 0.5,
        "tol": 0.01,
        "solve_tol": 1e-4,
        "solve_max_iter": 9,
        "snap": False,
        "seed": 4,
        "learner": "nuclear",
        "learner.rank": 3,
        "learner.lam": 5.0,
        "learner.max_sweeps": 50,
    }
    flags: list[str] = []
    for name, value in values.items():
        setting = attack_settings()[name]
        if setting.hint is bool:
            flags.append(f"--{'' if value else 'no-'}{name}")
            continue
        text = ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
        flags += [flags_of(setting)[0], text]
    assert _attack_args(flags).to_dict() == RUNNER.normalize(values)["attack"]


def test_short_flags_and_derived_flags_agree() -> None:
    assert _attack_args(["--items", "greedy"]) == _attack_args(["--item-selection", "greedy"])
    integrity = ["--mu1", "0", "--mu2", "1"]
    assert _attack_args(["--target", "5", *integrity]) == _attack_args(
        ["--targets", "5", *integrity]
    )
    assert _attack_args(["--rank", "4"]) == _attack_args(["--learner.rank", "4"])
    nuclear = _attack_args(["--learner", "nuclear", "--max-sweeps", "30"]).learner
    assert isinstance(nuclear, NuclearConfig) and nuclear.max_sweeps == 30
    seeded = _attack_args(["--seed", "3", "--learner.seed", "8"])
    assert seeded.seed == 3 and seeded.learner.seed == 8


def test_every_attack_setting_has_a_flag() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    dests = {a.dest for a in sub.choices["attack"]._actions}
    assert set(attack_settings(skip=("options",))) <= dests


def test_the_summary_explains_the_final_utility_against_the_iterates() -> None:
    """Robust's iterates are a mean over surrogates, its final utility the attacked learner's
    alone: the summary says so, with the ratio (a 3.7x gap was once printed without a word)."""
    from cfpoison.cli.attack import _utility_lines

    payload = {
        "utility": 100.0,
        "utility_clean": 10.0,
        "method": "robust",
        "info": {"best_utility": 400.0},
        "utility_history": [10.0, 400.0],
    }
    last = _utility_lines(payload)[-1]
    assert "0.25x the last iterate" in last and "mean over the surrogates" in last
    assert "rounding" in _utility_lines({**payload, "method": "pga"})[-1]
