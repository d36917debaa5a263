"""Running every detector on injected profiles and scoring them against the ground truth.

:func:`run_detectors` gives, for one injection of ``m'`` fake rows into ``m`` real users:

* every unsupervised detector of :data:`DETECTORS`, scored on the combined matrix without
  labels and judged two-sided (:mod:`cfpoison.detect.metrics`: an inverted separation is a
  catch, noted ``inverted``);
* the distribution tests (:mod:`cfpoison.detect.distribution`: profile length, rating
  histogram, item popularity), fake rows against the ``m`` real users;
* the learned detector (:mod:`cfpoison.detect.learned`), trained on the real users against
  the labelled fake rows, out-of-fold AUC (needs >= 2 fakes; otherwise absent, with the
  reason);
* both paired t-tests (:mod:`cfpoison.detect.ttest`).

``best`` names the detector (unsupervised or learned) with the highest two-sided AUC.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import numpy as np
import scipy.sparse as sp

from cfpoison.config import JsonConfig, require, require_ranges
from cfpoison.data.ratings import Ratings
from cfpoison.detect.detectors import degsim, fmtd, mean_var
from cfpoison.detect.distribution import DistributionTest, distribution_tests
from cfpoison.detect.features import length_var, rdma, wda, wdma
from cfpoison.detect.learned import LearnedReport, learned_detector
from cfpoison.detect.metrics import DetectionMetrics, detection_metrics
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
        folds: stratified cross-validation folds of the learned detector.
        permutations: random user groups behind the rating-histogram test's p-value.
        seed: seeds the folds, the classifier and the permutations.
    """

    degsim_k: int = 10
    degsim_shrink: float = 50.0
    pca_components: int = 3
    ttest_neighbours: int = 10
    folds: int = 5
    permutations: int = 999
    seed: int = 0

    def __post_init__(self) -> None:
        require(self.degsim_k >= 1, f"DegSim k must be >= 1, got {self.degsim_k}")
        require(self.degsim_shrink >= 0, f"DegSim shrink must be >= 0, got {self.degsim_shrink}")
        require(self.pca_components >= 1, f"PCA components must be >= 1, got {self.pca_components}")
        require(self.ttest_neighbours >= 1, "t-test neighbours must be >= 1")
        require_ranges(self, folds=">= 2", permutations=">= 1", seed=">= 0")


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


def highest_auc(aucs: dict[str, float]) -> tuple[str, float]:
    """The detector with the highest finite AUC in ``aucs``, and that AUC (``""`` and NaN
    when none is finite)."""
    finite = {name: auc for name, auc in aucs.items() if np.isfinite(auc)}
    if not finite:
        return "", float("nan")
    name = max(finite, key=lambda d: finite[d])
    return name, finite[name]


def verdicts(
    detectors: Mapping[str, object],
    best: tuple[str, float],
    learned: LearnedReport | None,
    learned_skipped: str | None,
) -> dict[str, object]:
    """The JSON-able verdicts of a detection report: each detector's dict, the ``best`` one
    and its AUC, and the learned detector (or why it was skipped)."""
    return {
        "detectors": detectors,
        "best_detector": best[0],
        "best_auc_two_sided": best[1],
        "learned": None if learned is None else learned.to_dict(),
        "learned_skipped": learned_skipped,
    }


@dataclasses.dataclass(frozen=True)
class DetectionReport:
    """Every detector's scores and metrics, the distribution tests, the learned detector
    (None, with ``learned_skipped`` saying why, below two fakes) and both t-tests."""

    scores: dict[str, np.ndarray]
    metrics: dict[str, DetectionMetrics]
    distribution: dict[str, DistributionTest]
    learned: LearnedReport | None
    learned_skipped: str | None
    ttest: TTestResult
    ttest_users: TTestResult
    n_normal: int
    n_fake: int

    def best(self) -> tuple[str, float]:
        """The detector (``learned`` included) with the highest two-sided AUC, and that AUC."""
        aucs = {name: m.auc_two_sided for name, m in self.metrics.items()}
        if self.learned is not None:
            aucs["learned"] = self.learned.auc.auc_two_sided
        return highest_auc(aucs)

    def to_dict(self) -> dict[str, object]:
        """JSON-able summary (metrics and tests; not the per-user scores)."""
        detectors = {name: m.to_dict() for name, m in self.metrics.items()}
        return {
            "n_normal": self.n_normal,
            "n_fake": self.n_fake,
            **verdicts(detectors, self.best(), self.learned, self.learned_skipped),
            "distribution": {name: t.to_dict() for name, t in self.distribution.items()},
            "ttest": self.ttest.to_dict(),
            "ttest_users": self.ttest_users.to_dict(),
            "ttest_pvalue": self.ttest.pvalue,
        }


def inject(ratings: Ratings, fake: sp.csr_array) -> tuple[sp.csr_array, np.ndarray]:
    """The combined ``(m + m') x n`` matrix (real rows first, indices sorted) and its fake
    mask; :class:`DataError` if ``fake`` has another number of items."""
    if fake.shape[1] != ratings.n_items:
        raise DataError(f"fake profiles have {fake.shape[1]} items, data set {ratings.n_items}")
    combined = sp.csr_array(sp.vstack([ratings.matrix, fake], format="csr"))
    combined.sort_indices()
    return combined, np.r_[np.zeros(ratings.n_users, bool), np.ones(fake.shape[0], bool)]


def run_detectors(
    ratings: Ratings,
    fake: sp.csr_array,
    config: DetectConfig | None = None,
    progress: Callable[[str], None] | None = None,
) -> DetectionReport:
    """Append ``fake`` (``m' x n`` CSR, shifted scale) to ``ratings``, run every detector.

    The unsupervised detectors see the combined ``(m + m') x n`` matrix without labels; the
    distribution tests and the t-tests use the normal users as the clean reference; the
    learned detector is trained on the labels (module docstring). ``progress`` (if given) is
    called with a line as each phase starts.
    """
    say = progress or (lambda _: None)
    config = config or DetectConfig()
    combined, is_fake = inject(ratings, fake)
    say(f"{len(DETECTORS)} detectors on {combined.shape[0]} users")
    scores = {name: detector(combined, config) for name, detector in DETECTORS.items()}
    metrics = {name: detection_metrics(s, is_fake) for name, s in scores.items()}
    rng = np.random.default_rng(config.seed)
    learned, skipped = None, None
    if min(fake.shape[0], ratings.n_users) >= 2:
        say(f"the learned detector ({config.folds}-fold)")
        learned = learned_detector(combined, is_fake, ratings.scale, config.folds, config.seed)
    else:
        skipped = f"needs >= 2 fake and >= 2 normal users ({fake.shape[0]}, {ratings.n_users})"
    say(f"distribution tests ({config.permutations} permutations) and the t-tests")
    return DetectionReport(
        scores=scores,
        metrics=metrics,
        distribution=distribution_tests(
            ratings.matrix, fake, ratings.scale, rng, config.permutations
        ),
        learned=learned,
        learned_skipped=skipped,
        ttest=rating_frequency_ttest(ratings, fake, "items"),
        ttest_users=rating_frequency_ttest(ratings, fake, "users", config.ttest_neighbours),
        n_normal=ratings.n_users,
        n_fake=int(fake.shape[0]),
    )
