"""``cfpoison detect``: inject a profile file and run every detector (two-sided), the learned
detector, the distribution tests and both t-tests (``--protocol within``, the default); or
generate one attack per family and judge every detector leave-one-family-out
(``--protocol cross-family``, :mod:`cfpoison.detect.cross_family`); or, with ``--feedback
implicit[:THRESHOLD]`` (or an ``interactions:PATH`` data set), inject the interaction
profiles of ``cfpoison promote --profiles`` into the training split as interactions and run
the implicit detectors (:mod:`cfpoison.detect.implicit`)."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from cfpoison.attacks.engine import (
    BASELINES,
    AttackConfig,
    attack_settings,
    available_methods,
    run_attack,
)
from cfpoison.attacks.threat import ThreatModel
from cfpoison.cli._common import (
    add_json_option,
    check_command_outputs,
    emit,
    stderr_progress,
    ttest_data,
)
from cfpoison.cli._options import add_options, flags_of, given, parse_feedback, positive_int
from cfpoison.cli.data import add_load_options, load_from_args
from cfpoison.cli.promote import implicit_train
from cfpoison.config import Setting, settings_of
from cfpoison.data.preprocess import PreprocessConfig
from cfpoison.data.profiles import read_interaction_profiles, read_profiles
from cfpoison.data.registry import INTERACTIONS_PREFIX
from cfpoison.detect import DetectConfig, DetectionReport, TTestResult, run_detectors
from cfpoison.detect.cross_family import cross_family
from cfpoison.detect.implicit import ImplicitDetectionReport, run_implicit_detectors
from cfpoison.detect.report import text as cross_family_text
from cfpoison.detect.report import write_report
from cfpoison.errors import ConfigError
from cfpoison.learners import ALSConfig
from cfpoison.models import fit_learner, noise_floor


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


#: The budget flags of ``--protocol cross-family`` (the threat model's).
BUDGET_SETTINGS = {name: attack_settings()[name] for name in ("alpha", "items_per_user")}
#: The detector flags only ``--protocol within`` reads.
WITHIN_ONLY = ("permutations", "ttest_neighbours")
#: Gradient steps of the iterative attacks under ``--protocol cross-family``.
CROSS_FAMILY_ITERATIONS = 1
#: ``(method, options)`` of the families other than one per registered method at its
#: defaults: ``adaptive`` against detect-and-remove with RDMA at 1% FPR (the attacker that
#: evades a detector), SGLD's mimic mode beside its paper mode.
FAMILY_CHANGES: dict[str, tuple[str, dict[str, Any]]] = {
    "adaptive": ("adaptive", {"defense": "detect_remove"}),
    "sgld-mimic": ("sgld", {"mode": "mimic"}),
}


def attack_families() -> dict[str, tuple[str, dict[str, Any]]]:
    """Every family, ``name -> (method, options)``: one per registered method (the baselines
    first), each variant of :data:`FAMILY_CHANGES` after its method."""
    methods = available_methods()
    order = [*(m for m in BASELINES if m in methods), *(m for m in methods if m not in BASELINES)]
    families: dict[str, tuple[str, dict[str, Any]]] = {}
    for method in order:
        variants = {n: c for n, c in FAMILY_CHANGES.items() if c[0] == method}
        families[method] = variants.pop(method, (method, {}))
        families.update(variants)
    return families


def _refuse(args: argparse.Namespace, flags: dict[str, str], protocol: str) -> None:
    """A :class:`ConfigError` for the first of ``flags`` (dest -> flag) given."""
    for dest, flag in flags.items():
        if getattr(args, dest, None) is not None:
            raise ConfigError(f"{flag} does not apply to --protocol {protocol}")


def _setting_flags(names: Iterable[str], settings: dict[str, Setting]) -> dict[str, str]:
    return {name: flags_of(settings[name])[0] for name in names}


def _cross_family(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    _refuse(
        args,
        {"profiles": "--profiles", **_setting_flags(WITHIN_ONLY, DETECT_SETTINGS)},
        "cross-family",
    )
    known = attack_families()
    names = list(dict.fromkeys(known if args.families is None else args.families.split(",")))
    unknown = [f for f in names if f not in known]
    if unknown:
        raise ConfigError(f"unknown family {unknown[0]!r} (known: {', '.join(known)})")
    if len(names) < 2:
        raise ConfigError("--families: name at least two different families")
    config = DetectConfig(**given(args, DETECT_SETTINGS.values()))
    threat = ThreatModel(**given(args, BUDGET_SETTINGS.values()))
    iterations = args.iterations or CROSS_FAMILY_ITERATIONS
    check_command_outputs(args, folders={"--report": args.report})
    say = stderr_progress(args) or (lambda _: None)
    ratings = load_from_args(args, args.dataset)
    learner = ALSConfig(seed=config.seed)
    say(f"clean fit and its seed-noise floor on {ratings.name}")
    clean = fit_learner(learner, ratings)
    floor = noise_floor(ratings, learner, clean)
    fakes, attacks = {}, {}
    for i, name in enumerate(names):
        method, options = known[name]
        attack = AttackConfig(
            method=method,
            learner=learner,
            threat=threat,
            iterations=iterations,
            options=options,
            seed=config.seed,
        )
        say(f"{name} ({i + 1}/{len(names)}): the {method} attack")
        result = run_attack(ratings, attack, clean=clean, floor=floor)
        fakes[name] = result.fake
        attacks[name] = {
            "method": method,
            "options": options,
            "n_fake": int(result.fake.shape[0]),
            "rmse_shift": result.metrics["rmse_shift"],
            "seconds": result.seconds,
        }
        say(f"{name}: {result.fake.shape[0]} fake profiles in {result.seconds:.1f} s")
    report = cross_family(ratings, fakes, np.random.default_rng(config.seed), config, progress=say)
    payload: dict[str, Any] = {
        "dataset": ratings.name,
        **report.to_dict(),
        "attacks": attacks,
        "threat": threat.to_dict(),
        "iterations": iterations,
        "rmse_shift_noise_floor": floor,
        "config": config.to_dict(),
        "seconds": time.perf_counter() - start,
    }
    text = cross_family_text(report, ratings.name)
    if args.report is not None:
        written = write_report(report, ratings.name, payload, args.report)
        text += "\nreport: " + ", ".join(str(p) for p in written)
    emit(args, payload, text)
    return 0


#: The detector flags that only rated profiles read (DegSim's significance weighting, the
#: t-tests, the rating-histogram test).
EXPLICIT_ONLY = ("degsim_shrink", "ttest_neighbours", "permutations")


def implicit_text(report: ImplicitDetectionReport, name: str, profiles: Path) -> str:
    """The implicit detector table (two-sided AUC, flagging at the FPR), for people."""
    fpr = f"{100 * report.fpr:g}%"
    lines = [
        f"{name}: {report.n_normal} real users, {report.n_fake} fake users from {profiles}",
        "",
        f"{'detector':<16}{'AUC':>8}{'2-sided':>9}{'prec@' + fpr:>12}{'rec@' + fpr:>11}"
        f"{'flagged':>9}",
    ]
    for detector, j in report.judged.items():
        note = "  inverted" if j.auc.inverted else ""
        lines.append(
            f"{detector:<16}{j.auc.auc:>8.3f}{j.auc.auc_two_sided:>9.3f}"
            f"{j.at_fpr.precision:>12.3f}{j.at_fpr.recall:>11.3f}{j.at_fpr.flagged:>9}{note}"
        )
    lines.append(
        "(2-sided = max(AUC, 1 - AUC): 'inverted' = fakes score lower, caught all the same;"
    )
    lines.append(
        f" flagged: above the {100 * (1 - report.fpr):g}th percentile of the real users' scores, "
        "in the direction the AUC favours)"
    )
    if report.learned is None:
        lines.append(f"learned detector: not run ({report.learned_skipped})")
    else:
        lines.append(
            f"learned: gradient boosting on the {len(report.learned.features)} scores above, "
            f"{report.learned.folds}-fold out-of-fold (seed {report.learned.seed})"
        )
    best, best_auc = report.best()
    lines.append(f"best detector: {best} (two-sided AUC {best_auc:.3f})")
    return "\n".join(lines)


#: What ``--protocol within`` reads from a profile file: ``(data set name, fake user ids,
#: the report's JSON fields, its text)``, given the detector settings.
WithinResult = tuple[str, Any, dict[str, Any], str]
WithinRun = Callable[[DetectConfig], WithinResult]


def _within(
    args: argparse.Namespace, label: str, refused: dict[str, str], run: WithinRun, hint: str = ""
) -> int:
    """``--protocol within`` on ``--profiles``: the flags of the other protocol (and
    ``refused``) refused, the outputs checked, ``run`` timed and reported."""
    _refuse(
        args,
        {
            "families": "--families",
            "iterations": "--iterations",
            "report": "--report",
            **_setting_flags(BUDGET_SETTINGS, BUDGET_SETTINGS),
            **refused,
        },
        label,
    )
    if args.profiles is None:
        raise ConfigError(f"--protocol {label} needs --profiles CSV{hint}")
    start = time.perf_counter()
    check_command_outputs(args, inputs=[("--profiles", args.profiles)])
    config = DetectConfig(**given(args, DETECT_SETTINGS.values()))
    name, fake_ids, fields, text = run(config)
    payload: dict[str, Any] = {
        "dataset": name,
        "profiles": str(args.profiles),
        "fake_user_ids": fake_ids,
        **fields,
        "config": config.to_dict(),
        "seconds": time.perf_counter() - start,
    }
    emit(args, payload, text)
    return 0


def _implicit(args: argparse.Namespace, config: DetectConfig) -> WithinResult:
    """The detectors for binary profiles on the training split as interactions (binarised
    at ``--feedback``, or an ``interactions:PATH`` file)."""
    data = implicit_train(args, PreprocessConfig(seed=config.seed))
    fake_ids, fake = read_interaction_profiles(args.profiles, data)
    report = run_implicit_detectors(data, fake, config, progress=stderr_progress(args))
    return data.name, fake_ids, report.to_dict(), implicit_text(report, data.name, args.profiles)


def _explicit(args: argparse.Namespace, config: DetectConfig) -> WithinResult:
    """The rating detectors and the t-tests on the data set as given."""
    ratings = load_from_args(args, args.dataset)
    fake_ids, fake = read_profiles(args.profiles, ratings)
    report = run_detectors(ratings, fake, config, stderr_progress(args))
    fields: dict[str, Any] = {**report.to_dict(), "ttest_data": ttest_data(ratings)}
    text = report_text(report, ratings.name, args.profiles)
    return ratings.name, fake_ids, fields, f"{text}\n(t-tests on the {fields['ttest_data']})"


def _detect(args: argparse.Namespace) -> int:
    if args.feedback is not None or args.dataset.startswith(INTERACTIONS_PREFIX):
        if args.protocol == "cross-family":
            raise ConfigError("--feedback implicit does not apply to --protocol cross-family")
        refused = _setting_flags(EXPLICIT_ONLY, DETECT_SETTINGS)
        hint = " (cfpoison promote --profiles)"
        return _within(
            args, "within --feedback implicit", refused, lambda c: _implicit(args, c), hint
        )
    if args.protocol == "cross-family":
        return _cross_family(args)
    return _within(args, "within", {}, lambda c: _explicit(args, c))


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "detect",
        help="run the shilling detectors and the paper's t-test on fake profiles",
        description="--protocol within (the default): append the fake profiles of --profiles "
        "(CSV userId,movieId,rating in the data set's ids and scale, as `cfpoison attack` "
        "writes) to the data set, score every user with RDMA, WDMA, WDA, DegSim, LengthVar, "
        "MeanVar, FMTD and PCA-VarSelect, report precision, recall, F1 (top-k, k = number of "
        "fakes) and ROC AUC against the truth (two-sided: an inverted separation counts as "
        "caught), train a gradient-boosted classifier on per-user features (real users vs the "
        "labelled fakes, out-of-fold AUC), compare the fakes with the real users on profile "
        "length, rating histogram and item popularity, and run the paired t-tests on how "
        "often the rated items are rated. --protocol cross-family: run one attack per family "
        "on the data set (every registered attack method at its defaults, SGLD in paper and "
        "mimic mode, adaptive against detect-and-remove with RDMA; --iterations steps, seed "
        "--seed), inject each alone, and judge every detector leave-one-family-out: the "
        "learned detector trains on the other families' fakes and the real users outside the "
        "test fold, and never sees the held-out family's labels; per family the two-sided "
        "AUC, precision and recall at 1% FPR (threshold: the 99th percentile of the test "
        "fold's real users' scores), and the learned detector's within-family AUC beside.",
    )
    parser.add_argument(
        "--dataset", required=True, metavar="NAME", help="synthetic, ml-latest-small, csv:PATH"
    )
    parser.add_argument(
        "--protocol",
        choices=("within", "cross-family"),
        default="within",
        help="within (default): the profiles of --profiles, the learned detector trained on "
        "their own labels; cross-family: generated families, each held out in turn",
    )
    parser.add_argument(
        "--profiles", type=Path, metavar="CSV", help="the fake profiles (--protocol within)"
    )
    parser.add_argument(
        "--feedback",
        type=parse_feedback,
        metavar="implicit[:THRESHOLD]",
        help="binary profiles (CSV userId,movieId,weight, as `cfpoison promote --profiles` "
        "writes) against the training split of `cfpoison promote --seed S` (pass --seed S) "
        "binarised at THRESHOLD (default 4): length, item popularity, DegSim (Jaccard, "
        "cosine), PCA and the learned detector, two-sided AUC and precision/recall at 1%% FPR",
    )
    group = parser.add_argument_group("--protocol cross-family")
    group.add_argument(
        "--families",
        metavar="A,B,...",
        help=f"the families to generate, comma-separated (default: all: "
        f"{', '.join(attack_families())})",
    )
    group.add_argument(
        "--iterations",
        type=positive_int,
        metavar="N",
        help=f"gradient steps of the iterative attacks (default {CROSS_FAMILY_ITERATIONS})",
    )
    group.add_argument(
        "--report",
        type=Path,
        metavar="DIR",
        help="write cross-family.md (the tables), cross-family.png (AUC heat map, detector x "
        "held-out family) and cross-family.json here",
    )
    add_options(group, BUDGET_SETTINGS.values())
    add_options(parser, DETECT_SETTINGS.values())
    add_load_options(parser)
    add_json_option(parser)
    parser.set_defaults(func=_detect)
