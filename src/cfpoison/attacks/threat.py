"""The threat model (paper section 3): how many fake users, how many items each, which ratings.

The feasible set of fake rating matrices ``M~`` (``m' x n``, shifted scale) is::

    { M~ : m' = ceil(alpha * m),  |Omega~_i| <= B for every fake user i,  |M~_ij| <= Lambda }

and, when the data set's scale is discrete, every rating on that scale's grid (mapped onto the
shifted scale). Fake matrices are CSR arrays whose stored entries are the rated items
``Omega~``; a stored 0.0 is a rating (never ``eliminate_zeros``).

Projections (all pure functions):

* :func:`clip_values`: the ``l_inf`` ball, ``clip(M~, -Lambda, Lambda)`` on a fixed pattern
  (Algorithm 1 with random items);
* :func:`project_dense`: a dense ``m' x n`` array onto the feasible set: the B entries of largest
  absolute value per row, clipped (Algorithm 2's final step);
* :func:`snap`: clip and round to the nearest grid value inside ``[-Lambda, Lambda]`` (ties to
  the lower value, the one rounding rule: :func:`cfpoison.data.ratings.round_to_grid`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import numpy as np
import scipy.sparse as sp

from cfpoison.config import JsonConfig, require
from cfpoison.data.ratings import SHIFTED_HIGH, SHIFTED_LOW, RatingScale, round_to_grid
from cfpoison.errors import BudgetError


@dataclasses.dataclass(frozen=True)
class ThreatModel(JsonConfig):
    """The attacker's budget.

    Attributes:
        alpha: fraction of fake users, ``m' = ceil(alpha * m)``.
        items_per_user: ``B``, the most items one fake user rates.
        max_rating: ``Lambda``, the bound on ``|M~_ij|`` on the shifted scale ``[-2, 2]``.
        item_selection: ``random`` (Algorithm 1: B random items per fake user, fixed for the
            whole run), ``greedy`` (each step re-selects each fake user's B items by the
            gradient's magnitude), ``rare`` (B random items per fake user among the
            ``max(m', 2) B`` least-rated ones, fixed: a regularized model's parameters for an
            item with few ratings move most per fake rating; :func:`item_pool`) or ``auto``
            (the default): the attack method's own, set when the attack's config is built
            (``rare`` for robust, the strongest transfer measured; ``random`` otherwise,
            :data:`cfpoison.attacks.engine.METHOD_DEFAULTS`). A threat model outside an
            attack reads ``auto`` as ``random``.
    """

    alpha: float = 0.03
    items_per_user: int = 100
    max_rating: float = 2.0
    item_selection: Literal["auto", "random", "greedy", "rare"] = "auto"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.alpha) and 0 < self.alpha <= 1):
            raise BudgetError(f"alpha must be in (0, 1], got {self.alpha}")
        if self.items_per_user < 1:
            raise BudgetError(f"items per user must be >= 1, got {self.items_per_user}")
        if not (math.isfinite(self.max_rating) and 0 < self.max_rating <= SHIFTED_HIGH):
            raise BudgetError(
                f"max rating (Lambda) must be in (0, {SHIFTED_HIGH:g}] on the shifted scale,"
                f" got {self.max_rating}"
            )
        require(
            self.item_selection in ("auto", "random", "greedy", "rare"),
            "item selection: auto, random, greedy or rare",
        )

    def n_fake(self, n_users: int) -> int:
        """``m' = ceil(alpha * m)`` (at least one)."""
        return max(1, math.ceil(self.alpha * n_users - 1e-9))

    def check(self, n_users: int, n_items: int, scale: RatingScale | None = None) -> None:
        """Raise :class:`BudgetError` if the budget cannot be met on an ``m x n`` data set."""
        if n_users < 1 or n_items < 1:
            raise BudgetError(f"cannot attack an empty data set ({n_users} x {n_items})")
        if self.items_per_user > n_items:
            raise BudgetError(
                f"items per user B = {self.items_per_user} exceeds the {n_items} items"
            )
        if scale is not None:
            grid_values(scale, self.max_rating)


def grid_values(scale: RatingScale, max_rating: float) -> np.ndarray | None:
    """The shifted-scale rating grid inside ``[-Lambda, Lambda]``; None for a continuous scale.

    Raises :class:`BudgetError` if no rating of the scale lies within ``+-Lambda``.
    """
    step = scale.shifted_step
    if step <= 0:
        return None
    count = round((SHIFTED_HIGH - SHIFTED_LOW) / step)
    grid = SHIFTED_LOW + step * np.arange(count + 1)
    grid = grid[np.abs(grid) <= max_rating + 1e-9]
    if len(grid) == 0:
        raise BudgetError(
            f"no rating of the scale [{scale.low:g}, {scale.high:g}] (step {scale.step:g})"
            f" lies within +-{max_rating:g} on the shifted scale"
        )
    return grid


def snap(values: np.ndarray, max_rating: float, grid: np.ndarray | None) -> np.ndarray:
    """Clip to ``[-Lambda, Lambda]`` and round to the nearest value of ``grid`` (if any),
    ties to the lower value (:func:`cfpoison.data.ratings.round_to_grid`)."""
    values = np.clip(np.asarray(values, dtype=np.float64), -max_rating, max_rating)
    return values if grid is None else round_to_grid(values, grid)


def clip_values(fake: sp.csr_array, max_rating: float) -> sp.csr_array:
    """The same pattern with values clipped to ``[-Lambda, Lambda]`` (the l_inf projection)."""
    out = fake.copy()
    out.data = np.clip(out.data, -max_rating, max_rating)
    return out


def top_b_pattern(scores: np.ndarray, items_per_user: int) -> np.ndarray:
    """Column indices (``m' x B``, sorted per row) of each row's B largest ``scores``.

    Ties break towards the smaller column index, so the result is deterministic. Linear time
    per row (a partition, not a sort), in blocks of rows so that no temporary exceeds about
    32 MB beside ``scores`` (SGLD's dense states at ML-20M scale are GBs).
    """
    scores = np.asarray(scores, dtype=np.float64)
    rows, n = scores.shape
    b = items_per_user
    if b >= n:
        return np.tile(np.arange(n), (rows, 1))
    columns = np.empty((rows, b), dtype=np.int64)
    block = max(1, (1 << 22) // max(n, 1))
    for start in range(0, rows, block):
        part = scores[start : start + block]
        if np.isnan(part).any():  # NaN ranks below every number, as in a sort
            part = np.where(np.isnan(part), -np.inf, part)
        kth = np.partition(part, n - b, axis=1)[:, n - b, None]  # each row's B-th largest
        above = part > kth
        tied = part == kth
        room = b - above.sum(axis=1, keepdims=True)  # ties to take, leftmost first
        keep = above | (tied & (np.cumsum(tied, axis=1) <= room))
        columns[start : start + block] = np.nonzero(keep)[1].reshape(-1, b)
    return columns


def pattern_matrix(columns: np.ndarray, values: np.ndarray, n_items: int) -> sp.csr_array:
    """A CSR ``m' x n`` with row i storing ``values[i]`` at ``columns[i]`` (equal row lengths)."""
    rows, width = columns.shape
    indptr = np.arange(rows + 1, dtype=np.int64) * width
    matrix = sp.csr_array(
        (np.asarray(values, dtype=np.float64).ravel(), columns.ravel().astype(np.int64), indptr),
        shape=(rows, n_items),
    )
    matrix.sort_indices()
    return matrix


def project_dense(
    dense: np.ndarray, threat: ThreatModel, grid: np.ndarray | None = None
) -> sp.csr_array:
    """Project a dense ``m' x n`` matrix onto the feasible set (Algorithm 2, final step).

    Keeps each row's B entries of largest absolute value, clipped to ``+-Lambda`` and, with a
    grid, snapped onto it. This is the Euclidean projection when ``grid`` is None.
    """
    dense = np.asarray(dense, dtype=np.float64)
    columns = top_b_pattern(np.abs(dense), threat.items_per_user)
    values = np.take_along_axis(dense, columns, axis=1)
    return pattern_matrix(columns, snap(values, threat.max_rating, grid), dense.shape[1])


def random_pattern(
    n_fake: int, n_items: int, items_per_user: int, rng: np.random.Generator
) -> np.ndarray:
    """``n_fake x B`` column indices: B distinct items per row, uniformly at random, sorted."""
    if items_per_user > n_items:
        raise BudgetError(f"items per user B = {items_per_user} exceeds the {n_items} items")
    keys = rng.random((n_fake, n_items))
    columns = np.argpartition(keys, items_per_user - 1, axis=1)[:, :items_per_user]
    return np.sort(columns, axis=1)


def violations(
    fake: sp.csr_array, threat: ThreatModel, n_fake: int, grid: np.ndarray | None = None
) -> list[str]:
    """Every way ``fake`` breaks the threat model (empty list: feasible)."""
    problems = []
    if fake.shape[0] != n_fake:
        problems.append(f"{fake.shape[0]} fake users instead of {n_fake}")
    counts = np.diff(fake.indptr)
    if counts.size and counts.max() > threat.items_per_user:
        problems.append(f"a fake user rates {counts.max()} > B = {threat.items_per_user} items")
    if fake.nnz and np.abs(fake.data).max() > threat.max_rating + 1e-9:
        problems.append(f"|rating| {np.abs(fake.data).max():.6g} > Lambda = {threat.max_rating}")
    if not np.all(np.isfinite(fake.data)):
        problems.append("non-finite ratings")
    if grid is not None and fake.nnz:
        nearest = snap(fake.data, threat.max_rating, grid)
        if np.abs(nearest - fake.data).max() > 1e-9:
            problems.append("ratings off the data set's rating scale")
    return problems


def is_feasible(
    fake: sp.csr_array, threat: ThreatModel, n_fake: int, grid: np.ndarray | None = None
) -> bool:
    """Whether ``fake`` lies in the feasible set (see :func:`violations`)."""
    return not violations(fake, threat, n_fake, grid)


def include_items(fake: sp.csr_array, columns: np.ndarray, values: np.ndarray) -> sp.csr_array:
    """Every row rates ``columns`` at ``values``, keeping its other items up to the same count.

    Each row of ``fake`` (equal row lengths B) keeps its first ``B - len(columns)`` items that
    are not in ``columns``, then rates ``columns``: every row still rates B items. Raises
    :class:`BudgetError` when B is smaller than the number of columns. Pure.
    """
    columns = np.asarray(columns, dtype=np.int64)
    if columns.size == 0:
        return fake
    counts = np.diff(fake.indptr)
    width = int(counts.max()) if counts.size else 0
    if width < columns.size:
        raise BudgetError(f"B = {width} items cannot hold the {columns.size} targets")
    rows = []
    data = []
    for r in range(fake.shape[0]):
        start, stop = fake.indptr[r], fake.indptr[r + 1]
        keep = ~np.isin(fake.indices[start:stop], columns)
        others = fake.indices[start:stop][keep][: width - columns.size]
        rows.append(np.concatenate([others, columns]))
        data.append(np.concatenate([fake.data[start:stop][keep][: width - columns.size], values]))
    return pattern_matrix(np.array(rows), np.array(data), fake.shape[1])


def item_pool(
    train: sp.csr_array, threat: ThreatModel, n_fake: int, rng: np.random.Generator
) -> np.ndarray | None:
    """The items fake users draw from: all (None) unless ``item_selection`` is ``rare``, then
    the ``max(m' B, 2 B)`` items with the fewest ratings in ``train`` (ties in random order;
    every item when the data set has fewer)."""
    if threat.item_selection != "rare":
        return None
    n_items = train.shape[1]
    size = min(n_items, max(n_fake, 2) * threat.items_per_user)
    counts = np.bincount(train.indices, minlength=n_items)
    order = np.lexsort((rng.random(n_items), counts))
    return np.sort(order[:size])
