"""A real distributed sweep on loopback: a ``dask scheduler`` and two ``dask worker`` processes,
``cfpoison sweep run --scheduler tcp://...`` as a user runs it, one worker SIGKILLed mid-cell,
the client SIGKILLed mid-sweep and rerun; the store ends equal to a serial run's.

Equal means exactly equal metrics (all but ``seconds``, a timing) and history: a cell's numbers
do not depend on where or with how many numba threads it runs (every parallel loop writes its
own rows; no reduction is split over threads) nor on the shared-fit cache (bit for bit, see
``tests/test_experiments_cache.py``), so there is no tolerance to allow.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import distributed
import numpy as np
import pytest

import cfpoison
from cfpoison.data.registry import load_dataset
from cfpoison.experiments.sweeps.execute import run_cells
from cfpoison.experiments.sweeps.leases import lease_folder
from cfpoison.experiments.sweeps.runners import RunContext, cells_of
from cfpoison.experiments.sweeps.spec import SweepSpec, parse_assignments
from cfpoison.experiments.sweeps.store import ResultStore

pytestmark = pytest.mark.slow

CLI = "import sys; from cfpoison.cli import main; sys.exit(main())"
SETTINGS = ["learner.rank=8"]
AXES = ["method=uniform,average,bandwagon", "alpha=0.02,0.04"]
SCHEDULER = ["scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard"]
WORKER = ["--host", "127.0.0.1", "--nworkers", "1", "--nthreads", "1", "--memory-limit", "0"]
WORKER += ["--no-dashboard"]


def _env(tmp_path: Path) -> dict[str, str]:
    """What every process gets: cfpoison importable, one numba thread, no plots on screen, and
    glibc's adaptive malloc (docs/scale-out.md)."""
    env = {**os.environ, "MPLBACKEND": "Agg", "NUMBA_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(cfpoison.__file__).parents[1]), env.get("PYTHONPATH", "")]
    )
    env["MALLOC_TRIM_THRESHOLD_"] = "268435456"
    env["MALLOC_MMAP_THRESHOLD_"] = "33554432"
    env.pop("PYTEST_XDIST_WORKER", None)
    return env


def _kill(proc: subprocess.Popen) -> None:
    """SIGKILL ``proc`` and its process group (a worker's nanny and worker process)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[str, list[subprocess.Popen]]]:
    """A scheduler on a free loopback port and two one-thread workers, each in its own
    process group; all SIGKILLed at teardown. Yields the address and the worker processes."""
    env = _env(tmp_path)
    scheduler_file = tmp_path / "scheduler.json"
    dask = [sys.executable, "-m", "dask"]
    procs: list[subprocess.Popen] = []
    logs = tmp_path / "logs"
    logs.mkdir()

    def start(name: str, args: list[str]) -> subprocess.Popen:
        log = open(logs / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            dask + args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        procs.append(proc)
        return proc

    try:
        start(
            "scheduler",
            [*SCHEDULER, "--scheduler-file", str(scheduler_file)],
        )
        _wait_for(scheduler_file.exists, 30, "the scheduler file")
        address = json.loads(scheduler_file.read_text())["address"]
        workers = [
            start(
                f"worker{i}",
                ["worker", address, *WORKER, "--name", f"w{i}"],
            )
            for i in range(2)
        ]
        yield address, workers
    finally:
        for proc in procs:
            _kill(proc)


def _csv(tmp_path: Path) -> Path:
    """A small rating file (the synthetic preset `small`: 200 x 800, 12,000 ratings)."""
    data = load_dataset("synthetic:small")
    rows, cols, values = data.triples()
    path = tmp_path / "data" / "ratings.csv"
    path.parent.mkdir()
    table = np.column_stack([rows + 1, cols + 1, data.scale.to_original(values)])
    np.savetxt(path, table, fmt=["%d", "%d", "%g"], delimiter=",", header="user,item,rating")
    return path


def _stored(path: Path) -> dict[str, tuple]:
    with ResultStore(path) as store:
        rows = store.rows()
    return {
        r.key: (r.config, {k: v for k, v in r.metrics.items() if k != "seconds"}, r.history)
        for r in rows
    }


def test_a_sweep_on_a_loopback_cluster_survives_a_killed_worker_and_client(
    tmp_path, cluster
) -> None:
    address, workers = cluster
    ratings = _csv(tmp_path)
    settings = [f"dataset=csv:{ratings}", *SETTINGS]
    spec = SweepSpec().with_flags(
        parse_assignments(settings, axes=False), parse_assignments(AXES, axes=True)
    )
    cells = cells_of(spec)
    assert len(cells) == 6
    with ResultStore(tmp_path / "serial.sqlite") as store:  # while the workers start
        run_cells(cells, store, RunContext(cache_dir=str(tmp_path / "serial-cache")), workers=0)
    serial = _stored(tmp_path / "serial.sqlite")

    out = tmp_path / "run"
    command = [sys.executable, "-c", CLI, "--quiet", "sweep", "run", "--out", str(out)]
    for item in settings:
        command += ["--set", item]
    for item in AXES:
        command += ["--grid", item]
    command += ["--scheduler", address]
    store_path = out / "results.sqlite"

    def stored() -> set[str]:
        if not store_path.exists():
            return set()
        with ResultStore(store_path) as store:
            return store.keys()

    env = _env(tmp_path)
    with distributed.Client(address, timeout=30) as watcher:
        watcher.wait_for_workers(2, timeout=60)
        names = {info["name"]: addr for addr, info in watcher.scheduler_info()["workers"].items()}
        first = [*command, "--json", str(tmp_path / "first.json")]
        client = subprocess.Popen(first, env=env, start_new_session=True)
        try:
            _wait_for(lambda: len(stored()) >= 1, 60, "the first stored cell")
            executing: list[str] = []

            def running_on_w1() -> bool:
                found = watcher.run(
                    lambda dask_worker: [str(ts.key) for ts in dask_worker.state.executing],
                    workers=[names["w1"]],
                )
                executing[:] = found.get(names["w1"], [])
                return bool(executing)

            _wait_for(running_on_w1, 30, "a cell on worker w1")
            _kill(workers[1])  # mid-cell: the scheduler reruns it on w0
            lost = executing[0].split("-")[1]  # cell-KEY-RUN
            _wait_for(lambda: lost in stored(), 60, "the killed worker's cell to be rerun")
            # Kill the client while it holds a lease (a cell in flight), not between cells.
            leases = lease_folder(store_path)
            _wait_for(lambda: any(leases.iterdir()), 60, "a leased cell in flight")
            os.kill(client.pid, signal.SIGKILL)
            assert client.wait(timeout=30) == -signal.SIGKILL
        finally:
            _kill(client)
        before = stored()
        assert lost in before and 1 <= len(before) < len(cells), "killed too late to resume"
        assert any(lease_folder(store_path).iterdir())  # the dead client's leases

        second = tmp_path / "second.json"
        done = subprocess.run(
            [*command, "--json", str(second)], env=env, timeout=120, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr[-3000:]
    outcome = json.loads(second.read_text())["outcome"]
    assert outcome["already_done"] == len(before)  # the store kept the finished cells
    assert outcome["computed"] == len(cells) - len(before)  # and only the rest were run
    assert list(lease_folder(store_path).iterdir()) == []  # stale leases taken over
    assert _stored(store_path) == serial
