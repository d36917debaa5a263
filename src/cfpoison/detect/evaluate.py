"""Running every detector on injected profiles and scoring them against the ground truth.

Metrics of a score vector (higher = more suspect) against the true fake mask:

* precision, recall and F1 of the ``k`` highest scores, ``k`` = the true number of fakes by
  default (then all three are equal). Ties at the cut-off are shared out: the tied users
  count as ``(k - #above) / #tied`` of a flag each, the expected value under a random order;
* ROC AUC, the Mann-Whitney probability that a random fake outscores a random normal user,
  ties counting one half (average ranks).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp
from scipy import stats

from cfpoison.config import JsonConfig, require
from cfpoison.data.ratings import Ratings
from cfpoison.detect.detectors import degsim, fmtd, mean_var
from cfpoison.detect.features import length_var, rdma, wda, wdma
from cfpoison.detect.pca import pca_select
from cfpoison.detect.ttest import TTestResult, rating_frequency_ttest
from cfpoison.errors import DataError


@dataclasses.dataclass(frozen=True)
class DetectConfig(JsonConfig):
    """Detector settings.

    Attributes:
        degsim_k: neighbours averaged by DegSim.
        degsim_shrink: significance-weighting threshold of DegSim's similarity (0: none).
        pca_components: principal components whose contributions PCA-VarSelect sums.
        ttest_neighbours: activity-matched normal users per fake user (user-paired t-test).
    """

    degsim_k: int = 10
    degsim_shrink: float = 50.0
    pca_components: int = 3
    ttest_neighbours: int = 10

    def __post_init__(self) -> None:
        require(self.degsim_k >= 1, f"DegSim k must be >= 1, got {self.degsim_k}")
        require(self.degsim_shrink >= 0, f"DegSim shrink must be >= 0, got {self.degsim_shrink}")
        require(self.pca_components >= 1, f"PCA components must be >= 1, got {self.pca_components}")
        require(self.ttest_neighbours >= 1, "t-test neighbours must be >= 1")


Detector = Callable[[sp.csr_array, DetectConfig], np.ndarray]

DETECTORS: dict[str, Detector] = {
    "rdma": lambda x, c: rdma(x),
    "wdma": lambda x, c: wdma(x),
    "wda": lambda x, c: wda(x),
    "degsim": lambda x, c: degsim(x, c.degsim_k, c.degsim_shrink),
    "length_var": lambda x, c: length_var(x),
    "mean_var": lambda x, c: mean_var(x),
    "fmtd": lambda x, c: fmtd(x),
    "pca": lambda x, c: pca_select(x, c.pca_components),
}


@dataclasses.dataclass(frozen=True)
class DetectionMetrics:
    """Precision, recall and F1 among the ``k`` most suspect users, and ROC AUC."""

    precision: float
    recall: float
    f1: float
    auc: float
    k: int

    def to_dict(self) -> dict[str, float | int]:
        return dataclasses.asdict(self)


def roc_auc(scores: np.ndarray, is_fake: np.ndarray) -> float:
    """Mann-Whitney ROC AUC with average ranks for ties (NaN if a class is empty)."""
    is_fake = np.asarray(is_fake, dtype=bool)
    n_pos = int(is_fake.sum())
    n_neg = len(is_fake) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = stats.rankdata(scores)
    return float((ranks[is_fake].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


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
        return DetectionMetrics(float("nan"), float("nan"), float("nan"), float("nan"), k)
    cut = np.partition(scores, len(scores) - k)[len(scores) - k]
    above, tied = scores > cut, scores == cut
    share = (k - above.sum()) / tied.sum()
    hits = float(is_fake[above].sum() + share * is_fake[tied].sum())
    precision, recall = hits / k, hits / n_pos
    f1 = 2 * precision * recall / (precision + recall) if hits > 0 else 0.0
    return DetectionMetrics(precision, recall, f1, roc_auc(scores, is_fake), k)


@dataclasses.dataclass(frozen=True)
class DetectionReport:
    """Every detector's scores and metrics, and both t-tests, for one injection."""

    scores: dict[str, np.ndarray]
    metrics: dict[str, DetectionMetrics]
    ttest: TTestResult
    ttest_users: TTestResult
    n_normal: int
    n_fake: int

    def to_dict(self) -> dict[str, object]:
        """JSON-able summary (metrics and t-tests; not the per-user scores)."""
        return {
            "n_normal": self.n_normal,
            "n_fake": self.n_fake,
            "detectors": {name: m.to_dict() for name, m in self.metrics.items()},
            "ttest": self.ttest.to_dict(),
            "ttest_users": self.ttest_users.to_dict(),
            "ttest_pvalue": self.ttest.pvalue,
        }


def run_detectors(
    ratings: Ratings, fake: sp.csr_array, config: DetectConfig | None = None
) -> DetectionReport:
    """Append ``fake`` (``m' x n`` CSR, shifted scale) to ``ratings``, run every detector.

    The detectors see the combined ``(m + m') x n`` matrix without labels; the t-tests use
    the normal users as the clean reference.
    """
    config = config or DetectConfig()
    if fake.shape[1] != ratings.n_items:
        raise DataError(f"fake profiles have {fake.shape[1]} items, data set {ratings.n_items}")
    combined = sp.csr_array(sp.vstack([ratings.matrix, fake], format="csr"))
    combined.sort_indices()
    is_fake = np.r_[np.zeros(ratings.n_users, bool), np.ones(fake.shape[0], bool)]
    scores = {name: detector(combined, config) for name, detector in DETECTORS.items()}
    metrics = {name: detection_metrics(s, is_fake) for name, s in scores.items()}
    return DetectionReport(
        scores=scores,
        metrics=metrics,
        ttest=rating_frequency_ttest(ratings, fake, "items"),
        ttest_users=rating_frequency_ttest(ratings, fake, "users", config.ttest_neighbours),
        n_normal=ratings.n_users,
        n_fake=int(fake.shape[0]),
    )
