"""A learned detector: gradient boosting on per-user features, scored out of fold.

The strongest defender we model: it holds a labelled sample of the attack (every fake
profile) and the real users, and learns to tell them apart. Features of user ``u`` (all on the
shifted scale; item statistics over every row of the combined matrix, as a defender sees it
without labels; ``I_u`` = the items ``u`` rated, ``c_j`` = the number of users who rated
``j``, ``r_j`` = its mean rating):

* ``length``: ``|I_u|``;
* ``hist_k``: the fraction of ``u``'s ratings in grid bin ``k`` of
  :func:`cfpoison.detect.distribution.rating_bins` (one per rating value of the data set);
* ``rating_mean``, ``rating_std``: of ``u``'s ratings;
* ``extreme_fraction``: the fraction of ``u``'s ratings in the lowest or highest bin;
* ``popularity_mean``, ``popularity_std``: of ``log c_j`` over ``j in I_u``;
* ``deviation_mean``: ``mean_{j in I_u} |r_uj - r_j|`` (how far from the crowd);
* ``deviation_corr``: the Pearson correlation of ``r_uj`` with ``r_j`` over ``I_u`` (0 when
  either is constant): a real user's taste follows the crowd's partly;
* ``rdma``, ``wdma``: :mod:`cfpoison.detect.features` (deviations weighted by ``1 / c_j``,
  ``1 / c_j^2``).

Scores are out of fold: ``StratifiedKFold(folds, shuffle=True, random_state=seed)`` splits the
users, a ``HistGradientBoostingClassifier(class_weight="balanced", random_state=seed)``
trained on the other folds scores each fold, and the AUC is computed on the pooled
out-of-fold scores (``auc``) and per fold (``fold_aucs``: coarse with few fakes per fold, e.g.
3 or 4 of 19 among 629 users; their spread is reported next to the pooled value).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import scipy.sparse as sp

from cfpoison.data.ratings import RatingScale
from cfpoison.detect.distribution import rating_bins, user_histograms
from cfpoison.detect.features import item_stats, rdma, row_ids, row_means, wdma
from cfpoison.detect.metrics import TwoSided, two_sided
from cfpoison.errors import DataError


@dataclasses.dataclass(frozen=True)
class LearnedReport:
    """Out-of-fold scores of the learned detector and their ROC AUCs.

    Attributes:
        scores: out-of-fold probability of being fake, per user of the combined matrix.
        auc: ROC AUC (and its two-sided version) of the pooled out-of-fold scores.
        fold_aucs: the AUC of each test fold (one-sided).
        features: the feature names, in column order.
        n_normal, n_fake: the users trained on (real users, labelled attack profiles).
        folds, seed: the cross-validation.
    """

    scores: np.ndarray
    auc: TwoSided
    fold_aucs: tuple[float, ...]
    features: tuple[str, ...]
    n_normal: int
    n_fake: int
    folds: int
    seed: int

    def to_dict(self) -> dict[str, object]:
        """JSON-able summary (not the per-user scores)."""
        folds = np.asarray(self.fold_aucs)
        return {
            **self.auc.to_dict(),
            "fold_aucs": list(self.fold_aucs),
            "fold_auc_mean": float(folds.mean()),
            "fold_auc_std": float(folds.std()),
            "features": list(self.features),
            "n_normal": self.n_normal,
            "n_fake": self.n_fake,
            "folds": self.folds,
            "seed": self.seed,
            "data": f"{self.n_normal} real users vs {self.n_fake} labelled fake profiles, "
            f"{self.folds}-fold stratified out-of-fold scores",
        }


def user_features(matrix: sp.csr_array, scale: RatingScale) -> tuple[np.ndarray, tuple[str, ...]]:
    """The ``users x features`` matrix of the module docstring and the feature names."""
    rows = row_ids(matrix)
    counts, item_mean = item_stats(matrix)
    lengths = np.diff(matrix.indptr).astype(np.float64)
    safe = np.maximum(lengths, 1.0)
    hist = user_histograms(matrix, rating_bins(scale)) / safe[:, None]
    mean = row_means(matrix, matrix.data)
    std = np.sqrt(row_means(matrix, (matrix.data - mean[rows]) ** 2))
    log_pop = np.log(np.maximum(counts, 1))[matrix.indices]
    pop_mean = row_means(matrix, log_pop)
    pop_std = np.sqrt(row_means(matrix, (log_pop - pop_mean[rows]) ** 2))
    crowd = item_mean[matrix.indices]
    crowd_mean = row_means(matrix, crowd)
    crowd_std = np.sqrt(row_means(matrix, (crowd - crowd_mean[rows]) ** 2))
    cov = row_means(matrix, (matrix.data - mean[rows]) * (crowd - crowd_mean[rows]))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.where(std * crowd_std > 0, cov / (std * crowd_std), 0.0)
    columns = {
        "length": lengths,
        **{f"hist_{k}": hist[:, k] for k in range(hist.shape[1])},
        "rating_mean": mean,
        "rating_std": std,
        "extreme_fraction": hist[:, 0] + hist[:, -1],
        "popularity_mean": pop_mean,
        "popularity_std": pop_std,
        "deviation_mean": row_means(matrix, np.abs(matrix.data - crowd)),
        "deviation_corr": corr,
        "rdma": rdma(matrix),
        "wdma": wdma(matrix),
    }
    return np.column_stack(list(columns.values())), tuple(columns)


def fit_classifier(features: np.ndarray, is_fake: np.ndarray, seed: int) -> Any:
    """The detector's ``HistGradientBoostingClassifier(class_weight="balanced",
    random_state=seed)`` fitted on ``features`` (rows) against the labels ``is_fake``."""
    # scikit-learn is imported here: it takes a second, and only this detector needs it
    from sklearn.ensemble import HistGradientBoostingClassifier

    model = HistGradientBoostingClassifier(class_weight="balanced", random_state=seed)
    return model.fit(features, is_fake)


def learned_detector(
    matrix: sp.csr_array,
    is_fake: np.ndarray,
    scale: RatingScale,
    folds: int = 5,
    seed: int = 0,
) -> LearnedReport:
    """Out-of-fold scores of a boosted classifier on :func:`user_features` (module docstring).

    Uses ``min(folds, #fakes, #normals)`` folds; raises :class:`DataError` if that is < 2.
    """
    is_fake = np.asarray(is_fake, dtype=bool)
    features, names = user_features(matrix, scale)
    return learned_out_of_fold(features, names, is_fake, folds, seed)


def learned_out_of_fold(
    features: np.ndarray, names: tuple[str, ...], is_fake: np.ndarray, folds: int, seed: int
) -> LearnedReport:
    """Out-of-fold scores of :func:`fit_classifier` on ``features`` (users x features):
    ``StratifiedKFold(min(folds, #fakes, #normals), shuffle=True, random_state=seed)``;
    :class:`DataError` below 2 folds. Shared by the rated and the binary detectors."""
    from sklearn.model_selection import StratifiedKFold

    n_fake = int(is_fake.sum())
    n_normal = len(is_fake) - n_fake
    k = min(folds, n_fake, n_normal)
    if k < 2:
        raise DataError(
            f"the learned detector needs >= 2 fake and >= 2 normal users, got "
            f"{n_fake} and {n_normal}"
        )
    scores = np.zeros(len(is_fake))
    fold_aucs = []
    for train, test in StratifiedKFold(k, shuffle=True, random_state=seed).split(features, is_fake):
        model = fit_classifier(features[train], is_fake[train], seed)
        scores[test] = model.predict_proba(features[test])[:, 1]
        fold_aucs.append(two_sided(scores[test], is_fake[test]).auc)
    return LearnedReport(
        scores, two_sided(scores, is_fake), tuple(fold_aucs), names, n_normal, n_fake, k, seed
    )
