"""``cfpoison defend``: every defense against injected (or generated) fake profiles."""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from cfpoison.attacks.engine import BASELINES, AttackConfig, available_methods
from cfpoison.attacks.evasion import with_evasions
from cfpoison.attacks.threat import ThreatModel
from cfpoison.attacks.utility import UtilityConfig
from cfpoison.cli._common import (
    LEARNER_SETTINGS,
    StepBar,
    add_json_option,
    add_learner_options,
    attack_targets,
    check_command_outputs,
    emit,
    learner_config,
    preprocess_config,
    show_progress,
)
from cfpoison.cli._options import flags_of, fraction, given, parse_feedback, positive_int
from cfpoison.cli.attack import add_target_option, parse_targets
from cfpoison.cli.data import add_load_options, load_from_args
from cfpoison.data.interactions import Interactions
from cfpoison.data.preprocess import prepare
from cfpoison.data.profiles import read_profiles
from cfpoison.data.ratings import Ratings
from cfpoison.defend import (
    DEFENSES,
    BaggingConfig,
    DefenseConfig,
    DetectRemoveConfig,
)
from cfpoison.defend.certify import Certificate, certify_bagging
from cfpoison.defend.defenses import DEFAULT_DEFENSES, LEARNED, ScoreFunction, defense_from_spec
from cfpoison.defend.report import table, write_report
from cfpoison.defend.supervised import learned_score
from cfpoison.detect import DETECTORS
from cfpoison.errors import ConfigError
from cfpoison.experiments.defense_grid import defense_fits, evaluate_defenses, run_defense_grid
from cfpoison.learners import ALSConfig, ALSLearner, WRMFConfig


def _defenses(args: argparse.Namespace) -> list[DefenseConfig]:
    """The ``--defense`` specs (default :data:`DEFAULT_DEFENSES`), with ``--fpr`` and
    ``--calibration`` applied to detect-and-remove."""
    pairs = (("fpr", args.fpr), ("calibration", args.calibration))
    detect = {k: v for k, v in pairs if v is not None}
    if args.defense:
        return [defense_from_spec(spec, detect) for spec in args.defense]
    extra = [DetectRemoveConfig(detector=LEARNED)] if args.learned_from else []
    return [
        d.replace(**detect) if isinstance(d, DetectRemoveConfig) else d
        for d in [*DEFAULT_DEFENSES, *extra]
    ]


def _learned(
    args: argparse.Namespace, train: Ratings, defenses: list[DefenseConfig]
) -> dict[str, ScoreFunction]:
    """The learned score, trained on the ``--learned-from`` files, for every detect-and-remove
    defense whose detector is ``learned`` (none without such a defense)."""
    learned = [d for d in defenses if isinstance(d, DetectRemoveConfig) and d.detector == LEARNED]
    if not learned:
        return {}
    if not args.learned_from:
        raise ConfigError("the learned detector needs --learned-from CSV (a labelled sample)")
    labelled = sp.csr_array(sp.vstack([read_profiles(p, train)[1] for p in args.learned_from]))
    score = learned_score(train, labelled, np.random.default_rng(args.seed))
    return {d.label: score for d in learned}


def _profiles(args: argparse.Namespace, train: Any) -> dict[str, sp.csr_array]:
    """Each ``--profiles`` file, named by its stem (``NAME=PATH`` names it explicitly)."""
    attacks: dict[str, sp.csr_array] = {}
    for text in args.profiles:
        name, sep, path = text.partition("=")
        name, path = (name, path) if sep else (Path(text).stem, text)
        if name in attacks:
            raise ConfigError(f"two profile files named {name!r}; name them NAME=PATH")
        attacks[name] = read_profiles(path, train)[1]
    return attacks


#: The flags that set the --grid attacks (None: not given, the config's default).
GRID_FLAGS = ("alpha", "items_per_user", "iterations", "beta")


def _attack_configs(args: argparse.Namespace, learner: ALSConfig) -> list[AttackConfig]:
    threat = {k: getattr(args, k) for k in ("alpha", "items_per_user")}
    steps = {} if args.iterations is None else {"iterations": args.iterations}
    return [
        AttackConfig(
            method=method,
            learner=learner,
            threat=ThreatModel(**{k: v for k, v in threat.items() if v is not None}),
            utility=UtilityConfig(mu1=1.0, mu2=0.0, targets=args.target),
            seed=args.seed,
            options={"beta": args.beta} if method == "sgld" and args.beta is not None else {},
            **steps,
        )
        for method in args.grid
    ]


def _check_grid_flags(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """A --grid flag without --grid, --iterations without an iterative method or --beta
    without sgld in the grid would be ignored: usage errors."""
    given = [f"--{k.replace('_', '-')}" for k in GRID_FLAGS if getattr(args, k) is not None]
    if given and not args.grid:
        parser.error(f"{', '.join(given)} set(s) the --grid attacks; there is no --grid")
    grid = args.grid or ()
    if args.iterations is not None and all(m in BASELINES for m in grid):
        parser.error(f"--iterations does not apply to --grid {','.join(grid)}: no steps")
    if args.beta is not None and "sgld" not in grid:
        parser.error("--beta is an SGLD option: put sgld in --grid")


#: The flags that apply only with --certify (None: not given).
CERTIFY_FLAGS = ("top_n", "confidence", "feedback")
#: The flags that do not apply with --certify: it certifies the clean data, attack-free.
NOT_CERTIFY_FLAGS = (
    "profiles", "grid", "learned_from", "evade", "adaptive", "fpr", "calibration", "report",
    "items_per_user", "iterations", "beta",
)  # fmt: skip


def _flag(name: str) -> str:
    return f"--{name.replace('_', '-')}"


def _certify(args: argparse.Namespace, parser: argparse.ArgumentParser, start: float) -> int:
    """``--certify``: the certified top-N overlap of one bagging defense on the clean data
    (:mod:`cfpoison.defend.certify`) against e = 1 .. ceil(alpha n) fake users."""
    wrong = [_flag(k) for k in NOT_CERTIFY_FLAGS if getattr(args, k) not in (None, False)]
    if args.target != parse_targets("auto"):
        wrong.append("--target")
    if wrong:
        raise ConfigError(f"{', '.join(wrong)} do(es) not apply with --certify")
    defenses = [defense_from_spec(spec) for spec in args.defense or ()]
    if len(defenses) != 1 or not isinstance(defenses[0], BaggingConfig):
        raise ConfigError("--certify certifies one bagging defense: give --defense bagging[:...]")
    learner: ALSConfig | WRMFConfig
    if args.feedback is None:
        learner = learner_config(args, parser)  # type: ignore[assignment]
        if not isinstance(learner, ALSConfig):
            raise ConfigError("defend: the defenses build on ALS; use --learner als")
    else:
        learner = _wrmf_of_flags(args)
    preprocess = preprocess_config(args)
    check_command_outputs(args)
    train, test = prepare(load_from_args(args, args.dataset), preprocess)
    if args.feedback is not None:
        train = Interactions.from_ratings(train, args.feedback)  # type: ignore[assignment]
        test = Interactions.from_ratings(test, args.feedback)  # type: ignore[assignment]
    alpha = ThreatModel().alpha if args.alpha is None else args.alpha
    certificate = certify_bagging(
        train,
        test,
        learner,
        defenses[0],
        np.random.default_rng(args.seed),
        10 if args.top_n is None else args.top_n,
        ThreatModel(alpha=alpha).n_fake(train.n_users),
        0.999 if args.confidence is None else args.confidence,
    )
    payload: dict[str, Any] = {
        "dataset": args.dataset,
        "feedback": None if args.feedback is None else f"implicit:{args.feedback:g}",
        "learner": learner.to_dict(),
        "defense": defenses[0].to_dict(),
        "alpha": alpha,
        "certify": certificate.to_dict(),
        "preprocess": preprocess.to_dict(),
        "seconds": time.perf_counter() - start,
    }
    emit(args, payload, _certify_table(certificate) + f"seconds {payload['seconds']:.1f}")
    return 0


def _wrmf_of_flags(args: argparse.Namespace) -> WRMFConfig:
    """``--feedback``'s bags: WRMF at its defaults, seeded by ``--seed``, with the learner
    flags given that WRMF has (``--rank``, ``--threads``, ...); any other is refused."""
    fields = {f.name for f in dataclasses.fields(WRMFConfig)}
    values: dict[str, Any] = {"seed": args.seed}
    for name, value in given(args, LEARNER_SETTINGS.values()).items():
        field = name.removeprefix("learner.")
        if name == "learner" or field not in fields:
            flag = flags_of(LEARNER_SETTINGS[name])[-1]
            raise ConfigError(f"{flag} does not apply with --feedback (WRMF bags)")
        values[field] = value
    return WRMFConfig(**values)


def _certify_table(c: Certificate) -> str:
    """The settings, the clean cost, and per e its delta and mean certified r."""
    n = c.top_n
    a = c.accuracy
    lines = [
        f"bagging vote: T = {c.bags} bags of s = {c.sample} of n = {c.n_users} users "
        f"({c.seconds_per_bag:.2f} s a bag), confidence {c.confidence:g} per user",
        f"clean cost on test: HR@{n} {a['bagged_hr']:.4f} (unbagged {a['unbagged_hr']:.4f}), "
        f"NDCG@{n} {a['bagged_ndcg']:.4f} (unbagged {a['unbagged_ndcg']:.4f})",
        f"{'fakes e':>8} {'delta(e)':>9} {f'mean r@{n}':>10} {f'r>={(n + 1) // 2}':>7}",
    ]
    half = (c.certified >= (n + 1) // 2).mean(axis=0)
    for e, d, r, h in zip(c.fakes, c.delta, c.mean_certified, half, strict=True):
        lines.append(f"{e:>8d} {d:>9.4f} {r:>10.3f} {h:>7.3f}")
    return "\n".join(lines) + "\n"


def _run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    start = time.perf_counter()
    given = [_flag(k) for k in CERTIFY_FLAGS if getattr(args, k) is not None]
    if args.certify:
        return _certify(args, parser, start)
    if given:
        raise ConfigError(f"{', '.join(given)} appl(ies) only with --certify")
    if bool(args.profiles) == bool(args.grid):
        parser.error("give --profiles (one or more files) or --grid METHOD[,METHOD...]")
    if args.evade and not args.profiles:
        parser.error("--evade projects --profiles files")
    if args.adaptive and not (args.grid and "pga" in args.grid):
        parser.error("--adaptive adapts the --grid's pga attack to each defense")
    _check_grid_flags(args, parser)
    learner = learner_config(args, parser)
    if not isinstance(learner, ALSConfig):
        raise ConfigError("defend: the defenses build on ALS; use --learner als")
    defenses = _defenses(args)
    preprocess = preprocess_config(args)
    inputs = [("--profiles", Path(t.partition("=")[2] or t)) for t in args.profiles or []]
    inputs += [("--learned-from", p) for p in args.learned_from or []]
    check_command_outputs(args, folders={"--report": args.report}, inputs=inputs)
    train, test = prepare(load_from_args(args, args.dataset), preprocess)
    scores = _learned(args, train, defenses)
    evasions: list[dict[str, Any]] = []
    if args.grid:
        attack_configs = _attack_configs(args, learner)
        result = run_defense_grid(
            train,
            test,
            attack_configs,
            defenses,
            args.seed,
            show_progress(args),
            scores,
            adaptive=args.adaptive,
        )
    else:
        attacks = _profiles(args, train)
        if args.evade:
            fpr = DetectRemoveConfig(fpr=args.fpr if args.fpr is not None else 0.01).fpr
            attacks, evasions = with_evasions(train, attacks, args.evade, fpr)
        clean = ALSLearner(learner).fit(train)
        targets = attack_targets(args, train, clean)
        bar = StepBar(args, defense_fits(attacks, defenses), "defenses")
        result = evaluate_defenses(
            train,
            test,
            attacks,
            defenses,
            learner,
            targets,
            args.seed,
            scores,
            clean,
            progress=bar,
        )
        bar.close()
    payload: dict[str, Any] = {
        "dataset": args.dataset,
        "profiles": list(args.profiles or []),
        **result,
        "evasions": evasions,
        "preprocess": preprocess.to_dict(),
        "seconds": time.perf_counter() - start,
    }
    if args.report is not None:
        write_report(result, args.report)
    emit(args, payload, table(result) + f"seconds {payload['seconds']:.1f}")
    return 0


def _methods(text: str) -> tuple[str, ...]:
    methods = tuple(m.strip() for m in text.split(",") if m.strip())
    known = available_methods()
    if not methods or any(m not in known for m in methods):
        raise argparse.ArgumentTypeError(f"expected methods among {', '.join(known)}: {text!r}")
    return methods


def register(subparsers: argparse._SubParsersAction) -> None:
    threat, attack = ThreatModel(), AttackConfig()
    parser = subparsers.add_parser(
        "defend",
        help="run the defenses against fake profiles and measure cost and benefit",
        description=(
            "Fit the clean ALS model, inject each --profiles file (or generate the --grid "
            "attacks), and run every defense on each: detect-and-remove (a detector's "
            "threshold calibrated for --fpr on real users, then ALS on the rest), bagging, "
            "trimmed ALS, Huber IRLS, per-user influence caps and ALS-WR. Reports per defense "
            "x attack the RMSE shift against the clean undefended model and the seed-noise "
            "floor, the share of the attack's shift above the floor removed, the target push, "
            "test RMSE of the defended model on clean data, the users removed and seconds. "
            f"Defense specs: NAME[:KEY=VALUE,...] with NAME in {', '.join(DEFENSES)}."
        ),
    )
    parser.add_argument("--dataset", required=True, metavar="NAME", help="data set name")
    parser.add_argument(
        "--profiles",
        action="append",
        metavar="[NAME=]CSV",
        help="fake profiles to defend against (repeatable; named by the file's stem)",
    )
    parser.add_argument(
        "--grid",
        type=_methods,
        metavar="METHOD[,METHOD...]",
        help="generate these attacks (with --alpha, --items-per-user, --iterations, --beta, "
        "--seed; mu1 = 1, mu2 = 0) instead of reading --profiles",
    )
    parser.add_argument(
        "--defense",
        action="append",
        metavar="SPEC",
        help="a defense, e.g. detect_remove:detector=degsim or bagging:bags=20,fraction=0.5 "
        "(repeatable; default: " + ", ".join(d.label for d in DEFAULT_DEFENSES) + ")",
    )
    parser.add_argument(
        "--learned-from",
        action="append",
        type=Path,
        metavar="CSV",
        help="profiles of attacks seen before (repeatable): the labelled sample that trains "
        "the learned detector for detect_remove:detector=learned (added to the defaults)",
    )
    parser.add_argument(
        "--evade",
        action="append",
        choices=sorted(DETECTORS),
        metavar="DETECTOR",
        help="also defend against each profile file projected under this detector's "
        "threshold at --fpr (the adaptive attacker of cfpoison.attacks.evasion; repeatable)",
    )
    parser.add_argument(
        "--adaptive",
        action="store_true",
        help="with --grid pga: also PGA against each defense that has an adaptive attacker "
        "(all but detect_remove with a learned detector or poisoned calibration; "
        "cfpoison.attacks.adaptive, seeded with --seed as the defense is) and, for "
        "detect_remove, PGA projected under its threshold after the attack; each evaluated "
        "against its own defense",
    )
    parser.add_argument(
        "--fpr",
        type=float,
        metavar="F",
        help="detect-and-remove: target false-positive rate on real users, in [0, 1) "
        "(default 0.01)",
    )
    parser.add_argument(
        "--calibration",
        choices=("reference", "poisoned"),
        help="detect-and-remove threshold: quantile of the scores on the clean training data "
        "(reference, default: data from before the attack) or on the poisoned data itself",
    )
    add_target_option(parser, "push")
    parser.add_argument(
        "--alpha",
        type=fraction,
        help=f"--grid: fake share; --certify: the most fake users ceil(alpha n) (default "
        f"{threat.alpha})",
    )
    parser.add_argument(
        "--items-per-user",
        type=positive_int,
        metavar="B",
        help=f"--grid: items per fake user (default {threat.items_per_user})",
    )
    parser.add_argument(
        "--iterations",
        type=positive_int,
        metavar="T",
        help=f"--grid: PGA/SGLD steps (default {attack.iterations})",
    )
    parser.add_argument("--beta", type=float, help="--grid: SGLD's utility weight")
    parser.add_argument(
        "--certify",
        action="store_true",
        help="instead of attacking: certify one --defense bagging[:bags=T,fraction=F] (users "
        "unit) on the clean data, PORE's bound: per e = 1 .. ceil(--alpha n) fake users, the "
        "mean over users of the certified size r of the overlap of the poisoned vote's top N "
        "with the clean one (docs/math.md section 8); and the vote's HR@N/NDCG@N on test",
    )
    parser.add_argument(
        "--top-n",
        type=positive_int,
        metavar="N",
        help="--certify: the length of the certified lists (default 10)",
    )
    parser.add_argument(
        "--feedback",
        type=parse_feedback,
        metavar="implicit[:THRESHOLD]",
        help="--certify: bag WRMF (promote's learner, its defaults) on the interactions "
        "(a rating >= THRESHOLD, default 4) and certify its top N of items without an "
        "interaction, hits on the held-out interactions",
    )
    parser.add_argument(
        "--confidence",
        type=fraction,
        metavar="C",
        help="--certify: the bounds hold for a user with this probability over the bags, "
        "in (0, 1) (default 0.999)",
    )
    parser.add_argument(
        "--report", type=Path, metavar="DIR", help="write defenses.md and cost-benefit.png here"
    )
    add_learner_options(parser)
    add_load_options(parser)
    add_json_option(parser)
    parser.set_defaults(func=lambda args: _run(args, parser))
