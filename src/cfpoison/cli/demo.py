"""``cfpoison demo``: the main job on built-in data, offline.

PGA, SGLD and uniform attacks at 3 % on the built-in synthetic MovieLens-like set, the
detectors' verdicts on each, and a report (Markdown and self-contained HTML) with a figure.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from cfpoison.cli._common import add_json_option, check_command_outputs, emit, show_progress
from cfpoison.cli._options import positive_int
from cfpoison.cli.sweep import add_execution_options, run_context
from cfpoison.experiments.paper.demo import (
    demo_notes,
    demo_spec,
    detection_blocks,
    draw_demo,
    summary_blocks,
    verdict_table,
)
from cfpoison.experiments.pipeline import run_sweep
from cfpoison.experiments.presentation.report import to_markdown
from cfpoison.experiments.sweeps.execute import SweepError
from cfpoison.experiments.sweeps.runners import cells_of
from cfpoison.experiments.sweeps.store import ResultStore


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="attack the built-in synthetic data with PGA, SGLD and uniform, then detect",
        description="The main job on built-in data, offline: PGA, SGLD (beta 0.6) and uniform "
        "attacks with 3% fake users on the built-in synthetic MovieLens-like set, every "
        "detector and the paper's t-test on each, and a report (report.md, report.html) "
        "with a figure. Rerunning reuses the stored results.",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("cfpoison-demo"),
        metavar="DIR",
        help="folder for the store, figure and report (default: ./cfpoison-demo)",
    )
    parser.add_argument(
        "--iterations",
        type=positive_int,
        default=10,
        metavar="T",
        help="PGA and SGLD steps (default 10)",
    )
    add_execution_options(parser)
    add_json_option(parser)
    parser.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    check_command_outputs(args, folders={"--out": args.out, "--cache": args.cache})
    start = time.perf_counter()
    spec = demo_spec(args.iterations)
    run = run_sweep(
        spec,
        args.out,
        run_context(args, args.out),
        workers=args.workers,
        scheduler=args.scheduler,
        progress=show_progress(args),
        title="cfpoison demo: attacks and detectors on synthetic data",
        notes=demo_notes(cells_of(spec)),
        name="demo",
        draw=draw_demo,
        extra=detection_blocks,
    )
    if run.error:
        raise SweepError(run.error)
    with ResultStore(run.files["store"]) as store:
        rows = store.rows(cell.key for cell in run.cells)
    text = to_markdown([*summary_blocks(rows)[1:], verdict_table(rows)], args.out).rstrip()
    took = time.perf_counter() - start
    emit(
        args,
        {**run.to_dict(), "seconds": took},
        f"{text}\n\ntook {took:.1f} s; report: {run.files['html']} (and report.md)",
    )
    return 0
