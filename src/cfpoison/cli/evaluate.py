"""``cfpoison evaluate``: inject any profile file, retrain, and report the attack metrics."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from cfpoison.attacks.metrics import evaluate_profiles, fit_learner
from cfpoison.attacks.utility import UtilityConfig, resolve_targets
from cfpoison.cli._common import add_json_option, emit, ttest_data
from cfpoison.cli.attack import parse_targets, result_text
from cfpoison.cli.data import add_load_options, load_from_args
from cfpoison.cli.train import add_learner_options, learner_config, preprocess_config
from cfpoison.data.preprocess import prepare
from cfpoison.data.profiles import read_profiles


def _run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    start = time.perf_counter()
    config = learner_config(args, parser)
    preprocess = preprocess_config(args)
    train, test = prepare(load_from_args(args, args.dataset), preprocess)
    fake_ids, fake = read_profiles(args.profiles, train)
    clean = fit_learner(config, train)
    # the same draw as `cfpoison attack --target auto --seed S` makes first
    targets, _ = resolve_targets(
        UtilityConfig(targets=args.target),
        train,
        clean.user_factors,
        clean.item_factors,
        np.random.default_rng(args.seed),
    )
    metrics = evaluate_profiles(train, fake, config, targets, test, clean=clean)
    payload: dict[str, Any] = {
        "dataset": args.dataset,
        "profiles": str(args.profiles),
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
            "t-test p-value."
        ),
    )
    parser.add_argument("--dataset", required=True, metavar="NAME", help="data set name")
    parser.add_argument(
        "--profiles", required=True, type=Path, metavar="CSV", help="the fake profiles"
    )
    parser.add_argument(
        "--target",
        type=parse_targets,
        default="auto",
        metavar="ITEM[,ITEM...]|auto",
        help="items whose mean predicted rating to report; auto (default) draws the item "
        "`cfpoison attack --target auto` draws with the same --seed",
    )
    add_learner_options(parser)
    add_load_options(parser)
    add_json_option(parser)
    parser.set_defaults(func=lambda args: _run(args, parser))
