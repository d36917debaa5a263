"""Shilling detection on implicit (binary) feedback: fake users as sets of items.

Rating-deviation features need ratings, and on 0/1 profiles they are constant. These detectors
see the combined binary matrix ``X`` (real rows, then fake rows; CSR ``users x items``; no
labels) and give one score per user, higher = more suspect, judged two-sided
(:mod:`cfpoison.detect.metrics`):

* ``length``: ``|I_u|``; ``popularity_mean`` and ``popularity_std``: of ``log c_j`` over ``I_u``;
* ``degsim_jaccard`` and ``degsim_cosine``: DegSim (Chirita et al. 2005) with binary
  similarities;
* ``pca``: PCA-VarSelect (Mehta and Nejdl 2009) on rows z-scored over all ``n`` items,
  through a linear operator on ``X``.

The learned detector is :func:`cfpoison.detect.learned.fit_classifier` on these scores, out of
fold. Flagging at a false-positive rate follows :func:`cross_family.at_fpr` on one fold.
``docs/detection.md`` has the definitions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Literal

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator, svds

from cfpoison.data.interactions import Interactions
from cfpoison.detect.cross_family import AtFPR, at_fpr
from cfpoison.detect.detectors import nearest_mean
from cfpoison.detect.evaluate import DetectConfig, Detector, highest_auc, verdicts
from cfpoison.detect.features import item_stats, row_ids, row_means
from cfpoison.detect.learned import LearnedReport, learned_out_of_fold
from cfpoison.detect.metrics import TwoSided, two_sided
from cfpoison.errors import DataError

LEARNED = "learned"


def binary(matrix: sp.csr_array) -> sp.csr_array:
    """``matrix``'s sparsity pattern with 1 on every stored entry (indices sorted)."""
    out = sp.csr_array(
        (np.ones(len(matrix.indices)), matrix.indices, matrix.indptr), shape=matrix.shape
    )
    out.sort_indices()
    return out


def profile_length(matrix: sp.csr_array) -> np.ndarray:
    """``|I_u|``."""
    return np.diff(matrix.indptr).astype(np.float64)


def popularity(matrix: sp.csr_array) -> tuple[np.ndarray, np.ndarray]:
    """Per user, the mean and standard deviation of ``log c_j`` over ``I_u`` (0 if empty)."""
    counts, _ = item_stats(matrix)
    log_pop = np.log(np.maximum(counts, 1))[matrix.indices]
    mean = row_means(matrix, log_pop)
    return mean, np.sqrt(row_means(matrix, (log_pop - mean[row_ids(matrix)]) ** 2))


def degsim_binary(
    matrix: sp.csr_array, k: int = 10, similarity: Literal["jaccard", "cosine"] = "jaccard"
) -> np.ndarray:
    """Mean Jaccard or cosine similarity of a user's item set to its ``k`` most similar
    other users' (module docstring); row blocks of sparse products, never ``m x m``."""
    X = binary(matrix)
    X_t = X.T.tocsr()
    m = X.shape[0]
    lengths = profile_length(X)

    def similarities(start: int, stop: int) -> np.ndarray:
        shared = (X[start:stop] @ X_t).toarray()
        a, b = lengths[start:stop, None], lengths[None, :]
        den = a + b - shared if similarity == "jaccard" else np.sqrt(a * b)
        return np.divide(shared, den, out=np.zeros_like(shared), where=den > 0)

    return nearest_mean(m, k, similarities)


def pca_binary(matrix: sp.csr_array, components: int = 3) -> np.ndarray:
    """Minus each user's contribution to the top ``components`` principal components of the
    row-z-scored binary matrix (module docstring)."""
    X = binary(matrix)
    m, n = X.shape
    r = min(components, min(m, n) - 1)
    if r < 1:
        return np.zeros(m)
    p = profile_length(X) / n
    s = np.sqrt(p * (1 - p))
    inv = np.divide(1.0, s, out=np.zeros_like(s), where=s > 0)
    X_t = X.T.tocsr()
    Z = LinearOperator(
        (m, n),
        matvec=lambda v: inv * (X @ np.ravel(v) - p * np.sum(v)),
        rmatvec=lambda u: X_t @ (inv * np.ravel(u)) - np.dot(p, inv * np.ravel(u)),
        dtype=np.float64,
    )
    v0 = np.linspace(1.0, 2.0, min(m, n))  # fixed, deterministic; not constant: Z 1 = 0
    left, _, _ = svds(Z, k=r, v0=v0)
    return -np.sum(left**2, axis=1)


#: The unsupervised detectors on a binary matrix (``degsim_k``, ``pca_components`` and
#: ``seed`` of :class:`DetectConfig` apply; the rating-specific settings do not).
IMPLICIT_DETECTORS: dict[str, Detector] = {
    "length": lambda x, c: profile_length(x),
    "popularity_mean": lambda x, c: popularity(x)[0],
    "popularity_std": lambda x, c: popularity(x)[1],
    "degsim_jaccard": lambda x, c: degsim_binary(x, c.degsim_k, "jaccard"),
    "degsim_cosine": lambda x, c: degsim_binary(x, c.degsim_k, "cosine"),
    "pca": lambda x, c: pca_binary(x, c.pca_components),
}


def inject_binary(data: Interactions, fake: sp.csr_array) -> tuple[sp.csr_array, np.ndarray]:
    """The binarised ``(m + m') x n`` matrix, real rows first, and its fake mask;
    :class:`DataError` if ``fake`` has another number of items."""
    if fake.shape[1] != data.n_items:
        raise DataError(f"fake profiles have {fake.shape[1]} items, {data.name} {data.n_items}")
    combined = binary(sp.csr_array(sp.vstack([data.matrix, fake], format="csr")))
    return combined, np.r_[np.zeros(data.n_users, bool), np.ones(fake.shape[0], bool)]


@dataclasses.dataclass(frozen=True)
class Judged:
    """A detector's two-sided AUC and its flagging at the FPR, in the direction it favours."""

    auc: TwoSided
    at_fpr: AtFPR

    def to_dict(self) -> dict[str, object]:
        return {**self.auc.to_dict(), "at_fpr": dataclasses.asdict(self.at_fpr)}


def judge(scores: np.ndarray, is_fake: np.ndarray, fpr: float) -> Judged:
    """:func:`two_sided` AUC and :func:`at_fpr` (one fold) of ``scores``, negated if inverted."""
    auc = two_sided(scores, is_fake)
    fold = np.zeros(len(scores), dtype=np.int64)
    return Judged(auc, at_fpr(-scores if auc.inverted else scores, is_fake, fold, fpr))


@dataclasses.dataclass(frozen=True)
class ImplicitDetectionReport:
    """Every detector's scores and verdict (``learned`` among them when run; otherwise
    ``learned_skipped`` says why), on ``n_normal`` real and ``n_fake`` fake users."""

    scores: dict[str, np.ndarray]
    judged: dict[str, Judged]
    learned: LearnedReport | None
    learned_skipped: str | None
    n_normal: int
    n_fake: int
    fpr: float

    def best(self) -> tuple[str, float]:
        """The detector with the highest two-sided AUC, and that AUC."""
        return highest_auc({n: j.auc.auc_two_sided for n, j in self.judged.items()})

    def flagged(self, name: str) -> np.ndarray:
        """The users detector ``name`` flags at the FPR (two-sided direction, one fold)."""
        scores, auc = self.scores[name], self.judged[name].auc
        oriented = -scores if auc.inverted else scores
        real = oriented[: self.n_normal]
        return oriented > np.quantile(real, 1 - self.fpr, method="higher")

    def to_dict(self) -> dict[str, object]:
        """JSON-able summary (not the per-user scores)."""
        detectors = {name: j.to_dict() for name, j in self.judged.items()}
        return {
            "feedback": "implicit",
            "n_normal": self.n_normal,
            "n_fake": self.n_fake,
            "fpr": self.fpr,
            **verdicts(detectors, self.best(), self.learned, self.learned_skipped),
        }


def run_implicit_detectors(
    data: Interactions,
    fake: sp.csr_array,
    config: DetectConfig | None = None,
    fpr: float = 0.01,
    progress: Callable[[str], None] | None = None,
) -> ImplicitDetectionReport:
    """Append ``fake`` (``m' x n``) to ``data``, binarise, run every detector of
    :data:`IMPLICIT_DETECTORS` and the learned detector on their scores (>= 2 fakes and
    real users), and judge each against the truth (module docstring)."""
    say = progress or (lambda _: None)
    config = config or DetectConfig()
    combined, is_fake = inject_binary(data, fake)
    say(f"{len(IMPLICIT_DETECTORS)} detectors on {combined.shape[0]} users")
    scores = {name: d(combined, config) for name, d in IMPLICIT_DETECTORS.items()}
    learned, skipped = None, None
    if min(fake.shape[0], data.n_users) >= 2:
        say(f"the learned detector ({config.folds}-fold)")
        features = np.column_stack(list(scores.values()))
        learned = learned_out_of_fold(features, tuple(scores), is_fake, config.folds, config.seed)
        scores[LEARNED] = learned.scores
    else:
        skipped = f"needs >= 2 fake and >= 2 normal users ({fake.shape[0]}, {data.n_users})"
    judged = {name: judge(s, is_fake, fpr) for name, s in scores.items()}
    return ImplicitDetectionReport(
        scores, judged, learned, skipped, data.n_users, int(fake.shape[0]), fpr
    )
