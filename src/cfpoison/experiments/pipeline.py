"""A sweep end to end: run the missing cells, export the table, draw the figure, write the report.

Everything goes into one output folder::

    OUT/results.sqlite   the store (resumable: rerun the same command to finish a killed run)
    OUT/sweep.json       the sweep as run
    OUT/results.csv      one line per cell (and results.parquet when pyarrow is installed;
                         without it, an info message, not a warning: the CSV is enough)
    OUT/figures/NAME.png, NAME.svg
    OUT/report.md, report.html, report.json
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from cfpoison.experiments.presentation import figures, report
from cfpoison.experiments.sweeps.execute import (
    SweepError,
    SweepOutcome,
    describe_execution,
    run_cells,
)
from cfpoison.experiments.sweeps.runners import RunContext, cells_of, resolve_runner
from cfpoison.experiments.sweeps.spec import Cell, PlotSpec, SweepSpec
from cfpoison.experiments.sweeps.store import ResultStore, StoredCell, export_csv, export_parquet
from cfpoison.io import write_json

log = logging.getLogger(__name__)

STORE_NAME = "results.sqlite"


@dataclasses.dataclass(frozen=True)
class SweepRun:
    """What :func:`run_sweep` produced."""

    cells: tuple[Cell, ...]
    outcome: SweepOutcome | None
    error: str | None
    files: dict[str, Path]

    def to_dict(self) -> dict[str, Any]:
        return {
            "cells": len(self.cells),
            "outcome": self.outcome.to_dict() if self.outcome else None,
            "error": self.error,
            "files": {k: str(v) for k, v in self.files.items()},
        }


def run_sweep(
    spec: SweepSpec,
    out_dir: str | os.PathLike[str],
    context: RunContext | None = None,
    *,
    workers: int = 2,
    scheduler: Any = None,
    progress: bool = False,
    title: str = "Sweep",
    notes: Sequence[str] = (),
    name: str = "sweep",
    draw: Callable[[Sequence[StoredCell], str], Figure] | None = None,
    extra: Callable[[Sequence[StoredCell]], list[report.Block]] | None = None,
) -> SweepRun:
    """Run ``spec`` into ``out_dir`` (see the module docstring) and report on it.

    When cells fail, the others are stored, the report lists the missing ones, and
    ``SweepRun.error`` says why; the caller decides whether that is fatal. ``draw(rows, title)``
    replaces the default figure (:func:`figures.draw` of the sweep's plot); ``extra(rows)``
    adds report blocks after the figure.
    """
    out = Path(out_dir)
    context = context or RunContext()
    cells = tuple(cells_of(spec))
    write_json(out / "sweep.json", spec)
    start = time.perf_counter()
    outcome: SweepOutcome | None = None
    error: str | None = None
    failures: dict[str, str] = {}
    with ResultStore(out / STORE_NAME) as store:
        try:
            outcome = run_cells(
                cells, store, context, workers=workers, scheduler=scheduler, progress=progress
            )
        except SweepError as err:
            error, outcome = str(err), err.outcome
            failures = dict(outcome.failed if outcome else ())
        rows = store.rows(cell.key for cell in cells)
    wall = time.perf_counter() - start
    files = {"store": out / STORE_NAME, "spec": out / "sweep.json", "csv": out / "results.csv"}
    export_csv(rows, files["csv"])
    if importlib.util.find_spec("pyarrow") is not None:
        files["parquet"] = out / "results.parquet"
        export_parquet(rows, files["parquet"])
    else:
        log.info("pyarrow is not installed: no results.parquet (results.csv has the same rows)")
    plot = spec.plot or PlotSpec()
    runner = resolve_runner(spec.runner)
    provenance = runner.provenance(cells, context) if hasattr(runner, "provenance") else []
    title = sized_title(title, provenance)
    figure_paths = []
    if rows:
        fig = draw(rows, title) if draw is not None else figures.draw(rows, plot, title)
        png, svg = figures.save(fig, out / "figures" / name)
        files.update({"png": png, "svg": svg})
        figure_paths.append((png, svg))
    paths = report.write(
        report.ReportInput(
            title,
            spec,
            plot,
            cells,
            rows,
            figure_paths,
            provenance,
            wall,
            tuple(notes),
            failures,
            extra(rows) if extra is not None and rows else [],
            describe_execution(workers, scheduler) if outcome and outcome.computed else None,
        ),
        out,
    )
    files.update(paths)
    return SweepRun(cells, outcome, error, files)


def sized_title(title: str, provenance: Sequence[dict[str, Any]]) -> str:
    """``title`` with the real size of its one data set (users x items after preprocessing)."""
    if len(provenance) != 1 or not {"users", "items"} <= set(provenance[0]):
        return title
    return f"{title}: {provenance[0]['users']:,} users x {provenance[0]['items']:,} items"
