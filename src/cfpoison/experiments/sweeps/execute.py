"""Running the missing cells of a sweep: local worker processes or a Dask cluster.

Only the cells whose key is not in the store are submitted. Workers compute and return; this
process writes each result to the store as it completes (one transaction per cell), so a kill
at any moment loses at most the cells in flight. A cell that fails is reported and left
missing (the next run retries it); the others go on.

Local execution uses :class:`concurrent.futures.ProcessPoolExecutor` (spawned processes, each
given ``cpu_count // workers`` threads); ``scheduler`` sends the cells to a Dask
``distributed`` scheduler instead (its workers need cfpoison installed and the data reachable),
or, when it is ``"local"``, to a ``LocalCluster`` of ``workers`` processes started here (one
cell at a time each, ``cpu_count // workers`` numba threads). On Dask a worker that dies
mid-cell loses only that cell, which the scheduler runs again on another worker: its result
reaches the store once.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import logging
import multiprocessing
import os
import platform
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures.process import BrokenProcessPool
from importlib import metadata
from typing import Any

from tqdm import tqdm

from cfpoison.errors import CfpoisonError
from cfpoison.experiments.sweeps.runners import RunContext, resolve_runner
from cfpoison.experiments.sweeps.spec import Cell
from cfpoison.experiments.sweeps.store import ResultStore
from cfpoison.learners.base import serial_blas

VERSIONED_PACKAGES = ("cfpoison", "numpy", "scipy", "numba")
LOCAL_CLUSTER = "local"


class SweepError(CfpoisonError):
    """Some cells of a sweep failed (the others are stored); ``outcome`` says which."""

    def __init__(self, message: str, outcome: SweepOutcome | None = None) -> None:
        super().__init__(message)
        self.outcome = outcome


@dataclasses.dataclass(frozen=True)
class CellResult:
    """A computed cell as a worker returns it."""

    key: str
    metrics: dict[str, Any]
    history: Any
    seconds: float


@dataclasses.dataclass(frozen=True)
class SweepOutcome:
    """What a call to :func:`run_cells` did."""

    total: int
    already_done: int
    computed: int
    failed: tuple[tuple[str, str], ...]  # (key, one-line error)
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def package_versions() -> dict[str, str]:
    """Python and the versions of the packages that decide the numbers."""
    versions = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def execute_cell(key: str, config: dict[str, Any], context: RunContext) -> CellResult:
    """Run one cell (in whatever process this is called) and time it."""
    runner = resolve_runner(str(config["runner"]))
    start = time.perf_counter()
    with serial_blas():  # the parallel work is numba's, in every kind of worker
        outcome = runner.run(config, context)
    return CellResult(key, outcome.metrics, outcome.history, time.perf_counter() - start)


def run_cells(
    cells: Sequence[Cell],
    store: ResultStore,
    context: RunContext | None = None,
    *,
    workers: int = 2,
    scheduler: str | None = None,
    progress: bool = False,
) -> SweepOutcome:
    """Compute the cells missing from ``store`` and store each as it finishes.

    ``workers = 0`` runs the cells in this process, one after another; ``scheduler`` (a Dask
    scheduler address, or a ``distributed.Client``) overrides ``workers``; ``"local"`` starts
    a Dask ``LocalCluster`` of ``workers`` processes. Raises :class:`SweepError` after the
    other cells are stored if any cell failed.
    """
    if workers < 0:
        raise CfpoisonError(f"workers must be >= 0, got {workers}")
    if scheduler == LOCAL_CLUSTER and workers < 1:
        raise CfpoisonError("a local Dask cluster needs --workers >= 1")
    context = context or RunContext()
    start = time.perf_counter()
    done = store.keys()
    missing = [cell for cell in cells if cell.key not in done]
    versions = package_versions()
    configs = {cell.key: dict(cell.config) for cell in missing}
    failed: list[tuple[str, str]] = []
    computed = 0
    if scheduler is not None:
        results = _dask_results(missing, context, scheduler, workers)
    elif workers == 0:
        results = _serial_results(missing, context)
    else:
        results = _pool_results(missing, context, workers)
    with tqdm(total=len(missing), desc="cells", unit="cell", disable=not progress) as bar:
        for key, result in results:
            if isinstance(result, CellResult):
                store.put(
                    key, configs[key], result.metrics, result.history, result.seconds, versions
                )
                computed += 1
            else:
                failed.append((key, _one_line(result)))
            bar.update()
    outcome = SweepOutcome(
        len(cells), len(cells) - len(missing), computed, tuple(failed), time.perf_counter() - start
    )
    if failed:
        key, message = failed[0]
        raise SweepError(
            f"{len(failed)} of {len(missing)} cells failed (stored {computed}; rerun to retry);"
            f" first, cell {key[:12]}: {message}",
            outcome,
        )
    return outcome


Results = Iterator[tuple[str, "CellResult | BaseException"]]


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text if isinstance(err, CfpoisonError) else f"{type(err).__name__}: {text}"


def _serial_results(cells: Sequence[Cell], context: RunContext) -> Results:
    for cell in cells:
        try:
            yield cell.key, execute_cell(cell.key, dict(cell.config), context)
        except Exception as err:
            yield cell.key, err


def _threads(workers: int) -> int:
    """Each of ``workers`` processes' share of this machine's cores."""
    return max(1, (os.cpu_count() or 1) // workers)


def _pool_results(cells: Sequence[Cell], context: RunContext, workers: int) -> Results:
    if not cells:
        return
    threads = _threads(workers)
    if not context.threads:
        context = dataclasses.replace(context, threads=threads)
    with cf.ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(threads, os.getpid()),
    ) as pool:
        futures = {
            pool.submit(execute_cell, cell.key, dict(cell.config), context): cell.key
            for cell in cells
        }
        try:
            yield from _completed(futures, cf.as_completed)
        finally:
            for future in futures:
                future.cancel()


def _completed(futures: dict[Any, str], as_completed: Callable[[Any], Any]) -> Results:
    for future in as_completed(list(futures)):
        try:
            yield futures[future], future.result()
        except BrokenProcessPool as err:
            raise CfpoisonError(f"a worker process died ({err}); rerun to resume") from None
        except Exception as err:
            yield futures[future], err


#: Dask's setting for the environment of the worker processes its nannies start.
PRE_SPAWN = "distributed.nanny.pre-spawn-environ"


def _worker_environ() -> dict[str, Any]:
    """Dask's worker environment without ``MALLOC_TRIM_THRESHOLD_``.

    Dask sets it to 64 KiB, which also fixes glibc's mmap threshold at 128 KiB: every factor
    -sized temporary is then mapped and unmapped afresh, and a PGA cell on ml-latest-small
    spent 8.3 s in the kernel beside 24.6 s of user time (0.5 s without it)."""
    import dask

    environ = dict(dask.config.get(PRE_SPAWN, default={}) or {})
    environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    return environ


def _init_worker(threads: int, parent: int) -> None:
    """Limit numba's threads, and exit if the parent dies (no orphans after a SIGKILL)."""
    import numba

    numba.set_num_threads(min(threads, numba.get_num_threads()))

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def _dask_results(
    cells: Sequence[Cell], context: RunContext, scheduler: Any, workers: int
) -> Results:
    try:
        import dask
        import distributed
    except ImportError:
        raise CfpoisonError(
            "--scheduler needs dask distributed: pip install 'cfpoison[distributed]'"
        ) from None
    if not cells:
        return
    with contextlib.ExitStack() as stack:
        if scheduler == LOCAL_CLUSTER:
            chatty = logging.getLogger("distributed")  # INFO on every start and stop
            stack.callback(chatty.setLevel, chatty.level)
            chatty.setLevel(max(logging.WARNING, logging.getLogger().getEffectiveLevel()))
            threads = context.threads or _threads(workers)
            context = dataclasses.replace(context, threads=threads)
            stack.enter_context(dask.config.set({PRE_SPAWN: _worker_environ()}))
            scheduler = stack.enter_context(
                distributed.LocalCluster(
                    n_workers=workers,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                    env={"NUMBA_NUM_THREADS": str(threads)},
                    silence_logs=logging.ERROR,
                )
            )
        yield from _on_dask(cells, context, scheduler)


def _on_dask(cells: Sequence[Cell], context: RunContext, scheduler: Any) -> Results:
    import distributed

    own = not isinstance(scheduler, distributed.Client)
    try:
        client = distributed.Client(scheduler, timeout=30) if own else scheduler
    except OSError as err:
        raise CfpoisonError(f"cannot reach the Dask scheduler {scheduler}: {err}") from None
    try:
        futures = {
            client.submit(
                execute_cell, cell.key, dict(cell.config), context, key=f"cell-{cell.key}"
            ): cell.key
            for cell in cells
        }
        yield from _completed(futures, distributed.as_completed)
    finally:
        if own:
            client.close()
