"""Implicit feedback: who interacted with what, users x items.

An :class:`Interactions` holds an ``m x n`` CSR whose stored entries are the observed
interactions and whose values are their weights ``r_ij > 0`` (1 for a binarised explicit set,
a play count or a confidence weight for a native implicit set). An entry that is not stored
is "no interaction", never a zero rating. Fake users are ``m' x n`` CSR rows of relaxed
interaction weights in ``[0, 1]`` (an attack's variables), passed to a learner's ``fit``
beside the data set, as in the explicit world.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from cfpoison.data.ratings import IdMatrix, Ratings
from cfpoison.errors import ConfigError, DataError
from cfpoison.io import atomic_write

#: The header of a fake-user interaction file.
HEADER = "userId,movieId,weight"

#: Explicit ratings at or above this (on the data set's own scale) count as an interaction
#: when an explicit set is binarised: 4 of 5 stars, the convention of the implicit-feedback
#: attack literature on MovieLens.
DEFAULT_THRESHOLD = 4.0


@dataclasses.dataclass(frozen=True)
class Interactions(IdMatrix):
    """An ``m x n`` CSR of interaction weights (stored entries = observed interactions).

    Attributes:
        matrix: ``m x n`` CSR, sorted indices, values > 0 and finite.
        user_ids, item_ids: the data set's own ids of the rows and columns.
        name: the data set's name (with its binarisation, e.g. ``ml-latest-small>=4``).
        steps: preprocessing steps applied so far (as :class:`Ratings` records them).
    """

    matrix: sp.csr_array
    user_ids: np.ndarray
    item_ids: np.ndarray
    name: str = ""
    steps: tuple[dict[str, Any], ...] = ()
    entries: ClassVar[str] = "interactions"

    def __post_init__(self) -> None:
        m, n = self.matrix.shape
        if len(self.user_ids) != m or len(self.item_ids) != n:
            raise DataError(
                f"interactions: {m} x {n} matrix but {len(self.user_ids)} user ids and "
                f"{len(self.item_ids)} item ids"
            )
        data = np.asarray(self.matrix.data)
        if data.size and not (np.all(np.isfinite(data)) and data.min() > 0):
            raise DataError("interactions: weights must be finite and > 0")
        if not self.matrix.has_sorted_indices:
            self.matrix.sort_indices()

    @classmethod
    def from_ratings(cls, ratings: Ratings, threshold: float = DEFAULT_THRESHOLD) -> Interactions:
        """Binarise an explicit set: an interaction (weight 1) wherever the rating, on the
        data set's own scale, is at least ``threshold``; users and items keep their rows and
        columns (some may be left without interactions)."""
        if not math.isfinite(threshold):
            raise ConfigError(f"binarisation threshold must be finite, got {threshold}")
        rows, cols, values = ratings.triples()
        keep = ratings.scale.to_original(values) >= threshold - 1e-9
        matrix = sp.csr_array(
            (np.ones(int(keep.sum())), (rows[keep], cols[keep])), shape=ratings.matrix.shape
        )
        matrix.sort_indices()
        name = f"{ratings.name}>={threshold:g}"
        return cls(matrix, ratings.user_ids, ratings.item_ids, name, ratings.steps)

    @classmethod
    def from_triples(
        cls, users: Any, items: Any, weights: Any | None = None, name: str = ""
    ) -> Interactions:
        """From parallel arrays of the data set's own user and item ids (and optional
        weights, default 1); repeated pairs add their weights."""
        users, items = np.asarray(users), np.asarray(items)
        if len(users) != len(items):
            raise DataError("interactions: user and item arrays differ in length")
        w = np.ones(len(users)) if weights is None else np.asarray(weights, dtype=np.float64)
        if len(w) != len(users):
            raise DataError("interactions: weights and ids differ in length")
        user_ids, rows = np.unique(users, return_inverse=True)
        item_ids, cols = np.unique(items, return_inverse=True)
        matrix = sp.csr_array((w, (rows, cols)), shape=(len(user_ids), len(item_ids)))
        matrix.sum_duplicates()
        matrix.sort_indices()
        return cls(matrix, user_ids, item_ids, name)

    def summary(self) -> dict[str, Any]:
        """Counts, density, activity quantiles and the weights' range, as JSON-able values."""
        weights = np.asarray(self.matrix.data) if self.nnz else np.zeros(1)
        spread = {f: float(getattr(weights, f)()) for f in ("min", "mean", "max")}
        return {**self.counts_summary(), "weights": spread}


def write_interactions(
    path: str | Path, fake: sp.csr_array, data: Interactions, first_user_id: int
) -> np.ndarray:
    """Write the stored entries of ``fake`` (``m' x n`` weights) as CSV
    ``userId,movieId,weight`` atomically, row ``i`` as user ``first_user_id + i``; return
    the fake user ids."""
    fake = sp.csr_array(fake)
    if fake.shape[1] != data.n_items:
        raise DataError(f"profiles have {fake.shape[1]} items, {data.name} has {data.n_items}")
    if data.n_users and first_user_id <= int(data.user_ids.max()):
        raise DataError("fake user ids must start above the largest real id")
    ids = np.arange(first_user_id, first_user_id + fake.shape[0], dtype=np.int64)
    users = ids[np.repeat(np.arange(fake.shape[0]), np.diff(fake.indptr))]
    items = data.item_ids[fake.indices]
    lines = [f"{u},{i},{w:g}" for u, i, w in zip(users, items, fake.data, strict=True)]
    with atomic_write(path) as handle:
        handle.write("\n".join([HEADER, *lines]) + "\n")
    return ids
