"""``cfpoison evaluate --victims`` end to end on a tiny synthetic set, and the transfer math."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from cfpoison.cli import main
from cfpoison.data.preprocess import PreprocessConfig, prepare
from cfpoison.data.profiles import write_profiles
from cfpoison.data.registry import load_dataset
from cfpoison.models.measures import FLOOR_RESOLUTION, rmse_shift
from cfpoison.victims import TransferConfig, VictimSpec, build_victim, evaluate_transfer
from cfpoison.victims.report import markdown, text_table

DATASET = "synthetic:small"
TARGET = 0  # column of the pushed item


def profiles(tmp_path: Path) -> tuple[Path, Path, int]:
    """A push file (every fake rates the target 5 stars, random fillers) and a uniform one."""
    train, _ = prepare(load_dataset(DATASET), PreprocessConfig(seed=0))
    rng = np.random.default_rng(0)
    m_fake, per_user = 6, 40
    rows = np.repeat(np.arange(m_fake), per_user)
    others = np.arange(1, train.n_items)  # every push profile rates the target, 5 stars
    cols = np.concatenate(
        [[TARGET, *rng.choice(others, per_user - 1, replace=False)] for _ in range(m_fake)]
    )
    push = np.where(cols == TARGET, 2.0, rng.uniform(-2, 2, len(rows)))
    push_matrix = sp.csr_array((push, (rows, cols)), shape=(m_fake, train.n_items))
    uniform = sp.csr_array((rng.uniform(-2, 2, len(rows)), (rows, cols)), (m_fake, train.n_items))
    push_path, uniform_path = tmp_path / "push.csv", tmp_path / "uniform.csv"
    write_profiles(push_path, push_matrix, train)
    write_profiles(uniform_path, uniform, train)
    return push_path, uniform_path, int(train.item_ids[TARGET])


def test_evaluate_victims_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    push, uniform, target = profiles(tmp_path)
    panel = tmp_path / "panel.toml"
    panel.write_text(
        '[[victims]]\nname = "als"\nmodel = "als"\nparams = { threads = 1 }\n\n'
        '[[victims]]\nname = "als-split"\nmodel = "als"\nsplit_offset = 1\n'
        "params = { threads = 1, rank = 5 }\n\n"
        '[[victims]]\nname = "biased"\nmodel = "biased"\nparams = { threads = 1 }\n\n'
        '[[victims]]\nname = "cmf"\nmodel = "cmfrec"\noptional = true\n'
        "params = { nthreads = 1, k = 5 }\n"
    )
    out, report = tmp_path / "out.json", tmp_path / "report"
    argv = ["evaluate", "--dataset", DATASET, "--profiles", str(push), "--baseline", str(uniform)]
    argv += ["--victims", str(panel), "--target", str(target), "--threads", "1"]
    argv += ["--json", str(out), "--report", str(report)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert (
        "shift/floor" in text
        and "p vs uniform" in text
        and "shift / uniform's" in text
        and "exact over all unseen" in text
    )
    payload = json.loads(out.read_text())
    assert payload["attacks"] == ["push", "uniform"] and payload["baseline"] == "uniform"
    assert payload["targets"] == [target] and payload["config"]["seeds"] == [1, 2, 3]
    rows = {(r["victim"], r["attack"]): r for r in payload["rows"]}
    names = {v["name"] for v in payload["victims"] if "skipped" not in v}
    assert {"als", "als-split", "biased"} <= names
    for name in names:
        pushed, base = rows[(name, "push")], rows[(name, "uniform")]
        assert pushed["push"] > base["push"] + 0.05  # every fake rates the target 5 stars
        assert pushed["hit_after"] >= pushed["hit_before"]
        assert pushed["floor"] > 0
        if pushed["floor"] >= FLOOR_RESOLUTION:
            assert pushed["ratio"] == pytest.approx(pushed["shift"] / pushed["floor"])
        else:  # every seed reaches the same optimum: no floor to compare with
            assert pushed["ratio"] is None
        assert 0 <= pushed["p_push"] <= 1 and "p_shift" not in base
        assert pushed["shift_vs_baseline"] == pytest.approx(pushed["shift"] / base["shift"])
        assert pushed["shift_ci"] >= 0
    assert {p.name for p in report.iterdir()} == {"transfer.md", "transfer.png", "transfer.json"}
    assert "| als | push |" in (report / "transfer.md").read_text()


def test_without_victims_the_new_options_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    push, uniform, _ = profiles(tmp_path)
    base = ["evaluate", "--dataset", DATASET, "--profiles", str(push)]
    with pytest.raises(SystemExit) as err:
        main([*base, "--baseline", str(uniform)])
    assert err.value.code == 2 and "--baseline needs --victims" in capsys.readouterr().err
    with pytest.raises(SystemExit) as err:
        main([*base, str(uniform)])
    assert err.value.code == 2


def test_transfer_pairs_seeds_and_reports_unconverged_fits() -> None:
    train, test = prepare(load_dataset(DATASET), PreprocessConfig(seed=0))
    spec = VictimSpec("capped", "als", {"max_sweeps": 2, "threads": 1})
    fake = sp.csr_array(([2.0, 2.0], ([0, 1], [TARGET, TARGET])), shape=(2, train.n_items))
    result = evaluate_transfer(
        lambda offset: (train, test),
        [spec, VictimSpec("gone", "cmfrec")],
        {"a": fake, "b": fake},
        np.array([TARGET]),
        TransferConfig(seeds=(4, 5, 6)),
        skipped={"gone": "victim 'gone' needs cmfrec"},
        baseline="b",
    )
    capped = result.victims[0]
    assert capped.fits == 9 and capped.unconverged == 9
    clean = [build_victim(spec, s).fit(train) for s in (4, 5, 6)]
    floors = [rmse_shift(train.matrix, clean[(i + 1) % 3], clean[i]) for i in range(3)]
    assert capped.clean is not None
    np.testing.assert_allclose(capped.clean.shift, floors, rtol=1e-10)
    row = result.summary(capped, "a")
    assert np.isnan(row["p_shift"])  # identical files: the paired differences are all 0
    table = text_table(result)
    assert "NOT CONVERGED capped: 9 of 9 fits" in table and "skipped gone:" in table
    assert "NOT CONVERGED" in markdown(result)
    assert json.dumps(result.to_dict(), allow_nan=True)


def test_victim_fits_in_worker_processes_give_the_same_numbers(tmp_path: Path) -> None:
    """``--workers 2`` spreads the fits over two spawned processes (one numba thread each);
    every row and every per-seed measure equals the in-process run's to the last bit."""
    push, uniform, target = profiles(tmp_path)
    panel = tmp_path / "panel.toml"
    panel.write_text(
        '[[victims]]\nname = "als"\nmodel = "als"\n\n'
        '[[victims]]\nname = "biased"\nmodel = "biased"\nsplit_offset = 1\n'
    )
    payloads = []
    for workers in ("1", "2"):
        out = tmp_path / f"workers{workers}.json"
        argv = ["evaluate", "--dataset", DATASET, "--profiles", str(push), str(uniform)]
        argv += ["--victims", str(panel), "--target", str(target), "--workers", workers]
        assert main([*argv, "--quiet", "--json", str(out)]) == 0
        payloads.append(json.loads(out.read_text()))
    serial, parallel = payloads
    assert (serial["workers"], parallel["workers"]) == (1, 2)
    assert serial["rows"] == parallel["rows"]
    for a, b in zip(serial["victims"], parallel["victims"], strict=True):
        assert a["clean"] == b["clean"] and a["attacks"] == b["attacks"]


def test_workers_must_be_a_count(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    push, _, _ = profiles(tmp_path)
    argv = ["evaluate", "--dataset", DATASET, "--profiles", str(push), "--victims", "default"]
    with pytest.raises(SystemExit) as err:
        main([*argv, "--workers", "-1"])
    assert err.value.code == 2 and "expected an integer >= 0, got '-1'" in capsys.readouterr().err


@pytest.mark.parametrize("wait", [0.0, 3.0])
def test_sigterm_stops_the_worker_processes_at_once(tmp_path: Path, wait: float) -> None:
    """SIGTERM while the workers start (``wait`` 0) or fit (3 s): exit 143 within seconds and
    no worker left running (before, the interpreter's exit waited for every fit already
    queued: 218 s on ml-latest-small)."""
    push, _, target = profiles(tmp_path)
    panel = tmp_path / "slow.toml"  # fits that run for minutes: 10^6 sweeps, no tolerance
    panel.write_text(
        '[[victims]]\nname = "slow"\nmodel = "als"\n'
        "params = { max_sweeps = 1000000, kkt_tol = 0.0, tol = 0.0 }\n"
    )
    command = [sys.executable, "-c", "from cfpoison.cli import main; raise SystemExit(main())"]
    command += ["evaluate", "--dataset", DATASET]
    command += ["--profiles", str(push), "--victims", str(panel), "--target", str(target)]
    run = subprocess.Popen([*command, "--workers", "2"], stderr=subprocess.PIPE, text=True)
    assert run.stderr is not None
    workers: list[int] = []
    try:
        seen = ""
        while "victims:" not in seen:  # the bar is up: the workers are starting
            char = run.stderr.read(1)
            assert char, seen
            seen += char
        time.sleep(wait)
        workers = _children(run.pid)
        if wait:
            assert len(workers) >= 2, workers
        start = time.monotonic()
        run.send_signal(signal.SIGTERM)
        _, rest = run.communicate(timeout=60)
        assert run.returncode == 128 + signal.SIGTERM, seen + rest
        assert time.monotonic() - start < 20
        time.sleep(1)
        assert not [pid for pid in workers if _running(pid)]
    finally:  # a failure leaves nothing running behind (minutes-long fits)
        for pid in [run.pid, *workers]:
            if _running(pid):
                os.kill(pid, signal.SIGKILL)


def _running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie (dead, waiting to be reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _children(pid: int) -> list[int]:
    """The process ids whose parent is ``pid`` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found
