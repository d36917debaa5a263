"""Running sweeps: serially, on processes, on a Dask LocalCluster; failures; SIGKILL, resume."""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import dask
import distributed
import pytest

from cfpoison.errors import CfpoisonError
from cfpoison.experiments.sweeps.execute import PRE_SPAWN, SweepError, run_cells
from cfpoison.experiments.sweeps.runners import cells_of
from cfpoison.experiments.sweeps.spec import SweepSpec
from cfpoison.experiments.sweeps.store import ResultStore
from experiments_fakes import expected_metrics

FAKE = "experiments_fakes:RUNNER"
TESTS = Path(__file__).parent


def _spec(**axes: tuple) -> SweepSpec:
    grid = {"method": ("pga", "uniform"), "alpha": (0.01, 0.02), "seed": (0, 1), **axes}
    return SweepSpec(runner=FAKE, grid=(grid,))


def _log(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    log = tmp_path / "computed.log"
    monkeypatch.setenv("CFPOISON_FAKE_LOG", str(log))
    return log


def _check_store(store: ResultStore, cells) -> None:
    rows = store.rows()
    assert sorted(r.key for r in rows) == sorted(c.key for c in cells)
    by_key = {c.key: c for c in cells}
    for row in rows:
        assert row.config == by_key[row.key].config
        assert row.metrics == expected_metrics(row.config)
        assert row.seconds >= 0 and row.versions["cfpoison"]


@pytest.mark.parametrize("workers", [0, 2])
def test_local_run_stores_every_cell_then_resumes_nothing(tmp_path, monkeypatch, workers) -> None:
    log = _log(monkeypatch, tmp_path)
    cells = cells_of(_spec())
    with ResultStore(tmp_path / "r.sqlite") as store:
        outcome = run_cells(cells, store, workers=workers)
        assert (outcome.total, outcome.computed, outcome.already_done) == (8, 8, 0)
        _check_store(store, cells)
        again = run_cells(cells, store, workers=workers)
        assert (again.computed, again.already_done) == (0, 8)
    assert len(log.read_text().split()) == 8  # nothing computed twice


def test_failed_cells_are_reported_left_missing_and_retried(tmp_path, monkeypatch) -> None:
    log = _log(monkeypatch, tmp_path)
    good = cells_of(_spec())
    bad = cells_of(SweepSpec(runner=FAKE, base={"fail": True, "seed": 9}))
    with ResultStore(tmp_path / "r.sqlite") as store:
        with pytest.raises(SweepError, match=r"1 of 9 cells failed.*asked to fail"):
            run_cells([*good, *bad], store, workers=0)
        _check_store(store, good)
        with pytest.raises(SweepError, match="1 of 1 cells failed"):
            run_cells([*good, *bad], store, workers=0)
    counts = collections.Counter(log.read_text().split())
    assert counts[bad[0].key] == 2 and all(counts[c.key] == 1 for c in good)


def test_negative_workers_is_a_user_error(tmp_path) -> None:
    with ResultStore(tmp_path / "r.sqlite") as store, pytest.raises(CfpoisonError):
        run_cells([], store, workers=-1)


def test_dask_local_cluster_runs_the_sweep(tmp_path, monkeypatch) -> None:
    log = _log(monkeypatch, tmp_path)
    cells = cells_of(_spec())
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
        ) as cluster,
        ResultStore(tmp_path / "r.sqlite") as store,
    ):
        outcome = run_cells(cells[:5], store, scheduler=cluster.scheduler_address)
        assert outcome.computed == 5
        outcome = run_cells(cells, store, scheduler=cluster.scheduler_address)
        assert (outcome.computed, outcome.already_done) == (3, 5)
        _check_store(store, cells)
    assert sorted(log.read_text().split()) == sorted(c.key for c in cells)


def _stored(store: ResultStore) -> list[tuple]:
    """The store's records without their timings, in key order."""
    rows = sorted(store.rows(), key=lambda r: r.key)
    return [(r.key, r.config, r.metrics, r.history, r.versions) for r in rows]


@pytest.mark.slow
def test_local_dask_cluster_survives_a_worker_killed_mid_cell(tmp_path, monkeypatch) -> None:
    """SIGKILL the worker process running a cell: the cell is computed again on another
    worker, once, and the store ends identical to a single-process run's."""
    log = _log(monkeypatch, tmp_path)
    signals = tmp_path / "signals"
    signals.mkdir()
    cells = cells_of(_spec(hang=(True,)))[:1] + cells_of(_spec())
    hung = cells[0].key
    with ResultStore(tmp_path / "serial.sqlite") as store:
        run_cells(cells, store, workers=0)
        serial = _stored(store)
    log.unlink()

    monkeypatch.setenv("CFPOISON_FAKE_HANG", str(signals))
    killed: list[int] = []

    def kill_the_hung_worker() -> None:
        pid_file = signals / f"{hung}.pid"
        deadline = time.monotonic() + 60
        while not pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        if pid_file.exists():
            pid = int(pid_file.read_text())
            assert pid != os.getpid()  # a worker process, not this one
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    killer = threading.Thread(target=kill_the_hung_worker, daemon=True)
    killer.start()
    with ResultStore(tmp_path / "dask.sqlite") as store:
        outcome = run_cells(cells, store, workers=2, scheduler="local")
        killer.join(timeout=5)
        assert len(killed) == 1, "the hung cell never started"
        assert (outcome.computed, outcome.failed) == (len(cells), ())
        assert len(store) == len(cells)
        assert _stored(store) == serial
    counts = collections.Counter(log.read_text().split())
    for cell in cells:
        assert counts[cell.key] == (2 if cell.key == hung else 1), cell.config


def test_a_local_dask_cluster_needs_workers(tmp_path) -> None:
    with ResultStore(tmp_path / "r.sqlite") as store, pytest.raises(CfpoisonError, match=">= 1"):
        run_cells(cells_of(_spec()), store, workers=0, scheduler="local")


@pytest.mark.slow
def test_sigkill_midway_then_restart_completes_without_duplicates(tmp_path) -> None:
    """Kill the sweep runner with SIGKILL after a few cells; the rerun fills in the rest."""
    log = tmp_path / "computed.log"
    out = tmp_path / "run"
    env = {**os.environ, "CFPOISON_FAKE_LOG": str(log), "MPLBACKEND": "Agg"}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    command = [
        sys.executable,
        "-c",
        "import sys; from cfpoison.cli import main; sys.exit(main())",
        "--quiet",
        "sweep",
        "run",
        "--out",
        str(out),
        "--runner",
        FAKE,
        "--set",
        "sleep=0.15",
        "--grid",
        "method=pga,sgld,uniform",
        "--grid",
        "alpha=0.01,0.02,0.03,0.04",
        "--grid",
        "seed=0,1",
        "--workers",
        "2",
    ]
    cells = cells_of(
        SweepSpec(runner=FAKE).with_flags(
            {"sleep": 0.15},
            {
                "method": ["pga", "sgld", "uniform"],
                "alpha": [0.01, 0.02, 0.03, 0.04],
                "seed": [0, 1],
            },
        )
    )
    assert len(cells) == 24
    proc = subprocess.Popen(command, env=env, start_new_session=True)
    try:
        store_path = out / "results.sqlite"
        deadline = time.monotonic() + 120
        stored_before = 0
        while time.monotonic() < deadline and stored_before < 6:
            time.sleep(0.05)
            if store_path.exists():
                with ResultStore(store_path) as store:
                    stored_before = len(store)
        assert stored_before >= 6, "the sweep did not start storing cells"
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # any worker the runner left behind
    with ResultStore(out / "results.sqlite") as store:
        finished = store.keys()
    assert 6 <= len(finished) < 24, "killed too late to test a resume"
    computed_before = len(log.read_text().split())

    subprocess.run(command, env=env, check=True, timeout=120)
    with ResultStore(out / "results.sqlite") as store:
        rows = store.rows()
        _check_store(store, cells)
    assert len(rows) == 24 == len({r.key for r in rows})
    rerun = collections.Counter(log.read_text().split()[computed_before:])
    assert not set(rerun) & finished, "a stored cell was computed again"
    assert set(rerun) == {c.key for c in cells} - finished
    assert (out / "report.html").exists() and (out / "results.csv").exists()


def test_local_dask_workers_keep_glibcs_adaptive_malloc() -> None:
    """Dask's MALLOC_TRIM_THRESHOLD_ (64 KiB) is left out of the local workers' environment
    (it made every factor-sized temporary a fresh mmap: a third more CPU time, in the kernel);
    its one-thread BLAS settings stay."""
    from cfpoison.experiments.sweeps.execute import _worker_environ

    assert "MALLOC_TRIM_THRESHOLD_" in dask.config.get(PRE_SPAWN)  # Dask's default
    environ = _worker_environ()
    assert "MALLOC_TRIM_THRESHOLD_" not in environ
    assert environ["OPENBLAS_NUM_THREADS"] == 1
