"""``cfpoison attack``: compute fake users against a learner and report what they do."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cfpoison.attacks.checkpoint import Checkpoint, checkpoint_key
from cfpoison.attacks.engine import (
    CHECKPOINTED,
    AttackConfig,
    AttackResult,
    attack_settings,
    available_methods,
    ignored_settings,
    run_attack,
)
from cfpoison.attacks.metrics import HIT_K
from cfpoison.attacks.robust import PRESETS as SURROGATE_PRESETS
from cfpoison.attacks.robust import load_surrogates
from cfpoison.cli._common import (
    add_json_option,
    add_learner_options,
    check_command_outputs,
    emit,
    learner_config,
    preprocess_config,
    show_progress,
    stderr_progress,
    ttest_data,
)
from cfpoison.cli._options import add_options, flags_of, given, nested, value_parser
from cfpoison.cli.data import add_load_options, load_from_args
from cfpoison.data.preprocess import prepare
from cfpoison.data.profiles import write_profiles
from cfpoison.data.ratings import Ratings
from cfpoison.data.registry import cache_dir
from cfpoison.defend.defenses import defense_from_spec
from cfpoison.errors import ConfigError
from cfpoison.experiments.presentation.report import UNRESOLVED, resolved

#: The attack's own settings as flags (the learner's and ``--seed`` come from
#: :func:`add_learner_options`; ``options`` from ``--option`` and ``--beta``).
ATTACK_SETTINGS = attack_settings(skip=("learner", "options", "seed"))
#: Where attacks keep their checkpoints (``--resume``), below the user cache.
CHECKPOINTS_HINT = "$XDG_CACHE_HOME/cfpoison/checkpoints"
#: ``auto`` or comma-separated item ids (also read by ``evaluate``).
parse_targets = value_parser(ATTACK_SETTINGS["targets"].hint)


def add_target_option(parser: argparse.ArgumentParser, reported: str) -> None:
    """``--target`` of a command that reports what profiles do to the targets (``evaluate``,
    ``defend``): ``auto`` is :func:`cfpoison.cli._common.attack_targets`, the item that
    ``attack --target auto`` draws. ``reported``: what the command reports about them."""
    parser.add_argument(
        "--target",
        type=parse_targets,
        default="auto",
        metavar="ITEM[,ITEM...]|auto",
        help=f"items whose {reported} to report; auto (default) draws the item "
        "`cfpoison attack --target auto` draws with the same --seed",
    )


def parse_option(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with VALUE read as JSON when it parses, else as a string."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


#: The flags that choose their method: ``(dest, method, option, parse)``; the flag's value,
#: parsed, is the method's ``option``.
_METHOD_FLAGS: tuple[tuple[str, str, str, Callable[[str], Any]], ...] = (
    ("surrogates", "robust", "surrogates", load_surrogates),
    ("against", "adaptive", "defense", defense_from_spec),
)


def attack_config(args: argparse.Namespace, parser: argparse.ArgumentParser) -> AttackConfig:
    """The :class:`AttackConfig` of the flags (``--seed`` seeds the attack too)."""
    options = dict(args.option or [])
    method = args.method or ATTACK_SETTINGS["method"].default
    if args.beta is not None:
        if method != "sgld":
            parser.error("--beta is an SGLD option (use --method sgld)")
        options["beta"] = args.beta
    for dest, implied, key, parse in _METHOD_FLAGS:
        value = getattr(args, dest, None)
        if value is not None:
            if args.method not in (None, implied):
                parser.error(f"--{dest} runs the {implied} method (leave out --method)")
            method = implied
            options[key] = parse(value).to_dict()
    values = given(args, ATTACK_SETTINGS.values())
    tree = nested(values, ATTACK_SETTINGS)
    tree["method"] = method
    learner = learner_config(args, parser)
    config = AttackConfig.from_dict(
        {**tree, "learner": learner, "seed": args.seed, "options": options}
    )
    ignored = ignored_settings(config)
    for name in [*values, *(["options"] if args.option else [])]:
        if name in ignored:
            flag = flags_of(ATTACK_SETTINGS[name])[-1] if name in ATTACK_SETTINGS else "--option"
            parser.error(f"{flag} does not apply to --method {method}: {ignored[name]}")
    if config.iterations == 0 and not args.allow_zero and "iterations" not in ignored:
        parser.error(
            f"--iterations 0 runs no {method} step (the starting profiles, unoptimised); "
            "give --allow-zero if that is what you want"
        )
    if args.allow_zero and config.iterations != 0:
        parser.error("--allow-zero goes with --iterations 0 only")
    return config


def result_text(payload: dict[str, Any]) -> str:
    """The human-readable summary shared by ``attack`` and ``evaluate``."""
    floor = payload["rmse_shift_noise_floor"]
    floor_text = f"seed-noise floor {floor:.4f}"
    if not resolved(floor):  # clean fits at two seeds that agree: no floor to judge against
        floor_text += f", {UNRESOLVED.removeprefix('floor ')}: the seeds' clean fits agree"
    lines = [
        f"data set       {payload['dataset']}: {payload['n_fake']} fake users injected",
        f"rmse shift     {payload['rmse_shift']:.4f} on unseen entries (shifted scale); "
        + floor_text,
    ]
    for item, before, after in zip(
        payload["targets"], payload["target_mean_before"], payload["target_mean_after"], strict=True
    ):
        lines.append(f"target {item:<7} mean predicted rating {before:.4f} -> {after:.4f}")
    hits = zip(
        payload["targets"],
        payload.get("target_hit_before", []),
        payload.get("target_hit_after", []),
        strict=False,
    )
    for item, before, after in hits:
        lines.append(f"target {item:<7} hit ratio at {HIT_K} {before:.4f} -> {after:.4f}")
    test = payload.get("rmse_test")
    test_text = "" if test is None or math.isnan(test) else f", test {test:.4f}"
    lines.append(f"rmse           train {payload['rmse_train']:.4f}{test_text} (rating scale)")
    data = f" on the {payload['ttest_data']}" if "ttest_data" in payload else ""
    lines.append(f"t-test (paper) p = {payload['ttest_pvalue']:.3g}{data}")
    lines.extend(_utility_lines(payload))
    if payload.get("untrustworthy_gradients"):
        lines.append(
            f"WARNING        {payload['untrustworthy_gradients']} step(s) followed a gradient "
            "taken at an unconverged fit or solve (history: gradient_trustworthy)"
        )
    lines.append(f"seconds        {payload['seconds']:.1f}")
    return "\n".join(lines)


def _utility_lines(payload: dict[str, Any]) -> list[str]:
    """R of the final profiles (rounded, retrained) against the clean model's, then the
    method's own record, labelled: SGLD's best candidate, or the best and the first and last
    iterates of one gradient chain (before rounding)."""
    if "utility" not in payload:
        return []
    lines = [
        f"utility        {payload['utility_clean']:.6g} clean -> {payload['utility']:.6g} "
        "with the final profiles (rounded, retrained)"
    ]
    info, history = payload.get("info", {}), payload.get("utility_history", [])
    method, pad = payload["method"], " " * 15
    if "candidates" in info:
        count = len(info["candidates"])
        lines.append(
            f"{pad}{method}'s best of {count} candidates {info['best_utility']:.6g} "
            "(projected, retrained)"
        )
    elif history:
        best = f"best {info['best_utility']:.6g}, " if "best_utility" in info else ""
        lines.append(
            f"{pad}{method} iterates {history[0]:.6g} -> {history[-1]:.6g} ({best}"
            f"{len(history) - 1} steps, before rounding)"
        )
        lines.append(f"{pad}{_iterate_gap(method, payload['utility'], history[-1])}")
    return lines


def _iterate_gap(method: str, final: float, last: float) -> str:
    """Why the final utility differs from the last iterate's, in words and as a ratio."""
    ratio = f"{final / last:.2f}x the last iterate" if last else "the last iterate is 0"
    if method == "robust":
        return (
            f"final = {ratio}: the iterates are the mean over the surrogates (each against its "
            "own clean model); the final is the attacked learner alone, after rounding and a "
            "refit from its own start"
        )
    if method == "adaptive":
        return f"final = {ratio}: the iterates are the defended model's; the final is undefended"
    return f"final = {ratio}: lost to rounding onto the rating scale and the refit from its start"


def _run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    config = attack_config(args, parser)
    check_command_outputs(args, {"--profiles": args.profiles})
    preprocess = preprocess_config(args)
    train, test = prepare(load_from_args(args, args.dataset), preprocess)
    checkpoint = _checkpoint(args, config, train)
    try:
        result: AttackResult = run_attack(
            train, config, test=test, progress=show_progress(args), checkpoint=checkpoint
        )
    except KeyboardInterrupt:
        saved = checkpoint.load() if checkpoint is not None else None
        if saved is not None:
            print(
                f"cfpoison attack: step {saved.iteration} of {config.iterations} is saved; "
                "the same command with --resume continues from it",
                file=sys.stderr,
            )
        raise
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
    if checkpoint is not None:
        checkpoint.clear()
    return 0


def _checkpoint(
    args: argparse.Namespace, config: AttackConfig, train: Ratings
) -> Checkpoint | None:
    """The attack's checkpoint under the user cache (gradient methods), set up as ``--resume``
    asks: resumed from, or a stale one removed; both said on stderr."""
    if config.method not in CHECKPOINTED:
        if args.resume:
            raise ConfigError(f"--resume: {config.method} keeps no checkpoint")
        return None
    checkpoint = Checkpoint(cache_dir() / "checkpoints", checkpoint_key(config.to_dict(), train))
    saved = checkpoint.load()
    say = stderr_progress(args) or (lambda _: None)
    if args.resume and saved is None:
        say("--resume: no checkpoint of this attack on this data; starting from the beginning")
    elif args.resume and saved is not None:
        say(f"--resume: continuing after step {saved.iteration} of {config.iterations}")
    elif saved is not None:
        say(f"a checkpoint of this attack (step {saved.iteration}) is discarded (--resume: use it)")
        checkpoint.clear()
    return checkpoint


def add_attack_options(parser: argparse.ArgumentParser, dataset_required: bool = True) -> None:
    """The data set, the attack's settings and the learner's: shared with ``gradcheck``
    (whose ``promote`` sub-command names its own data set, so there it is checked later)."""
    parser.add_argument(
        "--dataset", required=dataset_required, metavar="NAME", help="data set name (required)"
    )
    add_options(
        parser.add_argument_group("attack (AttackConfig, its threat model and utility)"),
        ATTACK_SETTINGS.values(),
        choices={"method": available_methods()},
    )
    parser.add_argument(
        "--allow-zero",
        action="store_true",
        help="accept --iterations 0 (no step: the starting profiles); refused otherwise",
    )
    parser.add_argument("--beta", type=float, help="SGLD: weight of the utility (paper: 0.6)")
    parser.add_argument(
        "--option",
        type=parse_option,
        action="append",
        metavar="KEY=VALUE",
        help="method-specific setting (repeatable), e.g. chains=4 for sgld",
    )
    add_learner_options(parser)
    add_load_options(parser)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "attack",
        help="compute fake users (PGA, SGLD or a baseline) and measure their effect",
        description=(
            "Fit the learner on the data set's training split, compute m' = ceil(alpha m) fake "
            "users that each rate at most B items with |rating| <= Lambda (shifted scale "
            "[-2, 2]) to maximise mu1 * availability + mu2 * integrity (paper Eq. 7-9) + mu3 "
            "* ranking (the targets' smoothed rank among normal users' top items), and "
            "report against the clean model: the RMSE shift on unseen entries (and the "
            "seed-noise floor), the targets' mean predicted rating and hit ratio at 10 before "
            "and after, train and test RMSE, the paper's t-test p-value and the utility "
            "history. Methods: pga "
            "(Algorithm 1), sgld (Algorithm 2), uniform (the paper's baseline), the shilling "
            "attacks random, average and bandwagon, robust (PGA over the --surrogates) and "
            "adaptive (PGA against the --against defense). A flag that the method does not "
            "read at the given settings is refused, not ignored: for example --target with "
            "mu2 = mu3 = 0 (the default; an integrity attack is --mu1 0 --mu2 1), or "
            "--step-size with sgld."
        ),
    )
    add_attack_options(parser)
    parser.add_argument(
        "--surrogates",
        metavar="PANEL",
        help="robust PGA (method robust) on the mean utility over a panel of surrogate "
        f"learners: a preset ({', '.join(sorted(SURROGATE_PRESETS))}) or a TOML file of "
        "[[surrogates]] (name, model als|nuclear|biased, params, split_offset, seed, fraction)",
    )
    parser.add_argument(
        "--against",
        metavar="SPEC",
        help="adaptive PGA (method adaptive) against a defense that the attacker knows: "
        "bagging, trimmed, detect_remove, huber, influence_cap or als_wr, as "
        "NAME[:KEY=VALUE,...] (cfpoison defend's --defense specs; bagging draws its bags "
        "with --seed)",
    )
    parser.add_argument(
        "--profiles",
        type=Path,
        metavar="CSV",
        help="write the fake profiles as userId,movieId,rating in the data set's ids and scale",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue a killed run of the same attack on the same data from its checkpoint "
        f"(pga, robust and adaptive save one after every step under {CHECKPOINTS_HINT})",
    )
    add_json_option(parser)
    parser.set_defaults(func=lambda args: _run(args, parser))
