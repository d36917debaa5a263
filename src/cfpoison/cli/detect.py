"""``cfpoison detect``: inject a profile file and run every detector (two-sided), the learned
detector, the distribution tests and both t-tests."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from cfpoison.cli._common import (
    add_json_option,
    check_command_outputs,
    emit,
    stderr_progress,
    ttest_data,
)
from cfpoison.cli._options import add_options, given
from cfpoison.cli.data import add_load_options, load_from_args
from cfpoison.config import settings_of
from cfpoison.data.profiles import read_profiles
from cfpoison.detect import DetectConfig, DetectionReport, TTestResult, run_detectors


def report_text(report: DetectionReport, name: str, profiles: Path) -> str:
    """The detector table (two-sided), the learned detector, the distribution tests and the
    t-tests, for people."""
    lines = [
        f"{name}: {report.n_normal} normal users, {report.n_fake} fake users from {profiles}",
        "",
        f"{'detector':<12}{'precision':>10}{'recall':>8}{'F1':>8}{'AUC':>8}{'2-sided':>9}",
    ]
    for detector, m in report.metrics.items():
        note = "  inverted" if m.inverted else ""
        lines.append(
            f"{detector:<12}{m.precision:>10.3f}{m.recall:>8.3f}{m.f1:>8.3f}{m.auc:>8.3f}"
            f"{m.auc_two_sided:>9.3f}{note}"
        )
    lines.append("(precision, recall and F1 among the top-k suspects, k = the number of fakes;")
    lines.append(
        " 2-sided = max(AUC, 1 - AUC): 'inverted' = fakes score lower, caught all the same)"
    )
    lines.append("")
    if report.learned is None:
        lines.append(f"learned detector: not run ({report.learned_skipped})")
    else:
        learned = report.learned
        folds = np.asarray(learned.fold_aucs)
        lines.append(
            f"learned detector: AUC {learned.auc.auc:.3f}, two-sided "
            f"{learned.auc.auc_two_sided:.3f}{'  inverted' if learned.auc.inverted else ''}; "
            f"per fold {folds.mean():.3f} +- {folds.std():.3f} "
            f"({', '.join(f'{a:.2f}' for a in folds)})"
        )
        lines.append(
            f"  gradient boosting on {len(learned.features)} per-user features, "
            f"{learned.n_normal} real users vs {learned.n_fake} labelled fakes, "
            f"{learned.folds}-fold out-of-fold scores (seed {learned.seed})"
        )
    best, best_auc = report.best()
    lines += [f"best detector: {best} (two-sided AUC {best_auc:.3f})", ""]
    lines.append(f"distribution tests, {report.n_fake} fakes vs {report.n_normal} real users:")
    for dist in report.distribution.values():
        extra = ""
        if dist.pvalue_asymptotic != dist.pvalue:
            extra = f" (chi2 tail, ratings as independent: {dist.pvalue_asymptotic:.3g})"
        lines.append(f"  {dist.name:<18}p = {dist.pvalue:.3g}{extra}")
        lines.append(f"  {'':<18}{dist.description}")
    lines.append("")
    for label, test in (("t-test (paper)", report.ttest), ("t-test (users)", report.ttest_users)):
        lines.append(f"{label:<16}p = {test.pvalue:.3g}   t = {test.statistic:.3f}")
        lines.append(f"{'':<16}{_what(test)}")
    return "\n".join(lines)


#: The detectors' flags, one per :class:`DetectConfig` field.
DETECT_SETTINGS = settings_of(DetectConfig)


def _what(test: TTestResult) -> str:
    return f"{test.statistic_name} ({test.n_pairs} pairs)"


def _detect(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    check_command_outputs(args, inputs=[("--profiles", args.profiles)])
    ratings = load_from_args(args, args.dataset)
    fake_ids, fake = read_profiles(args.profiles, ratings)
    config = DetectConfig(**given(args, DETECT_SETTINGS.values()))
    report = run_detectors(ratings, fake, config, stderr_progress(args))
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
        "truth (two-sided: an inverted separation counts as caught), train a gradient-boosted "
        "classifier on per-user features (real users vs the labelled fakes, out-of-fold "
        "AUC), compare the fakes with the real users on profile length, rating histogram and "
        "item popularity, and run the paired t-tests on how often the rated items are rated.",
    )
    parser.add_argument(
        "--dataset", required=True, metavar="NAME", help="synthetic, ml-latest-small, csv:PATH"
    )
    parser.add_argument(
        "--profiles", required=True, type=Path, metavar="CSV", help="the fake profiles"
    )
    add_options(parser, DETECT_SETTINGS.values())
    add_load_options(parser)
    add_json_option(parser)
    parser.set_defaults(func=_detect)
