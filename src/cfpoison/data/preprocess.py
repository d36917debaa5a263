"""The paper's preprocessing, each step optional, pure, and recorded in ``steps`` (of
ratings or, for a native implicit-feedback file, of interactions).

In order (:func:`prepare`): keep users with at least ``min_user_ratings`` ratings and items
with at least ``min_item_ratings`` (:func:`filter_min_ratings`); optionally the most active
users x the most rated items (:func:`top_subset`, the paper's 1000 x 1700 nuclear-norm
experiment); a seeded per-user train/test split (:func:`train_test_split`). The map of the
rating scale onto [-2, 2] and back is :meth:`RatingScale.to_shifted` / ``to_original``.
Every step keeps explicit zeros (ratings that map to 0.0) as observed entries.
"""

from __future__ import annotations

import dataclasses
from typing import TypeVar

import numpy as np
import scipy.sparse as sp

from cfpoison.config import JsonConfig, require
from cfpoison.data.ratings import IdMatrix
from cfpoison.errors import DataError

#: Ratings or interactions: every step reads only the stored pattern and carries the values.
D = TypeVar("D", bound=IdMatrix)


@dataclasses.dataclass(frozen=True)
class PreprocessConfig(JsonConfig):
    """Which preprocessing steps to apply (the defaults follow the paper).

    Attributes:
        min_user_ratings: keep users with at least this many ratings (0: all).
        min_item_ratings: keep items with at least this many ratings (0: all).
        top_users: keep only the most active users (None: all).
        top_items: then keep only the most rated items among theirs (None: all).
        test_fraction: per-user share of ratings held out for testing.
        seed: seed of the train/test split.
    """

    min_user_ratings: int = 20
    min_item_ratings: int = 0
    top_users: int | None = None
    top_items: int | None = None
    test_fraction: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        require(self.min_user_ratings >= 0, "min_user_ratings must be >= 0")
        require(self.min_item_ratings >= 0, "min_item_ratings must be >= 0")
        for name in ("top_users", "top_items"):
            value = getattr(self, name)
            require(value is None or value >= 1, f"{name} must be >= 1 or None")
        require(0.0 <= self.test_fraction < 1.0, "test_fraction must be in [0, 1)")


def _entries(r: IdMatrix, keep: np.ndarray, keep_u: np.ndarray, keep_i: np.ndarray) -> sp.csr_array:
    """The stored entries in mask ``keep`` of the rows ``keep_u`` x columns ``keep_i`` (boolean
    masks) as a CSR matrix; explicit zeros stay stored, indices stay sorted."""
    rows, cols, values = r.triples()
    keep = keep & keep_u[rows] & keep_i[cols]
    new_row = np.cumsum(keep_u) - 1
    new_col = np.cumsum(keep_i) - 1
    m = int(keep_u.sum())
    indptr = np.zeros(m + 1, dtype=np.int64)
    np.cumsum(np.bincount(new_row[rows[keep]], minlength=m), out=indptr[1:])
    matrix = sp.csr_array((values[keep], new_col[cols[keep]], indptr), shape=(m, int(keep_i.sum())))
    matrix.has_sorted_indices = True
    return matrix


def _select(r: IdMatrix, keep_u: np.ndarray, keep_i: np.ndarray) -> sp.csr_array:
    """The submatrix of rows ``keep_u`` x columns ``keep_i`` (boolean masks)."""
    return _entries(r, np.ones(r.nnz, dtype=bool), keep_u, keep_i)


def _counts(matrix: sp.csr_array) -> tuple[np.ndarray, np.ndarray]:
    n_items = matrix.shape[1]
    return np.diff(matrix.indptr), np.bincount(matrix.indices, minlength=n_items)


def filter_min_ratings(r: D, min_user: int = 20, min_item: int = 0) -> D:
    """Keep users with >= ``min_user`` and items with >= ``min_item`` ratings.

    Removing items can push users under their threshold and vice versa, so both filters are
    repeated until neither removes anything (the ``(min_user, min_item)``-core).
    """
    keep_u = np.ones(r.n_users, dtype=bool)
    keep_i = np.ones(r.n_items, dtype=bool)
    matrix = r.matrix
    while True:
        users, items = _counts(matrix)
        drop_u, drop_i = users < min_user, items < min_item
        if not (drop_u.any() or drop_i.any()):
            break
        kept_u, kept_i = np.flatnonzero(keep_u), np.flatnonzero(keep_i)
        keep_u[kept_u[drop_u]] = False
        keep_i[kept_i[drop_i]] = False
        matrix = _select(r, keep_u, keep_i)
    step = {
        "step": "filter_min_ratings",
        "min_user_ratings": min_user,
        "min_item_ratings": min_item,
        "users_removed": int(r.n_users - keep_u.sum()),
        "items_removed": int(r.n_items - keep_i.sum()),
        "ratings_removed": int(r.nnz - matrix.nnz),
    }
    return r.with_matrix(matrix, r.user_ids[keep_u], r.item_ids[keep_i], step)


def _top(counts: np.ndarray, k: int | None) -> np.ndarray:
    """Mask of the ``k`` largest counts (ties: lower index first); all if ``k`` is None."""
    keep = np.zeros(len(counts), dtype=bool)
    if k is None or k >= len(counts):
        keep[:] = True
    else:
        keep[np.argsort(-counts, kind="stable")[:k]] = True
    return keep


def top_subset(r: D, n_users: int | None, n_items: int | None) -> D:
    """The ``n_users`` most active users, then, among their ratings, the ``n_items`` most
    rated items (the paper's 1000 x 1700 subset); original row and column order kept."""
    keep_u = _top(r.user_counts, n_users)
    rows = r.matrix[np.flatnonzero(keep_u)]
    keep_i = _top(np.bincount(rows.indices, minlength=r.n_items), n_items)
    matrix = _select(r, keep_u, keep_i)
    step = {
        "step": "top_subset",
        "top_users": n_users,
        "top_items": n_items,
        "users": int(keep_u.sum()),
        "items": int(keep_i.sum()),
        "ratings": int(matrix.nnz),
    }
    return r.with_matrix(matrix, r.user_ids[keep_u], r.item_ids[keep_i], step)


def train_test_split(r: D, test_fraction: float, rng: np.random.Generator) -> tuple[D, D]:
    """Per user, hold out ``round(test_fraction * c_u)`` random ratings (``c_u`` the user's
    count), at most ``c_u - 1`` so every user keeps a training rating. Train and test share
    the shape and id maps, so their indices align; test is empty for ``test_fraction = 0``."""
    require(0.0 <= test_fraction < 1.0, "test_fraction must be in [0, 1)")
    counts = r.user_counts
    n_test = np.minimum(np.round(test_fraction * counts), np.maximum(counts - 1, 0))
    rows, _, _ = r.triples()
    order = np.argsort(rows + rng.random(r.nnz))  # rows in order, random order within each
    rank = np.empty(r.nnz, dtype=np.int64)
    rank[order] = np.arange(r.nnz) - r.matrix.indptr[rows[order]]
    test = rank < n_test[rows]
    info = {"test_fraction": test_fraction, "train": int(r.nnz - test.sum())}
    info["test"] = int(test.sum())
    everyone_u = np.ones(r.n_users, dtype=bool)
    everyone_i = np.ones(r.n_items, dtype=bool)
    step = {"step": "train_test_split", **info}
    train_r = r.with_matrix(_entries(r, ~test, everyone_u, everyone_i), step=step)
    test_r = r.with_matrix(_entries(r, test, everyone_u, everyone_i), step=dict(step))
    return train_r, test_r


def _emptied(r: IdMatrix, cfg: PreprocessConfig) -> str:
    """Why the filters of ``cfg`` leave nothing of ``r`` (ratings or interactions)."""
    what = r.entries
    if cfg.min_item_ratings == 0:
        return (
            f"all {r.n_users} users have fewer than {cfg.min_user_ratings} {what} (the most: "
            f"{int(r.user_counts.max())}); lower min_user_ratings (--min-user-ratings)"
        )
    return (
        f"no user keeps {cfg.min_user_ratings} {what} of items with at least "
        f"{cfg.min_item_ratings} {what}; lower min_user_ratings or min_item_ratings "
        "(--min-user-ratings, --preprocess.min-item-ratings)"
    )


def prepare(r: D, cfg: PreprocessConfig, rng: np.random.Generator | None = None) -> tuple[D, D]:
    """Apply ``cfg``'s steps in order; return ``(train, test)`` (``rng`` defaults to the
    config's seed). Steps that would change nothing (no thresholds, no subset) are skipped.
    Filters that leave no rating raise :class:`DataError` saying why."""
    rng = rng if rng is not None else np.random.default_rng(cfg.seed)
    if cfg.min_user_ratings > 0 or cfg.min_item_ratings > 0:
        filtered = filter_min_ratings(r, cfg.min_user_ratings, cfg.min_item_ratings)
        if filtered.nnz == 0:
            raise DataError(f"{r.name}: {_emptied(r, cfg)}")
        r = filtered
    if cfg.top_users is not None or cfg.top_items is not None:
        r = top_subset(r, cfg.top_users, cfg.top_items)
    return train_test_split(r, cfg.test_fraction, rng)
