"""Detecting fake profiles: the paper's t-test and the standard shilling detectors.

Every detector scores every user of a combined (normal + fake) rating matrix, higher = more
suspect; :func:`run_detectors` runs them all and scores them against the ground truth.
"""

from cfpoison.detect.detectors import degsim, fmtd, mean_var
from cfpoison.detect.evaluate import (
    DETECTORS,
    DetectConfig,
    DetectionMetrics,
    DetectionReport,
    detection_metrics,
    roc_auc,
    run_detectors,
)
from cfpoison.detect.features import length_var, rdma, wda, wdma
from cfpoison.detect.pca import pca_select
from cfpoison.detect.ttest import TTestResult, rating_frequency_ttest

__all__ = [
    "DETECTORS",
    "DetectConfig",
    "DetectionMetrics",
    "DetectionReport",
    "TTestResult",
    "degsim",
    "detection_metrics",
    "fmtd",
    "length_var",
    "mean_var",
    "pca_select",
    "rating_frequency_ttest",
    "rdma",
    "roc_auc",
    "run_detectors",
    "wda",
    "wdma",
]
