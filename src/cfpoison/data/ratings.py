"""The ``Ratings`` type: a users x items rating matrix on the paper's shifted scale.

Conventions used everywhere in cfpoison:

* rows are users, columns are items (``m x n``);
* internally ratings live on the shifted scale ``[-2, 2]``: the data set's scale
  ``[low, high]`` is mapped linearly, ``s = 4 (r - low) / (high - low) - 2``;
* the stored entries of the CSR matrix are exactly the observed set Omega. A rating that maps
  to ``0.0`` (3 stars on a 1-5 scale) is an *explicit* stored zero: never call
  ``eliminate_zeros`` on these matrices, and count observations with ``nnz``/``indptr``;
* inputs and outputs (fake profiles, reports) use the data set's own ids and rating scale.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar, Self

import numpy as np
import scipy.sparse as sp

from cfpoison.errors import ConfigError, DataError

SHIFTED_LOW = -2.0
SHIFTED_HIGH = 2.0


def round_to_grid(values: Any, grid: np.ndarray) -> np.ndarray:
    """Each value's nearest point of the increasing ``grid``; the one rounding rule of cfpoison.

    Ties (a value exactly halfway between two grid points) go to the lower point. The rule
    commutes with the increasing maps between a data set's scale and the shifted scale, so a
    rating rounds the same way on either. Values outside the grid go to its end points.
    """
    values = np.asarray(values, dtype=np.float64)
    if len(grid) == 1:
        return np.full_like(values, grid[0])
    pos = np.clip(np.searchsorted(grid, values), 1, len(grid) - 1)
    lower, upper = grid[pos - 1], grid[pos]
    return np.where(values - lower <= upper - values, lower, upper)


def item_moments(matrix: sp.csr_array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per column ``j``: ``(n_j, mean_j, var_j)`` over its stored entries.

    ``var_j = sum_i r_ij^2 / n_j - mean_j^2`` (the population variance, floored at 0). A column
    with no entries gets the mean and variance of all stored entries (0 and 1 if none).
    """
    n = matrix.shape[1]
    counts = np.bincount(matrix.indices, minlength=n)
    sums = np.bincount(matrix.indices, weights=matrix.data, minlength=n)
    squares = np.bincount(matrix.indices, weights=matrix.data**2, minlength=n)
    overall = (float(matrix.data.mean()), float(matrix.data.var())) if matrix.nnz else (0.0, 1.0)
    seen, safe = counts > 0, np.maximum(counts, 1)
    mean = np.where(seen, sums / safe, overall[0])
    variance = np.where(seen, np.maximum(squares / safe - mean**2, 0.0), overall[1])
    return counts, mean, variance


@dataclasses.dataclass(frozen=True)
class RatingScale:
    """A data set's own rating scale: values ``low, low + step, ..., high``.

    ``step = 0`` means a continuous scale (no rounding).
    """

    low: float
    high: float
    step: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.high > self.low):
            raise ConfigError(f"rating scale needs low < high, got [{self.low}, {self.high}]")
        if not (math.isfinite(self.step) and self.step >= 0):
            raise ConfigError(f"rating scale step must be >= 0, got {self.step}")
        if self.step > 0:
            n_steps = (self.high - self.low) / self.step
            if abs(n_steps - round(n_steps)) > 1e-9:
                raise ConfigError(
                    f"rating scale step {self.step} does not divide [{self.low}, {self.high}]"
                )

    @property
    def shifted_step(self) -> float:
        """The step on the shifted scale (0 for a continuous scale)."""
        return self.step * (SHIFTED_HIGH - SHIFTED_LOW) / (self.high - self.low)

    def to_shifted(self, values: Any) -> np.ndarray:
        """Map ratings on this scale linearly onto [-2, 2]."""
        values = np.asarray(values, dtype=np.float64)
        span = SHIFTED_HIGH - SHIFTED_LOW
        return (values - self.low) * (span / (self.high - self.low)) + SHIFTED_LOW

    def to_original(self, values: Any) -> np.ndarray:
        """Map shifted values back onto this scale (no rounding, no clipping)."""
        values = np.asarray(values, dtype=np.float64)
        span = SHIFTED_HIGH - SHIFTED_LOW
        return (values - SHIFTED_LOW) * ((self.high - self.low) / span) + self.low

    def snap(self, values: Any) -> np.ndarray:
        """Clip values on this scale to [low, high] and round them to the nearest step
        (:func:`round_to_grid`: ties go to the lower rating)."""
        values = np.clip(np.asarray(values, dtype=np.float64), self.low, self.high)
        if self.step > 0:
            count = round((self.high - self.low) / self.step)
            grid = np.round(self.low + self.step * np.arange(count + 1), 10)
            values = round_to_grid(values, grid)
        return values

    def contains(self, values: Any, tol: float = 1e-9) -> np.ndarray:
        """Boolean mask: which values lie on this scale (inside it and on its grid)."""
        values = np.asarray(values, dtype=np.float64)
        inside = (values >= self.low - tol) & (values <= self.high + tol)
        if self.step > 0:
            k = (values - self.low) / self.step
            inside &= np.abs(k - np.round(k)) <= tol * max(1.0, 1.0 / self.step)
        return inside

    def to_dict(self) -> dict[str, float]:
        return {"low": self.low, "high": self.high, "step": self.step}


class IdMatrix:
    """A CSR ``users x items`` with the data set's ids of its rows and columns: the shape,
    the counts and the id lookups :class:`Ratings` and
    :class:`cfpoison.data.interactions.Interactions` share."""

    matrix: sp.csr_array
    user_ids: np.ndarray
    item_ids: np.ndarray
    name: str
    steps: tuple[dict[str, Any], ...]
    #: What a stored entry is, in summaries and messages: ``ratings`` or ``interactions``.
    entries: ClassVar[str]

    def with_matrix(
        self,
        matrix: sp.csr_array,
        user_ids: np.ndarray | None = None,
        item_ids: np.ndarray | None = None,
        step: dict[str, Any] | None = None,
    ) -> Self:
        """The same kind of data with another matrix (a split, a subsample; with ``user_ids``
        / ``item_ids``, a subset of rows or columns), recording ``step``."""
        return dataclasses.replace(  # type: ignore[type-var]
            self,
            matrix=matrix,
            user_ids=self.user_ids if user_ids is None else user_ids,
            item_ids=self.item_ids if item_ids is None else item_ids,
            steps=self.steps + ((step,) if step is not None else ()),
        )

    @property
    def n_users(self) -> int:
        return int(self.matrix.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.matrix.shape[1])

    @property
    def nnz(self) -> int:
        return int(self.matrix.nnz)

    @property
    def user_counts(self) -> np.ndarray:
        """Stored entries of each user (row)."""
        return np.diff(self.matrix.indptr)

    @property
    def item_counts(self) -> np.ndarray:
        """Stored entries of each item (column)."""
        return np.bincount(self.matrix.indices, minlength=self.n_items)

    def counts_summary(self) -> dict[str, Any]:
        """Name, counts, density and per-user / per-item quantiles of the stored entries
        (keys named after :attr:`entries`), as JSON-able values."""
        entries = self.entries
        return {
            "name": self.name,
            "users": self.n_users,
            "items": self.n_items,
            entries: self.nnz,
            "density": self.nnz / max(1, self.n_users * self.n_items),
            f"{entries}_per_user": _quantiles(self.user_counts),
            f"{entries}_per_item": _quantiles(self.item_counts),
            "steps": list(self.steps),
        }

    def triples(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Row indices, column indices and values of every stored entry (for ``Ratings``,
        shifted ratings; for ``Interactions``, weights)."""
        rows = np.repeat(np.arange(self.n_users), self.user_counts)
        return rows, self.matrix.indices.astype(np.int64), self.matrix.data

    def user_index(self, ids: Any) -> np.ndarray:
        """Row indices of the data set's user ids; unknown ids raise :class:`DataError`."""
        return lookup(self.user_ids, ids, f"{self.name}: unknown user id")

    def item_index(self, ids: Any) -> np.ndarray:
        """Column indices of the data set's item ids; unknown ids raise :class:`DataError`."""
        return lookup(self.item_ids, ids, f"{self.name}: unknown item id")


@dataclasses.dataclass(frozen=True)
class Ratings(IdMatrix):
    """Observed ratings: CSR ``users x items`` on the shifted scale, with id maps both ways.

    Attributes:
        matrix: ``scipy.sparse.csr_array`` (float64), sorted indices, no duplicates; stored
            entries are the observed set Omega (explicit zeros included).
        user_ids: original user id of each row (``int64``, strictly increasing not required).
        item_ids: original item id of each column.
        scale: the data set's own rating scale.
        name: data set name (``ml-latest-small``, ``synthetic``, ``csv:PATH``, ...).
        steps: preprocessing steps applied so far, each a JSON-able dict, in order.
    """

    matrix: sp.csr_array
    user_ids: np.ndarray
    item_ids: np.ndarray
    scale: RatingScale
    name: str = ""
    steps: tuple[dict[str, Any], ...] = ()
    entries: ClassVar[str] = "ratings"

    def __post_init__(self) -> None:
        m, n = self.matrix.shape
        if len(self.user_ids) != m or len(self.item_ids) != n:
            raise DataError(
                f"{self.name}: id maps ({len(self.user_ids)} users, {len(self.item_ids)} items)"
                f" do not match the matrix shape {m} x {n}"
            )
        if not np.all(np.isfinite(self.matrix.data)):
            raise DataError(f"{self.name}: ratings contain NaN or infinity")

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_triples(
        cls,
        users: np.ndarray,
        items: np.ndarray,
        ratings: np.ndarray,
        scale: RatingScale,
        name: str = "",
        steps: tuple[dict[str, Any], ...] = (),
    ) -> Ratings:
        """Build from parallel arrays of original ids and ratings on ``scale``.

        Rows and columns are ordered by increasing original id. Duplicate (user, item) pairs
        must have been resolved by the caller (the parsers do it, naming the line).
        """
        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        values = np.asarray(ratings, dtype=np.float64)
        if not (len(users) == len(items) == len(values)):
            raise DataError(f"{name}: users, items and ratings differ in length")
        user_ids, rows = dense_inverse(users)
        item_ids, cols = dense_inverse(items)
        shifted = scale.to_shifted(values)
        matrix = sp.csr_array(
            (shifted, (rows, cols)), shape=(len(user_ids), len(item_ids)), dtype=np.float64
        )
        if matrix.nnz != len(values):
            raise DataError(f"{name}: duplicate (user, item) pairs")
        matrix.sort_indices()
        return cls(matrix, user_ids, item_ids, scale, name, steps)

    # ------------------------------------------------------------------ views
    def csc(self) -> sp.csc_array:
        """The same matrix in CSC form (items' ratings contiguous)."""
        return self.matrix.tocsc()

    # ------------------------------------------------------------------ report
    def summary(self) -> dict[str, Any]:
        """Counts, density, activity quantiles and the scale, as JSON-able values."""
        original = self.scale.to_original(self.matrix.data) if self.nnz else np.zeros(1)
        return {
            **self.counts_summary(),
            "scale": self.scale.to_dict(),
            "mean_rating": float(original.mean()),
        }


def sorted_unique(values: np.ndarray) -> np.ndarray:
    """The distinct values in increasing order (a sort; NumPy 2's ``np.unique`` is far slower
    on tens of millions of integers)."""
    values = np.sort(values)
    keep = np.ones(len(values), dtype=bool)
    keep[1:] = values[1:] != values[:-1]
    return values[keep]


def dense_inverse(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(ids, return_inverse=True)`` in O(len + range) when the ids are compact."""
    if len(ids) == 0:
        return ids[:0], np.zeros(0, dtype=np.int64)
    low, high = int(ids.min()), int(ids.max())
    if high - low > 4 * len(ids) + (1 << 20):
        unique = sorted_unique(ids)
        return unique, np.searchsorted(unique, ids).astype(np.int64)
    present = np.zeros(high - low + 1, dtype=bool)
    present[ids - low] = True
    rank = np.cumsum(present, dtype=np.int64) - 1
    return np.flatnonzero(present) + low, rank[ids - low]


def _quantiles(counts: np.ndarray) -> dict[str, float]:
    if len(counts) == 0:
        return {"min": 0, "median": 0, "mean": 0.0, "max": 0}
    return {
        "min": int(counts.min()),
        "median": float(np.median(counts)),
        "mean": float(counts.mean()),
        "max": int(counts.max()),
    }


def lookup(known: np.ndarray, ids: Any, message: str) -> np.ndarray:
    """Positions of ``ids`` in the array ``known`` (unique values, any order)."""
    ids = np.atleast_1d(np.asarray(ids, dtype=np.int64))
    if len(known) == 0:
        found = np.zeros(len(ids), dtype=bool)
        index = np.zeros(len(ids), dtype=np.int64)
    else:
        order = np.argsort(known, kind="stable")
        pos = np.minimum(np.searchsorted(known, ids, sorter=order), len(known) - 1)
        index = order[pos].astype(np.int64)
        found = known[index] == ids
    if not np.all(found):
        missing = ids[~found]
        shown = ", ".join(str(int(x)) for x in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise DataError(f"{message} {shown}{more}")
    return index
