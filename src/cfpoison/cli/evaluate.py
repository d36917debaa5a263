"""``cfpoison evaluate``: inject any profile file, retrain, and report the attack metrics.

With ``--victims PANEL``: the transfer of one or more profile files to a panel of victims
(:mod:`cfpoison.victims.transfer`), a text table, ``--json`` and ``--report DIR``.

With ``--feedback implicit[:THRESHOLD]`` (or an ``interactions:PATH`` data set): interaction
profiles (``userId,movieId[,weight]``, as ``cfpoison promote --profiles`` or another tool
writes them) judged as ``promote`` judges its own: the targets' HR@10, HR@50 and NDCG@50
before and after on cfpoison's WRMF beside its seed-noise floor, or with ``--victims`` the
lift on every victim of an implicit panel at three seeds (:mod:`cfpoison.victims.promotion`).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from cfpoison.attacks.metrics import evaluate_profiles
from cfpoison.attacks.promotion import PromotionConfig, budget, draw_targets, promotion_metrics
from cfpoison.cli._common import (
    LEARNER_SETTINGS,
    StepBar,
    add_json_option,
    add_learner_options,
    add_workers_option,
    attack_targets,
    check_command_outputs,
    emit,
    learner_config,
    preprocess_config,
    show_progress,
    ttest_data,
    victim_workers,
)
from cfpoison.cli._options import flags_of, given
from cfpoison.cli.attack import add_target_option, result_text
from cfpoison.cli.data import add_load_options, load_from_args
from cfpoison.cli.promote import (
    add_feedback_option,
    feedback_of,
    implicit_train,
    measure_lines,
    victim_lines,
)
from cfpoison.data.interactions import Interactions
from cfpoison.data.preprocess import prepare
from cfpoison.data.profiles import profile_sizes, read_interaction_profiles, read_profiles
from cfpoison.data.ratings import Ratings
from cfpoison.data.registry import INTERACTIONS_PREFIX
from cfpoison.learners.wrmf import WRMFConfig
from cfpoison.models import fit_learner
from cfpoison.victims.panel import PRESETS, load_panel
from cfpoison.victims.promotion import PromotionTransferConfig, evaluate_promotion
from cfpoison.victims.report import text_table, write_report
from cfpoison.victims.transfer import TransferConfig, evaluate_transfer


def _run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    inputs = [("--profiles", p) for p in args.profiles] + [("--baseline", args.baseline)]
    check_command_outputs(args, folders={"--report": args.report}, inputs=inputs)
    if args.feedback is not None or args.dataset.startswith(INTERACTIONS_PREFIX):
        return _run_implicit(args, parser)
    if args.victims is not None:
        return _run_victims(args, parser)
    for flag in ("baseline", "report"):
        if getattr(args, flag) is not None:
            parser.error(f"--{flag} needs --victims")
    if len(args.profiles) != 1:
        parser.error("several --profiles files need --victims")
    start = time.perf_counter()
    config = learner_config(args, parser)
    preprocess = preprocess_config(args)
    train, test = prepare(load_from_args(args, args.dataset), preprocess)
    fake_ids, fake = read_profiles(args.profiles[0], train)
    clean = fit_learner(config, train)
    targets = attack_targets(args, train, clean)
    metrics = evaluate_profiles(train, fake, config, targets, test, clean=clean)
    payload: dict[str, Any] = {
        "dataset": args.dataset,
        "profiles": str(args.profiles[0]),
        "fake_user_ids": [int(u) for u in fake_ids],
        **metrics,
        "ttest_data": ttest_data(train, preprocess),
        "targets": [int(i) for i in train.item_ids[targets]],
        "seconds": time.perf_counter() - start,
        "config": config.to_dict(),
        "preprocess": preprocess.to_dict(),
    }
    emit(args, payload, result_text(payload))
    return 0


def _names(paths: list[Path]) -> list[str]:
    """Attack names: the files' stems, or their paths where two stems coincide."""
    stems = [p.stem for p in paths]
    return stems if len(set(stems)) == len(stems) else [str(p) for p in paths]


def _run_victims(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """The transfer of every profile file (and the baseline) to the panel's victims."""
    start = time.perf_counter()
    if args.victim_seeds < 3:
        parser.error("--victim-seeds must be >= 3")
    panel = load_panel(args.victims)
    specs, skipped = panel.runnable()
    config = learner_config(args, parser)
    preprocess = preprocess_config(args)
    raw = load_from_args(args, args.dataset)
    cache: dict[int, tuple[Ratings, Ratings]] = {}

    def splits(offset: int) -> tuple[Ratings, Ratings]:
        if offset not in cache:
            cache[offset] = prepare(raw, preprocess.replace(seed=preprocess.seed + offset))
        return cache[offset]

    train, _ = splits(0)
    paths = list(dict.fromkeys([*args.profiles, *([args.baseline] if args.baseline else [])]))
    names = _names(paths)
    attacks = {name: read_profiles(path, train)[1] for name, path in zip(names, paths, strict=True)}
    baseline = names[paths.index(args.baseline)] if args.baseline else None
    clean = fit_learner(config, train)
    targets = attack_targets(args, train, clean)
    transfer = TransferConfig(
        seeds=tuple(args.seed + 1 + i for i in range(args.victim_seeds)),
        top_k=10 if args.top_k is None else args.top_k,
    )
    workers = victim_workers(args)
    bar = StepBar(args, len(specs) * (1 + len(attacks)) * len(transfer.seeds), "victims")
    result = evaluate_transfer(
        splits,
        specs,
        attacks,
        targets,
        transfer,
        skipped=skipped,
        baseline=baseline,
        workers=workers,
        progress=bar.finished,
    )
    bar.close()
    payload: dict[str, Any] = {
        "dataset": args.dataset,
        "profiles": {n: str(p) for n, p in zip(names, paths, strict=True)},
        "panel": panel.to_dict(),
        **result.to_dict(),
        "seconds": time.perf_counter() - start,
        "workers": workers,
        "preprocess": preprocess.to_dict(),
    }
    if args.report is not None:
        written = write_report(result, args.report)
        if show_progress(args):
            print("wrote " + ", ".join(str(p) for p in written), file=sys.stderr)
    emit(args, payload, text_table(result) + f"\nseconds {payload['seconds']:.1f}")
    return 0


#: Flags of the explicit evaluation that the implicit one does not read (dest -> flag).
EXPLICIT_ONLY = {"report": "--report", "top_k": "--top-k", "scale": "--scale"}


def _run_implicit(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Interaction profiles judged by the targets' HR@10, HR@50 and NDCG@50 (module
    docstring): on cfpoison's WRMF at ``--seed`` (one file), or on a victim panel."""
    start = time.perf_counter()
    refused = [flag for dest, flag in EXPLICIT_ONLY.items() if getattr(args, dest) is not None]
    learner_flags = given(args, LEARNER_SETTINGS.values())
    threads = learner_flags.pop("learner.threads", 0)
    refused += [flags_of(LEARNER_SETTINGS[n])[0] for n in learner_flags]
    if refused:
        parser.error(f"{refused[0]} does not apply to implicit feedback (--feedback)")
    if args.victims is None and args.baseline is not None:
        parser.error("--baseline needs --victims")
    if args.victims is None and len(args.profiles) != 1:
        parser.error("several --profiles files need --victims")
    if args.victim_seeds < 3:
        parser.error("--victim-seeds must be >= 3")
    train = implicit_train(args, preprocess_config(args))
    paths = list(dict.fromkeys([*args.profiles, *([args.baseline] if args.baseline else [])]))
    names = _names(paths)
    attacks = {n: read_interaction_profiles(p, train)[1] for n, p in zip(names, paths, strict=True)}
    if args.target == "auto":
        targets = draw_targets(train, PromotionConfig().n_targets, np.random.default_rng(args.seed))
    else:
        targets = np.sort(train.item_index(np.asarray(args.target)))
    payload: dict[str, Any] = {
        "dataset": args.dataset,
        "feedback": feedback_of(args),
        "profiles": {n: str(p) for n, p in zip(names, paths, strict=True)},
        "targets": [int(i) for i in train.item_ids[targets]],
        "budget": _budget(train, len(targets)),
        "profile_sizes": {n: profile_sizes(fake) for n, fake in attacks.items()},
        "preprocess": preprocess_config(args).to_dict(),
    }
    if args.victims is None:
        learner = WRMFConfig(seed=args.seed, threads=threads)
        bar = StepBar(args, 3, f"{learner.name} rank {learner.rank}")
        payload["learner"] = learner.to_dict()
        fake = attacks[names[0]]
        payload["metrics"] = promotion_metrics(train, fake, learner, targets, progress=bar)
        bar.close()
    else:
        specs, skipped = load_panel(args.victims).runnable()
        seeds = tuple(args.seed + 1 + i for i in range(args.victim_seeds))
        payload["workers"] = workers = victim_workers(args)
        bar = StepBar(args, len(specs) * (1 + len(attacks)) * len(seeds), "victims")
        payload["victims"] = evaluate_promotion(
            train,
            specs,
            attacks,
            targets,
            PromotionTransferConfig(seeds=seeds),
            baseline=names[paths.index(args.baseline)] if args.baseline else None,
            skipped=skipped,
            workers=workers,
            progress=bar.finished,
        )
        bar.close()
    payload["seconds"] = time.perf_counter() - start
    lines = [
        f"{name}: {size['n_fake']} fake users, {size['items']['min']:g}-"
        f"{size['items']['max']:g} items each"
        for name, size in payload["profile_sizes"].items()
    ]
    budget = payload["budget"]
    lines.append(
        f"(promote's budget here: {budget['n_fake']} fake users at alpha "
        f"{budget['alpha']:g}, B = {budget['items_per_user']} items each); targets "
        f"{payload['targets']} on {train.name}"
    )
    if "metrics" in payload:
        lines += measure_lines(payload["metrics"])
    lines += victim_lines(payload.get("victims", {}))
    lines.append(f"seconds {payload['seconds']:.1f}")
    emit(args, payload, "\n".join(lines))
    return 0


def _budget(train: Interactions, n_targets: int) -> dict[str, Any]:
    """``promote``'s default budget on ``train``, for comparison (never enforced here)."""
    config = PromotionConfig()
    n_fake, b = budget(train, config, n_targets)
    return {"alpha": config.alpha, "n_fake": n_fake, "items_per_user": b}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="inject a profile file, retrain, and report the attack metrics",
        description=(
            "Append the fake profiles of --profiles (CSV userId,movieId,rating in the data "
            "set's ids and scale: ours or another tool's) to the training split, retrain the "
            "learner from the clean model's initialisation, and report against the clean "
            "model: the RMSE shift on unseen entries and its seed-noise floor, the targets' "
            "mean predicted rating before and after, train and test RMSE and the paper's "
            "t-test p-value. With --victims PANEL: for each victim of the panel and each "
            "victim seed, clean and poisoned fits of every profile file; the RMSE shift "
            "(exact, over all unseen entries of the normal users) with a 95% confidence "
            "interval, the victim's own seed-noise floor, shift / floor, the target's mean "
            "predicted rating and push in stars, its hit ratio at --top-k among normal "
            "users, the test RMSE change and, with --baseline, paired t-tests. The panel "
            "names the victims; the learner flags then only choose the auto --target."
        ),
    )
    parser.add_argument("--dataset", required=True, metavar="NAME", help="data set name")
    parser.add_argument(
        "--profiles",
        required=True,
        type=Path,
        nargs="+",
        metavar="CSV",
        help="the fake profiles (several files with --victims)",
    )
    parser.add_argument(
        "--victims",
        metavar="PANEL",
        help="evaluate the transfer to a panel of victims: a preset ("
        + ", ".join(sorted(PRESETS))
        + ") or a TOML file of [[victims]] (name, model, params, split_offset, optional)",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        metavar="CSV",
        help="with --victims: a baseline profile file (e.g. uniform's) that every attack is "
        "compared with, paired over victim seeds",
    )
    parser.add_argument(
        "--victim-seeds",
        type=int,
        default=3,
        metavar="N",
        help="with --victims: fit each victim at seeds --seed + 1 .. --seed + N (default 3)",
    )
    parser.add_argument(
        "--top-k",
        type=int,
        metavar="K",
        help="with --victims: the hit ratio counts the target in the top K (default 10)",
    )
    parser.add_argument(
        "--report",
        type=Path,
        metavar="DIR",
        help="with --victims: write transfer.md, transfer.png (heat map) and transfer.json",
    )
    add_workers_option(parser)
    add_target_option(parser, "mean predicted rating (implicit: hit ratio and NDCG)")
    add_feedback_option(parser)
    add_learner_options(parser)
    add_load_options(parser)
    add_json_option(parser)
    parser.set_defaults(func=lambda args: _run(args, parser))
