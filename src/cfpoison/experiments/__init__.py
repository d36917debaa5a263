"""Experiments: sweeps over grids of attacks, a resumable result store, figures and reports.

Three concepts, one subpackage each, layered so that each imports only those above it:

* :mod:`~cfpoison.experiments.sweeps` -- the generic sweep engine, which knows nothing of
  attacks: a :class:`SweepSpec` (TOML via :func:`load_spec`, or flags) expands to cells keyed
  by the SHA-256 of their fully specified config (``spec``, :func:`cells_of`); a cell runner
  (:class:`CellRunner`, ``runners``) turns settings into a config and a config into metrics;
  :func:`run_cells` computes the cells missing from the SQLite :class:`ResultStore`
  (``store``) on local processes or a Dask cluster (``execute``);
* :mod:`~cfpoison.experiments.presentation` -- stored cells to tables (``tables``: mean and
  spread over seeds), figures (``figures``: PNG/SVG) and the report (``report``: Markdown,
  HTML, JSON);
* :mod:`~cfpoison.experiments.paper` -- the experiments of Li et al. 2016 built from those:
  Figures 1 and 2 (``figures_1_2``: :func:`figure_parts`), SGLD's beta trade-off
  (``beta_tradeoff``) and the demo (``demo``).

Two modules join them: :mod:`~cfpoison.experiments.attack_runner`, the built-in cell runner
``attack`` (one :func:`cfpoison.attacks.run_attack` per cell, any grid, not only the paper's),
and :mod:`~cfpoison.experiments.pipeline`, a sweep end to end (:func:`run_sweep`: run the
missing cells, export, draw, report into one folder).
"""

from cfpoison.experiments.paper.figures_1_2 import figure_parts
from cfpoison.experiments.pipeline import SweepRun, run_sweep
from cfpoison.experiments.sweeps.execute import SweepError, SweepOutcome, run_cells
from cfpoison.experiments.sweeps.runners import CellOutcome, CellRunner, RunContext, cells_of
from cfpoison.experiments.sweeps.spec import Cell, PlotSpec, SweepSpec, load_spec
from cfpoison.experiments.sweeps.store import ResultStore, StoredCell, export_csv, export_parquet

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
