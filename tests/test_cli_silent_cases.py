"""The command line is never silent and never loses work: every case a user reported, as a
table of the command, its exit code, a fragment of its one-line message and what must not be
written.

Cases refused before any work run the real command; where a case must reach the work, the
work (``run_attack``) is replaced by :func:`reached`, which records the config and exits 99.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cfpoison.attacks import engine
from cfpoison.attacks.engine import AttackConfig, attack_context, available_methods, run_attack
from cfpoison.cli import attack as attack_cli
from cfpoison.cli import main
from cfpoison.cli._options import flags_of, value_parser
from cfpoison.data.preprocess import PreprocessConfig, filter_min_ratings, prepare
from cfpoison.data.registry import DATASETS, find_local, load_dataset
from cfpoison.errors import CfpoisonError, DataError
from cfpoison.io import atomic_write, write_json

SYNTHETIC = ["--dataset", "synthetic"]
#: Methods that take gradient (or Langevin) steps, and the one-shot baselines.
ITERATIVE = ("adaptive", "pga", "robust", "sgld")
BASELINES = ("average", "bandwagon", "random", "uniform")


class ReachedError(CfpoisonError):
    """Raised in place of the work: the command passed every check."""

    exit_code = 99


@pytest.fixture
def reached(monkeypatch: pytest.MonkeyPatch) -> list[AttackConfig]:
    """``attack`` reaches its work on a tiny split and records the config instead of running."""
    small = prepare(load_dataset("synthetic:small"), PreprocessConfig())
    configs: list[AttackConfig] = []

    def record(train: Any, config: AttackConfig, **_: Any) -> None:
        configs.append(config)
        raise ReachedError("reached the attack")

    monkeypatch.setattr(attack_cli, "load_from_args", lambda args, name: None)
    monkeypatch.setattr(attack_cli, "prepare", lambda raw, preprocess: small)
    monkeypatch.setattr(attack_cli, "run_attack", record)
    return configs


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Exit code and stderr of ``cfpoison ARGV`` (argparse's exits included)."""
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exit_info:
        code = int(exit_info.code or 0)
    return code, capsys.readouterr().err


def check_one_line(code: int, err: str, command: str) -> None:
    """Exit 2: ``cfpoison CMD: error: ...`` and the ``--help`` pointer; else one line."""
    lines = err.rstrip("\n").split("\n")
    if code == 2:
        assert len(lines) == 2, err
        assert lines[0].startswith(f"cfpoison {command}: error: "), err
        assert lines[1] == f"Try 'cfpoison {command} --help'."
    else:
        assert len(lines) == 1 and lines[0].startswith("cfpoison: error: "), err


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``folder`` with its size and modification time."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
    }


# -- item 1: a target that the method's utility ignores; item 2: zero iterations -----------

TARGET_CASES = [
    pytest.param(["--method", method, "--target", "89"], method, id=f"target-{method}")
    for method in available_methods()
]
ZERO_CASES = [
    pytest.param(["--method", method, "--iterations", "0"], method, id=f"zero-{method}")
    for method in ITERATIVE
]


@pytest.mark.parametrize(("flags", "method"), TARGET_CASES)
def test_a_target_the_utility_ignores_is_refused(
    flags: list[str],
    method: str,
    tmp_path: Path,
    reached: list[AttackConfig],
    capsys: pytest.CaptureFixture[str],
) -> None:
    profiles = tmp_path / "p.csv"
    code, err = run(["attack", *SYNTHETIC, *flags, "--profiles", str(profiles)], capsys)
    assert code == 2
    check_one_line(code, err, "attack")
    assert f"--target does not apply to --method {method}" in err
    assert "--mu1 0 --mu2 1" in err
    assert not profiles.exists()


@pytest.mark.parametrize("method", ["pga", "average", "bandwagon", "random"])
def test_an_integrity_attack_takes_the_target(
    method: str, reached: list[AttackConfig], capsys: pytest.CaptureFixture[str]
) -> None:
    flags = ["--method", method, "--mu1", "0", "--mu2", "1", "--target", "5"]
    assert run(["attack", *SYNTHETIC, *flags], capsys)[0] == 99
    assert reached[-1].utility.targets == (5,) and reached[-1].utility.mu2 == 1


def test_help_says_which_flags_make_an_integrity_attack(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["attack", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--mu1 0 --mu2 1" in help_text and "refused" in help_text


@pytest.mark.parametrize(("flags", "method"), ZERO_CASES)
def test_zero_iterations_need_allow_zero(
    flags: list[str], method: str, reached: list[AttackConfig], capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = run(["attack", *SYNTHETIC, *flags], capsys)
    assert code == 2
    check_one_line(code, err, "attack")
    if method == "sgld":  # SGLD's own config needs T >= 1: no --allow-zero for it
        assert "SGLD iterations must be >= 1, got 0" in err
    else:
        assert f"--iterations 0 runs no {method} step" in err and "--allow-zero" in err


def test_allow_zero_lets_pga_start_and_stop(
    reached: list[AttackConfig], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["attack", *SYNTHETIC, "--iterations", "0", "--allow-zero"], capsys)[0] == 99
    assert reached[-1].iterations == 0
    code, err = run(["attack", *SYNTHETIC, "--allow-zero"], capsys)
    assert code == 2 and "--allow-zero goes with --iterations 0 only" in err
    code, err = run(
        ["attack", *SYNTHETIC, "--method", "sgld", "--iterations", "0", "--allow-zero"], capsys
    )
    assert code == 2 and "SGLD iterations must be >= 1" in err  # SGLD cannot take 0 steps


# -- item 3: outputs checked before the work -------------------------------------------------


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A folder with an input profile file, a plain file and an empty result store."""
    (tmp_path / "p.csv").write_text("userId,movieId,rating\n100000,1,5\n")
    (tmp_path / "file.txt").write_text("not a folder\n")
    (tmp_path / "store.sqlite").write_bytes(b"")
    return tmp_path


P, FILE, NO = "{tmp}/p.csv", "{tmp}/file.txt", "{tmp}/no/such"
OUTPUT_CASES = [
    # (command line, exit code, message fragment)
    (["attack", *SYNTHETIC, "--profiles", "{tmp}/x.csv", "--json", "{tmp}/x.csv"], 2, "same path"),
    (["attack", *SYNTHETIC, "--profiles", f"{NO}/x.csv"], 1, "no such folder"),
    (["attack", *SYNTHETIC, "--json", "{tmp}"], 1, "is a folder"),
    (["train", *SYNTHETIC, "--json", f"{NO}/t.json"], 1, "no such folder"),
    (["gradcheck", *SYNTHETIC, "--json", "{tmp}"], 1, "is a folder"),
    (["evaluate", *SYNTHETIC, "--profiles", P, "--json", P], 2, "overwrite the input --profiles"),
    (["evaluate", *SYNTHETIC, "--profiles", P, "--victims", "default", "--report", FILE], 1,
     "exists and is not a folder"),
    (["detect", *SYNTHETIC, "--profiles", P, "--json", P], 2, "overwrite the input --profiles"),
    (["defend", *SYNTHETIC, "--profiles", P, "--report", FILE], 1, "is not a folder"),
    (["defend", *SYNTHETIC, "--profiles", f"x={P}", "--json", P], 2, "overwrite the input"),
    (["data", "info", "synthetic", "--json", f"{NO}/i.json"], 1, "no such folder"),
    (["data", "list", "--json", "{tmp}"], 1, "is a folder"),
    (["data", "info", f"csv:{P}", "--json", P], 2, "overwrite the input --dataset"),
    (["sweep", "run", "--out", FILE, "--set", "dataset=synthetic"], 1, "is not a folder"),
    (["sweep", "run", "--out", "{tmp}/o", "--set", "dataset=synthetic", "--json", "{tmp}/o"], 2,
     "same path"),
    (["sweep", "export", "{tmp}/store.sqlite", "--csv", "{tmp}/store.sqlite"], 2,
     "overwrite the input store"),
    (["sweep", "export", "{tmp}/store.sqlite", "--parquet", f"{NO}/x.parquet"], 1,
     "no such folder"),
    (["reproduce", "fig1", "--quick", "--out", FILE], 1, "is not a folder"),
    (["demo", "--out", FILE], 1, "is not a folder"),
    (["demo", "--out", "{tmp}/d", "--cache", "{tmp}/d"], 2, "same path"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "code", "fragment"),
    OUTPUT_CASES,
    ids=lambda v: "-".join(v[:2]) if isinstance(v, list) else None,
)
def test_outputs_are_checked_before_the_work(
    argv: list[str], code: int, fragment: str, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(workdir)
    got, err = run([a.replace("{tmp}", str(workdir)) for a in argv], capsys)
    assert got == code, err
    check_one_line(got, err, argv[0] if argv[0] not in ("data", "sweep") else " ".join(argv[:2]))
    assert fragment in err
    assert snapshot(workdir) == before  # nothing written, nothing half-written


def test_an_unwritable_folder_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    code, err = run(["train", *SYNTHETIC, "--json", str(tmp_path / "t.json")], capsys)
    assert code == 1 and "permission denied" in err
    assert list(tmp_path.iterdir()) == []


def test_atomic_writes_get_the_mode_open_would_give(tmp_path: Path) -> None:
    mask = os.umask(0o022)
    os.umask(mask)
    fresh = tmp_path / "report.json"
    write_json(fresh, {"a": 1})
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o666 & ~mask  # not mkstemp's 0o600
    kept = tmp_path / "kept.md"
    kept.write_text("old\n")
    kept.chmod(0o640)
    with atomic_write(kept) as handle:
        handle.write("new\n")
    assert stat.S_IMODE(kept.stat().st_mode) == 0o640 and kept.read_text() == "new\n"
    with pytest.raises(ZeroDivisionError), atomic_write(tmp_path / "half.md") as handle:
        handle.write("half")
        _ = 1 / 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.md", "report.json"]


# -- item 4: inputs that leave nothing to do -------------------------------------------------


@pytest.fixture
def sparse_csv(tmp_path: Path) -> Path:
    """Three users with two ratings each: none survives the >= 20 ratings filter."""
    path = tmp_path / "few.csv"
    rows = [f"{u},{i},{(u + i) % 5 + 1}" for u in (1, 2, 3) for i in (10, 20)]
    path.write_text("userId,movieId,rating\n" + "\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize("command", ["train", "attack"])
def test_a_filter_that_removes_every_user_says_so(
    command: str, sparse_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.json"
    code, err = run([command, "--dataset", f"csv:{sparse_csv}", "--json", str(out)], capsys)
    assert code == 1
    check_one_line(code, err, command)
    assert "all 3 users have fewer than 20 ratings" in err and "--min-user-ratings" in err
    assert not out.exists()


def test_an_attack_on_an_empty_data_set_says_why() -> None:
    emptied = filter_min_ratings(load_dataset("synthetic:small"), min_user=10_000)
    with pytest.raises(DataError, match="filter_min_ratings removed 200 users"):
        run_attack(emptied, AttackConfig(method="uniform"))


def test_an_empty_sweep_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec, out = tmp_path / "empty.toml", tmp_path / "out"
    spec.write_text("# nothing here\n")
    code, err = run(["sweep", "run", str(spec), "--out", str(out)], capsys)
    assert code == 2
    check_one_line(code, err, "sweep run")
    assert "no cells: the sweep file" in err and "defines no grid" in err
    assert not out.exists()
    code, err = run(["sweep", "run", "--out", str(out), "--dry-run"], capsys)
    assert code == 2 and "no cells: the command line" in err


@pytest.fixture
def official(movielens_dir: Path) -> Path:
    """ml-latest-small's official ratings.csv."""
    found = find_local(DATASETS["ml-latest-small"], movielens_dir)
    assert found is not None
    return found


@pytest.mark.parametrize("damage", ["truncate", "edit"])
def test_a_modified_movielens_copy_fails_loudly(
    damage: str, official: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "ml-latest-small" / "ratings.csv"
    copy.parent.mkdir()
    data = official.read_bytes()
    if damage == "truncate":  # cut at a line boundary: a readable file with fewer users
        data = data[: data.index(b"\n", len(data) // 2) + 1]
    else:  # same counts, one rating changed: only the checksum sees it
        data = data.replace(b"1,1,4.0,", b"1,1,3.0,", 1)
    copy.write_bytes(data)
    argv = ["data", "info", "ml-latest-small", "--data-dir", str(tmp_path), "--offline"]
    code, err = run(argv, capsys)
    assert code == 1
    check_one_line(code, err, "data info")
    assert "is not the official ml-latest-small" in err and "--accept-modified-data" in err
    code, err = run([*argv, "--accept-modified-data", "--quiet"], capsys)
    assert code == 0 and err == ""
    code, err = run([*argv, "--accept-modified-data"], capsys)
    assert code == 0 and err.count("WARNING") == 1 and "not the official" in err


def test_counts_unlike_the_official_release_fail_loudly(tmp_path: Path) -> None:
    own = tmp_path / "ml-100k"
    own.mkdir()
    (own / "u.data").write_text("1\t2\t3\t4\n2\t2\t5\t4\n")
    with pytest.raises(DataError, match="2 users, 1 items, 2 ratings; the official release has"):
        load_dataset("ml-100k", tmp_path, download=False)
    assert load_dataset("ml-100k", tmp_path, download=False, accept_modified=True).nnz == 2


def test_the_official_copy_reads_as_before(
    official: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copytree(official.parent, tmp_path / "ml-latest-small")
    argv = ["data", "info", "ml-latest-small", "--data-dir", str(tmp_path), "--offline"]
    assert run(argv, capsys) == (0, "")


# -- item 5: one-line usage errors, exit codes by class, flags a method does not read --------

USAGE_CASES = [
    (["attack", *SYNTHETIC, "--bogus"], 2, "unrecognized arguments: --bogus"),
    (["attack", "--bogus"], 2, "required: --dataset"),
    (["attack", *SYNTHETIC, "--alpha", "2"], 2, "expected a fraction"),
    (["attack", *SYNTHETIC, "--iterations", "-1"], 2, "iterations must be >= 0"),
    (["attack", *SYNTHETIC, "--method", "uniform", "--option", "chains=2"], 2, "no options"),
    (["attack", *SYNTHETIC, "--method", "sgld", "--option", "chainz=2"], 2, "chainz"),
    (["attack", *SYNTHETIC, "--gradient", "paper", "--solve-tol", "0.01"], 2, "no adjoint"),
    (["train", "--dataset", "synthetic:small", "--rank", "0"], 2, "rank"),
    (["data"], 2, "required"),
    (["demo", "--iterations", "0"], 2, "an integer >= 1"),
    (["defend", *SYNTHETIC, "--profiles", "p.csv", "--alpha", "0.1"], 2, "there is no --grid"),
    (["defend", *SYNTHETIC, "--grid", "uniform", "--iterations", "3"], 2, "no steps"),
    (["defend", *SYNTHETIC, "--grid", "pga", "--beta", "0.5"], 2, "SGLD option"),
    (["data", "info", "csv:{tmp}"], 1, "is a folder, not a ratings file"),
    (["train", *SYNTHETIC, "--data-dir", "{tmp}/nope"], 1, "--data-dir"),
    (["sweep", "run", "{tmp}", "--out", "{tmp}/o"], 2, "is a folder, not a sweep file"),
]


@pytest.mark.parametrize(("argv", "code", "fragment"), USAGE_CASES, ids=str)
def test_errors_are_one_line_with_the_class_exit_code(
    argv: list[str], code: int, fragment: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    got, err = run([a.replace("{tmp}", str(tmp_path)) for a in argv], capsys)
    assert got == code, err
    check_one_line(got, err, "sweep run" if argv[0] == "sweep" else argv[0])
    assert fragment in err
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_help_shows_percent_signs_once(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("evaluate", "demo", "reproduce"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = capsys.readouterr().out
        assert "%%" not in text and "%" in text, command


#: A valid value other than the default for each attack flag ("" for a switch: --no-FLAG).
VALUES = {
    "alpha": "0.05",
    "items_per_user": "7",
    "max_rating": "1.5",
    "item_selection": "rare",
    "mu1": "0.5",
    "mu2": "1",
    "mu3": "1",
    "targets": "5",
    "weights": "3",
    "rank_candidates": "10",
    "rank_temperature": "0.2",
    "gradient": "paper",
    "iterations": "3",
    "step_schedule": "constant",
    "step_size": "0.5",
    "step_direction": "vertex",
    "tol": "0.01",
    "solve_tol": "0.001",
    "solve_max_iter": "50",
    "snap": "",
}
STEPS = {
    "gradient",
    "iterations",
    "step_schedule",
    "step_size",
    "step_direction",
    "tol",
    "solve_tol",
    "solve_max_iter",
}
TARGETED = {"targets", "weights", "rank_candidates", "rank_temperature"}
#: What each method refuses when the flag is given alone (the defaults: mu2 = mu3 = 0).
REFUSED = {
    **{m: STEPS | TARGETED for m in BASELINES},
    "sgld": {"step_schedule", "step_size", "step_direction", "tol", "item_selection"} | TARGETED,
    **{m: TARGETED for m in ("pga", "robust", "adaptive")},
}


def _value_in(config: AttackConfig, path: str) -> Any:
    node: Any = config.to_dict()
    for part in path.split("."):
        node = node[part]
    return node


@pytest.mark.parametrize("method", available_methods())
def test_every_attack_flag_takes_effect_or_is_refused(
    method: str, reached: list[AttackConfig], capsys: pytest.CaptureFixture[str]
) -> None:
    assert set(VALUES) == set(attack_cli.ATTACK_SETTINGS) - {"method"}  # a new flag: add it
    assert method in REFUSED, f"a new method: list the flags {method} refuses in REFUSED"
    for name, text in VALUES.items():
        setting = attack_cli.ATTACK_SETTINGS[name]
        flag = flags_of(setting)[0]
        given = [f"--no-{flag.removeprefix('--')}"] if text == "" else [flag, text]
        code, err = run(["attack", *SYNTHETIC, "--method", method, *given], capsys)
        if name in REFUSED[method]:
            assert code == 2, (method, name)
            assert f"does not apply to --method {method}" in err, (method, name)
            check_one_line(code, err, "attack")
        else:
            assert code == 99, (method, name, err)
            expected = False if text == "" else value_parser(setting.hint)(text)
            got = _value_in(reached[-1], setting.path)
            assert got == (list(expected) if isinstance(expected, tuple) else expected), name


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--mu2", "1", "--target", "5", "--weights", "3"], {"targets": [5], "weights": [3.0]}),
        (
            ["--mu3", "1", "--rank-candidates", "10", "--rank-temperature", "0.2"],
            {"rank_candidates": 10, "rank_temperature": 0.2},
        ),
    ],
)
def test_targeted_flags_take_effect_with_their_utility(
    flags: list[str],
    expected: dict[str, Any],
    reached: list[AttackConfig],
    capsys: pytest.CaptureFixture[str],
) -> None:
    for method in available_methods():
        code, err = run(["attack", *SYNTHETIC, "--method", method, *flags], capsys)
        assert code == 99, (method, err)
        utility = reached[-1].to_dict()["utility"]
        assert {k: utility[k] for k in expected} == expected, method


@pytest.fixture(scope="module")
def small_train() -> Any:
    return prepare(load_dataset("synthetic:small"), PreprocessConfig())[0]


@pytest.mark.parametrize("method", BASELINES)
def test_what_a_baseline_refuses_it_indeed_ignores(method: str, small_train: Any) -> None:
    """Profiles of a baseline do not move with any step setting: refusing them is right."""
    base = AttackConfig(method=method, iterations=20)
    changed = base.replace(
        gradient="paper",
        iterations=3,
        step_schedule="constant",
        step_size=0.5,
        tol=0.01,
        solve_tol=0.001,
        solve_max_iter=50,
    )
    fakes = []
    for config in (base, changed):
        ctx = attack_context(small_train, config)
        fakes.append(engine.get_method(method)(ctx).fake)
    assert (fakes[0] != fakes[1]).nnz == 0
    assert np.array_equal(fakes[0].indptr, fakes[1].indptr)


# -- item 6 is tests/contracts.py itself (class-scoped fixtures as classmethods) -------------
