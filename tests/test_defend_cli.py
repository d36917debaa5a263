"""``cfpoison defend`` end to end on the small synthetic set, and its one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from cfpoison.cli import main
from cfpoison.data.preprocess import PreprocessConfig, prepare
from cfpoison.data.profiles import write_profiles
from cfpoison.data.registry import load_dataset

REQUIRED = (
    "name",
    "rmse_shift",
    "rmse_shift_undefended",
    "rmse_shift_noise_floor",
    "test_rmse_clean",
    "test_rmse_clean_defended",
)
DATASET = "synthetic:small"


@pytest.fixture(scope="module")
def profiles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Ten fake users rating 60 random items at 5 stars, as `cfpoison attack` would write."""
    train, _ = prepare(load_dataset(DATASET), PreprocessConfig())
    rng = np.random.default_rng(3)
    cols = np.concatenate([rng.choice(train.n_items, 60, replace=False) for _ in range(10)])
    fake = sp.csr_array(
        (np.full(len(cols), 2.0), (np.repeat(np.arange(10), 60), cols)), shape=(10, train.n_items)
    )
    path = tmp_path_factory.mktemp("profiles") / "push.csv"
    write_profiles(path, fake, train)
    return path


def run(args: list[str]) -> int:
    return main(["defend", "--dataset", DATASET, "--threads", "1", "--rank", "5", *args])


def test_defend_writes_every_required_number(
    profiles: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, report = tmp_path / "defend.json", tmp_path / "report"
    code = run(
        [
            "--profiles",
            str(profiles),
            "--defense",
            "detect_remove:detector=rdma",
            "--defense",
            "bagging:bags=2",
            "--defense",
            "trimmed:fraction=0",
            "--fpr",
            "0.05",
            "--json",
            str(out),
            "--report",
            str(report),
        ]
    )
    assert code == 0
    assert "detect_remove[rdma,fpr=0.05,reference]" in capsys.readouterr().out
    payload = json.loads(out.read_text())
    rows = payload["defenses"]
    assert [r["attack"] for r in rows] == ["push"] * 3
    for row in rows:
        assert all(isinstance(row[key], str | float) for key in REQUIRED), row
    caught = rows[0]
    assert caught["removed_fake"] == 10 and caught["removed_real_fraction"] <= 0.1
    assert caught["config"] == {
        "name": "detect_remove",
        "detector": "rdma",
        "fpr": 0.05,
        "calibration": "reference",
    }
    assert rows[2]["rmse_shift"] == pytest.approx(rows[2]["rmse_shift_undefended"])
    assert (report / "defenses.md").read_text().count("| push |") == 3
    assert (report / "cost-benefit.png").stat().st_size > 0


def test_defend_grid_generates_the_attacks(tmp_path: Path) -> None:
    out = tmp_path / "grid.json"
    args = ["--grid", "uniform,average", "--alpha", "0.05", "--items-per-user", "30"]
    code = run([*args, "--defense", "huber:iterations=1", "--json", str(out), "--quiet"])
    assert code == 0
    payload = json.loads(out.read_text())
    assert [r["attack"] for r in payload["defenses"]] == ["uniform", "average"]
    assert [c["method"] for c in payload["attack_configs"]] == ["uniform", "average"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--fpr", "1.5"], "fpr must be in [0, 1)"),
        (["--defense", "shield"], "unknown defense 'shield'"),
        (["--defense", "bagging:bags=0"], "bags must be >= 1"),
        (["--defense", "bagging:colour=red"], "unknown field(s) colour"),
        (["--learner", "nuclear"], "use --learner als"),
    ],
)
def test_bad_settings_are_one_line_errors(
    profiles: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    out = tmp_path / "never.json"
    assert run(["--profiles", str(profiles), *extra, "--json", str(out)]) == 2  # bad settings
    first, second = capsys.readouterr().err.strip().split("\n")
    assert first.startswith("cfpoison defend: error:") and message in first
    assert second == "Try 'cfpoison defend --help'."
    assert not out.exists()


@pytest.mark.parametrize(
    ("line", "message"),
    [("1,5,5", "is a real user"), ("999999,123456789,5", "is not an item")],
)
def test_unknown_profile_ids_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str, message: str
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(f"userId,movieId,rating\n{line}\n")
    out = tmp_path / "never.json"
    assert run(["--profiles", str(bad), "--json", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("cfpoison: error:") and message in err and "\n" not in err
    assert not out.exists()


def test_profiles_or_grid_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run([])
    assert exit_info.value.code == 2
    assert "--profiles" in capsys.readouterr().err


def test_defend_evade_adds_the_projected_attack(profiles: Path, tmp_path: Path) -> None:
    out = tmp_path / "evade.json"
    args = ["--profiles", str(profiles), "--evade", "rdma", "--defense", "detect_remove"]
    assert run([*args, "--json", str(out), "--quiet"]) == 0
    payload = json.loads(out.read_text())
    assert [r["attack"] for r in payload["defenses"]] == ["push", "push~evade-rdma"]
    assert payload["evasions"][0]["detector"] == "rdma"


def test_defend_learned_detector_from_a_labelled_sample(
    profiles: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "learned.json"
    args = ["--profiles", str(profiles), "--defense", "detect_remove:detector=learned"]
    assert run(args) == 2
    assert "needs --learned-from" in capsys.readouterr().err
    assert run([*args, "--learned-from", str(profiles), "--json", str(out), "--quiet"]) == 0
    row = json.loads(out.read_text())["defenses"][0]
    assert row["name"].startswith("detect_remove[learned") and row["removed_fake"] == 10


def test_a_defense_that_moves_the_model_further_says_so() -> None:
    """ALS-WR once printed "removed -1017%": a negative share is a larger shift, said so."""
    from cfpoison.defend.report import _removed

    row = {
        "shift_removed": -10.17,
        "rmse_shift": 0.55,
        "rmse_shift_undefended": 0.05,
        "rmse_shift_noise_floor": 0.01,
    }
    assert _removed(row) == "none: shift 11.0x undefended"
    assert _removed({**row, "shift_removed": 0.5, "rmse_shift": 0.03}) == "50%"
