"""``cfpoison reproduce fig1|fig2|beta|defenses``: the paper's figures, resumable, with a report."""

from __future__ import annotations

import argparse
from pathlib import Path

from cfpoison.cli._common import (
    add_data_dir_option,
    add_json_option,
    check_command_outputs,
    data_dir_from,
    emit,
    show_progress,
)
from cfpoison.cli.sweep import add_execution_options, run_context
from cfpoison.experiments.paper.beta_tradeoff import beta_parts
from cfpoison.experiments.paper.defenses import reproduce_defenses
from cfpoison.experiments.paper.figures_1_2 import METHODS, SHILLING, figure_parts
from cfpoison.experiments.pipeline import run_sweep
from cfpoison.experiments.sweeps.execute import SweepError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "reproduce",
        help="reproduce the paper's Figures 1 and 2",
        description="RMSE shift and the target item's mean predicted rating against the "
        "percentage of malicious users, panels mu = (1,0), (1,-1), (0,1), (-1,1), curves PGA, "
        "SGLD (beta 0.6) and uniform beside the stronger shilling attack (average or "
        "bandwagon), mean and standard deviation over seeds, with the seed-noise floor. "
        "fig1: alternating minimization; fig2: nuclear norm on the 1000 x 1700 subset and on "
        "the full set. Results go to a store in --out; rerun the same command to resume.",
    )
    parser.add_argument(
        "figure",
        choices=("fig1", "fig2", "beta", "defenses"),
        help="which figure (beta: SGLD's t-test p-values and utility against beta, and PGA, "
        "SGLD and uniform side by side at alpha 3%%, B 100; defenses: every default defense "
        "against PGA, SGLD, uniform, average and bandwagon, cost and benefit)",
    )
    parser.add_argument(
        "--dataset", default="ml-latest-small", help="data set (default: ml-latest-small)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="folder for the store, tables, figures and report (default: results/FIGURE)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small grid (2 alphas, 2 seeds, few iterations): minutes, a smoke test",
    )
    parser.add_argument("--seeds", type=int, default=None, metavar="N", help="seeds per point")
    parser.add_argument(
        "--methods",
        default=",".join(METHODS + SHILLING),
        metavar="M1,M2",
        help=f"curves to compute (default: {','.join(METHODS + SHILLING)}; the figure draws "
        "the stronger shilling attack per panel)",
    )
    add_execution_options(parser)
    add_data_dir_option(parser)
    add_json_option(parser)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    out = args.out if args.out is not None else Path("results") / args.figure
    check_command_outputs(args, folders={"--out": out, "--cache": args.cache})
    if args.figure == "defenses":
        return _defenses(args, out)
    if args.figure == "beta":
        parts = beta_parts(dataset=args.dataset, quick=args.quick, seeds=args.seeds)
    else:
        parts = figure_parts(
            args.figure,
            dataset=args.dataset,
            quick=args.quick,
            seeds=args.seeds,
            methods=tuple(m.strip() for m in args.methods.split(",") if m.strip()),
        )
    context = run_context(args, out)
    runs = {}
    for part in parts:
        runs[part.name] = run_sweep(
            part.spec,
            out / part.name if len(parts) > 1 else out,
            context,
            workers=args.workers,
            scheduler=args.scheduler,
            progress=show_progress(args),
            title=part.title,
            notes=part.notes,
            name=part.name,
        )
    lines = [f"{name}: report {run.files['html']}" for name, run in runs.items()]
    emit(args, {name: run.to_dict() for name, run in runs.items()}, "\n".join(lines))
    errors = [f"{name}: {run.error}" for name, run in runs.items() if run.error]
    if errors:
        raise SweepError("; ".join(errors))
    return 0


def _defenses(args: argparse.Namespace, out: Path) -> int:
    """``reproduce defenses``: one grid, no store (the attacks are regenerated each run)."""
    result, files = reproduce_defenses(
        args.dataset, data_dir_from(args), out, quick=args.quick, progress=show_progress(args)
    )
    text = "\n".join(f"wrote {path}" for path in files)
    emit(args, result, text)
    return 0
