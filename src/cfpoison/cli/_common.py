"""Options and helpers shared by the sub-commands.

The learner and preprocessing flags (:func:`add_learner_options`) are derived from
``LearnerConfig`` and :class:`PreprocessConfig` (:mod:`cfpoison.cli._options`).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from cfpoison.attacks.utility import UtilityConfig, resolve_targets
from cfpoison.cli._options import add_options, count, flags_of, given, nested
from cfpoison.config import config_variants, settings_of
from cfpoison.data.preprocess import PreprocessConfig
from cfpoison.data.ratings import Ratings
from cfpoison.data.registry import CSV_PREFIX, INTERACTIONS_PREFIX
from cfpoison.errors import DataError
from cfpoison.io import check_outputs, write_json
from cfpoison.learners import LearnerConfig
from cfpoison.learners.base import Learner
from cfpoison.workers import usable_cores

LEARNERS = config_variants(LearnerConfig)
LEARNER_SETTINGS = settings_of(LearnerConfig, "learner.")
PREPROCESS_SETTINGS = settings_of(PreprocessConfig, "preprocess.")


def attack_targets(args: argparse.Namespace, train: Ratings, clean: Learner) -> np.ndarray:
    """The target columns of ``--target`` on ``train``: ``auto`` is the same draw as
    ``cfpoison attack --target auto --seed S`` makes first (from the ``clean`` fit)."""
    targets, _ = resolve_targets(
        UtilityConfig(targets=args.target),
        train,
        clean.user_factors,
        clean.item_factors,
        np.random.default_rng(args.seed),
    )
    return targets


def add_json_option(parser: argparse.ArgumentParser, default: Any = None) -> None:
    parser.add_argument(
        "--json",
        dest="json_path",
        type=Path,
        default=default,
        metavar="PATH",
        help="write the results as JSON",
    )


def add_data_dir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="directory holding unpacked data sets as DIR/NAME/ (default: $CFPOISON_DATA_DIR, "
        "then the user cache, then download)",
    )


def check_command_outputs(
    args: argparse.Namespace,
    files: Mapping[str, Path | None] | None = None,
    folders: Mapping[str, Path | None] | None = None,
    inputs: Iterable[tuple[str, Path | None]] = (),
) -> None:
    """:func:`cfpoison.io.check_outputs` of a command's outputs, ``--json`` included, against
    its inputs (a ``csv:PATH`` or ``interactions:PATH`` data set included), before the
    command starts its work."""
    dataset = getattr(args, "dataset", None) or getattr(args, "name", None)
    for prefix in (CSV_PREFIX, INTERACTIONS_PREFIX):
        if isinstance(dataset, str) and dataset.startswith(prefix):
            inputs = [*inputs, ("--dataset", Path(dataset.removeprefix(prefix)))]
    files = {**(files or {}), "--json": getattr(args, "json_path", None)}
    check_outputs(files, folders, inputs)


def data_dir_from(args: argparse.Namespace) -> Path | None:
    """``--data-dir`` (a folder, else :class:`DataError`), else ``$CFPOISON_DATA_DIR``, else
    None."""
    if getattr(args, "data_dir", None) is not None:
        if not Path(args.data_dir).is_dir():
            raise DataError(f"--data-dir {args.data_dir}: no such folder")
        return Path(args.data_dir)
    env = os.environ.get("CFPOISON_DATA_DIR")
    return Path(env) if env else None


def show_progress(args: argparse.Namespace) -> bool:
    """Progress bars on unless ``--quiet``."""
    return not getattr(args, "quiet", False)


def stderr_progress(args: argparse.Namespace) -> Callable[[str], None] | None:
    """A printer of progress lines on stderr, with the seconds since the command started
    (None with ``--quiet``)."""
    if not show_progress(args):
        return None
    start = time.perf_counter()

    def say(line: str) -> None:
        print(f"[{time.perf_counter() - start:6.1f} s] {line}", file=sys.stderr, flush=True)

    return say


class StepBar:
    """A progress bar over ``total`` named phases with an ETA (tqdm, on stderr): each call
    starts the named phase and counts the one before it as done; :meth:`close` counts the
    last. Off (every call a no-op) with ``--quiet``."""

    def __init__(self, args: argparse.Namespace, total: int, desc: str):
        self.bar = tqdm(total=total, desc=desc, unit="fit", disable=not show_progress(args))
        self.started = False

    def __call__(self, phase: str) -> None:
        if self.started:
            self.bar.update(1)
        self.started = True
        self.bar.set_postfix_str(phase)

    def finished(self, phase: str) -> None:
        """Count the named phase as done now (phases that end in any order, side by side)."""
        self.bar.update(1)
        self.bar.set_postfix_str(phase)

    def close(self) -> None:
        if self.started:
            self.bar.update(1)
        self.bar.close()


def add_workers_option(parser: argparse.ArgumentParser) -> None:
    """``--workers N``: the processes a victim panel's fits are spread over."""
    parser.add_argument(
        "--workers",
        type=count,
        metavar="N",
        help="with --victims: fit the victims in N worker processes side by side, each with "
        "its share of the cores (default: one per usable core; 0 or 1: one after the other "
        "in this process, as --workers 0 runs a sweep's cells); the numbers do not depend "
        "on N",
    )


def victim_workers(args: argparse.Namespace) -> int:
    """``--workers``: the usable cores when not given, 1 (this process) for 0."""
    return usable_cores() if args.workers is None else max(int(args.workers), 1)


def emit(args: argparse.Namespace, payload: dict[str, Any], text: str) -> None:
    """Print ``text`` for people (stdout, also with --quiet, which silences only progress and
    logs: a quiet run without --json would otherwise lose its result) and write ``payload`` to
    ``--json``."""
    print(text)
    json_path = getattr(args, "json_path", None)
    if json_path is not None:
        write_json(json_path, payload)
        if not getattr(args, "quiet", False):
            print(f"wrote {json_path}", file=sys.stderr)


def ttest_data(normal: Ratings, preprocess: PreprocessConfig | None = None) -> str:
    """Which normal users' ratings the t-tests compared the fake users with (``ttest_data``).

    ``attack`` and ``evaluate`` use the training split the attack saw (``preprocess``);
    ``detect`` the whole data set (None). The paper's test compares activity, so the two give
    different p-values for the same profiles: a split keeps ``1 - test_fraction`` of it.
    """
    size = f"{normal.n_users} normal users, {normal.nnz} ratings"
    if preprocess is None:
        return f"whole data set ({size})"
    kept = 100 * (1 - preprocess.test_fraction)
    return (
        f"train split ({kept:g}% of each user's ratings, users with >= "
        f"{preprocess.min_user_ratings}; {size})"
    )


def add_learner_options(parser: argparse.ArgumentParser) -> None:
    """The learner (``--learner``) and its fields, ``--seed``, and the preprocessing flags.

    Shared by ``train``, ``attack``, ``evaluate`` and others; :func:`learner_config` and
    :func:`preprocess_config` read them back.
    """
    group = parser.add_argument_group("learner and preprocessing")
    add_options(group, LEARNER_SETTINGS.values())
    group.add_argument(
        "--seed",
        type=int,
        default=0,
        metavar="S",
        help="seed of everything random: the attack, the learner's initialisation and the "
        "split, unless --learner.seed or --preprocess.seed say otherwise (default 0)",
    )
    add_options(group, PREPROCESS_SETTINGS.values())


def learner_config(args: argparse.Namespace, parser: argparse.ArgumentParser) -> LearnerConfig:
    """The learner config of the flags; a flag of a field the learner lacks is a usage error."""
    name = getattr(args, "learner", None) or LEARNER_SETTINGS["learner"].default
    cls = LEARNERS[name]
    fields = {f.name for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {"seed": args.seed}
    for setting_name, value in given(args, LEARNER_SETTINGS.values()).items():
        setting = LEARNER_SETTINGS[setting_name]
        if setting_name == "learner":
            continue
        field = setting_name.removeprefix("learner.")
        if field not in fields:
            owners = "/".join(setting.variants)
            parser.error(f"{flags_of(setting)[-1]} is a setting of {owners}, not of {name}")
        values[field] = value
    return cls(**values)


def preprocess_config(args: argparse.Namespace) -> PreprocessConfig:
    """The preprocessing of the flags of :func:`add_learner_options` (seed: ``--seed``)."""
    values = given(args, PREPROCESS_SETTINGS.values())
    return PreprocessConfig.from_dict(
        {"seed": args.seed, **nested(values, PREPROCESS_SETTINGS, "preprocess")}
    )
