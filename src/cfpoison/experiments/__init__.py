"""Experiments: sweeps over grids of attacks, a resumable result store, figures and reports.

* :class:`SweepSpec` (from TOML with :func:`load_spec`, or flags) expands to cells whose key
  is the SHA-256 of their fully specified config (:func:`cells_of`);
* :class:`ResultStore` (SQLite) holds one row per finished cell; :func:`run_cells` computes
  the missing ones on local processes or a Dask cluster; :func:`run_sweep` also exports,
  draws and writes the report;
* :func:`figure_parts` gives the paper's Figures 1 and 2 as sweeps;
* a cell runner (:class:`CellRunner`) turns settings into a config and a config into
  metrics: ``attack`` (:mod:`cfpoison.experiments.attack_runner`) or your own.
"""

from cfpoison.experiments.execute import SweepError, SweepOutcome, run_cells
from cfpoison.experiments.grid import Cell, PlotSpec, SweepSpec, load_spec
from cfpoison.experiments.paper import figure_parts
from cfpoison.experiments.runners import CellOutcome, CellRunner, RunContext, cells_of
from cfpoison.experiments.store import ResultStore, StoredCell, export_csv, export_parquet
from cfpoison.experiments.sweep import SweepRun, run_sweep

__all__ = [
    "Cell",
    "CellOutcome",
    "CellRunner",
    "PlotSpec",
    "ResultStore",
    "RunContext",
    "StoredCell",
    "SweepError",
    "SweepOutcome",
    "SweepRun",
    "SweepSpec",
    "cells_of",
    "export_csv",
    "export_parquet",
    "figure_parts",
    "load_spec",
    "run_cells",
    "run_sweep",
]
