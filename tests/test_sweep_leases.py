"""Cell leases: runners sharing a store compute each cell once; stale leases are taken over."""

from __future__ import annotations

import collections
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cfpoison.experiments.sweeps.execute import run_cells
from cfpoison.experiments.sweeps.leases import Leases, lease_folder
from cfpoison.experiments.sweeps.runners import cells_of
from cfpoison.experiments.sweeps.spec import SweepSpec
from cfpoison.experiments.sweeps.store import ResultStore
from experiments_fakes import expected_metrics

FAKE = "experiments_fakes:RUNNER"
TESTS = Path(__file__).parent
CLI = "import sys; from cfpoison.cli import main; sys.exit(main())"


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_lease_is_exclusive_released_and_kept_fresh(tmp_path) -> None:
    with Leases(tmp_path, expiry=0.4) as one, Leases(tmp_path, expiry=0.4) as two:
        assert one.acquire("k") and not two.acquire("k") and not two.claim("k")
        record = two.holder("k")
        assert record is not None
        assert record["runner"] == one.runner and record["pid"] == os.getpid()
        assert {"host", "time"} <= set(record)
        time.sleep(1.0)  # over twice the expiry: the holder's refreshes keep it fresh
        assert not two.stale("k") and not two.claim("k")
        two.release("k")  # not its lease: kept
        assert one.path("k").exists()
        one.release("k")
        assert not one.path("k").exists() and two.claim("k")
    assert list(tmp_path.iterdir()) == []  # the holder's exit removes its leases


def test_stale_leases_are_taken_over(tmp_path) -> None:
    """Stale: the holder's pid is dead on this host, or an unchecked holder's lease expired."""
    with Leases(tmp_path, expiry=30) as leases:
        dead = {"runner": "gone", "pid": _dead_pid(), "host": leases.host, "time": "t"}
        leases.path("dead").write_text(json.dumps(dead))
        far = {"runner": "far", "pid": 1, "host": "another-host", "time": "t"}
        leases.path("far").write_text(json.dumps(far))
        assert leases.stale("dead") and not leases.stale("far")
        assert not leases.claim("far")
        old = time.time() - 31
        os.utime(leases.path("far"), (old, old))
        assert leases.stale("far")
        for key in ("dead", "far"):
            assert leases.claim(key)
            holder = leases.holder(key)
            assert holder is not None and holder["runner"] == leases.runner
        assert sorted(p.name for p in tmp_path.iterdir()) == ["dead.lease", "far.lease"]


def _spec(sleep: float, seeds: int) -> SweepSpec:
    grid = {"method": ("pga", "uniform"), "alpha": (0.01, 0.02), "seed": tuple(range(seeds))}
    return SweepSpec(runner=FAKE, base={"sleep": sleep}, grid=(grid,))


def _counts(log: Path) -> collections.Counter[str]:
    return collections.Counter(log.read_text().split())


def test_two_runners_in_threads_share_a_store_on_process_pools(tmp_path, monkeypatch) -> None:
    """Two runners on process pools of one worker each (and two store connections)."""
    log = tmp_path / "computed.log"
    monkeypatch.setenv("CFPOISON_FAKE_LOG", str(log))
    cells = cells_of(_spec(0.2, 2))
    outcomes = []

    def run() -> None:
        with ResultStore(tmp_path / "r.sqlite") as store:
            outcomes.append(run_cells(cells, store, workers=1))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(outcomes) == 2
    assert sum(o.computed for o in outcomes) == len(cells) == 8
    assert all(o.computed + o.by_others == len(cells) for o in outcomes)
    counts = _counts(log)
    assert sorted(counts) == sorted(c.key for c in cells) and set(counts.values()) == {1}
    assert list(lease_folder(tmp_path / "r.sqlite").iterdir()) == []


def _command(out: Path, sleep: float, seeds: int, report: Path) -> list[str]:
    return [
        sys.executable,
        "-c",
        CLI,
        "--quiet",
        "sweep",
        "run",
        "--out",
        str(out),
        "--runner",
        FAKE,
        "--set",
        f"sleep={sleep}",
        "--grid",
        "method=pga,uniform",
        "--grid",
        "alpha=0.01,0.02",
        "--grid",
        "seed=" + ",".join(map(str, range(seeds))),
        "--workers",
        "0",
        "--json",
        str(report),
    ]


def _env(log: Path) -> dict[str, str]:
    env = {**os.environ, "CFPOISON_FAKE_LOG": str(log), "MPLBACKEND": "Agg"}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    return env


def _outcome(report: Path) -> dict:
    return json.loads(report.read_text())["outcome"]


@pytest.mark.slow
def test_two_sweep_runs_on_one_store_share_the_cells(tmp_path) -> None:
    """Two ``cfpoison sweep run`` processes on one store: no cell computed twice, and their
    cells' span (the first one's run, which waits for the second's last cell) is well under
    one process's: 24 cells of 0.3 s of sleep, so that two shared cores do not decide it."""
    log = tmp_path / "computed.log"
    env = _env(log)
    cells = cells_of(_spec(0.3, 6))
    assert len(cells) == 24
    alone = tmp_path / "alone.json"
    subprocess.run(_command(tmp_path / "a", 0.3, 6, alone), env=env, check=True, timeout=120)
    assert _outcome(alone)["computed"] == 24
    log.unlink()

    reports = [tmp_path / "one.json", tmp_path / "two.json"]
    procs = [
        subprocess.Popen(_command(tmp_path / "b", 0.3, 6, report), env=env) for report in reports
    ]
    try:
        assert [proc.wait(timeout=120) for proc in procs] == [0, 0]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    outcomes = [_outcome(report) for report in reports]
    assert sum(o["computed"] for o in outcomes) == 24 and all(o["computed"] for o in outcomes)
    assert all(o["computed"] + o["by_others"] + o["already_done"] == 24 for o in outcomes)
    counts = _counts(log)
    assert sorted(counts) == sorted(c.key for c in cells) and set(counts.values()) == {1}
    with ResultStore(tmp_path / "b" / "results.sqlite") as store:
        assert all(row.metrics == expected_metrics(row.config) for row in store.rows())
        assert len(store) == 24
    assert list(lease_folder(tmp_path / "b" / "results.sqlite").iterdir()) == []
    pair = max(o["seconds"] for o in outcomes)
    single = _outcome(alone)["seconds"]
    print(f"one runner {single:.2f} s, two runners {pair:.2f} s ({pair / single:.2f}x)")
    assert pair < 0.8 * single


@pytest.mark.slow
def test_the_lease_of_a_killed_runner_is_taken_over(tmp_path) -> None:
    """SIGKILL a runner mid-cell: its lease stays, names its dead pid, and the next run takes
    it over at once (no waiting for the expiry) and computes the cell."""
    log = tmp_path / "computed.log"
    out = tmp_path / "run"
    leases = lease_folder(out / "results.sqlite")
    command = _command(out, 1.0, 1, tmp_path / "first.json")
    proc = subprocess.Popen(command, env=_env(log), start_new_session=True)
    try:
        # Mid-cell: the lease is taken *and* the cell has started (logged its key); a kill
        # between the two would leave a lease for a cell that never ran (a race seen in CI).
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (
            leases.is_dir() and any(leases.iterdir()) and log.exists() and log.read_text()
        ):
            time.sleep(0.05)
        held = list(leases.iterdir())
        assert len(held) == 1, "the first cell never started"
        assert _counts(log)[held[0].name.removesuffix(".lease")] == 1
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    record = json.loads(held[0].read_text())
    assert held[0].exists() and record["pid"] == proc.pid
    key = held[0].name.removesuffix(".lease")

    start = time.monotonic()
    second = tmp_path / "second.json"
    subprocess.run(
        _command(out, 1.0, 1, second), env=_env(log), check=True, timeout=60, cwd=tmp_path
    )
    assert time.monotonic() - start < 30  # far below the 10-minute expiry
    assert _outcome(second)["computed"] + _outcome(second)["already_done"] == 4
    with ResultStore(out / "results.sqlite") as store:
        assert len(store) == 4 and key in store
    assert list(leases.iterdir()) == []
    assert _counts(log)[key] == 2  # started by the killed runner, computed by the second
