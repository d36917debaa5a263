"""Fitting a panel: every (victim, seed, profile file) fit as an independent job.

The jobs run here, one after the other, or spread over ``workers`` spawned processes
(:mod:`cfpoison.workers`); either way the fitted victims are the same: every victim is
deterministic at its seed, and cfpoison's learners give the same factors to the last bit on
any number of threads. A worker sends back the factors only; the fitted victim is rebuilt
here around the training data (:meth:`cfpoison.victims.base.Victim.adopt`).
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import numpy as np
import scipy.sparse as sp

from cfpoison.errors import CfpoisonError
from cfpoison.victims.base import Victim
from cfpoison.victims.spec import VictimSpec, build_victim
from cfpoison.workers import process_pool, stop_pool

#: The training data of each split offset a job may name.
Datasets = Mapping[int, Any]
#: A job's victim name, seed and attack (None: clean).
JobKey = tuple[str, int, str | None]


@dataclasses.dataclass(frozen=True)
class FitJob:
    """One fit: ``spec`` at ``seed`` on its split, poisoned by the profiles ``attack``
    (None: the clean fit)."""

    spec: VictimSpec
    seed: int
    attack: str | None = None

    @property
    def key(self) -> JobKey:
        """``(victim name, seed, attack)``: names are unique within a panel."""
        return self.spec.name, self.seed, self.attack

    def label(self) -> str:
        return f"{self.spec.name} seed {self.seed} {self.attack or 'clean'}"


@dataclasses.dataclass
class FittedJob:
    """A job's fitted victim and the seconds its fit took (in whichever process ran it)."""

    victim: Victim
    seconds: float


def fit_jobs(
    jobs: Sequence[FitJob],
    data: Datasets,
    attacks: Mapping[str, sp.csr_array],
    *,
    workers: int = 1,
    progress: Callable[[FitJob], None] | None = None,
) -> dict[JobKey, FittedJob]:
    """Fit every job on ``data[job.spec.split_offset]`` plus ``attacks[job.attack]``, in
    ``min(workers, len(jobs))`` processes (1: in this one); ``progress`` is called with each
    job as it finishes. Keyed by :attr:`FitJob.key`."""
    workers = min(workers, len(jobs))
    out: dict[JobKey, FittedJob] = {}
    if workers <= 1:
        for job in jobs:
            fitted, seconds = _fit(job, data, attacks)
            out[job.key] = FittedJob(fitted, seconds)
            if progress is not None:
                progress(job)
        return out
    with process_pool(workers, _keep, (data, attacks)) as pool:
        try:  # the submits too: a signal may come while they start the workers
            futures = {pool.submit(_fit_in_worker, job): job for job in jobs}
            for future in cf.as_completed(futures):
                job = futures[future]
                user, item, converged, seconds = future.result()
                train = data[job.spec.split_offset]
                victim = build_victim(job.spec, job.seed).adopt(train, user, item, converged)
                out[job.key] = FittedJob(victim, seconds)
                if progress is not None:
                    progress(job)
        except BaseException as err:
            stop_pool(pool)
            if isinstance(err, BrokenProcessPool):
                raise CfpoisonError(
                    f"a worker process died ({err}); out of memory? --workers 1 fits the "
                    "victims one after the other in this process"
                ) from None
            raise
    return out


def family(
    done: Mapping[JobKey, FittedJob], name: str, seeds: Sequence[int], attack: str | None
) -> list[Victim]:
    """The victim ``name`` fitted at each of ``seeds`` on ``attack``'s profiles (None: clean)."""
    return [done[name, seed, attack].victim for seed in seeds]


def victim_seconds(done: Mapping[JobKey, FittedJob], name: str) -> float:
    """The seconds of the victim ``name``'s fits, summed (they may have run side by side)."""
    return sum(fitted.seconds for key, fitted in done.items() if key[0] == name)


def _fit(job: FitJob, data: Datasets, attacks: Mapping[str, sp.csr_array]) -> tuple[Victim, float]:
    start = time.perf_counter()
    fake = attacks[job.attack] if job.attack is not None else None
    victim = build_victim(job.spec, job.seed).fit(data[job.spec.split_offset], fake)
    return victim, time.perf_counter() - start


#: A worker's copy of the data and the profile matrices (set once by its initializer).
_SHARED: dict[str, Any] = {}


def _keep(data: Datasets, attacks: Mapping[str, sp.csr_array]) -> None:
    _SHARED["data"], _SHARED["attacks"] = data, attacks


def _fit_in_worker(job: FitJob) -> tuple[np.ndarray, np.ndarray, bool | None, float]:
    victim, seconds = _fit(job, _SHARED["data"], _SHARED["attacks"])
    return victim.user_factors, victim.item_factors, victim.converged, seconds
