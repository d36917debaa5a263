"""``cfpoison sweep``: run a grid of experiments into a resumable store, export, report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cfpoison.cli._common import (
    add_data_dir_option,
    add_json_option,
    check_command_outputs,
    data_dir_from,
    emit,
    show_progress,
)
from cfpoison.errors import DataError
from cfpoison.experiments.pipeline import STORE_NAME, run_sweep
from cfpoison.experiments.sweeps.execute import SweepError
from cfpoison.experiments.sweeps.runners import RunContext, cells_of
from cfpoison.experiments.sweeps.spec import (
    SweepSpec,
    flatten,
    load_spec,
    parse_assignments,
    require_cells,
    varying_fields,
)
from cfpoison.experiments.sweeps.store import ResultStore, export_csv, export_parquet

EXAMPLE = """\
a sweep file (every [[grid]] block is a cartesian product; the sweep is their union):

  [base]
  dataset = "ml-latest-small"
  learner = "als"              # or "nuclear"; learner.rank = 10, ...
  mu1 = 1.0
  mu2 = 0.0
  [[grid]]
  method = ["pga", "uniform"]
  alpha = [0.01, 0.03, 0.05]
  seed = [0, 1, 2]
  [[grid]]
  method = "sgld"
  beta = [0.2, 0.6, 1.0]
  alpha = [0.03]
  seed = [0, 1, 2]
  [plot]                       # optional; these are the defaults
  x = "alpha"
  curve = "method"
  panel = ["mu1", "mu2"]
  metrics = ["rmse_shift", "target_mean_after"]

settings: dataset, preprocess.FIELD, learner, learner.FIELD, method, iterations, seed, gradient,
alpha, items_per_user, max_rating, item_selection, mu1, mu2, targets, weights, beta, sgld.FIELD,
detect (see cfpoison.experiments.attack_runner)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sweep",
        help="run a grid of experiments into a resumable result store",
        description="Sweeps over grids of data set, learner, method, alpha, mu1, mu2, beta, "
        "seed, ...: every cell is stored (SQLite, keyed by the SHA-256 of its full config) as "
        "it finishes, so rerunning a killed sweep computes only the missing cells; runs that "
        "share an --out share its cells (each cell is leased to one run).",
    )
    commands = parser.add_subparsers(dest="sweep_command", metavar="ACTION", required=True)

    run = commands.add_parser(
        "run",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EXAMPLE,
        help="run the missing cells of a sweep, then export and report",
        description="Run a sweep from a TOML file and/or flags into --out DIR (store, CSV, "
        "Parquet, figure, report.md, report.html). Example: cfpoison sweep run --out runs/a "
        "--set dataset=ml-latest-small --grid method=pga,uniform --grid alpha=0.01,0.03 "
        "--grid seed=0,1",
    )
    run.add_argument("spec", nargs="?", type=Path, help="sweep file (TOML; see docs)")
    run.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    run.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a base setting for every cell (repeatable; dotted names for nested fields)",
    )
    run.add_argument(
        "--grid",
        dest="axes",
        action="append",
        default=[],
        metavar="NAME=V1,V2",
        help="an axis added to every grid block (repeatable)",
    )
    run.add_argument("--runner", help="cell runner: 'attack' (default) or module:attribute")
    add_execution_options(run)
    run.add_argument("--title", default="Sweep", help="report title")
    run.add_argument(
        "--dry-run", action="store_true", help="list the cells and what is stored; run nothing"
    )
    add_data_dir_option(run)
    add_json_option(run)
    run.set_defaults(func=_run)

    export = commands.add_parser(
        "export",
        help="export a store to CSV and/or Parquet",
        description="One line per finished cell: key, dotted config fields, scalar metrics, "
        "seconds; Parquet adds the config and history as JSON columns.",
    )
    export.add_argument("store", type=Path, help=f"a store file, or a folder holding {STORE_NAME}")
    export.add_argument("--csv", type=Path, metavar="PATH", help="write CSV here")
    export.add_argument("--parquet", type=Path, metavar="PATH", help="write Parquet here")
    export.set_defaults(func=_export)


def add_execution_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        metavar="N",
        help="local worker processes (default 2; 0 runs cells in this process)",
    )
    parser.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run cells on a Dask distributed scheduler (tcp://host:8786) instead; 'local' "
        "starts a Dask LocalCluster of --workers processes (a killed worker's cell is rerun)",
    )
    cache = parser.add_mutually_exclusive_group()
    cache.add_argument(
        "--cache",
        type=Path,
        metavar="DIR",
        help="folder of the fits the cells share (clean model, noise floor), on a filesystem "
        "every worker reaches (default: OUT/cache)",
    )
    cache.add_argument(
        "--no-cache",
        action="store_true",
        help="fit the clean model and the noise floor again in every cell",
    )


def run_context(args: argparse.Namespace, out: Path) -> RunContext:
    """Where cells run: ``--data-dir`` and the shared-fit cache (``--cache``, ``--no-cache``)."""
    cache = None if args.no_cache else (args.cache or out / "cache")
    return RunContext(data_dir=_str_or_none(data_dir_from(args)), cache_dir=_str_or_none(cache))


def spec_from_args(args: argparse.Namespace) -> SweepSpec:
    """The sweep file (if any) with ``--set``, ``--grid`` and ``--runner`` applied."""
    spec = load_spec(args.spec) if args.spec is not None else SweepSpec()
    if args.runner:
        spec = spec.replace(runner=args.runner)
    spec = spec.with_flags(
        parse_assignments(args.settings, axes=False), parse_assignments(args.axes, axes=True)
    )
    where = f"the sweep file {args.spec}" if args.spec is not None else "the command line"
    require_cells(spec, f"{where} (with --set and --grid)")
    return spec


def _run(args: argparse.Namespace) -> int:
    spec = spec_from_args(args)
    check_command_outputs(
        args, folders={"--out": args.out, "--cache": args.cache}, inputs=[("spec", args.spec)]
    )
    context = run_context(args, args.out)
    if args.dry_run:
        cells = cells_of(spec)
        store_path = args.out / STORE_NAME
        done: set[str] = set()
        if store_path.exists():
            with ResultStore(store_path) as store:
                done = store.keys()
        stored = sum(cell.key in done for cell in cells)
        varying = varying_fields([cell.config for cell in cells])
        lines = [
            " ".join(
                [cell.key[:12], "done" if cell.key in done else "todo"]
                + [f"{k}={flatten(cell.config).get(k)}" for k in varying]
            )
            for cell in cells
        ]
        payload = {"cells": len(cells), "stored": stored, "keys": [c.key for c in cells]}
        emit(args, payload, "\n".join([*lines, f"{len(cells)} cells, {stored} stored"]))
        return 0
    result = run_sweep(
        spec,
        args.out,
        context,
        workers=args.workers,
        scheduler=args.scheduler,
        progress=show_progress(args),
        title=args.title,
    )
    emit(args, result.to_dict(), _summary(result.to_dict()))
    if result.error:
        raise SweepError(result.error)
    return 0


def _summary(run: dict[str, object]) -> str:
    files = run["files"]
    assert isinstance(files, dict)
    outcome = run["outcome"]
    head = f"{run['cells']} cells"
    if isinstance(outcome, dict):
        head += f": {outcome['computed']} computed, {outcome['already_done']} already stored"
        if outcome.get("by_others"):
            head += f", {outcome['by_others']} stored meanwhile by another runner"
    return "\n".join([head, *(f"{name}: {path}" for name, path in files.items())])


def _str_or_none(path: Path | None) -> str | None:
    return None if path is None else str(path)


def _export(args: argparse.Namespace) -> int:
    path = args.store / STORE_NAME if args.store.is_dir() else args.store
    if not path.exists():
        raise DataError(f"{path}: no such result store")
    if args.csv is None and args.parquet is None:
        raise DataError("nothing to do: give --csv PATH and/or --parquet PATH")
    check_command_outputs(
        args, {"--csv": args.csv, "--parquet": args.parquet}, inputs=[("store", path)]
    )
    with ResultStore(path) as store:
        rows = store.rows()
    if args.csv is not None:
        export_csv(rows, args.csv)
    if args.parquet is not None:
        export_parquet(rows, args.parquet)
    if not args.quiet:
        written = [str(p) for p in (args.csv, args.parquet) if p is not None]
        print(f"exported {len(rows)} cells to {', '.join(written)}", file=sys.stderr)
    return 0
