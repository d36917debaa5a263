"""``cfpoison detect``: inject a profile file and run every detector and both t-tests."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from cfpoison.cli._common import add_json_option, emit, ttest_data
from cfpoison.cli.data import add_load_options, load_from_args
from cfpoison.data.profiles import read_profiles
from cfpoison.detect import DetectConfig, DetectionReport, TTestResult, run_detectors


def report_text(report: DetectionReport, name: str, profiles: Path) -> str:
    """The detector table and the t-tests, for people."""
    lines = [
        f"{name}: {report.n_normal} normal users, {report.n_fake} fake users from {profiles}",
        "",
        f"{'detector':<12}{'precision':>10}{'recall':>8}{'F1':>8}{'AUC':>8}",
    ]
    for detector, m in report.metrics.items():
        lines.append(f"{detector:<12}{m.precision:>10.3f}{m.recall:>8.3f}{m.f1:>8.3f}{m.auc:>8.3f}")
    lines.append("(precision, recall and F1 among the top-k suspects, k = the number of fakes)")
    lines.append("")
    for label, test in (("t-test (paper)", report.ttest), ("t-test (users)", report.ttest_users)):
        lines.append(f"{label:<16}p = {test.pvalue:.3g}   t = {test.statistic:.3f}")
        lines.append(f"{'':<16}{_what(test)}")
    return "\n".join(lines)


def _what(test: TTestResult) -> str:
    return f"{test.statistic_name} ({test.n_pairs} pairs)"


def _detect(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    ratings = load_from_args(args, args.dataset)
    fake_ids, fake = read_profiles(args.profiles, ratings)
    config = DetectConfig(
        degsim_k=args.degsim_k,
        degsim_shrink=args.degsim_shrink,
        pca_components=args.pca_components,
        ttest_neighbours=args.ttest_neighbours,
    )
    report = run_detectors(ratings, fake, config)
    payload: dict[str, Any] = {
        "dataset": ratings.name,
        "profiles": str(args.profiles),
        "fake_user_ids": fake_ids,
        **report.to_dict(),
        "ttest_data": ttest_data(ratings),
        "config": config.to_dict(),
        "seconds": time.perf_counter() - start,
    }
    text = report_text(report, ratings.name, args.profiles)
    emit(args, payload, f"{text}\n(t-tests on the {payload['ttest_data']})")
    return 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "detect",
        help="run the shilling detectors and the paper's t-test on fake profiles",
        description="Append the fake profiles of --profiles (CSV userId,movieId,rating in the "
        "data set's ids and scale, as `cfpoison attack` writes) to the data set, score every "
        "user with RDMA, WDMA, WDA, DegSim, LengthVar, MeanVar, FMTD and PCA-VarSelect, "
        "report precision, recall, F1 (top-k, k = number of fakes) and ROC AUC against the "
        "truth, and run the paired t-tests on how often the rated items are rated.",
    )
    parser.add_argument(
        "--dataset", required=True, metavar="NAME", help="synthetic, ml-latest-small, csv:PATH"
    )
    parser.add_argument(
        "--profiles", required=True, type=Path, metavar="CSV", help="the fake profiles"
    )
    defaults = DetectConfig()
    parser.add_argument(
        "--degsim-k",
        type=int,
        default=defaults.degsim_k,
        metavar="K",
        help=f"neighbours averaged by DegSim (default {defaults.degsim_k})",
    )
    parser.add_argument(
        "--degsim-shrink",
        type=float,
        default=defaults.degsim_shrink,
        metavar="N",
        help="DegSim's significance weighting min(co-rated, N) / N; 0 turns it off "
        f"(default {defaults.degsim_shrink:g})",
    )
    parser.add_argument(
        "--pca-components",
        type=int,
        default=defaults.pca_components,
        metavar="R",
        help=f"principal components of PCA-VarSelect (default {defaults.pca_components})",
    )
    parser.add_argument(
        "--ttest-neighbours",
        type=int,
        default=defaults.ttest_neighbours,
        metavar="K",
        help="activity-matched normal users per fake user in the user-paired t-test "
        f"(default {defaults.ttest_neighbours})",
    )
    add_load_options(parser)
    add_json_option(parser)
    parser.set_defaults(func=_detect)
