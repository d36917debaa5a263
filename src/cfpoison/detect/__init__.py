"""Detecting fake profiles: the paper's t-test, the standard shilling detectors, the
distribution tests a defender runs first, and a learned (supervised) detector.

Every detector scores every user of a combined (normal + fake) rating matrix, higher = more
suspect, and is judged two-sided; :func:`run_detectors` runs them all and scores them against
the ground truth.
"""

from cfpoison.detect.detectors import degsim, fmtd, mean_var
from cfpoison.detect.distribution import DistributionTest, distribution_tests
from cfpoison.detect.evaluate import DETECTORS, DetectConfig, DetectionReport, run_detectors
from cfpoison.detect.features import length_var, rdma, wda, wdma
from cfpoison.detect.learned import LearnedReport, learned_detector, user_features
from cfpoison.detect.metrics import (
    DetectionMetrics,
    TwoSided,
    detection_metrics,
    roc_auc,
    two_sided,
)
from cfpoison.detect.pca import pca_select
from cfpoison.detect.ttest import TTestResult, rating_frequency_ttest

__all__ = [
    "DETECTORS",
    "DetectConfig",
    "DetectionMetrics",
    "DetectionReport",
    "DistributionTest",
    "LearnedReport",
    "TTestResult",
    "TwoSided",
    "degsim",
    "detection_metrics",
    "distribution_tests",
    "fmtd",
    "learned_detector",
    "length_var",
    "mean_var",
    "pca_select",
    "rating_frequency_ttest",
    "rdma",
    "roc_auc",
    "run_detectors",
    "two_sided",
    "user_features",
    "wda",
    "wdma",
]
