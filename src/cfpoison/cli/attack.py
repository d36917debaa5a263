"""``cfpoison attack``: compute fake users against a learner and report what they do."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from cfpoison.attacks.engine import AttackConfig, AttackResult, available_methods, run_attack
from cfpoison.attacks.threat import ThreatModel
from cfpoison.attacks.utility import UtilityConfig
from cfpoison.cli._common import add_json_option, emit, show_progress, ttest_data
from cfpoison.cli.data import add_load_options, load_from_args
from cfpoison.cli.train import add_learner_options, learner_config, preprocess_config
from cfpoison.data.preprocess import prepare
from cfpoison.data.profiles import write_profiles


def parse_targets(text: str) -> tuple[int, ...] | str:
    """``auto`` or a comma-separated list of item ids."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected auto or item ids like 1,50, got {text!r}"
        ) from None


def parse_option(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with VALUE read as JSON when it parses, else as a string."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def attack_config(args: argparse.Namespace, parser: argparse.ArgumentParser) -> AttackConfig:
    """The :class:`AttackConfig` of the flags."""
    options = dict(args.option or [])
    if args.beta is not None:
        if args.method != "sgld":
            parser.error("--beta is an SGLD option (use --method sgld)")
        options["beta"] = args.beta
    return AttackConfig(
        method=args.method,
        learner=learner_config(args, parser),
        threat=ThreatModel(
            alpha=args.alpha,
            items_per_user=args.items_per_user,
            max_rating=args.max_rating,
            item_selection=args.items,
        ),
        utility=UtilityConfig(
            mu1=args.mu1, mu2=args.mu2, targets=args.target, weights=tuple(args.weights or ())
        ),
        gradient=args.gradient,
        iterations=args.iterations,
        step_schedule=args.step_schedule,
        step_size=args.step_size,
        seed=args.seed,
        options=options,
    )


def result_text(payload: dict[str, Any]) -> str:
    """The human-readable summary shared by ``attack`` and ``evaluate``."""
    lines = [
        f"data set       {payload['dataset']}: {payload['n_fake']} fake users injected",
        f"rmse shift     {payload['rmse_shift']:.4f} on unseen entries (shifted scale); "
        f"seed-noise floor {payload['rmse_shift_noise_floor']:.4f}",
    ]
    for item, before, after in zip(
        payload["targets"], payload["target_mean_before"], payload["target_mean_after"], strict=True
    ):
        lines.append(f"target {item:<7} mean predicted rating {before:.4f} -> {after:.4f}")
    test = payload.get("rmse_test")
    test_text = "" if test is None or math.isnan(test) else f", test {test:.4f}"
    lines.append(f"rmse           train {payload['rmse_train']:.4f}{test_text} (rating scale)")
    data = f" on the {payload['ttest_data']}" if "ttest_data" in payload else ""
    lines.append(f"t-test (paper) p = {payload['ttest_pvalue']:.3g}{data}")
    lines.extend(_utility_lines(payload))
    lines.append(f"seconds        {payload['seconds']:.1f}")
    return "\n".join(lines)


def _utility_lines(payload: dict[str, Any]) -> list[str]:
    """R of the final profiles (rounded, retrained) against the clean model's, then the
    method's own record: SGLD's best candidate, or the first and last iterate of one chain
    (before rounding)."""
    if "utility" not in payload:
        return []
    lines = [
        f"utility        {payload['utility_clean']:.6g} clean -> {payload['utility']:.6g} "
        "with the final profiles (rounded, retrained)"
    ]
    info, history = payload.get("info", {}), payload.get("utility_history", [])
    if "best_utility" in info:
        lines.append(
            f"               SGLD's best candidate {info['best_utility']:.6g} "
            f"(of {len(info.get('candidates', []))}, projected and retrained)"
        )
    elif history:
        lines.append(
            f"               {payload['method']} iterates {history[0]:.6g} -> "
            f"{history[-1]:.6g} ({len(history) - 1} steps, before rounding)"
        )
    return lines


def _run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    config = attack_config(args, parser)
    preprocess = preprocess_config(args)
    train, test = prepare(load_from_args(args, args.dataset), preprocess)
    result: AttackResult = run_attack(train, config, test=test, progress=show_progress(args))
    payload: dict[str, Any] = {
        "dataset": args.dataset,
        **result.to_dict(),
        "ttest_data": ttest_data(train, preprocess),
        "preprocess": preprocess.to_dict(),
    }
    if args.profiles is not None:
        fake_ids = write_profiles(args.profiles, result.fake, train)
        payload["profiles"] = str(args.profiles)
        payload["fake_user_ids"] = [int(u) for u in fake_ids]
    emit(args, payload, result_text(payload))
    return 0


def _fraction(text: str) -> float:
    value = float(text)
    if not (0 < value <= 1):
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1], got {text!r}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    defaults = AttackConfig()
    threat = ThreatModel()
    parser = subparsers.add_parser(
        "attack",
        help="compute fake users (PGA, SGLD or a baseline) and measure their effect",
        description=(
            "Fit the learner on the data set's training split, compute m' = ceil(alpha m) fake "
            "users that each rate at most B items with |rating| <= Lambda (shifted scale "
            "[-2, 2]) to maximise mu1 * availability + mu2 * integrity (paper Eq. 7-9), and "
            "report against the clean model: the RMSE shift on unseen entries (and the "
            "seed-noise floor), the targets' mean predicted rating before and after, train and "
            "test RMSE, the paper's t-test p-value and the utility history. Methods: pga "
            "(Algorithm 1), sgld (Algorithm 2), uniform (the paper's baseline), and the shilling "
            "attacks random, average and bandwagon."
        ),
    )
    parser.add_argument("--dataset", required=True, metavar="NAME", help="data set name")
    parser.add_argument(
        "--method",
        choices=available_methods(),
        default=defaults.method,
        help="attack (default: pga)",
    )
    parser.add_argument(
        "--gradient",
        choices=("exact", "paper"),
        default=defaults.gradient,
        help="exact implicit gradient (default) or the paper's block-diagonal Eq. 12",
    )
    parser.add_argument(
        "--items",
        choices=("random", "greedy"),
        default=threat.item_selection,
        help="item selection: B random items per fake user (Algorithm 1, default) or greedy "
        "re-selection by gradient magnitude at every step",
    )
    parser.add_argument(
        "--alpha",
        type=_fraction,
        default=threat.alpha,
        help="fraction of fake users (default %(default)s)",
    )
    parser.add_argument(
        "--items-per-user",
        type=int,
        default=threat.items_per_user,
        metavar="B",
        help="items rated per fake user (default %(default)s)",
    )
    parser.add_argument(
        "--max-rating",
        type=float,
        default=threat.max_rating,
        metavar="LAMBDA",
        help="bound on |rating| on the shifted scale, in (0, 2] (default %(default)s)",
    )
    parser.add_argument("--mu1", type=float, default=1.0, help="availability weight (default 1)")
    parser.add_argument("--mu2", type=float, default=0.0, help="integrity weight (default 0)")
    parser.add_argument(
        "--target",
        type=parse_targets,
        default="auto",
        metavar="ITEM[,ITEM...]|auto",
        help="target item ids for integrity, or auto (default): a random item whose mean "
        "predicted rating is about 0.8 on the shifted scale, as in the paper",
    )
    parser.add_argument(
        "--weights",
        type=lambda t: tuple(float(x) for x in t.split(",")),
        metavar="W[,W...]",
        help="weight of each target (default 2 each, the paper's)",
    )
    parser.add_argument(
        "--iterations",
        type=int,
        default=defaults.iterations,
        metavar="T",
        help="gradient steps (default %(default)s)",
    )
    parser.add_argument(
        "--step-schedule",
        choices=("constant", "invsqrt", "backtracking"),
        default=defaults.step_schedule,
        help="PGA step sizes (default %(default)s)",
    )
    parser.add_argument(
        "--step-size",
        type=float,
        default=defaults.step_size,
        metavar="S",
        help="largest rating change of one step, shifted scale (default %(default)s)",
    )
    parser.add_argument("--beta", type=float, help="SGLD: weight of the utility (paper: 0.6)")
    parser.add_argument(
        "--option",
        type=parse_option,
        action="append",
        metavar="KEY=VALUE",
        help="method-specific setting (repeatable), e.g. chains=4 for sgld",
    )
    parser.add_argument(
        "--profiles",
        type=Path,
        metavar="CSV",
        help="write the fake profiles as userId,movieId,rating in the data set's ids and scale",
    )
    add_learner_options(parser)
    add_load_options(parser)
    add_json_option(parser)
    parser.set_defaults(func=lambda args: _run(args, parser))
