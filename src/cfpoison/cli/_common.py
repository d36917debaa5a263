"""Options and helpers shared by the sub-commands."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from cfpoison.data.preprocess import PreprocessConfig
from cfpoison.data.ratings import Ratings
from cfpoison.io import write_json


def add_json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", dest="json_path", type=Path, metavar="PATH", help="write the results as JSON"
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


def data_dir_from(args: argparse.Namespace) -> Path | None:
    """``--data-dir``, else ``$CFPOISON_DATA_DIR``, else None."""
    if getattr(args, "data_dir", None) is not None:
        return Path(args.data_dir)
    env = os.environ.get("CFPOISON_DATA_DIR")
    return Path(env) if env else None


def show_progress(args: argparse.Namespace) -> bool:
    """Progress bars on unless ``--quiet``."""
    return not getattr(args, "quiet", False)


def emit(args: argparse.Namespace, payload: dict[str, Any], text: str) -> None:
    """Print ``text`` for people (unless --quiet) and write ``payload`` to ``--json``."""
    if not getattr(args, "quiet", False):
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
