"""``cfpoison train``: fit a learner on a data set's training split and report its quality."""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from cfpoison.attacks.metrics import rmse_original
from cfpoison.cli._common import add_json_option, emit
from cfpoison.cli.data import add_load_options, load_from_args
from cfpoison.data.preprocess import PreprocessConfig, prepare
from cfpoison.learners import (
    ALSConfig,
    ALSLearner,
    LearnerConfig,
    NuclearConfig,
    NuclearNormLearner,
    build_learner,
)

#: Defaults tuned on ml-latest-small (benchmarks/RESULTS.md, learners section).
DEFAULT_ALS = ALSConfig()
DEFAULT_NUCLEAR = NuclearConfig()


def learner_config(args: argparse.Namespace, parser: argparse.ArgumentParser) -> LearnerConfig:
    """The learner config of the flags; flags of the other learner are a usage error."""
    if args.learner == "als":
        if args.lam is not None:
            parser.error("--lambda is the nuclear-norm weight; ALS takes --lambda-u/--lambda-v")
        config: LearnerConfig = DEFAULT_ALS.replace(seed=args.seed, threads=args.threads)
        changes = {
            "rank": args.rank,
            "lambda_u": args.lambda_u,
            "lambda_v": args.lambda_v,
            "max_sweeps": args.max_sweeps,
            "tol": args.tol,
        }
    else:
        if args.lambda_u is not None or args.lambda_v is not None:
            parser.error("--lambda-u/--lambda-v are ALS options; nuclear norm takes --lambda")
        config = DEFAULT_NUCLEAR.replace(seed=args.seed, threads=args.threads)
        changes = {
            "rank": args.rank,
            "lam": args.lam,
            "max_iters": args.max_sweeps,
            "tol": args.tol,
        }
    return config.replace(**{k: v for k, v in changes.items() if v is not None})


def _run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    config = learner_config(args, parser)
    preprocess = preprocess_config(args)
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
        "rmse_train": rmse_original(learner, train),
        "rmse_test": rmse_original(learner, test),
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


def _positive_float(text: str) -> float:
    value = float(text)
    if not np.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def add_learner_options(parser: argparse.ArgumentParser) -> None:
    """The learner, its hyper-parameters, the seed and the preprocessing flags.

    Shared by ``train``, ``attack`` and ``evaluate``; :func:`learner_config` and
    :func:`preprocess_config` read them back.
    """
    parser.add_argument(
        "--learner", choices=("als", "nuclear"), default="als", help="learner (default: als)"
    )
    parser.add_argument(
        "--rank",
        type=int,
        metavar="K",
        help=f"ALS rank (default {DEFAULT_ALS.rank}); nuclear norm: initial working rank "
        f"(default {DEFAULT_NUCLEAR.rank}, grows as needed)",
    )
    parser.add_argument(
        "--lambda-u",
        type=_positive_float,
        metavar="L",
        help=f"ALS user regularization (default {DEFAULT_ALS.lambda_u})",
    )
    parser.add_argument(
        "--lambda-v",
        type=_positive_float,
        metavar="L",
        help=f"ALS item regularization (default {DEFAULT_ALS.lambda_v})",
    )
    parser.add_argument(
        "--lambda",
        dest="lam",
        type=_positive_float,
        metavar="L",
        help=f"nuclear-norm weight (default {DEFAULT_NUCLEAR.lam})",
    )
    parser.add_argument(
        "--max-sweeps",
        type=int,
        metavar="N",
        help=f"sweep cap (default {DEFAULT_ALS.max_sweeps} for ALS, "
        f"{DEFAULT_NUCLEAR.max_iters} for nuclear norm)",
    )
    parser.add_argument(
        "--tol", type=float, metavar="T", help="relative objective change that stops the sweeps"
    )
    parser.add_argument(
        "--seed", type=int, default=0, metavar="S", help="seed of the initialisation and split"
    )
    parser.add_argument("--threads", type=int, default=0, help="threads (default 0 = all cores)")
    parser.add_argument(
        "--min-user-ratings",
        type=int,
        default=PreprocessConfig().min_user_ratings,
        metavar="N",
        help="keep users with at least N ratings (default %(default)s)",
    )
    parser.add_argument(
        "--test-fraction",
        type=float,
        default=PreprocessConfig().test_fraction,
        metavar="F",
        help="per-user share of ratings held out for testing (default %(default)s)",
    )


def preprocess_config(args: argparse.Namespace) -> PreprocessConfig:
    """The preprocessing of the flags of :func:`add_learner_options`."""
    return PreprocessConfig(
        min_user_ratings=args.min_user_ratings, test_fraction=args.test_fraction, seed=args.seed
    )


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
