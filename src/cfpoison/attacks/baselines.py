"""Baseline attacks: the paper's uniform attack and the classic shilling attacks.

All produce ``m' x n`` CSR fake matrices on the shifted scale with exactly B rated items per
fake user, ratings clipped to ``+-Lambda`` and snapped to the data set's grid:

* ``uniform`` (the paper's baseline): B items uniformly at random, ratings uniform on
  ``[-Lambda, Lambda]`` (uniform over the grid values there when the scale is discrete);
  it ignores targets.
* ``random`` (Lam and Riedl, 2004): the targets at the push (``+Lambda``) or nuke (``-Lambda``)
  rating, filler items at random rated ``N(mean, std)`` of all observed ratings.
* ``average``: as ``random``, but each filler item rated ``N(mean_j, std_j)`` of that item's
  observed ratings (the global ones for items nobody rated).
* ``bandwagon``: as ``random``, plus the most popular items (a tenth of the profile, at least
  one) rated ``+Lambda``.

Targets are given with their ratings (``+-Lambda``, by the sign of ``mu2 w_j``); with no
targets the shilling attacks are untargeted profiles.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from cfpoison.attacks.threat import ThreatModel, item_pool, pattern_matrix, snap
from cfpoison.data.ratings import item_moments

#: Fraction of a bandwagon profile given to the most popular items.
BANDWAGON_SHARE = 0.1
#: ``filler(columns) -> (means, stds)``: the normal distribution of each filler column.
Filler = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def uniform_attack(
    train: sp.csr_array,
    threat: ThreatModel,
    n_fake: int,
    grid: np.ndarray | None,
    rng: np.random.Generator,
) -> sp.csr_array:
    """The paper's uniform attack: random items (from :func:`item_pool`), ratings uniform on
    ``[-Lambda, Lambda]``."""
    n_items = train.shape[1]
    pool = item_pool(train, threat, n_fake, rng)
    none = np.array([], np.int64)
    columns = _choose_items(n_items, n_fake, threat.items_per_user, none, rng, pool)
    lam = threat.max_rating
    if grid is None:
        values = rng.uniform(-lam, lam, size=columns.shape)
    else:
        values = rng.choice(grid, size=columns.shape)
    return pattern_matrix(columns, values, n_items)


def _choose_items(
    n_items: int,
    n_fake: int,
    budget: int,
    fixed: np.ndarray,
    rng: np.random.Generator,
    pool: np.ndarray | None = None,
) -> np.ndarray:
    """``n_fake x budget`` columns: ``fixed`` first, then distinct random others per row, from
    ``pool`` (default: every item; topped up from the rest if it is too small)."""
    free = budget - len(fixed)
    others = np.setdiff1d(np.arange(n_items) if pool is None else pool, fixed)
    if len(others) < free:
        rest = np.setdiff1d(np.arange(n_items), np.concatenate([fixed, others]))
        others = np.concatenate([others, rng.permutation(rest)[: free - len(others)]])
    keys = rng.random((n_fake, len(others)))
    picked = others[np.argpartition(keys, free - 1, axis=1)[:, :free]] if free > 0 else None
    head = np.tile(fixed, (n_fake, 1))
    return head if picked is None else np.hstack([head, picked])


def _global_filler(train: sp.csr_array) -> Filler:
    mean = float(train.data.mean()) if train.nnz else 0.0
    std = float(train.data.std()) if train.nnz else 1.0
    return lambda columns: (np.full(columns.shape, mean), np.full(columns.shape, std))


def _item_filler(train: sp.csr_array) -> Filler:
    _, mean, variance = item_moments(train)
    std = np.sqrt(variance)
    return lambda columns: (mean[columns], std[columns])


def _shilling_attack(
    name: str, doc: str, filler_of: Callable[[sp.csr_array], Filler], bandwagon: bool = False
) -> Callable[..., sp.csr_array]:
    """The shilling attack ``name``: ``(train, threat, n_fake, grid, rng, targets,
    target_ratings) -> M~``, each fake row the targets, then (``bandwagon``) the most popular
    :data:`BANDWAGON_SHARE` of the profile at ``+Lambda``, then random fillers rated from
    ``filler_of(train)``."""

    def attack(
        train: sp.csr_array,
        threat: ThreatModel,
        n_fake: int,
        grid: np.ndarray | None,
        rng: np.random.Generator,
        targets: np.ndarray,
        target_ratings: np.ndarray,
    ) -> sp.csr_array:
        n_popular = max(1, round(BANDWAGON_SHARE * threat.items_per_user)) if bandwagon else 0
        filler = filler_of(train)
        n_items = train.shape[1]
        b = threat.items_per_user
        targets = np.asarray(targets, dtype=np.int64)[:b]
        target_ratings = np.asarray(target_ratings, dtype=np.float64)[: len(targets)]
        counts = np.bincount(train.indices, minlength=n_items)
        order = np.argsort(-counts, kind="stable")
        popular = order[~np.isin(order, targets)][: max(0, min(n_popular, b - len(targets)))]
        fixed = np.concatenate([targets, popular])
        pool = item_pool(train, threat, n_fake, rng)
        columns = _choose_items(n_items, n_fake, b, fixed, rng, pool)
        means, stds = filler(columns[:, len(fixed) :])
        fill = rng.normal(means, stds)
        head = np.concatenate([target_ratings, np.full(len(popular), threat.max_rating)])
        values = np.hstack([np.tile(head, (n_fake, 1)), fill])
        return pattern_matrix(columns, snap(values, threat.max_rating, grid), n_items)

    attack.__name__ = attack.__qualname__ = name
    attack.__doc__ = doc
    return attack


random_attack = _shilling_attack(
    "random_attack",
    "Random shilling attack: fillers ``N(global mean, global std)``.",
    _global_filler,
)
average_attack = _shilling_attack(
    "average_attack",
    "Average shilling attack: each filler item rated ``N(item mean, item std)``.",
    _item_filler,
)
bandwagon_attack = _shilling_attack(
    "bandwagon_attack",
    "Bandwagon attack: the most popular items at ``+Lambda``, fillers as ``random``.",
    _global_filler,
    bandwagon=True,
)
