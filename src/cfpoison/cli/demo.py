"""``cfpoison demo``: the main job on built-in data, offline.

For now it summarises the built-in synthetic set (the data every later demo step runs on).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from cfpoison.cli._common import add_json_option, emit
from cfpoison.cli.data import summary_text
from cfpoison.data.registry import load_dataset


def _demo(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    ratings = load_dataset("synthetic")
    summary = ratings.summary()
    summary["seconds"] = time.perf_counter() - start
    text = summary_text(summary, ratings.scale)
    emit(args, summary, "cfpoison demo: the built-in synthetic data set (offline)\n" + text)
    return 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the main job on built-in synthetic data (offline)",
        description="Summarise the built-in synthetic MovieLens-like data set; works offline.",
    )
    add_json_option(parser)
    parser.set_defaults(func=_demo)
