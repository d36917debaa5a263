"""A deterministic, MovieLens-like synthetic rating set (offline, any size up to ML-20M).

Generative model, all drawn from ``numpy.random.default_rng(seed)``:

* **User activity** (ratings per user): ``min_user_ratings`` plus a share of the remaining
  ratings proportional to a Lomax (Pareto II) draw with tail index ``activity_exponent``
  (smaller = longer tail), capped at ``max_user_fraction * n_items`` and rounded so that the
  counts sum to exactly ``n_ratings``.
* **Item popularity**: item of popularity rank ``r`` (a random permutation of the item ids) is
  drawn with probability ``(r + c)^-popularity_exponent``; the offset ``c`` is solved so that
  the most popular item would be rated by ``top_item_fraction`` of the users, as in MovieLens
  (about half of them). Each user's items are drawn without replacement by rounds of draws
  with replacement (then uniform draws for the last few of very active users); finally every
  item never drawn takes over one rating of an item rated more than once, so all ``n_items``
  columns are non-empty and the shape is exact.
* **Preferences**: low rank plus noise, ``z_uj = <p_u, q_j> + a_u + b_j + noise * e_uj`` with
  ``p_u, q_j ~ N(0, rank^-1/2 I_rank)`` (so ``<p_u, q_j>`` has unit variance), biases
  ``a_u, b_j ~ N(0, 0.5^2)`` and ``e_uj ~ N(0, 1)``; the rating is ``3.5 + z / sd(z)`` snapped
  to the 1-5 star scale (steps of 1, or 0.5 with ``half_stars``), MovieLens' mean and spread.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from cfpoison.config import JsonConfig, require
from cfpoison.data.parsers import ratings_from_keys
from cfpoison.data.ratings import Ratings, RatingScale, sorted_unique

_BIAS_SD = 0.5
_MEAN_STARS = 3.5
_HEAVY_SHARE = 20  # users rating more than 1/20 of the items are drawn one by one
_CHUNK = 1 << 20


@dataclasses.dataclass(frozen=True)
class SyntheticConfig(JsonConfig):
    """Size, tails, preference model and seed of a synthetic set (defaults: ml-latest-small)."""

    n_users: int = 600
    n_items: int = 5000
    n_ratings: int = 100_000
    rank: int = 10
    noise: float = 0.5
    half_stars: bool = False
    min_user_ratings: int = 20
    max_user_fraction: float = 0.5
    activity_exponent: float = 1.8
    popularity_exponent: float = 1.3
    top_item_fraction: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        require(self.n_users >= 1 and self.n_items >= 1, "n_users and n_items must be >= 1")
        require(self.rank >= 1, "rank must be >= 1")
        require(self.noise >= 0, "noise must be >= 0")
        require(self.min_user_ratings >= 1, "min_user_ratings must be >= 1")
        require(0 < self.max_user_fraction <= 1, "max_user_fraction must be in (0, 1]")
        require(self.activity_exponent > 0, "activity_exponent must be > 0")
        require(self.popularity_exponent > 0, "popularity_exponent must be > 0")
        require(0 < self.top_item_fraction <= 1, "top_item_fraction must be in (0, 1]")
        cap = self.user_cap
        require(
            cap >= self.min_user_ratings,
            f"max_user_fraction * n_items = {cap} is below min_user_ratings",
        )
        low, high = self.n_users * self.min_user_ratings, self.n_users * cap
        require(
            max(low, self.n_items) <= self.n_ratings <= high,
            f"n_ratings must lie in [{max(low, self.n_items)}, {high}] for this shape "
            "(every user >= min_user_ratings, every item rated, users capped)",
        )

    @property
    def user_cap(self) -> int:
        """The most ratings one user may have."""
        return math.floor(self.max_user_fraction * self.n_items)

    @property
    def scale(self) -> RatingScale:
        return RatingScale(1.0, 5.0, 0.5 if self.half_stars else 1.0)


#: Named presets: the default and the shapes of the MovieLens sets (users x items x ratings).
PRESETS: dict[str, SyntheticConfig] = {
    "default": SyntheticConfig(),
    "small": SyntheticConfig(n_users=200, n_items=800, n_ratings=12_000),
    "ml-100k": SyntheticConfig(n_users=943, n_items=1682, n_ratings=100_000),
    "ml-1m": SyntheticConfig(n_users=6040, n_items=3706, n_ratings=1_000_209),
    "ml-20m": SyntheticConfig(n_users=138_493, n_items=26_744, n_ratings=20_000_263),
}


def _user_counts(cfg: SyntheticConfig, rng: np.random.Generator) -> np.ndarray:
    """Ratings per user: minimum plus a capped Lomax share; sums to ``n_ratings`` exactly."""
    m, cap = cfg.n_users, cfg.user_cap
    weights = rng.pareto(cfg.activity_exponent, m) + 1e-12
    extra_total = cfg.n_ratings - m * cfg.min_user_ratings
    room = float(cap - cfg.min_user_ratings)
    free = np.ones(m, dtype=bool)
    extra = np.zeros(m)
    while True:  # water-filling: users at the cap keep it, the rest share what is left
        left = extra_total - room * np.count_nonzero(~free)
        extra[free] = weights[free] * (left / weights[free].sum())
        over = free & (extra > room)
        if not over.any():
            break
        free &= ~over
        extra[~free] = room
    counts = np.floor(extra).astype(np.int64)
    short = extra_total - int(counts.sum())
    if short:
        order = np.argsort(-(extra - counts), kind="stable")
        order = order[counts[order] < room][:short]
        counts[order] += 1
    return counts + cfg.min_user_ratings


def _popularity(cfg: SyntheticConfig, rng: np.random.Generator) -> np.ndarray:
    """Draw probabilities of the items, Zipf-like in a random rank order."""
    n, a = cfg.n_items, cfg.popularity_exponent
    ranks = np.arange(1, n + 1, dtype=np.float64)
    target = min(1.0, cfg.top_item_fraction * cfg.n_users / cfg.n_ratings)

    def top_share(offset: float) -> float:
        w = (ranks + offset) ** -a
        return float(w[0] / w.sum())

    offset, high = 0.0, float(n) * 1e3
    if top_share(0.0) > target:  # bisection: top_share decreases in the offset
        low = 0.0
        for _ in range(100):
            offset = 0.5 * (low + high)
            low, high = (offset, high) if top_share(offset) > target else (low, offset)
    weights = (ranks + offset) ** -a
    return (weights / weights.sum())[rng.permutation(n)]


def _draw_heavy(
    users: np.ndarray, counts: np.ndarray, p: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Exact weighted sampling without replacement (Efraimidis-Spirakis: the ``c`` smallest
    ``Exp(1) / p_j``), one user at a time: for users rating a large share of the items."""
    n = len(p)
    parts = []
    for u in users:
        c = int(counts[u])
        keys = rng.standard_exponential(n) / p
        parts.append(u * n + np.argpartition(keys, c - 1)[:c])
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def _draw_light(
    users: np.ndarray, counts: np.ndarray, p: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """The same distribution for users rating few items, in bulk: rounds of draws with
    replacement, oversampled by each user's last acceptance rate, repeats and items already
    held rejected, surplus dropped at random, until every user has ``counts[u]`` items."""
    n, m = len(p), len(counts)
    cdf = np.cumsum(p)
    cdf /= cdf[-1]
    held = np.zeros(0, dtype=np.int64)
    deficit = np.zeros(m, dtype=np.int64)
    deficit[users] = counts[users]
    accept = np.ones(m)
    while deficit.any():
        draws = np.ceil(deficit / accept * 1.05).astype(np.int64)
        owner = np.repeat(np.arange(m, dtype=np.int64), draws)
        items = np.minimum(np.searchsorted(cdf, rng.random(len(owner)), side="right"), n - 1)
        new = sorted_unique(owner * n + items)
        if len(held):
            pos = np.minimum(np.searchsorted(held, new), len(held) - 1)
            new = new[held[pos] != new]
        got = np.bincount(new // n, minlength=m)
        drawn = draws > 0
        accept[drawn] = np.maximum(got[drawn] / draws[drawn], 0.02)
        if np.any(got > deficit):  # keep a random subset of deficit[u] new items per user
            owner = new // n
            order = np.argsort(owner + rng.random(len(new)))  # random order within a user
            start = np.concatenate(([0], np.cumsum(got)[:-1]))
            rank = np.arange(len(new)) - start[owner[order]]
            new = np.sort(new[order][rank < deficit[owner[order]]])
            got = np.bincount(new // n, minlength=m)
        held = np.insert(held, np.searchsorted(held, new), new) if len(held) else new
        deficit -= got
    return held


def _draw_items(counts: np.ndarray, p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Sorted unique keys ``user * n + item``: ``counts[u]`` distinct items for each user,
    drawn with probabilities ``p`` without replacement."""
    heavy = counts * _HEAVY_SHARE > len(p)
    light_keys = _draw_light(np.flatnonzero(~heavy), counts, p, rng)
    heavy_keys = _draw_heavy(np.flatnonzero(heavy), counts, p, rng)
    return np.sort(np.concatenate((light_keys, heavy_keys)))


def _cover_items(keys: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Give each item without a rating one rating taken from an item rated more than once."""
    items = keys % n
    counts = np.bincount(items, minlength=n)
    missing = np.flatnonzero(counts == 0)
    if len(missing) == 0:
        return keys
    order = np.argsort(items, kind="stable")
    first_of_item = np.ones(len(keys), dtype=bool)
    first_of_item[1:] = items[order][1:] != items[order][:-1]
    donors = rng.choice(order[~first_of_item], size=len(missing), replace=False)
    keys = keys.copy()
    keys[donors] += missing - items[donors]
    return np.sort(keys)


def _preferences(cfg: SyntheticConfig, keys: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Star ratings of the entries ``keys``: low rank plus biases plus noise, snapped."""
    m, n, k = cfg.n_users, cfg.n_items, cfg.rank
    sd_factor = k**-0.25
    P = rng.normal(0.0, sd_factor, (m, k))
    Q = rng.normal(0.0, sd_factor, (n, k))
    a = rng.normal(0.0, _BIAS_SD, m)
    b = rng.normal(0.0, _BIAS_SD, n)
    total_sd = math.sqrt(1.0 + 2 * _BIAS_SD**2 + cfg.noise**2)
    stars = np.empty(len(keys))
    for start in range(0, len(keys), _CHUNK):
        chunk = keys[start : start + _CHUNK]
        u, j = chunk // n, chunk % n
        z = np.einsum("ij,ij->i", P[u], Q[j]) + a[u] + b[j]
        z += cfg.noise * rng.standard_normal(len(chunk))
        stars[start : start + _CHUNK] = _MEAN_STARS + z / total_sd
    return cfg.scale.snap(stars)


def make_synthetic(cfg: SyntheticConfig | None = None, name: str = "synthetic") -> Ratings:
    """The synthetic set of ``cfg`` (default: :class:`SyntheticConfig`), deterministic per seed.

    Users are ids ``1..n_users``, items ``1..n_items``; shape and rating count are exact.
    """
    cfg = cfg or SyntheticConfig()
    rng = np.random.default_rng(cfg.seed)
    counts = _user_counts(cfg, rng)
    p = _popularity(cfg, rng)
    keys = _cover_items(_draw_items(counts, p, rng), cfg.n_items, rng)
    stars = _preferences(cfg, keys, rng)
    user_ids = np.arange(1, cfg.n_users + 1, dtype=np.int64)
    item_ids = np.arange(1, cfg.n_items + 1, dtype=np.int64)
    return ratings_from_keys(keys, stars, user_ids, item_ids, cfg.scale, name)
