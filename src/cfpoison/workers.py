"""Worker processes for independent fits: a spawned process pool whose workers share the cores.

Each worker gets ``cores // workers`` threads for numba (learners asking for "all cores", their
``threads = 0``, get this share), for the BLAS and OpenMP runtimes already loaded, and for
those loaded later that read ``OMP_NUM_THREADS`` (torch). A worker exits when its parent dies,
so a killed run leaves no orphans.

Why processes: on ml-latest-small a rank-20 ALS sweep takes 13.8 ms on two numba threads and
19.3 ms on one, while two one-thread fits side by side take 20.2 ms each (10.1 ms a sweep for
the pair): independent fits gain 1.3-1.4x from processes over threads on two cores
(``benchmarks/RESULTS.md``, "The README's typical session"), and more on more cores, where
a row loop of a small problem stops scaling.
"""

from __future__ import annotations

import concurrent.futures as cf
import importlib
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from typing import Any


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask where the platform has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def threads_per_worker(workers: int) -> int:
    """Each of ``workers`` processes' share of the usable cores (at least 1)."""
    return max(1, usable_cores() // max(workers, 1))


def limit_threads(threads: int) -> None:
    """Cap this process's numba, BLAS and OpenMP threads at ``threads`` (and torch's, if it
    is imported later). A limit reaches only the runtimes already loaded, so callers that use
    scikit-learn's OpenMP import it first."""
    import numba
    from threadpoolctl import threadpool_limits

    os.environ["OMP_NUM_THREADS"] = str(threads)
    numba.config.NUMBA_NUM_THREADS = min(threads, numba.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]
    numba.set_num_threads(min(threads, numba.get_num_threads()))
    threadpool_limits(limits=threads, user_api="openmp")
    threadpool_limits(limits=threads, user_api="blas")


def exit_with_parent(parent: int) -> None:
    """Exit this process as soon as ``parent`` is no longer its parent (it died)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def process_pool(
    workers: int,
    initializer: Callable[..., None] | None = None,
    initargs: tuple[Any, ...] = (),
    *,
    preload: tuple[str, ...] = (),
) -> cf.ProcessPoolExecutor:
    """A pool of ``workers`` spawned processes, each importing the modules ``preload`` (whose
    thread pools the limit must reach), limited to its share of the cores and watching its
    parent, then running ``initializer(*initargs)``."""
    return cf.ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_start_worker,
        initargs=(threads_per_worker(workers), os.getpid(), preload, initializer, initargs),
    )


def stop_pool(pool: cf.ProcessPoolExecutor) -> None:
    """Cancel what has not started and terminate the workers now (an interrupted run): a plain
    ``shutdown(wait=False)`` leaves the calls already queued to run, and the interpreter's exit
    then waits for them (a SIGTERM took 218 s to end ``evaluate --victims``)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())  # shutdown clears it
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()


def _start_worker(
    threads: int,
    parent: int,
    preload: tuple[str, ...],
    initializer: Callable[..., None] | None,
    initargs: tuple[Any, ...],
) -> None:
    for module in preload:
        importlib.import_module(module)
    limit_threads(threads)
    exit_with_parent(parent)
    if initializer is not None:
        initializer(*initargs)
