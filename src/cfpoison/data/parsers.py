"""Parsers for rating files: MovieLens ``u.data``, ``ratings.dat``, ``ratings.csv`` and generic CSV.

Every layout is a table of ``user, item, rating[, timestamp]`` rows, one per line:

* ``tab``: ``u.data`` of ml-100k, tab-separated, no header;
* ``dat``: ``ratings.dat`` of ml-1m and ml-10m, fields separated by ``::``;
* ``csv``: ``ratings.csv`` of ml-20m, ml-25m and ml-latest-small, comma-separated with a header;
* ``generic``: a user's own file; the delimiter is given or sniffed from the first line, a
  header is detected (a first line whose first three fields are all non-numeric), and the
  file holds 3 or 4 fields per line;
* ``interactions``: a native implicit-feedback file (clicks, plays), read like ``generic``
  but with ``user, item[, weight[, timestamp]]`` rows: no weight column means weight 1, and a
  weight must be finite and > 0 (:func:`parse_interactions`).

Ids are integers, ratings finite numbers on the data set's scale (inferred from the observed
ratings for a generic file unless given), a timestamp (if present) a number. Empty lines are
skipped. The fast path reads the whole file with NumPy's C parser (``np.loadtxt``: about 6 s
for 20M lines on one idle core); only when it finds a problem does a line-by-line pass locate
the first bad line, so every error names the file and the line number.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import scipy.sparse as sp

from cfpoison.data.ratings import Ratings, RatingScale, dense_inverse
from cfpoison.errors import ConfigError, DataError

Layout = Literal["tab", "dat", "csv", "generic", "interactions"]
OnDuplicate = Literal["error", "first", "last", "mean", "sum"]
LAYOUTS: tuple[str, ...] = get_args(Layout)
ON_DUPLICATE: tuple[str, ...] = get_args(OnDuplicate)

#: Delimiters tried, in order, when a generic file's delimiter is not given.
SNIFFED_DELIMITERS = ("::", "\t", ",", ";", "|", " ")
#: Steps tried, largest first, when a scale is inferred from the observed ratings.
CANDIDATE_STEPS = (1.0, 0.5, 0.25, 0.2, 0.1, 0.05, 0.01)

_ENCODING = "utf-8-sig"


@dataclasses.dataclass(frozen=True)
class RowCheck:
    """An extra per-row rule: ``bad(users, items, ratings)`` is a mask of rows breaking it,
    ``message(user, item, rating)`` says what is wrong with one such row."""

    bad: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
    message: Callable[[int, int, float], str]


@dataclasses.dataclass(frozen=True)
class _Format:
    layout: Layout
    delimiter: str
    n_fields: int
    header: bool


def _timestamp_type(fmt: _Format) -> type:
    """MovieLens timestamps are integer Unix seconds; a generic file may use any number."""
    return float if fmt.layout in ("generic", "interactions") else int


def describe_scale(scale: RatingScale) -> str:
    """``"0.5-5 in steps of 0.5"`` (or ``"1-5, continuous"`` for step 0)."""
    low, high = f"{scale.low:g}", f"{scale.high:g}"
    if scale.step == 0:
        return f"{low}-{high}, continuous"
    return f"{low}-{high} in steps of {scale.step:g}"


def infer_scale(ratings: np.ndarray, path: str | Path = "") -> RatingScale:
    """The scale ``[min, max]`` of observed ratings, with the largest step of
    :data:`CANDIDATE_STEPS` that puts every rating on the grid (else step 0: continuous)."""
    if len(ratings) == 0:
        raise DataError(f"{path}: no ratings")
    low, high = float(ratings.min()), float(ratings.max())
    if low == high:
        raise DataError(
            f"{path}: every rating is {low:g}, so the rating scale cannot be inferred; give one"
        )
    for step in CANDIDATE_STEPS:
        if abs((high - low) / step - round((high - low) / step)) > 1e-9:
            continue
        scale = RatingScale(low, high, step)
        if np.all(scale.contains(ratings)):
            return scale
    return RatingScale(low, high, 0.0)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _first_line(path: Path) -> str:
    with open(path, encoding=_ENCODING, errors="replace") as handle:
        return handle.readline().rstrip("\r\n")


def _detect_format(path: Path, layout: Layout, delimiter: str | None) -> _Format:
    """Delimiter, number of fields and header of ``path`` for ``layout``."""
    first = _first_line(path)
    if layout == "tab":
        delimiter, n_fields = "\t", 4
    elif layout == "dat":
        delimiter, n_fields = "::", 4
    elif layout == "csv":
        delimiter, n_fields = ",", 4
    else:
        counts: tuple[int, ...] = (2, 3, 4)
        what = "user, item[, weight[, timestamp]]"
        if layout == "generic":
            counts, what = (3, 4), "user, item, rating[, timestamp]"
        if delimiter is None:  # the first candidate that splits line 1 into an allowed count
            fits = (d for d in SNIFFED_DELIMITERS if len(first.split(d)) in counts)
            delimiter = next(fits, ",")
        n_fields = len(first.split(delimiter))
        if n_fields not in counts:
            allowed = " or ".join(map(str, counts)).replace(" or ", ", ", len(counts) - 2)
            raise DataError(
                f"{path}, line 1: expected {allowed} fields ({what}) separated by "
                f"{delimiter!r}, found {n_fields}"
            )
    fields = first.split(delimiter)
    named = min(len(fields), 3)
    header = len(fields) >= 2 and not any(_is_number(f) for f in fields[:named])
    return _Format(layout, delimiter, n_fields, header)


def _fast_read(path: Path, fmt: _Format) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """All rows via NumPy's C parser, or None when a line does not parse or has extra fields."""
    fields = [("u", np.int64), ("i", np.int64), ("r", np.float64), ("t", _timestamp_type(fmt))]
    # (a two-field interactions file has no value column: every weight is 1)
    dtype = np.dtype(fields[: fmt.n_fields])
    if fmt.delimiter == "::":
        # ":" splits "a::b" into "a", "", "b": read every other column.
        sep, usecols = ":", tuple(range(0, 2 * fmt.n_fields, 2))
    else:
        sep, usecols = fmt.delimiter, tuple(range(fmt.n_fields))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data"
            table = np.loadtxt(
                path,
                delimiter=sep,
                usecols=usecols,
                dtype=dtype,
                skiprows=int(fmt.header),
                comments=None,
                encoding=_ENCODING,
                ndmin=1,
            )
    except (ValueError, UnicodeDecodeError):
        return None
    # NumPy ignores columns beyond usecols: count delimiters to rule out extra fields.
    per_line = (fmt.n_fields - 1) * (2 if fmt.delimiter == "::" else 1)
    if _count_separators(path, sep.encode(), fmt.header) != per_line * len(table):
        return None
    values = table["r"] if fmt.n_fields >= 3 else np.ones(len(table))
    return table["u"], table["i"], values


def _count_separators(path: Path, sep: bytes, skip_first_line: bool) -> int:
    """Occurrences of the one-byte ``sep`` in the file (minus those in its first line)."""
    count = 0
    with open(path, "rb") as handle:
        if skip_first_line:
            handle.readline()
        while chunk := handle.read(1 << 26):
            count += chunk.count(sep)
    return count


def _parse_line(
    line: str, fmt: _Format, scale: RatingScale | None, checks: Sequence[RowCheck]
) -> tuple[int, int, float] | str:
    """``(user, item, rating)`` of one data line, or what is wrong with it."""
    fields = line.split(fmt.delimiter)
    if len(fields) != fmt.n_fields:
        return f"expected {fmt.n_fields} fields separated by {fmt.delimiter!r}, found {len(fields)}"
    values: list[int] = []
    for what, text in (("user id", fields[0]), ("item id", fields[1])):
        try:
            values.append(int(text))
        except ValueError:
            return f"{what} {text.strip()!r} is not an integer"
    value = "weight" if fmt.layout == "interactions" else "rating"
    try:
        rating = float(fields[2]) if fmt.n_fields >= 3 else 1.0
    except ValueError:
        return f"{value} {fields[2].strip()!r} is not a number"
    if not math.isfinite(rating):
        return f"{value} {fields[2].strip()!r} is not a finite number"
    if fmt.n_fields == 4:
        try:
            _timestamp_type(fmt)(fields[3])
        except ValueError:
            return f"timestamp {fields[3].strip()!r} is not a valid {_timestamp_type(fmt).__name__}"
    if scale is not None and not scale.contains(rating):
        return f"rating {rating:g} is not on the scale {describe_scale(scale)}"
    user, item = values
    arrays = (np.array([user]), np.array([item]), np.array([rating]))
    for check in checks:
        if check.bad(*arrays)[0]:
            return check.message(user, item, rating)
    return user, item, rating


def _locate(
    path: Path,
    fmt: _Format,
    scale: RatingScale | None,
    checks: Sequence[RowCheck],
    duplicate: tuple[int, int] | None = None,
) -> str | None:
    """A message naming the first bad line of ``path`` (a line that does not parse, breaks the
    scale or a check, or repeats the pair ``duplicate``), or None if there is none."""
    first_seen = 0
    with open(path, encoding=_ENCODING, errors="replace") as handle:
        for lineno, raw in enumerate(handle, start=1):
            line = raw.rstrip("\r\n")
            if not line or (lineno == 1 and fmt.header):
                continue
            parsed = _parse_line(line, fmt, scale, checks)
            if isinstance(parsed, str):
                return f"{path}, line {lineno}: {parsed}"
            if duplicate is not None and parsed[:2] == duplicate:
                if first_seen:
                    user, item = duplicate
                    what, fixes = "rating of user {} for", "first|last|mean"
                    if fmt.layout == "interactions":
                        what, fixes = "interaction of user {} with", "sum|first|last|mean"
                    return (
                        f"{path}, line {lineno}: duplicate {what.format(user)} item "
                        f"{item} (first at line {first_seen}); --on-duplicate {fixes} "
                        "resolves duplicates"
                    )
                first_seen = lineno
    return None


def ratings_from_keys(
    keys: np.ndarray,
    values: np.ndarray,
    user_ids: np.ndarray,
    item_ids: np.ndarray,
    scale: RatingScale,
    name: str,
) -> Ratings:
    """:class:`Ratings` from strictly increasing keys ``row * n_items + col`` and the ratings
    on ``scale`` in the same order (the CSR arrays directly, no re-sorting)."""
    n_items = len(item_ids)
    rows = keys // n_items
    indptr = np.zeros(len(user_ids) + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=len(user_ids)), out=indptr[1:])
    matrix = sp.csr_array(
        (scale.to_shifted(values), (keys - rows * n_items), indptr),
        shape=(len(user_ids), n_items),
    )
    matrix.has_sorted_indices = True
    return Ratings(matrix, user_ids, item_ids, scale, name)


def _resolve_duplicates(
    keys: np.ndarray, ratings: np.ndarray, starts: np.ndarray, policy: OnDuplicate
) -> tuple[np.ndarray, np.ndarray]:
    """One value per key, given the sorted ``keys`` (file order within a key), their values
    and the mask of positions starting a key: the first or last in file order, the mean or
    the sum."""
    first = np.flatnonzero(starts)
    if policy == "first":
        return keys[first], ratings[first]
    if policy == "last":
        last = np.append(first[1:], len(keys)) - 1
        return keys[last], ratings[last]
    total = np.add.reduceat(ratings, first)
    if policy == "sum":
        return keys[first], total
    return keys[first], total / np.diff(np.append(first, len(keys)))


def _read(
    path: Path,
    layout: Layout,
    scale: RatingScale | None,
    on_duplicate: OnDuplicate,
    delimiter: str | None,
    checks: Sequence[RowCheck],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, RatingScale | None]:
    """The user ids, item ids, strictly increasing keys ``row * n_items + col``, one value
    per key of the file at ``path`` (the module docstring's rules; every error names a line)
    and the rating scale (``scale``, else inferred from the values as read; None for
    interactions)."""
    if layout not in LAYOUTS:
        raise DataError(f"unknown layout {layout!r} (known: {', '.join(LAYOUTS)})")
    if on_duplicate not in ON_DUPLICATE:
        raise DataError(f"unknown duplicate policy {on_duplicate!r}")
    if on_duplicate == "sum" and layout != "interactions":
        raise ConfigError("--on-duplicate sum adds interaction weights; ratings cannot be summed")
    if delimiter is not None and len(delimiter) != 1 and delimiter != "::":
        raise DataError(f"delimiter {delimiter!r} must be one character or '::'")
    what = "interactions" if layout == "interactions" else "ratings"
    if path.is_dir():
        raise DataError(f"{path}: is a folder, not a {what} file")
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file, no {what}")
    fmt = _detect_format(path, layout, delimiter)
    table = _fast_read(path, fmt)
    if table is None:
        raise DataError(_locate(path, fmt, scale, checks) or f"{path}: cannot parse as {layout}")
    users, items, values = table
    if len(values) == 0:
        raise DataError(f"{path}: no {what}")
    user_ids, rows = dense_inverse(users)
    item_ids, cols = dense_inverse(items)
    keys = rows * len(item_ids) + cols
    order = np.argsort(keys, kind="stable")  # near-linear: MovieLens files are sorted by user
    keys, values = keys[order], values[order]
    starts = np.ones(len(keys), dtype=bool)
    starts[1:] = keys[1:] != keys[:-1]
    duplicate = None
    if on_duplicate == "error" and not starts.all():
        row = int(order[~starts].min())
        duplicate = (int(users[row]), int(items[row]))
    bad = ~np.isfinite(values)
    if scale is not None:
        bad |= ~scale.contains(values)
    for check in checks:
        bad |= check.bad(users[order], items[order], values)
    if bad.any() or duplicate is not None:
        raise DataError(_locate(path, fmt, scale, checks, duplicate) or f"{path}: bad line")
    if scale is None and layout != "interactions":
        scale = infer_scale(values, path)
    if not starts.all():
        keys, values = _resolve_duplicates(keys, values, starts, on_duplicate)
    return user_ids, item_ids, keys, values, scale


def parse_ratings(
    path: str | Path,
    layout: Layout = "generic",
    *,
    scale: RatingScale | None = None,
    on_duplicate: OnDuplicate = "error",
    delimiter: str | None = None,
    name: str | None = None,
    checks: Sequence[RowCheck] = (),
) -> Ratings:
    """Read a rating file of ``layout`` into :class:`Ratings` (shifted scale, no preprocessing).

    ``scale`` is the declared scale (every rating must lie on it); None infers it from the
    observed ratings (:func:`infer_scale`). ``on_duplicate`` says what a repeated (user, item)
    pair does: ``error`` (the default) names its line; ``first``/``last`` keep one rating in
    file order; ``mean`` averages them (the mean may fall between the scale's steps).
    ``checks`` are extra per-row rules; a row breaking one is reported by line like any other.
    """
    path = Path(path)
    if layout == "interactions":
        raise DataError(f"{path}: an interactions file has no ratings (parse_interactions)")
    user_ids, item_ids, keys, ratings, read_scale = _read(
        path, layout, scale, on_duplicate, delimiter, checks
    )
    assert read_scale is not None  # given, or inferred by _read for every rating layout
    return ratings_from_keys(keys, ratings, user_ids, item_ids, read_scale, name or str(path))


def _positive_weight(users: np.ndarray, items: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return ~(weights > 0)


def parse_interactions(
    path: str | Path,
    *,
    on_duplicate: OnDuplicate = "error",
    delimiter: str | None = None,
    name: str | None = None,
    checks: Sequence[RowCheck] = (),
) -> tuple[np.ndarray, np.ndarray, sp.csr_array]:
    """Read a native implicit-feedback file (``user, item[, weight[, timestamp]]`` rows, the
    ``interactions`` layout): the user ids, the item ids and the ``m x n`` CSR of weights
    (sorted indices). A missing weight column means weight 1; a weight must be finite and
    > 0. ``on_duplicate`` as in :func:`parse_ratings`, plus ``sum`` (a repeated pair's
    weights add up: play counts from a log of plays)."""
    weight = RowCheck(_positive_weight, lambda u, i, w: f"weight {w:g} is not > 0")
    user_ids, item_ids, keys, weights, _ = _read(
        Path(path), "interactions", None, on_duplicate, delimiter, (weight, *checks)
    )
    n_items = len(item_ids)
    rows = keys // n_items
    indptr = np.zeros(len(user_ids) + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=len(user_ids)), out=indptr[1:])
    matrix = sp.csr_array((weights, keys - rows * n_items, indptr), shape=(len(user_ids), n_items))
    matrix.has_sorted_indices = True
    return user_ids, item_ids, matrix
