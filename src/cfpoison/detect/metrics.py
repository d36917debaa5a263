"""Scoring a detector's suspicion scores (higher = more suspect) against the true fake mask.

* precision, recall and F1 of the ``k`` highest scores, ``k`` = the true number of fakes by
  default (then all three are equal). Ties at the cut-off are shared out: the tied users
  count as ``(k - #above) / #tied`` of a flag each, the expected value under a random order;
* ROC AUC, the Mann-Whitney probability that a random fake outscores a random normal user,
  ties counting one half (average ranks);
* two-sided: ``auc_two_sided = max(AUC, 1 - AUC)``. A detector whose fakes score *lower*
  than the normal users (AUC near 0) separates them just as well, the other way round: a
  defender who sees it flips the sign. Such a result is ``inverted`` and counts as caught;
  ``f1_two_sided`` is the F1 at ``k`` of the scores in the direction the AUC favours.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import stats

from cfpoison.errors import DataError


def roc_auc(scores: np.ndarray, is_fake: np.ndarray) -> float:
    """Mann-Whitney ROC AUC with average ranks for ties (NaN if a class is empty)."""
    is_fake = np.asarray(is_fake, dtype=bool)
    n_pos = int(is_fake.sum())
    n_neg = len(is_fake) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = stats.rankdata(scores)
    return float((ranks[is_fake].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


@dataclasses.dataclass(frozen=True)
class TwoSided:
    """An AUC, ``max(AUC, 1 - AUC)``, and whether the separation is inverted (AUC < 0.5)."""

    auc: float
    auc_two_sided: float
    inverted: bool

    def to_dict(self) -> dict[str, float | bool | str | None]:
        return {**dataclasses.asdict(self), "note": "inverted" if self.inverted else None}


def two_sided(scores: np.ndarray, is_fake: np.ndarray) -> TwoSided:
    """:func:`roc_auc` of ``scores`` judged both ways (NaN stays NaN, not inverted)."""
    auc = roc_auc(scores, is_fake)
    return TwoSided(auc, max(auc, 1.0 - auc), bool(auc < 0.5))


@dataclasses.dataclass(frozen=True)
class DetectionMetrics:
    """Precision, recall and F1 among the ``k`` most suspect users, and ROC AUC both ways."""

    precision: float
    recall: float
    f1: float
    auc: float
    k: int
    auc_two_sided: float = float("nan")
    inverted: bool = False
    f1_two_sided: float = float("nan")

    def to_dict(self) -> dict[str, float | int | bool | str | None]:
        return {**dataclasses.asdict(self), "note": "inverted" if self.inverted else None}


def _top_k_hits(scores: np.ndarray, is_fake: np.ndarray, k: int) -> float:
    """Expected number of fakes among the ``k`` highest scores (ties shared out)."""
    cut = np.partition(scores, len(scores) - k)[len(scores) - k]
    above, tied = scores > cut, scores == cut
    share = (k - above.sum()) / tied.sum()
    return float(is_fake[above].sum() + share * is_fake[tied].sum())


def _f1(hits: float, k: int, n_pos: int) -> float:
    precision, recall = hits / k, hits / n_pos
    return 2 * precision * recall / (precision + recall) if hits > 0 else 0.0


def detection_metrics(
    scores: np.ndarray, is_fake: np.ndarray, k: int | None = None
) -> DetectionMetrics:
    """Metrics of ``scores`` (higher = more suspect) against the boolean mask ``is_fake``."""
    scores = np.asarray(scores, dtype=np.float64)
    is_fake = np.asarray(is_fake, dtype=bool)
    if scores.shape != is_fake.shape:
        raise DataError(f"{len(scores)} scores for {len(is_fake)} users")
    if not np.all(np.isfinite(scores)):
        raise DataError("detector scores contain NaN or infinity")
    n_pos = int(is_fake.sum())
    k = n_pos if k is None else k
    if not 1 <= k <= len(scores) or n_pos == 0:
        nan = float("nan")
        return DetectionMetrics(nan, nan, nan, nan, k)
    hits = _top_k_hits(scores, is_fake, k)
    auc = two_sided(scores, is_fake)
    flipped = _top_k_hits(-scores, is_fake, k) if auc.inverted else hits
    return DetectionMetrics(
        hits / k,
        hits / n_pos,
        _f1(hits, k, n_pos),
        auc.auc,
        k,
        auc.auc_two_sided,
        auc.inverted,
        _f1(flipped, k, n_pos),
    )
