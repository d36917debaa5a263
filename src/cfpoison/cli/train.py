"""``cfpoison train``: fit a learner on a data set's training split and report its quality."""

from __future__ import annotations

import argparse
import time
from typing import Any

from cfpoison.cli._common import (
    add_json_option,
    add_learner_options,
    check_command_outputs,
    emit,
    learner_config,
    preprocess_config,
)
from cfpoison.cli.data import add_load_options, load_from_args
from cfpoison.data.preprocess import prepare
from cfpoison.learners import ALSLearner, NuclearNormLearner, build_learner
from cfpoison.models.measures import rmse


def _run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    config = learner_config(args, parser)
    preprocess = preprocess_config(args)
    check_command_outputs(args)
    start = time.perf_counter()
    train, test = prepare(load_from_args(args, args.dataset), preprocess)
    fit_start = time.perf_counter()
    learner = build_learner(config).fit(train)
    fit_seconds = time.perf_counter() - fit_start
    payload: dict[str, Any] = {
        "dataset": args.dataset,
        "learner": config.name,
        "users": train.n_users,
        "items": train.n_items,
        "ratings_train": train.nnz,
        "ratings_test": test.nnz,
        "rmse_train": rmse(learner, train),
        "rmse_test": rmse(learner, test),
        "objective": learner.objective(),
        "kkt_residual": learner.kkt_residual(),
        "sweeps": learner.n_sweeps,
        "converged": learner.converged,
        "seconds": fit_seconds,
        "seconds_total": time.perf_counter() - start,
        "history": learner.history,
        "config": config.to_dict(),
        "preprocess": preprocess.to_dict(),
        "steps": list(train.steps),
    }
    if isinstance(learner, NuclearNormLearner):
        certificate = learner.certificate()
        payload["rank"] = learner.rank
        payload["gap"] = certificate["gap"]
        payload["relative_gap"] = certificate["relative_gap"]
        payload["spectral_ratio"] = certificate["spectral_ratio"]
        payload["certificate"] = certificate
    else:
        assert isinstance(learner, ALSLearner)
        payload["rank"] = config.rank
    emit(args, payload, _text(payload))
    return 0


def _text(p: dict[str, Any]) -> str:
    lines = [
        f"data set      {p['dataset']}: {p['users']} users, {p['items']} items, "
        f"{p['ratings_train']} train / {p['ratings_test']} test ratings",
        f"learner       {p['learner']}, rank {p['rank']}",
        f"rmse          train {p['rmse_train']:.4f}, test {p['rmse_test']:.4f} (rating scale)",
        f"objective     {p['objective']:.6g}",
        f"kkt residual  {p['kkt_residual']:.3g}",
    ]
    if "certificate" in p:
        c = p["certificate"]
        verdict = "holds" if c["ok"] else "FAILS"
        lines.append(
            f"certificate   {verdict}: spectral ratio {c['spectral_ratio']:.6f}, "
            f"relative gap {c['relative_gap']:.2e}"
        )
    state = "converged" if p["converged"] else "stopped at the sweep cap"
    lines.append(f"sweeps        {p['sweeps']} ({state}), {p['seconds']:.2f} s")
    return "\n".join(lines)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="fit a learner (ALS or nuclear norm) and report its RMSE",
        description=(
            "Fit alternating minimization (als) or nuclear-norm minimization (nuclear) on the "
            "training split of a data set (users with at least --min-user-ratings ratings, "
            "--test-fraction of each user's ratings held out) and report train and test RMSE "
            "on the data set's rating scale, the objective, the KKT residual (and for the "
            "nuclear norm its optimality certificate), sweeps, rank and seconds. Regularizer "
            "convention: L = sum (M - UV^T)^2 + lambda_u |U|^2 + lambda_v |V|^2 on the [-2, 2] "
            "scale; nuclear norm: sum (M - X)^2 + 2 lambda |X|_*."
        ),
    )
    parser.add_argument("--dataset", required=True, metavar="NAME", help="data set name")
    add_learner_options(parser)
    add_load_options(parser)
    add_json_option(parser)
    parser.set_defaults(func=lambda args: _run(args, parser))
