"""``cfpoison data list|info|fetch``: the data sets, their statistics, and their download."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from cfpoison.cli._common import (
    add_data_dir_option,
    add_json_option,
    check_command_outputs,
    data_dir_from,
    emit,
    show_progress,
)
from cfpoison.data.download import archive_url
from cfpoison.data.parsers import ON_DUPLICATE, describe_scale
from cfpoison.data.ratings import Ratings, RatingScale
from cfpoison.data.registry import (
    CSV_PREFIX,
    DATASETS,
    INTERACTIONS_PREFIX,
    DatasetInfo,
    cache_dir,
    find_local,
    load_dataset,
    load_interactions,
    movielens_info,
    ratings_path,
    synthetic_preset,
)
from cfpoison.data.synthetic import PRESETS
from cfpoison.errors import ConfigError, DataError


def parse_scale(text: str) -> RatingScale:
    """``LOW:HIGH:STEP`` (``STEP`` 0 = continuous) as a :class:`RatingScale`."""
    try:
        low, high, step = (float(x) for x in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW:HIGH:STEP, got {text!r}") from None
    try:
        return RatingScale(low, high, step)
    except ConfigError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_load_options(parser: argparse.ArgumentParser) -> None:
    """``--data-dir``, ``--on-duplicate``, ``--delimiter``, ``--scale``, ``--offline``,
    ``--accept-modified-data``."""
    add_data_dir_option(parser)
    parser.add_argument(
        "--on-duplicate",
        choices=ON_DUPLICATE,
        default="error",
        help="what a repeated user-item pair does: error (default), keep the first or the "
        "last in file order, average them, or (interactions:PATH only) add their weights",
    )
    parser.add_argument(
        "--delimiter", help="field delimiter of csv:PATH (default: sniffed from the first line)"
    )
    parser.add_argument(
        "--scale",
        type=parse_scale,
        metavar="LOW:HIGH:STEP",
        help="rating scale of csv:PATH, e.g. 1:5:1 (default: inferred from the ratings)",
    )
    parser.add_argument(
        "--offline", action="store_true", help="never download; fail if the data is not local"
    )
    parser.add_argument(
        "--accept-modified-data",
        action="store_true",
        help="read a MovieLens file that differs from the official release (its checksum or "
        "its counts of users, items and ratings) with a warning instead of failing",
    )


def load_from_args(args: argparse.Namespace, name: str) -> Ratings:
    """:func:`load_dataset` with the options of :func:`add_load_options`."""
    return load_dataset(
        name,
        data_dir_from(args),
        download=not args.offline,
        progress=show_progress(args),
        on_duplicate=args.on_duplicate,
        delimiter=args.delimiter,
        scale=args.scale,
        accept_modified=args.accept_modified_data,
    )


def summary_text(summary: dict[str, Any], scale: RatingScale | None) -> str:
    """The human-readable block of ``data info``: counts, scale (or the weights' range of
    interactions), density, activity."""

    def quantiles(q: dict[str, float]) -> str:
        return f"min {q['min']}, median {q['median']:g}, mean {q['mean']:.1f}, max {q['max']}"

    entries = "ratings" if scale is not None else "interactions"
    lines = [
        f"data set          {summary['name']}",
        f"users             {summary['users']}",
        f"items             {summary['items']}",
        f"{entries:<17} {summary[entries]}",
    ]
    if scale is not None:
        lines.append(f"scale             {describe_scale(scale)}")
    else:
        w = summary["weights"]
        lines.append(f"weights           min {w['min']:g}, mean {w['mean']:.3g}, max {w['max']:g}")
    lines.append(f"density           {100 * summary['density']:.3f}%")
    if scale is not None:
        lines.append(f"mean rating       {summary['mean_rating']:.3f}")
    for who in ("user", "item"):
        label = f"{entries} per {who}"
        lines.append(f"{label:<17} {quantiles(summary[f'{entries}_per_{who}'])}")
    return "\n".join(lines)


def _info(args: argparse.Namespace) -> int:
    check_command_outputs(args)
    start = time.perf_counter()
    if args.name.startswith(INTERACTIONS_PREFIX):
        if args.scale is not None:
            raise ConfigError(f"--scale applies to ratings; {args.name} holds interactions")
        duplicates, delimiter = args.on_duplicate, args.delimiter
        data = load_interactions(args.name, on_duplicate=duplicates, delimiter=delimiter)
        summary = data.summary()
        summary["seconds"] = time.perf_counter() - start
        emit(args, summary, summary_text(summary, None))
        return 0
    ratings = load_from_args(args, args.name)
    summary = ratings.summary()
    summary["scale_text"] = describe_scale(ratings.scale)
    summary["seconds"] = time.perf_counter() - start
    emit(args, summary, summary_text(summary, ratings.scale))
    return 0


def _where(info: DatasetInfo, data_dir: Path | None) -> str:
    found = find_local(info, data_dir)
    return str(found) if found is not None else "bundled" if info.bundled_sha256 else "download"


def _list(args: argparse.Namespace) -> int:
    check_command_outputs(args)
    data_dir = data_dir_from(args)
    rows: list[dict[str, Any]] = []
    for preset, cfg in PRESETS.items():
        name = "synthetic" if preset == "default" else f"synthetic:{preset}"
        rows.append(
            {
                "name": name,
                "users": cfg.n_users,
                "items": cfg.n_items,
                "ratings": cfg.n_ratings,
                "scale": describe_scale(cfg.scale),
                "where": "built in",
            }
        )
    for name, info in DATASETS.items():
        rows.append(
            {
                "name": name,
                "users": info.users,
                "items": info.items,
                "ratings": info.ratings,
                "scale": describe_scale(info.scale),
                "where": _where(info, data_dir),
                "url": archive_url(info),
            }
        )
    header = f"{'name':<18}{'users':>9}{'items':>8}{'ratings':>12}  {'scale':<24}where"
    lines = [header] + [
        f"{r['name']:<18}{r['users']:>9}{r['items']:>8}{r['ratings']:>12}  {r['scale']:<24}"
        f"{r['where']}"
        for r in rows
    ]
    lines.append(f"{CSV_PREFIX + 'PATH':<18}your own file: user,item,rating[,timestamp] columns")
    lines.append(
        f"{INTERACTIONS_PREFIX + 'PATH':<18}your own implicit feedback: user,item[,weight"
        "[,timestamp]] columns (data info, promote, evaluate, detect)"
    )
    emit(args, {"datasets": rows, "cache": str(cache_dir())}, "\n".join(lines))
    return 0


def _fetch(args: argparse.Namespace) -> int:
    name = args.name
    if synthetic_preset(name) is not None or name.startswith((CSV_PREFIX, INTERACTIONS_PREFIX)):
        raise DataError(f"{name} is not downloaded: only the MovieLens sets are")
    info = movielens_info(name)
    check_command_outputs(args)
    path = ratings_path(
        name,
        data_dir_from(args),
        bundled=False,
        progress=show_progress(args),
        base_url=args.base_url,
    )
    payload = {"name": name, "path": str(path), "url": archive_url(info, args.base_url)}
    emit(args, payload, f"{name}: {path}")
    return 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "data",
        help="list, describe and download data sets",
        description="Data sets: built-in synthetic presets, the MovieLens releases (from "
        "--data-dir or $CFPOISON_DATA_DIR, the user cache, or a verified download) and "
        "csv:PATH for your own file.",
    )
    commands = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    listing = commands.add_parser("list", help="the known data sets and where each would come from")
    add_data_dir_option(listing)
    add_json_option(listing)
    listing.set_defaults(func=_list)

    info = commands.add_parser(
        "info",
        help="users, items, ratings, scale, density and activity of a data set",
        description="Load a data set (raw, no preprocessing) and print its statistics.",
    )
    info.add_argument(
        "name", metavar="NAME", help="synthetic[:PRESET], ml-latest-small, ..., csv:PATH"
    )
    add_load_options(info)
    add_json_option(info)
    info.set_defaults(func=_info)

    fetch = commands.add_parser(
        "fetch",
        help="download a MovieLens set into the user cache (verified)",
        description="Make a MovieLens set available: report where it is, or download the "
        "official archive, verify its checksum and unpack it into the user cache.",
    )
    fetch.add_argument("name", metavar="NAME", help="a MovieLens set, e.g. ml-1m")
    add_data_dir_option(fetch)
    fetch.add_argument(
        "--base-url",
        help="download from this base URL instead of GroupLens ($CFPOISON_MOVIELENS_URL)",
    )
    add_json_option(fetch)
    fetch.set_defaults(func=_fetch)
