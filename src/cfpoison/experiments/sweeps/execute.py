"""Running the missing cells of a sweep: local worker processes or a Dask cluster.

Only the cells whose key is not in the store are submitted. Workers compute and return; this
process writes each result to the store as it completes (one transaction per cell), so a kill
at any moment loses at most the cells in flight. A cell that fails is reported and left
missing (the next run retries it); the others go on.

Local execution uses :func:`cfpoison.workers.process_pool` (spawned processes, each given
``cores // workers`` threads); ``scheduler`` sends the cells to a Dask
``distributed`` scheduler instead (its workers need cfpoison installed and the data reachable),
or, when it is ``"local"``, to a ``LocalCluster`` of ``workers`` processes started here (one
cell at a time each, ``cores // workers`` numba threads). On Dask a worker that dies
mid-cell loses only that cell, which the scheduler runs again on another worker: its result
reaches the store once.

This process leases each cell before it starts it (:mod:`~cfpoison.experiments.sweeps.leases`;
with Dask too: the client holds the leases of the cells it submits) and keeps only as many
cells in flight as there are workers (Dask: worker threads), so two runners on one store share
the missing cells: each skips the other's leased cells and, when it has nothing else to start,
waits for them to be stored or takes over a stale lease (its holder is dead).
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import contextlib
import dataclasses
import logging
import platform
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures.process import BrokenProcessPool
from importlib import metadata
from typing import Any, Protocol

from tqdm import tqdm

from cfpoison.config import Record
from cfpoison.errors import CfpoisonError
from cfpoison.experiments.sweeps.leases import Leases, lease_folder
from cfpoison.experiments.sweeps.runners import RunContext, resolve_runner
from cfpoison.experiments.sweeps.spec import Cell
from cfpoison.experiments.sweeps.store import ResultStore
from cfpoison.learners.base import serial_blas
from cfpoison.workers import process_pool, threads_per_worker

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
class SweepOutcome(Record):
    """What a call to :func:`run_cells` did."""

    total: int
    already_done: int
    computed: int
    failed: tuple[tuple[str, str], ...]  # (key, one-line error)
    seconds: float
    by_others: int = 0  # missing at the start, then stored by another runner


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
    a Dask ``LocalCluster`` of ``workers`` processes. Each cell is leased before it starts
    (:mod:`~cfpoison.experiments.sweeps.leases`), so runners sharing the store share the work.
    Raises :class:`SweepError` after the other cells are stored if any cell failed.
    """
    if workers < 0:
        raise CfpoisonError(f"workers must be >= 0, got {workers}")
    if scheduler == LOCAL_CLUSTER and workers < 1:
        raise CfpoisonError("a local Dask cluster needs --workers >= 1")
    context = context or RunContext()
    start = time.perf_counter()
    done = store.keys()
    missing = [cell for cell in cells if cell.key not in done]
    feed = _Feed(missing, store)
    if missing:
        if scheduler is not None:
            backend = _dask_backend(context, scheduler, workers)
        elif workers == 0:
            backend = _serial_backend(context)
        else:
            backend = _pool_backend(context, workers)
        with (
            Leases(lease_folder(store.path)) as leases,
            backend as running,
            tqdm(total=len(missing), desc="cells", unit="cell", disable=not progress) as bar,
        ):
            feed.run(running, leases, bar)
    outcome = SweepOutcome(
        len(cells),
        len(cells) - len(missing),
        feed.computed,
        tuple(feed.failed),
        time.perf_counter() - start,
        feed.by_others,
    )
    if feed.failed:
        key, message = feed.failed[0]
        raise SweepError(
            f"{len(feed.failed)} of {len(missing)} cells failed (stored {feed.computed}; rerun"
            f" to retry); first, cell {key[:12]}: {message}",
            outcome,
        )
    return outcome


def describe_execution(workers: int, scheduler: Any = None) -> str:
    """Where :func:`run_cells` runs cells with these arguments, in words (for reports)."""
    if scheduler == LOCAL_CLUSTER:
        return f"a Dask LocalCluster of {workers} worker process{'es' * (workers != 1)}"
    if isinstance(scheduler, str):
        return f"the Dask distributed scheduler at {scheduler}"
    if scheduler is not None:
        address = getattr(getattr(scheduler, "scheduler", None), "address", None)
        return "a Dask distributed client" + (f" of the scheduler at {address}" if address else "")
    if workers == 0:
        return "one process, cell after cell"
    return f"a local pool of {workers} worker process{'es' * (workers != 1)}"


#: Seconds between looks at the cells other runners hold.
POLL_SECONDS = 0.25

Done = list[tuple[str, "CellResult | BaseException"]]


class _Backend(Protocol):
    def capacity(self) -> int:
        """How many cells may run at once."""
        ...

    def submit(self, cell: Cell) -> None: ...

    def wait(self, timeout: float) -> Done:
        """The cells that finished within ``timeout`` seconds (maybe none)."""
        ...


class _Feed:
    """Starts the missing cells the runner can lease, stores what comes back, and waits for
    the cells other runners hold (or takes over their stale leases)."""

    def __init__(self, missing: Sequence[Cell], store: ResultStore) -> None:
        self.queue = collections.deque(missing)
        self.waiting: list[Cell] = []
        self.store = store
        self.configs = {cell.key: dict(cell.config) for cell in missing}
        self.versions = package_versions()
        self.computed = 0
        self.by_others = 0
        self.failed: list[tuple[str, str]] = []

    def run(self, backend: _Backend, leases: Leases, bar: tqdm) -> None:
        running: set[str] = set()
        while self.queue or self.waiting or running:
            while len(running) < backend.capacity():
                cell = self._next(leases, bar)
                if cell is None:
                    break
                backend.submit(cell)
                running.add(cell.key)
            if not running:
                time.sleep(POLL_SECONDS)
                continue
            for key, result in backend.wait(POLL_SECONDS):
                running.discard(key)
                if isinstance(result, CellResult):
                    config = self.configs[key]
                    metrics, history = result.metrics, result.history
                    self.store.put(key, config, metrics, history, result.seconds, self.versions)
                    self.computed += 1
                else:
                    self.failed.append((key, _one_line(result)))
                leases.release(key)
                bar.update()

    def _next(self, leases: Leases, bar: tqdm) -> Cell | None:
        """A cell this runner now holds the lease of, or None (all others' for now)."""
        while self.queue:
            cell = self.queue.popleft()
            if self._stored_elsewhere(cell, bar):
                continue
            if leases.acquire(cell.key):
                if not self._stored_elsewhere(cell, bar, leases):
                    return cell
            else:
                self.waiting.append(cell)
        for cell in list(self.waiting):
            if self._stored_elsewhere(cell, bar):
                self.waiting.remove(cell)
            elif leases.claim(cell.key):
                self.waiting.remove(cell)
                if not self._stored_elsewhere(cell, bar, leases):
                    return cell
        return None

    def _stored_elsewhere(self, cell: Cell, bar: tqdm, leases: Leases | None = None) -> bool:
        """Whether another runner has stored ``cell`` (then its lease, if held, is let go)."""
        if cell.key not in self.store:
            return False
        if leases is not None:
            leases.release(cell.key)
        self.by_others += 1
        bar.update()
        return True


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text if isinstance(err, CfpoisonError) else f"{type(err).__name__}: {text}"


class _Serial:
    """Cells computed in this process, one at a time, when waited for."""

    def __init__(self, context: RunContext) -> None:
        self.context = context
        self.queued: list[Cell] = []

    def capacity(self) -> int:
        return 1

    def submit(self, cell: Cell) -> None:
        self.queued.append(cell)

    def wait(self, timeout: float) -> Done:
        done: Done = []
        for cell in self.queued:
            try:
                done.append((cell.key, execute_cell(cell.key, dict(cell.config), self.context)))
            except Exception as err:
                done.append((cell.key, err))
        self.queued.clear()
        return done


@contextlib.contextmanager
def _serial_backend(context: RunContext) -> Iterator[_Backend]:
    yield _Serial(context)


class _Futures:
    """Cells submitted to an executor (process pool or Dask client) as futures."""

    def __init__(
        self,
        submit: Callable[[Cell], Any],
        wait: Callable[[list[Any], float], set[Any]],
        capacity: Callable[[], int],
    ) -> None:
        self._submit, self._wait, self._capacity = submit, wait, capacity
        self.futures: dict[Any, str] = {}

    def capacity(self) -> int:
        return self._capacity()

    def submit(self, cell: Cell) -> None:
        self.futures[self._submit(cell)] = cell.key

    def wait(self, timeout: float) -> Done:
        done: Done = []
        for future in self._wait(list(self.futures), timeout):
            key = self.futures.pop(future)
            try:
                done.append((key, future.result()))
            except BrokenProcessPool as err:
                raise CfpoisonError(f"a worker process died ({err}); rerun to resume") from None
            except Exception as err:
                done.append((key, err))
        return done

    def cancel(self) -> None:
        for future in self.futures:
            future.cancel()


@contextlib.contextmanager
def _pool_backend(context: RunContext, workers: int) -> Iterator[_Backend]:
    if not context.threads:
        context = dataclasses.replace(context, threads=threads_per_worker(workers))
    # scikit-learn's OpenMP (the learned detector) is loaded first so that the limit reaches
    # it: its threads on cores that the other workers keep busy wait on each other (five
    # detector fits: 61 s on two threads of a loaded two-core machine, 6.9 s on one)
    with process_pool(workers, preload=("sklearn.ensemble",)) as pool:
        backend = _Futures(
            lambda cell: pool.submit(execute_cell, cell.key, dict(cell.config), context),
            lambda futures, timeout: (
                cf.wait(futures, timeout=timeout, return_when=cf.FIRST_COMPLETED).done
            ),
            lambda: workers,
        )
        try:
            yield backend
        finally:
            backend.cancel()


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


@contextlib.contextmanager
def _dask_backend(context: RunContext, scheduler: Any, workers: int) -> Iterator[_Backend]:
    try:
        import dask
        import distributed
    except ImportError:
        raise CfpoisonError(
            "--scheduler needs dask distributed: pip install 'cfpoison[distributed]'"
        ) from None
    with contextlib.ExitStack() as stack:
        if scheduler == LOCAL_CLUSTER:
            chatty = logging.getLogger("distributed")  # INFO on every start and stop
            stack.callback(chatty.setLevel, chatty.level)
            chatty.setLevel(max(logging.WARNING, logging.getLogger().getEffectiveLevel()))
            threads = context.threads or threads_per_worker(workers)
            context = dataclasses.replace(context, threads=threads)
            stack.enter_context(dask.config.set({PRE_SPAWN: _worker_environ()}))
            scheduler = stack.enter_context(
                distributed.LocalCluster(
                    n_workers=workers,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                    env={"NUMBA_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)},
                    silence_logs=logging.ERROR,
                )
            )
        if not isinstance(scheduler, distributed.Client):
            try:
                scheduler = stack.enter_context(distributed.Client(scheduler, timeout=30))
            except OSError as err:
                raise CfpoisonError(f"cannot reach the Dask scheduler {scheduler}: {err}") from None
        client = scheduler
        run = uuid.uuid4().hex[:8]  # a rerun's keys never meet a dead client's tasks
        backend = _Futures(
            lambda cell: client.submit(
                execute_cell, cell.key, dict(cell.config), context, key=f"cell-{cell.key}-{run}"
            ),
            _dask_wait,
            lambda: max(1, sum(client.nthreads().values())),
        )
        try:
            yield backend
        finally:
            backend.cancel()


def _dask_wait(futures: list[Any], timeout: float) -> set[Any]:
    import distributed

    try:
        return set(distributed.wait(futures, timeout=timeout, return_when="FIRST_COMPLETED").done)
    except TimeoutError:
        return set()
