"""Fake-user profile files: CSV ``userId,movieId,rating`` in the data set's ids and scale.

These files are what ``attack`` writes and ``evaluate``/``detect`` read, so a profile file from
another tool can be evaluated too. In memory, profiles are an ``m' x n`` CSR matrix on the
shifted scale whose columns are the data set's items and whose stored entries are the fake
ratings (explicit zeros included), row ``i`` being fake user ``fake_user_ids[i]``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from cfpoison.data.interactions import Interactions
from cfpoison.data.parsers import RowCheck, parse_interactions, parse_ratings
from cfpoison.data.ratings import IdMatrix, Ratings
from cfpoison.errors import DataError
from cfpoison.io import atomic_write

HEADER = "userId,movieId,rating"


def _id_checks(data: IdMatrix) -> tuple[RowCheck, RowCheck]:
    """The rows of a profile file must name an item of ``data`` and no real user of it."""
    known_items = np.sort(data.item_ids)
    real_users = np.sort(data.user_ids)

    def unknown_item(users: np.ndarray, items: np.ndarray, values: np.ndarray) -> np.ndarray:
        return ~_member(items, known_items)

    def real_user(users: np.ndarray, items: np.ndarray, values: np.ndarray) -> np.ndarray:
        return _member(users, real_users)

    return (
        RowCheck(unknown_item, lambda u, i, r: f"item id {i} is not an item of {data.name}"),
        RowCheck(real_user, lambda u, i, r: f"user id {u} is a real user of {data.name}"),
    )


def read_profiles(path: str | Path, ratings: Ratings) -> tuple[np.ndarray, sp.csr_array]:
    """Fake user ids (increasing) and their ``m' x n`` profile matrix (shifted scale).

    Every line must name an item of ``ratings``, a rating on its scale, a user id that is not
    a real user's, and a pair not seen before; otherwise :class:`DataError` names the line.
    """
    checks = _id_checks(ratings)
    fakes = parse_ratings(path, "generic", scale=ratings.scale, checks=checks, name=str(path))
    rows, cols, values = fakes.triples()
    columns = ratings.item_index(fakes.item_ids)[cols]
    matrix = sp.csr_array((values, (rows, columns)), shape=(fakes.n_users, ratings.n_items))
    matrix.sort_indices()
    return fakes.user_ids, matrix


def read_interaction_profiles(
    path: str | Path, data: Interactions
) -> tuple[np.ndarray, sp.csr_array]:
    """Fake user ids (increasing) and their ``m' x n`` interaction weights, from a CSV of
    ``userId,movieId[,weight]`` rows in the data set's ids (as ``cfpoison promote
    --profiles`` writes; no weight column: 1).

    Every line must name an item of ``data``, a user id that is not a real user's, a pair not
    seen before, and a weight in ``(0, w]``, ``w`` the largest weight of a real interaction
    (1 on binarised ratings: a fake interaction weighs no more than a real one); otherwise
    :class:`DataError` names the line.
    """
    most = float(data.matrix.data.max()) if data.nnz else 1.0

    def too_heavy(users: np.ndarray, items: np.ndarray, weights: np.ndarray) -> np.ndarray:
        return weights > most

    heavy = RowCheck(
        too_heavy, lambda u, i, w: f"weight {w:g} is above {data.name}'s largest, {most:g}"
    )
    user_ids, item_ids, matrix = parse_interactions(
        path, checks=(*_id_checks(data), heavy), name=str(path)
    )
    columns = data.item_index(item_ids)
    remapped = sp.csr_array(
        (matrix.data, columns[matrix.indices], matrix.indptr), shape=(len(user_ids), data.n_items)
    )
    remapped.sort_indices()
    return user_ids, remapped


def profile_sizes(fake: sp.csr_array) -> dict[str, Any]:
    """How many fake users ``fake`` (``m' x n``) holds and the min, median and max of their
    stored entries (items rated or interacted with)."""
    lengths = np.diff(sp.csr_array(fake).indptr)
    if len(lengths) == 0:
        lengths = np.zeros(1, dtype=np.int64)
    items = {f: float(getattr(np, f)(lengths)) for f in ("min", "median", "max")}
    return {"n_fake": int(fake.shape[0]), "items": items}


def _member(values: np.ndarray, sorted_known: np.ndarray) -> np.ndarray:
    """Mask: which ``values`` occur in the sorted array ``sorted_known``."""
    if len(sorted_known) == 0:
        return np.zeros(len(values), dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_known, values), len(sorted_known) - 1)
    return sorted_known[pos] == values


def _format(values: np.ndarray, ratings: Ratings) -> list[str]:
    """Ratings as text: integers on an integer scale (``4``), else shortest decimals (``4.5``)."""
    scale = ratings.scale
    integral = scale.step > 0 and float(scale.step).is_integer() and float(scale.low).is_integer()
    if integral:
        return [str(int(v)) for v in np.rint(values)]
    return [f"{v:g}" if scale.step > 0 else repr(float(v)) for v in values]


def write_profiles(
    path: str | Path,
    matrix: Any,
    ratings: Ratings,
    first_user_id: int | None = None,
) -> np.ndarray:
    """Write the stored entries of the sparse ``m' x n`` shifted-scale ``matrix`` as CSV
    ``userId,movieId,rating``, atomically; return the fake user ids written.

    Row ``i`` becomes user ``first_user_id + i`` (default: one above the largest real id),
    columns become the data set's item ids, and ratings are mapped to the original scale and
    snapped to its step. Explicit zeros are ratings (3 stars on a 1-5 scale) and are written;
    a row without stored entries uses its id but writes no line.
    """
    if not sp.issparse(matrix):
        raise TypeError("write_profiles needs a scipy sparse matrix (stored entries = ratings)")
    matrix = sp.csr_array(matrix)
    matrix.sort_indices()
    m, n = matrix.shape
    if n != ratings.n_items:
        raise DataError(f"profiles have {n} items, {ratings.name} has {ratings.n_items}")
    largest = int(ratings.user_ids.max()) if ratings.n_users else 0
    first = largest + 1 if first_user_id is None else int(first_user_id)
    if first <= largest:
        raise DataError(f"fake user ids must start above the largest real id {largest}")
    fake_ids = np.arange(first, first + m, dtype=np.int64)
    rows = np.repeat(np.arange(m), np.diff(matrix.indptr))
    users = fake_ids[rows]
    items = ratings.item_ids[matrix.indices]
    values = _format(ratings.scale.snap(ratings.scale.to_original(matrix.data)), ratings)
    lines = [f"{u},{i},{v}" for u, i, v in zip(users.tolist(), items.tolist(), values, strict=True)]
    with atomic_write(path) as handle:
        handle.write("\n".join([HEADER, *lines]) + "\n")
    return fake_ids
