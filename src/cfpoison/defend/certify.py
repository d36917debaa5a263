"""A robustness certificate for bagging over users (PORE: Jia, Liu et al., USENIX Security 2023).

The certified recommender is a vote over ``T`` sub-models (ALS on ratings, or WRMF on
interactions for implicit feedback), each fitted on ``s`` users drawn
without replacement (:func:`cfpoison.defend.defenses.bag_subsets`, one fixed ``s``; every bag's
learner has the same seed, so a bag's top-N is a function of its sample alone). User ``u``'s
vote for item ``j`` is ``p_j = P(j in the bag's top N for u)``; the recommender gives ``u`` the
``N`` candidates (items ``u`` did not rate) with the most votes. With ``e`` fake users added,
a bag holds one with probability ``delta(e) = 1 - C(n, s) / C(n + e, s)``, and every poisoned
vote satisfies ``(1 - delta) p_j <= p'_j <= (1 - delta) p_j + delta``, whatever the fakes are.

From ``T`` bags, Clopper-Pearson bounds ``[L_j, U_j]`` at level ``alpha / c_u`` per item
(Bonferroni over the user's ``c_u`` candidates) hold for all of ``u``'s items at once with
probability ``>= 1 - alpha`` over the bags. Then ``|R'_u & H_u| >= r`` for ``H_u`` the clean
empirical top N and ``R'_u`` the poisoned recommender's top N if ``(1 - delta) L_(r)`` (the
``r``-th largest over ``H_u``) exceeds ``(1 - delta) U_[N-r+1] + delta`` (the
``(N-r+1)``-th largest over the other candidates); the certified ``r`` is the largest such
(docs/math.md section 8).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.stats import beta

from cfpoison.config import require
from cfpoison.data.interactions import Interactions
from cfpoison.data.ratings import Ratings
from cfpoison.defend.defenses import BaggingConfig, Subset, bag_subsets, fit_subset
from cfpoison.errors import DataError
from cfpoison.learners import ALSConfig, WRMFConfig, build_learner
from cfpoison.learners.wrmf import WRMFLearner, fold_in
from cfpoison.models.ranking import top_unrated

#: One bag's recommendations: its :class:`Subset` -> the ``m x N`` top-N lists of the real users
#: (item columns, best first, ``-1`` padding), from a sub-model fitted on that subset alone.
BagTopN = Callable[[Subset], np.ndarray]


def sample_size(config: BaggingConfig, n_users: int) -> int:
    """The users per bag ``s = max(1, round(fraction * n))`` of the clean data, kept fixed."""
    require(config.unit == "users", "the certificate needs bagging over users (unit=users)")
    return max(1, round(config.fraction * n_users))


def fake_probability(fakes: np.ndarray, n_users: int, sample: int) -> np.ndarray:
    """``delta(e) = 1 - C(n, s) / C(n + e, s) = 1 - prod_{i=1..e} (n - s + i) / (n + i)``: the
    chance that ``s`` users drawn without replacement from ``n`` real and ``e`` fake hold a fake."""
    fakes = np.asarray(fakes, dtype=np.int64)
    require(0 < sample <= n_users, f"sample size must be in [1, {n_users}], got {sample}")
    require(bool(np.all(fakes >= 0)), "fake user counts must be >= 0")
    i = np.arange(1, int(fakes.max(initial=0)) + 1)
    log_clean = np.r_[0.0, np.cumsum(np.log1p(-sample / (n_users + i)))]
    return -np.expm1(log_clean[fakes])


def clopper_pearson(
    votes: np.ndarray, bags: int, level: np.ndarray | float
) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided Clopper-Pearson bounds on ``p`` from ``votes ~ Bin(bags, p)`` at ``level``
    (``level / 2`` per side): ``L = Beta^-1(level/2; k, T-k+1)``, ``U = Beta^-1(1-level/2;
    k+1, T-k)``, with ``L = 0`` at ``k = 0`` and ``U = 1`` at ``k = T``."""
    k = np.asarray(votes, dtype=np.float64)
    half = np.broadcast_to(np.asarray(level, dtype=np.float64) / 2, k.shape)
    lower = np.where(k > 0, beta.ppf(half, np.maximum(k, 1), bags - k + 1), 0.0)
    upper = np.where(k < bags, beta.ppf(1 - half, k + 1, np.maximum(bags - k, 1)), 1.0)
    return lower, upper


def als_top_n(train: Ratings, fake: sp.csr_array, learner: ALSConfig, top_n: int) -> BagTopN:
    """ALS on a bag's ratings (the users outside folded in, :func:`fit_subset`), each real
    user's ``top_n`` unrated items by ``u_i . v_j`` (:func:`top_unrated` on ``train``)."""

    def recommend(subset: Subset) -> np.ndarray:
        fit = fit_subset(train, subset, fake, learner)
        return top_unrated(train.matrix, fit.user, fit.fitted.item_factors, top_n)

    return recommend


def wrmf_top_n(train: Interactions, fake: sp.csr_array, learner: WRMFConfig, top_n: int) -> BagTopN:
    """WRMF on a bag's interactions and fake rows (the real users outside folded in against
    its item factors, :func:`cfpoison.learners.wrmf.fold_in`), each real user's ``top_n``
    items without an interaction. A bag's users outside the sample are empty rows of its
    matrix: their factors are 0 and they do not move the items (the fit without them)."""

    def recommend(subset: Subset) -> np.ndarray:
        fitted = WRMFLearner(learner).fit(train.with_matrix(subset.real), fake=subset.thin(fake))
        user = fitted.user_factors.copy()
        rows = np.flatnonzero(subset.set_aside)
        if len(rows):
            user[rows] = fold_in(train.matrix, fitted.item_factors, learner, rows)
        return top_unrated(train.matrix, user, fitted.item_factors, top_n)

    return recommend


def vote_counts(
    train: Ratings | Interactions,
    fake: sp.csr_array,
    recommend: BagTopN,
    bags: int,
    sample: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """``m x n`` counts of the bags (``sample`` of the real and fake users each, drawn by
    :func:`bag_subsets` with ``rng``) whose top N for user ``u`` holds item ``j``."""
    n_all = train.n_users + fake.shape[0]
    config = BaggingConfig(bags=bags, fraction=sample / n_all)
    counts = np.zeros(train.matrix.shape, dtype=np.int64)
    for subset in bag_subsets(train, fake, config, rng):
        top = recommend(subset)
        user, slot = np.nonzero(top >= 0)
        counts[user, top[user, slot]] += 1  # a list holds an item once
    return counts


def vote_top_n(counts: np.ndarray, omega: sp.csr_array, top_n: int) -> np.ndarray:
    """Each user's candidates (no stored entry in ``omega``) by votes, most first, ties to the
    lower column: the first ``top_n`` are the bagged recommendation (``m x top_n``; ``-1`` pads
    a user with fewer candidates)."""
    return _ranked(counts, omega)[:, :top_n]


def _ranked(counts: np.ndarray, omega: sp.csr_array) -> np.ndarray:
    """Every column by votes (most first, ties to the lower column), rated columns as ``-1``
    at the end."""
    scores = counts.astype(np.float64)
    rows = np.repeat(np.arange(omega.shape[0]), np.diff(omega.indptr))
    scores[rows, omega.indices] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")
    return np.where(np.take_along_axis(scores, order, axis=1) == -np.inf, -1, order)


def certified_sizes(
    counts: np.ndarray,
    omega: sp.csr_array,
    bags: int,
    top_n: int,
    delta: np.ndarray,
    confidence: float,
) -> np.ndarray:
    """``m x len(delta)``: per user and per ``delta``, the largest ``r`` in ``[0, N]`` with
    ``(1 - delta) L_(r) > (1 - delta) U_[N-r+1] + delta`` (module docstring): the certified
    size of the overlap of the poisoned top N with the clean one, :func:`vote_top_n`."""
    require(0 < confidence < 1, f"confidence must be in (0, 1), got {confidence}")
    ranked = _ranked(counts, omega)
    n = min(top_n, counts.shape[1])
    candidates = np.maximum(counts.shape[1] - np.diff(omega.indptr), 1)
    level = ((1 - confidence) / candidates)[:, None]

    def bounds(columns: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        padded = np.full((counts.shape[0], n), -1, dtype=np.int64)
        padded[:, : columns.shape[1]] = columns
        votes = np.take_along_axis(counts, np.maximum(padded, 0), axis=1)
        return (*clopper_pearson(votes, bags, level), padded < 0)

    lower, _, no_item = bounds(ranked[:, :n])  # H by votes: L decreases along a row
    _, upper, no_other = bounds(ranked[:, n : 2 * n])  # the N others with the largest U
    keep = 1.0 - np.asarray(delta, dtype=np.float64)[None, :, None]
    low = np.where(no_item[:, None, :], -np.inf, keep * lower[:, None, :])  # (m, E, r)
    high = keep * upper[:, None, ::-1] + (1.0 - keep)  # index r - 1 holds U_[N-r+1]
    holds = low > np.where(no_other[:, None, ::-1], -np.inf, high)
    return np.cumprod(holds, axis=2).sum(axis=2)


def hits(top: np.ndarray, test: sp.csr_array) -> tuple[float, float]:
    """HR@N and NDCG@N of ``m x N`` top lists on held-out entries: the share of ``test``'s
    stored (user, item) pairs whose item is in the user's list, and the mean gain
    ``1 / log2(2 + p)`` at its 0-based position ``p`` (0 outside); NaN without entries."""
    rows = np.repeat(np.arange(test.shape[0]), np.diff(test.indptr))
    if len(rows) == 0:
        return math.nan, math.nan
    match = top[rows] == test.indices[:, None]
    found = match.any(axis=1)
    gain = np.where(found, 1.0 / np.log2(2.0 + match.argmax(axis=1)), 0.0)
    return float(found.mean()), float(gain.mean())


@dataclasses.dataclass
class Certificate:
    """The certified overlap of a bagged recommender's top N, and its clean cost.

    Attributes:
        top_n, bags, sample, n_users, confidence: N, T, s, n and ``1 - alpha``.
        fakes: the ``e`` certified against (1 .. E); delta: ``delta(e)`` for each.
        certified: ``m x E`` certified ``r`` per user and ``e``.
        accuracy: HR@N / NDCG@N on the test entries of the bagged vote and the unbagged model.
        seconds_per_bag: the mean wall time of one bag (fit, fold-in, top N).
    """

    top_n: int
    bags: int
    sample: int
    n_users: int
    confidence: float
    fakes: np.ndarray
    delta: np.ndarray
    certified: np.ndarray
    accuracy: dict[str, float]
    seconds_per_bag: float

    @property
    def mean_certified(self) -> np.ndarray:
        """The mean certified ``r`` over the users, per ``e``."""
        return self.certified.mean(axis=0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: the settings, per ``e`` its delta and mean ``r``, the accuracy."""
        return {
            "top_n": self.top_n,
            "bags": self.bags,
            "sample_size": self.sample,
            "n_users": self.n_users,
            "confidence": self.confidence,
            "per_fake": [
                {"fakes": int(e), "delta": float(d), "mean_certified": float(r)}
                for e, d, r in zip(self.fakes, self.delta, self.mean_certified, strict=True)
            ],
            "accuracy": self.accuracy,
            "seconds_per_bag": self.seconds_per_bag,
        }


def certify_bagging(
    train: Ratings | Interactions,
    test: Ratings | Interactions,
    learner: ALSConfig | WRMFConfig,
    config: BaggingConfig,
    rng: np.random.Generator,
    top_n: int = 10,
    max_fakes: int = 1,
    confidence: float = 0.999,
) -> Certificate:
    """Certify the vote of ``config.bags`` bags of ``s`` users (:func:`sample_size`) on
    ``train`` against ``e = 1 .. max_fakes`` fake users; its HR@N / NDCG@N on ``test`` beside
    the unbagged fit's. ALS on ratings, or WRMF on interactions (implicit feedback: the top N
    of items without an interaction, hits on the held-out interactions)."""
    require(top_n >= 1, f"top N must be >= 1, got {top_n}")
    require(max_fakes >= 1, f"the most fake users must be >= 1, got {max_fakes}")
    sample = sample_size(config, train.n_users)
    fakes = np.arange(1, max_fakes + 1)
    delta = fake_probability(fakes, train.n_users, sample)
    none = sp.csr_array((0, train.n_items))
    start = time.perf_counter()
    if isinstance(learner, WRMFConfig) != isinstance(train, Interactions):
        raise DataError("certify: WRMF bags take interactions, ALS bags take ratings")
    recommend = (
        wrmf_top_n(train, none, learner, top_n)
        if isinstance(learner, WRMFConfig) and isinstance(train, Interactions)
        else als_top_n(train, none, learner, top_n)  # type: ignore[arg-type]
    )
    counts = vote_counts(train, none, recommend, config.bags, sample, rng)
    seconds = (time.perf_counter() - start) / config.bags
    certified = certified_sizes(counts, train.matrix, config.bags, top_n, delta, confidence)
    plain = build_learner(learner).fit(train)  # type: ignore[arg-type]
    unbagged = top_unrated(train.matrix, plain.user_factors, plain.item_factors, top_n)
    accuracy = {}
    for name, top in (("bagged", vote_top_n(counts, train.matrix, top_n)), ("unbagged", unbagged)):
        accuracy[f"{name}_hr"], accuracy[f"{name}_ndcg"] = hits(top, test.matrix)
    return Certificate(
        top_n,
        config.bags,
        sample,
        train.n_users,
        confidence,
        fakes,
        delta,
        certified,
        accuracy,
        seconds,
    )
