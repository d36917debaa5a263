"""Every detector judged leave-one-family-out: no label of the attack being scored is seen.

Each family ``f`` of fake rows ``F_f`` is injected alone (its world ``W_f = [R; F_f]``, as
:func:`cfpoison.detect.evaluate.run_detectors` does). The real users and each family's fakes
are split into ``K`` folds (:func:`family_splits`). For the held-out family ``f`` and fold
``k``, the test rows are ``W_f``'s real users and ``F_f``'s fakes of fold ``k``. The learned
detector (:func:`cfpoison.detect.learned.fit_classifier`) trains on every other family's world
outside fold ``k`` (:func:`training_set`), and a classic detector scores with its ``W_f``
scores. Per (detector, held-out family), over the pooled test scores: the two-sided AUC
(:func:`cfpoison.detect.metrics.two_sided`), and precision, recall and fpr at 1% FPR with
per-fold thresholds (:func:`at_fpr`), both as scored and in the direction the AUC favours.
The learned detector's ``within`` AUC on ``W_f`` stands beside its own.
``docs/detection.md`` gives the whole protocol.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import numpy as np
import scipy.sparse as sp

from cfpoison.data.ratings import Ratings
from cfpoison.detect.evaluate import DETECTORS, DetectConfig, inject
from cfpoison.detect.learned import fit_classifier, learned_detector, user_features
from cfpoison.detect.metrics import TwoSided, two_sided
from cfpoison.errors import ConfigError

LEARNED = "learned"


@dataclasses.dataclass(frozen=True)
class Split:
    """One train/test problem: rows index the real users (``0..m-1`` in every world) and the
    held-out family's fakes (``0..m_f-1``); the training fakes are all of ``train_families``'."""

    held_out: str
    fold: int
    train_real: np.ndarray
    train_families: tuple[str, ...]
    test_real: np.ndarray
    test_fake: np.ndarray


def family_splits(
    n_real: int, n_fake: Mapping[str, int], folds: int, rng: np.random.Generator
) -> list[Split]:
    """Every (held-out family, fold) split of the module docstring, families in order."""
    if len(n_fake) < 2:
        raise ConfigError(f"leave-one-family-out needs >= 2 families, got {len(n_fake)}")
    if folds < 2 or n_real < folds:
        raise ConfigError(f"{folds} folds need folds >= 2 and >= {folds} real users ({n_real})")
    empty = [name for name, n in n_fake.items() if n < 1]
    if empty:
        raise ConfigError(f"family {empty[0]!r} has no fake profiles")
    real_fold = rng.permutation(n_real) % folds
    fake_fold = {name: rng.permutation(n) % folds for name, n in n_fake.items()}
    return [
        Split(
            held_out=name,
            fold=k,
            train_real=np.flatnonzero(real_fold != k),
            train_families=tuple(other for other in n_fake if other != name),
            test_real=np.flatnonzero(real_fold == k),
            test_fake=np.flatnonzero(fake_fold[name] == k),
        )
        for name in n_fake
        for k in range(folds)
    ]


def training_set(
    split: Split, features: Mapping[str, np.ndarray], n_real: int
) -> tuple[np.ndarray, np.ndarray]:
    """The learned detector's training rows and labels of ``split``: per training family
    ``g``, ``features[g]``'s rows ``split.train_real`` (0) and its fake rows ``n_real..`` (1)."""
    parts = [
        part
        for g in split.train_families
        for part in (features[g][split.train_real], features[g][n_real:])
    ]
    labels = [
        np.full(len(part), i % 2 == 1)  # real rows, then fake rows, per family
        for i, part in enumerate(parts)
    ]
    return np.vstack(parts), np.concatenate(labels)


@dataclasses.dataclass(frozen=True)
class AtFPR:
    """Flagging at a false-positive rate: precision, recall, realised FPR, users flagged."""

    precision: float
    recall: float
    fpr: float
    flagged: int


def at_fpr(scores: np.ndarray, is_fake: np.ndarray, fold: np.ndarray, fpr: float) -> AtFPR:
    """Per fold, flag the users above the ``1 - fpr`` quantile (``method="higher"``) of that
    fold's real users' scores; precision, recall and FPR summed over the folds."""
    flagged = np.zeros(len(scores), dtype=bool)
    for k in np.unique(fold):
        rows = fold == k
        threshold = np.quantile(scores[rows & ~is_fake], 1 - fpr, method="higher")
        flagged[rows] = scores[rows] > threshold
    hits = int(np.sum(flagged & is_fake))
    n_flagged = int(flagged.sum())
    return AtFPR(
        precision=hits / n_flagged if n_flagged else float("nan"),
        recall=hits / max(int(is_fake.sum()), 1),
        fpr=int(np.sum(flagged & ~is_fake)) / max(int((~is_fake).sum()), 1),
        flagged=n_flagged,
    )


@dataclasses.dataclass(frozen=True)
class FamilyResult:
    """One detector against one held-out family (module docstring); ``within`` only for the
    learned detector."""

    detector: str
    family: str
    auc: TwoSided
    at_fpr: AtFPR
    at_fpr_two_sided: AtFPR
    within: TwoSided | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "detector": self.detector,
            "family": self.family,
            **self.auc.to_dict(),
            "at_fpr": dataclasses.asdict(self.at_fpr),
            "at_fpr_two_sided": dataclasses.asdict(self.at_fpr_two_sided),
            "within": None if self.within is None else self.within.to_dict(),
        }


@dataclasses.dataclass(frozen=True)
class CrossFamilyReport:
    """The (detector, held-out family) table and how it was made."""

    results: tuple[FamilyResult, ...]
    n_real: int
    n_fake: dict[str, int]
    folds: int
    fpr: float
    seed: int

    def to_dict(self) -> dict[str, object]:
        return {
            "protocol": "cross-family",
            "n_real": self.n_real,
            "n_fake": self.n_fake,
            "folds": self.folds,
            "fpr": self.fpr,
            "seed": self.seed,
            "results": [r.to_dict() for r in self.results],
            "data": f"leave-one-family-out over {len(self.n_fake)} families, real users in "
            f"{self.folds} folds; threshold at the {1 - self.fpr:g} quantile of the test "
            "fold's real users' scores",
        }


def _result(
    detector: str,
    family: str,
    scores: np.ndarray,
    is_fake: np.ndarray,
    fold: np.ndarray,
    fpr: float,
    within: TwoSided | None = None,
) -> FamilyResult:
    auc = two_sided(scores, is_fake)
    plain = at_fpr(scores, is_fake, fold, fpr)
    favoured = at_fpr(-scores, is_fake, fold, fpr) if auc.inverted else plain
    return FamilyResult(detector, family, auc, plain, favoured, within)


def cross_family(
    ratings: Ratings,
    fakes: Mapping[str, sp.csr_array],
    rng: np.random.Generator,
    config: DetectConfig | None = None,
    fpr: float = 0.01,
    progress: Callable[[str], None] | None = None,
) -> CrossFamilyReport:
    """Every classic detector and the learned one, each family held out in turn (module
    docstring); ``config.folds`` folds, ``config.seed`` seeds the classifier."""
    say = progress or (lambda _: None)
    config = config or DetectConfig()
    if not 0 < fpr < 1:
        raise ConfigError(f"fpr must be in (0, 1), got {fpr}")
    m = ratings.n_users
    splits = family_splits(m, {f: x.shape[0] for f, x in fakes.items()}, config.folds, rng)
    features: dict[str, np.ndarray] = {}
    classic: dict[str, dict[str, np.ndarray]] = {}
    within: dict[str, TwoSided] = {}
    for family, fake in fakes.items():
        say(f"{family}: {len(DETECTORS)} detectors and the features on {m + fake.shape[0]} users")
        world, is_fake = inject(ratings, fake)
        classic[family] = {name: d(world, config) for name, d in DETECTORS.items()}
        features[family] = user_features(world, ratings.scale)[0]
        within[family] = learned_detector(
            world, is_fake, ratings.scale, config.folds, config.seed
        ).auc
    learned = {f: np.zeros(m + x.shape[0]) for f, x in fakes.items()}
    fold = {f: np.zeros(m + x.shape[0], dtype=np.int64) for f, x in fakes.items()}
    for split in splits:
        if split.fold == 0:
            say(f"{split.held_out} held out: the learned detector, {config.folds} folds")
        test = np.r_[split.test_real, m + split.test_fake]
        model = fit_classifier(*training_set(split, features, m), config.seed)
        learned[split.held_out][test] = model.predict_proba(features[split.held_out][test])[:, 1]
        fold[split.held_out][test] = split.fold
    results = []
    for family, fake in fakes.items():
        is_fake = np.r_[np.zeros(m, bool), np.ones(fake.shape[0], bool)]
        for name, scores in classic[family].items():
            results.append(_result(name, family, scores, is_fake, fold[family], fpr))
        results.append(
            _result(LEARNED, family, learned[family], is_fake, fold[family], fpr, within[family])
        )
    return CrossFamilyReport(
        tuple(results),
        m,
        {f: int(x.shape[0]) for f, x in fakes.items()},
        config.folds,
        fpr,
        config.seed,
    )
