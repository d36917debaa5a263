"""Cell runners: what turns a cell's settings into a config and the config into metrics.

A runner is any object with ``normalize`` and ``run`` (:class:`CellRunner`). Cells name theirs
by the ``runner`` field of their config: a built-in name (``attack``, ``attack_detect``) or a
reference ``package.module:attribute`` to a user's own, which worker processes and Dask
workers import by name, so nothing but plain JSON travels to them.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from cfpoison.errors import ConfigError
from cfpoison.experiments.sweeps.spec import Cell, SweepSpec, expand

BUILTIN_RUNNERS = {
    "attack": "cfpoison.experiments.attack_runner:RUNNER",
    "attack_detect": "cfpoison.experiments.paper.beta_tradeoff:RUNNER",
}


@dataclasses.dataclass(frozen=True)
class RunContext:
    """Where and how a cell runs; not part of its identity (the key hashes the config only).

    ``threads``: compute threads a cell may use (0: the runner's own setting); worker
    processes set it to their share of the cores. ``cache_dir``: the folder of the sweep's
    shared intermediate results (:mod:`~cfpoison.experiments.sweeps.cache`; None: none are
    shared), reachable by every worker.
    """

    data_dir: str | None = None
    threads: int = 0
    cache_dir: str | None = None


@dataclasses.dataclass(frozen=True)
class CellOutcome:
    """What a runner returns: JSON-able metrics (name -> value) and history."""

    metrics: dict[str, Any]
    history: Any = None


@runtime_checkable
class CellRunner(Protocol):
    def normalize(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        """Flat dotted settings -> the fully specified JSON config (defaults filled in)."""
        ...

    def run(self, config: Mapping[str, Any], context: RunContext) -> CellOutcome:
        """Compute one cell from its normalized config."""
        ...


def resolve_runner(name: str) -> CellRunner:
    """The runner a built-in name or a ``module:attribute`` reference points to."""
    reference = BUILTIN_RUNNERS.get(name, name)
    module_name, sep, attribute = reference.partition(":")
    if not sep:
        known = ", ".join(sorted(BUILTIN_RUNNERS))
        raise ConfigError(f"unknown runner {name!r} (built in: {known}; or module:attribute)")
    try:
        runner = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"cannot load runner {reference!r}: {err}") from None
    if not isinstance(runner, CellRunner):
        raise ConfigError(f"runner {reference!r} has no normalize() and run() methods")
    return runner


def cells_of(spec: SweepSpec) -> list[Cell]:
    """The sweep's distinct cells, in grid order; each config carries its runner's name."""
    runner = resolve_runner(spec.runner)
    cells: dict[str, Cell] = {}
    for settings in expand(spec):
        config = {**runner.normalize(settings), "runner": spec.runner}
        cell = Cell.of(config)
        cells.setdefault(cell.key, cell)
    return list(cells.values())
