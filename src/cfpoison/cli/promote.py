"""``cfpoison promote``: push target items into implicit-feedback rankers' top-K lists.

The data set is binarised (``--feedback implicit:THRESHOLD``: a rating at or above the
threshold, on the data set's own scale, is an interaction), the attack computes fake users
as sets of items (:mod:`cfpoison.attacks.promotion`), and the targets' HR@10, HR@50 and
NDCG@50 are reported before and after on the attacked learner beside its seed-noise floor;
``--victims implicit`` also refits a panel of victims at three seeds each
(:mod:`cfpoison.victims.promotion`), with ``--compare`` baselines beside the attack.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from cfpoison.attacks.promotion import (
    CUTOFFS,
    METHODS,
    PromotionConfig,
    baseline_profiles,
    budget,
    fit_implicit,
    run_promotion,
)
from cfpoison.cli._common import (
    StepBar,
    add_json_option,
    add_workers_option,
    check_command_outputs,
    emit,
    stderr_progress,
    victim_workers,
)
from cfpoison.cli._options import parse_feedback
from cfpoison.cli.data import add_load_options, load_from_args
from cfpoison.data.interactions import DEFAULT_THRESHOLD, Interactions, write_interactions
from cfpoison.data.preprocess import PreprocessConfig, prepare
from cfpoison.data.registry import INTERACTIONS_PREFIX, load_interactions
from cfpoison.errors import ConfigError
from cfpoison.learners.bpr import BPRConfig
from cfpoison.learners.wrmf import WRMFConfig
from cfpoison.victims.panel import load_panel
from cfpoison.victims.promotion import PromotionTransferConfig, evaluate_promotion

BASELINES = ("random", "popular", "covisitation")


def add_feedback_option(parser: argparse.ArgumentParser) -> None:
    """``--feedback implicit[:THRESHOLD]`` (default None: the threshold 4 on ratings)."""
    parser.add_argument(
        "--feedback",
        type=parse_feedback,
        metavar="implicit[:THRESHOLD]",
        help="binarise: a rating >= THRESHOLD (the data set's scale) is an interaction "
        "(default: implicit:4; not for interactions:PATH)",
    )


def parse_ids(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated item ids, got {text!r}"
        ) from None


def implicit_train(
    args: argparse.Namespace, preprocess: PreprocessConfig | None = None
) -> Interactions:
    """The training split as interactions: of a rating set, split by ``preprocess`` (default:
    the paper's, seeded by ``--seed``) and binarised at ``--feedback``; of a native
    ``interactions:PATH`` file, split the same way (by default users with >= 20
    interactions, 10% of each user's held out), weights kept."""
    preprocess = preprocess or PreprocessConfig(seed=args.seed)
    if args.dataset.startswith(INTERACTIONS_PREFIX):
        for flag, value in (("--feedback", args.feedback), ("--scale", args.scale)):
            if value is not None:
                raise ConfigError(f"{flag} applies to ratings; {args.dataset} holds interactions")
        native = load_interactions(
            args.dataset, on_duplicate=args.on_duplicate, delimiter=args.delimiter
        )
        return prepare(native, preprocess)[0]
    threshold = DEFAULT_THRESHOLD if args.feedback is None else args.feedback
    ratings = load_from_args(args, args.dataset)
    train, _ = prepare(ratings, preprocess)
    data = Interactions.from_ratings(train, threshold)
    if data.nnz == 0:
        raise ConfigError(f"no rating of {ratings.name} reaches {threshold:g}: no interactions")
    return data


def feedback_of(args: argparse.Namespace) -> float | str:
    """What the results record as the feedback: the binarisation threshold, or ``native``."""
    if args.dataset.startswith(INTERACTIONS_PREFIX):
        return "native"
    return DEFAULT_THRESHOLD if args.feedback is None else args.feedback


def promotion_setup(
    args: argparse.Namespace, iterations: int | None = None
) -> tuple[Interactions, PromotionConfig]:
    """The training split as interactions (:func:`implicit_train`) and the attack's config,
    from :func:`add_promotion_options`' flags (``iterations``: instead of ``--iterations``)."""
    data = implicit_train(args)
    config = PromotionConfig(
        method=args.method,
        learner=_learner(args),
        alpha=args.alpha,
        items_per_user=args.items_per_user,
        targets=args.targets,
        n_targets=args.n_targets,
        top_k=args.top_k,
        iterations=args.iterations if iterations is None else iterations,
        start=args.start,
        seed=args.seed,
    )
    return data, config


def _run(args: argparse.Namespace) -> int:
    check_command_outputs(args, {"--profiles": args.profiles})
    compare = _compare(args.compare)
    data, config = promotion_setup(args)
    learner = config.learner
    say = stderr_progress(args) or (lambda _: None)
    say(f"{data.name}: {data.n_users} users, {data.n_items} items, {data.nnz} interactions")
    say(f"fitting {learner.name} (rank {learner.rank}) on the clean data")
    clean = fit_implicit(learner, data)
    result = run_promotion(data, config, clean=clean, progress=say)
    if args.profiles is not None:
        write_interactions(args.profiles, result.fake, data, int(result.fake_user_ids[0]))
    payload: dict[str, Any] = {"dataset": args.dataset, "feedback": feedback_of(args)}
    payload.update(result.to_dict())
    if args.victims != "none":
        rng = np.random.default_rng([args.seed, 1])
        n_fake, b = budget(data, config, len(result.targets))
        attacks: dict[str, sp.csr_array] = {args.method: result.fake}
        for name in compare:
            attacks[name] = baseline_profiles(name, data, result.targets, n_fake, b, rng)
        specs, skipped = load_panel(args.victims).runnable()
        transfer = PromotionTransferConfig()
        payload["workers"] = workers = victim_workers(args)
        bar = StepBar(args, len(specs) * (1 + len(attacks)) * len(transfer.seeds), "victims")
        payload["victims"] = evaluate_promotion(
            data,
            specs,
            attacks,
            result.targets,
            transfer,
            baseline=_best(compare),
            skipped=skipped,
            workers=workers,
            progress=bar.finished,
        )
        bar.close()
    emit(args, payload, _text(payload))
    return 0


def _compare(text: str) -> tuple[str, ...]:
    names = BASELINES if text == "all" else tuple(t for t in text.split(",") if t)
    unknown = [n for n in names if n not in BASELINES]
    if unknown:
        raise ConfigError(f"--compare: unknown baseline(s) {', '.join(unknown)}")
    return names


def _best(compare: tuple[str, ...]) -> str | None:
    return compare[0] if len(compare) == 1 else None


def _learner(args: argparse.Namespace) -> WRMFConfig | BPRConfig:
    fields = {"threads": args.threads, "seed": args.seed}
    if args.rank is not None:
        fields["rank"] = args.rank
    return WRMFConfig(**fields) if args.learner == "wrmf" else BPRConfig(**fields)


def _text(payload: dict[str, Any]) -> str:
    m, config = payload["metrics"], payload["config"]
    lines = [
        f"{config['method']} on {config['learner']['name']}: {payload['n_fake']} fake users, "
        f"{m['items_per_fake']['max']:g} items each, targets {payload['targets']}",
        *measure_lines(m),
    ]
    lines.append(f"{m['seconds']:.0f} s; {m['untrustworthy_gradients']} untrustworthy gradients")
    return "\n".join(lines + victim_lines(payload.get("victims", {})))


def measure_lines(m: dict[str, Any]) -> list[str]:
    """The targets' HR and NDCG at each cut-off, before -> after beside the floor."""
    lines = ["measure    before -> after   (seed-noise floor)"]
    for k in CUTOFFS:
        for name in ("hr", "ndcg"):
            key = f"{name}@{k}"
            lines.append(
                f"{key:<9} {m[key + '_before']:.4f} -> {m[key + '_after']:.4f}"
                f"   (floor {m[key + '_floor']:.4f})"
            )
    if not m["converged"]:
        lines.append("(a clean, poisoned or reseeded fit stopped at its cap)")
    return lines


def victim_lines(victims: dict[str, Any]) -> list[str]:
    """One line per victim x attack: HR@50 before -> after, lift +- its interval, floor."""
    lines = []
    for row in victims.get("rows", []):
        if row["measure"] != "hr@50":
            continue
        versus = f", {row['lift_vs_baseline']:.2f}x baseline" if "lift_vs_baseline" in row else ""
        lines.append(
            f"  {row['victim']:<14} {row['attack']:<13} HR@50 {row['before']:.4f} -> "
            f"{row['after']:.4f}  lift {row['lift']:+.4f} +- {row['lift_ci']:.4f} "
            f"(floor {row['floor']:.4f}){versus}"
        )
    return lines


def add_promotion_options(
    parser: argparse.ArgumentParser, methods: tuple[str, ...], steps: bool = True
) -> None:
    """The flags of a promotion attack and of its data (``methods``: the ones offered;
    ``steps``: whether ``--iterations`` is one)."""
    parser.add_argument(
        "--dataset",
        default="ml-latest-small",
        help="data set: ratings (binarised at --feedback), or interactions:PATH, your own "
        "implicit feedback as user,item[,weight[,timestamp]] rows (default: %(default)s)",
    )
    add_feedback_option(parser)
    parser.add_argument("--learner", choices=("wrmf", "bpr"), default="wrmf")
    parser.add_argument("--rank", type=int, default=None, help="the learner's rank")
    parser.add_argument("--method", choices=methods, default="robust")
    parser.add_argument("--alpha", type=float, default=0.01, help="fake users / real users")
    parser.add_argument(
        "--items-per-user",
        type=int,
        default=0,
        metavar="B",
        help="items per fake user, targets included (default 0: the median real profile)",
    )
    parser.add_argument("--targets", type=parse_ids, default=(), help="target item ids")
    parser.add_argument(
        "--n-targets", type=int, default=5, help="unpopular targets drawn when none given"
    )
    parser.add_argument("--top-k", type=int, default=50, help="the K the attack promotes into")
    if steps:
        parser.add_argument("--iterations", type=int, default=8, help="gradient steps")
    parser.add_argument(
        "--start",
        choices=BASELINES,
        default="covisitation",
        help="the baseline the gradient steps start from (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="numba threads (0: all)")
    add_load_options(parser)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "promote",
        help="push target items into implicit-feedback rankers' top-K (WRMF, BPR, LightGCN)",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    add_promotion_options(parser, methods=METHODS)
    parser.add_argument("--profiles", type=Path, help="write the fake users as CSV")
    parser.add_argument(
        "--victims",
        default="none",
        help="also measure on a victim panel: a preset (implicit) or a TOML file",
    )
    parser.add_argument(
        "--compare",
        default="all",
        help="with --victims: baselines beside the attack (random,popular,covisitation; all)",
    )
    add_workers_option(parser)
    add_json_option(parser)
    parser.set_defaults(func=_run)
