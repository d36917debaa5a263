"""``cfpoison gradcheck``: is the gradient PGA follows at these settings the true one?"""

from __future__ import annotations

import argparse
from typing import Any

from cfpoison.attacks.gradcheck import GradientCheck, check_gradient, check_promotion_gradient
from cfpoison.cli._common import (
    add_json_option,
    check_command_outputs,
    emit,
    preprocess_config,
    stderr_progress,
)
from cfpoison.cli._options import given
from cfpoison.cli.attack import ATTACK_SETTINGS, add_attack_options, attack_config
from cfpoison.cli.data import load_from_args
from cfpoison.cli.promote import add_promotion_options, feedback_of, promotion_setup
from cfpoison.data.preprocess import prepare

#: The cosine below which ``gradcheck`` exits 1 by default (the attack defaults reach 0.999).
DEFAULT_MIN_COS = 0.99


def check_text(check: GradientCheck, min_cos: float) -> str:
    """The human-readable summary of one check."""
    verdict = "ok" if check.cos >= min_cos else f"BELOW {min_cos:g}"
    return "\n".join(
        [
            f"iteration      {check.iteration} (the point PGA takes its gradient at)",
            f"cos            {check.cos:.6f} with the true gradient ({verdict})",
            f"relative error {check.relative_error:.3g}  (|g - g*| / |g*|)",
            f"finite diff.   {check.directional_fd:.6g} along g*/|g*|; "
            f"true {check.directional_reference:.6g} (rel. err. {check.fd_relative_error:.1e}), "
            f"engine {check.directional_engine:.6g}",
            f"fit            KKT residual {check.kkt_residual:.2e} "
            f"({'converged' if check.fit_converged else 'NOT converged'})",
            f"adjoint solve  true residual {check.solve_residual:.2e} after "
            f"{check.solve_iterations} iterations "
            f"({'converged' if check.solve_converged else 'NOT converged: hit its cap'})",
            f"seconds        {check.engine_seconds:.1f} engine (fit + gradient), "
            f"{check.reference_seconds:.1f} reference (KKT {check.reference_kkt_residual:.1e}, "
            f"solve {check.reference_solve_residual:.1e}) and finite differences",
        ]
    )


def _run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.dataset is None:
        parser.error("the following arguments are required: --dataset")
    config = attack_config(args, parser)
    if config.method != "pga":
        parser.error("gradcheck checks PGA's gradient: use --method pga (the default)")
    check_command_outputs(args)
    preprocess = preprocess_config(args)
    train, _ = prepare(load_from_args(args, args.dataset), preprocess)
    progress = stderr_progress(args)
    checks = [check_gradient(train, config, iteration=t, progress=progress) for t in args.at]
    return _report(args, checks, config.to_dict(), {"preprocess": preprocess.to_dict()})


def _run_promotion(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``gradcheck promote``: the promotion attack's gradient on its implicit learner."""
    own = {action.dest for action in parser._actions}
    if given(args, [s for s in ATTACK_SETTINGS.values() if s.name not in own]):
        parser.error(
            "`cfpoison attack` options go with the explicit check; after `promote` give "
            "`cfpoison promote`'s options"
        )
    check_command_outputs(args)
    data, config = promotion_setup(args, iterations=0)  # the checks set their own
    progress = stderr_progress(args)
    checks = [
        check_promotion_gradient(data, config, iteration=t, progress=progress) for t in args.at
    ]
    return _report(args, checks, config.to_dict(), {"feedback": feedback_of(args)})


def _report(
    args: argparse.Namespace,
    checks: list[GradientCheck],
    config: dict[str, Any],
    extra: dict[str, Any],
) -> int:
    payload: dict[str, Any] = {
        "dataset": args.dataset,
        "checks": [c.to_dict() for c in checks],
        "min_cos": args.min_cos,
        "passed": all(c.cos >= args.min_cos for c in checks),
        "config": config,
        **extra,
    }
    emit(args, payload, "\n\n".join(check_text(c, args.min_cos) for c in checks))
    return 0 if payload["passed"] else 1


def _iterations(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected iterations like 1,10, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"iterations must be >= 1, got {text!r}")
    return values


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "gradcheck",
        help="compare PGA's gradient with the true one (re-solved finite differences)",
        description=(
            "At the point PGA takes its gradient (iteration N: the fake users after N - 1 "
            "steps, refitted with the attack's learner settings), compare the engine's "
            "gradient with the true one: the same fake matrix refitted to a relative KKT "
            "residual of 1e-10, the adjoint solved to 1e-8, confirmed by a directional finite "
            "difference of re-solved models. Prints the cosine, the relative error, the fit's "
            "KKT residual, the solve's true residual and seconds; exits 1 when the cosine is "
            "below --min-cos. Takes the same options as `cfpoison attack`; `cfpoison "
            "gradcheck promote` checks a promotion attack on an implicit-feedback learner "
            "(WRMF, BPR) and takes `cfpoison promote`'s options."
        ),
    )
    add_attack_options(parser, dataset_required=False)
    _add_check_options(parser, suppress=False)
    parser.set_defaults(func=lambda args: _run(args, parser))
    worlds = parser.add_subparsers(dest="world", metavar="promote", required=False)
    promote = worlds.add_parser(
        "promote",
        help="the gradient of a promotion attack on WRMF or BPR (implicit feedback)",
        description=(
            "At the point the promotion attack takes its gradient (iteration N: the profiles "
            "after N - 1 steps of --method, refitted as the attack refits), compare the "
            "gradient on every fake user x item entry with the true one (the learner refitted "
            "to KKT 1e-10, the adjoint solved to 1e-8), confirmed by a finite difference of "
            "re-solved fits along it on the profiles' items."
        ),
    )
    add_promotion_options(promote, methods=("robust", "pga"), steps=False)
    _add_check_options(promote, suppress=True)
    promote.set_defaults(func=lambda args: _run_promotion(args, promote))


def _add_check_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    """``--at``, ``--min-cos`` and ``--json``; ``suppress``: no defaults (``promote``'s, so
    that a value given before ``promote`` is kept)."""

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    parser.add_argument(
        "--at",
        type=_iterations,
        default=default([1]),
        metavar="N[,N...]",
        help="attack iterations to check at (default 1)",
    )
    parser.add_argument(
        "--min-cos",
        type=float,
        default=default(DEFAULT_MIN_COS),
        help=f"exit 1 when the cosine is below this (default {DEFAULT_MIN_COS})",
    )
    add_json_option(parser, default=default(None))
