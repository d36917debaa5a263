"""Defenses: each turns a poisoned training set into a :class:`DefendedModel`.

Input: the real ratings ``train`` (``m x n``), the fake rows ``fake`` (``m' x n``, shifted
scale; the defender sees only the combined matrix, the split is kept for bookkeeping), the
learner config (ALS) and a seeded ``numpy.random.Generator``. Each defense is a frozen,
validated config (JSON round trip); :func:`defend` dispatches on its type.

* ``detect_remove``: score every user with a detector (higher = more suspect), set aside the
  users above the threshold for a false-positive rate ``fpr`` on real users, refit ALS on the
  rest and fold the set-aside real users in against the refitted items (they keep predictions;
  their ratings move no one else's). The threshold is the ``1 - fpr`` quantile of scores on a
  clean ``reference`` (the training data before the attack window; the realised rate on the
  poisoned data is reported), or on the ``poisoned`` data itself (then at most ``fpr`` of *all*
  users are flagged).
* ``bagging``: ``B`` ALS fits on subsamples (a ``fraction`` of the users or of the ratings),
  users outside a bag folded in; the averaged prediction is one low-rank model.
* ``trimmed``: fit, drop the ``fraction`` of ratings (or users) with the largest residuals
  (``|r|``, or a user's mean ``r^2``), refit; ``rounds`` times, each choosing from all data.
* ``huber``: IRLS on ``sum rho(X - UV^T)``, ``rho(r) = r^2`` for ``|r| <= delta`` and
  ``2 delta |r| - delta^2`` beyond: weights ``w = min(1, delta / |r|)``, weighted ALS.
* ``influence_cap``: ``c_i = min(1, cap * median / n_i)`` (``median`` the median profile
  length) multiplies user i's whole term (ratings and ``lam_U |u_i|^2``): its own factors are
  unchanged and only its pull on ``V`` shrinks.
* ``als_wr``: frequency-weighted regularization ``lam n_i |u_i|^2 + lam n_j |v_j|^2``
  (Zhou et al. 2008).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Callable
from typing import Any, ClassVar, Literal, get_args

import numpy as np
import scipy.sparse as sp

from cfpoison.config import JsonConfig, require
from cfpoison.data.ratings import IdMatrix, Ratings
from cfpoison.defend.model import DefendedModel, combined
from cfpoison.detect import DETECTORS, DetectConfig
from cfpoison.errors import ConfigError, DataError
from cfpoison.learners import ALSConfig, ALSLearner
from cfpoison.learners.base import Factors
from cfpoison.learners.weighted import WeightedFit, WeightedProblem, fold_in, weighted_als

#: A suspicion score for every row of a rating matrix (CSR, shifted scale): higher = more
#: suspect. Any detector of :mod:`cfpoison.detect` is one; so is any callable of this shape.
ScoreFunction = Callable[[sp.csr_array], np.ndarray]


#: The detector name of a score function that must be given (a learned detector needs its
#: labelled sample: :func:`cfpoison.defend.supervised.learned_score`).
LEARNED = "learned"


def detector_score(name: str) -> ScoreFunction:
    """The detector ``name`` of :data:`cfpoison.detect.DETECTORS` with default settings."""
    if name not in DETECTORS:
        raise ConfigError(f"detector {name!r} needs its score function passed in")
    detector = DETECTORS[name]
    return lambda matrix: np.asarray(detector(matrix, DetectConfig()), dtype=np.float64)


@dataclasses.dataclass(frozen=True)
class DefenseSettings(JsonConfig):
    """A defense's settings. ``label`` (tables, store keys) is the class's ``_label``
    template formatted with the fields."""

    kind: ClassVar[str] = "defense"
    _label: ClassVar[str]

    @property
    def label(self) -> str:
        return self._label.format(
            **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        )


@dataclasses.dataclass(frozen=True)
class DetectRemoveConfig(DefenseSettings):
    """Detect-and-remove (module docstring): ``detector``, target ``fpr``, ``calibration``."""

    _label: ClassVar[str] = "detect_remove[{detector},fpr={fpr:g},{calibration}]"
    name: Literal["detect_remove"] = "detect_remove"
    detector: str = "rdma"
    fpr: float = 0.01
    calibration: Literal["reference", "poisoned"] = "reference"

    def __post_init__(self) -> None:
        known = ", ".join([*sorted(DETECTORS), LEARNED])
        require(
            self.detector in DETECTORS or self.detector == LEARNED,
            f"unknown detector {self.detector!r} (one of {known})",
        )
        require(0 <= self.fpr < 1, f"fpr must be in [0, 1), got {self.fpr}")


@dataclasses.dataclass(frozen=True)
class BaggingConfig(DefenseSettings):
    """``bags`` ALS fits on subsamples of ``fraction`` of the ``unit`` (users or ratings)."""

    _label: ClassVar[str] = "bagging[{bags}x{fraction:g} {unit}]"
    name: Literal["bagging"] = "bagging"
    bags: int = 10
    fraction: float = 0.8
    unit: Literal["users", "ratings"] = "users"

    def __post_init__(self) -> None:
        require(self.bags >= 1, f"bags must be >= 1, got {self.bags}")
        require(0 < self.fraction <= 1, f"bagging fraction must be in (0, 1], got {self.fraction}")


@dataclasses.dataclass(frozen=True)
class TrimmedConfig(DefenseSettings):
    """Trimmed ALS: drop the ``fraction`` of ``unit`` with the largest residuals, ``rounds``."""

    _label: ClassVar[str] = "trimmed[{unit} {fraction:g}]"
    name: Literal["trimmed"] = "trimmed"
    fraction: float = 0.05
    unit: Literal["ratings", "users"] = "ratings"
    rounds: int = 3

    def __post_init__(self) -> None:
        require(0 <= self.fraction < 1, f"trim fraction must be in [0, 1), got {self.fraction}")
        require(self.rounds >= 1, f"trim rounds must be >= 1, got {self.rounds}")


@dataclasses.dataclass(frozen=True)
class HuberConfig(DefenseSettings):
    """Huber loss with threshold ``delta`` (shifted scale) by ``iterations`` IRLS steps."""

    _label: ClassVar[str] = "huber[delta={delta:g}]"
    name: Literal["huber"] = "huber"
    delta: float = 1.0
    iterations: int = 5

    def __post_init__(self) -> None:
        require(math.isfinite(self.delta) and self.delta > 0, f"delta must be > 0: {self.delta}")
        require(self.iterations >= 1, f"IRLS iterations must be >= 1, got {self.iterations}")


@dataclasses.dataclass(frozen=True)
class InfluenceCapConfig(DefenseSettings):
    """Per-user influence cap: total weight at most ``cap`` x the median profile length."""

    _label: ClassVar[str] = "influence_cap[{cap:g}]"
    name: Literal["influence_cap"] = "influence_cap"
    cap: float = 1.0

    def __post_init__(self) -> None:
        require(math.isfinite(self.cap) and self.cap > 0, f"cap must be > 0, got {self.cap}")


@dataclasses.dataclass(frozen=True)
class ALSWRConfig(DefenseSettings):
    """ALS with frequency-weighted regularization ``lam n_i`` (users) and ``lam n_j`` (items)."""

    _label: ClassVar[str] = "als_wr[lam={lam:g}]"
    name: Literal["als_wr"] = "als_wr"
    lam: float = 0.1

    def __post_init__(self) -> None:
        require(math.isfinite(self.lam) and self.lam > 0, f"ALS-WR lam must be > 0: {self.lam}")


DefenseConfig = (
    DetectRemoveConfig
    | BaggingConfig
    | TrimmedConfig
    | HuberConfig
    | InfluenceCapConfig
    | ALSWRConfig
)

#: Every defense config class by its ``name``, in the order of :data:`DefenseConfig`.
DEFENSES: dict[str, type[DefenseConfig]] = {c.name: c for c in get_args(DefenseConfig)}


# ---------------------------------------------------------------------------- helpers
#: The defenses ``cfpoison defend`` and ``reproduce defenses`` run by default:
#: the three detectors that caught PGA on ml-latest-small (rdma, wdma, fmtd), DegSim (which
#: did not), and one of each other kind.
DEFAULT_DEFENSES: tuple[DefenseConfig, ...] = (
    DetectRemoveConfig(detector="rdma"),
    DetectRemoveConfig(detector="wdma"),
    DetectRemoveConfig(detector="fmtd"),
    DetectRemoveConfig(detector="degsim"),
    BaggingConfig(),
    TrimmedConfig(fraction=0.02, unit="ratings"),
    TrimmedConfig(fraction=0.03, unit="users"),
    HuberConfig(),
    InfluenceCapConfig(),
    ALSWRConfig(),
)


def _without_rows(matrix: sp.csr_array, drop: np.ndarray) -> sp.csr_array:
    """``matrix`` with every entry of the rows ``drop`` (mask) removed; shape kept."""
    return _keep_entries(matrix, ~np.repeat(drop, np.diff(matrix.indptr)))


def _keep_entries(matrix: sp.csr_array, keep: np.ndarray) -> sp.csr_array:
    """``matrix`` with only the stored entries where ``keep`` (CSR order); shape kept."""
    rows = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
    counts = np.bincount(rows[keep], minlength=matrix.shape[0])
    indptr = np.r_[0, np.cumsum(counts)].astype(matrix.indptr.dtype)
    return sp.csr_array(
        (matrix.data[keep], matrix.indices[keep], indptr), shape=matrix.shape
    )  # explicit zeros kept: they are ratings


@dataclasses.dataclass(frozen=True)
class Subset:
    """The ratings that one ALS fit inside a defense sees, and the real users it folds in.

    Attributes:
        real: the kept real ratings, ``m x n`` (rows of set-aside users empty).
        fake_rows: mask over the ``m'`` fake rows: rows left out of the fit's matrix.
        fake_entries: mask over the fake CSR's stored entries: ratings kept in kept rows.
        set_aside: mask over the ``m`` real users predicted by fold-in against the fit's
            items (with all their ratings) instead of by the fit.
    """

    real: sp.csr_array
    fake_rows: np.ndarray
    fake_entries: np.ndarray
    set_aside: np.ndarray

    @classmethod
    def of(
        cls,
        real: sp.csr_array,
        fake: sp.csr_array,
        set_aside: np.ndarray,
        fake_rows: np.ndarray | None = None,
        fake_entries: np.ndarray | None = None,
    ) -> Subset:
        """A subset keeping every fake row and rating unless masks are given."""
        rows = np.ones(fake.shape[0], dtype=bool) if fake_rows is None else fake_rows
        entries = np.ones(fake.nnz, dtype=bool) if fake_entries is None else fake_entries
        return cls(real, rows, entries, set_aside)

    def thin(self, fake: sp.csr_array) -> sp.csr_array:
        """The fake matrix the fit sees: kept ratings of the kept rows (CSR order kept)."""
        return _keep_entries(fake, self.fake_entries)[self.fake_rows]

    def fake_mask(self, fake: sp.csr_array) -> np.ndarray:
        """The entries of ``fake`` (CSR order) that :meth:`thin` keeps, in its order."""
        return self.fake_entries & np.repeat(self.fake_rows, np.diff(fake.indptr))


@dataclasses.dataclass
class SubsetFit:
    """ALS fitted on a :class:`Subset` (``fitted``); ``user``: its ``U`` with the set-aside
    real users folded in (the defended prediction is ``user @ fitted.item_factors.T``)."""

    subset: Subset
    fitted: ALSLearner
    user: np.ndarray


def fit_subset(
    train: Ratings,
    subset: Subset,
    fake: sp.csr_array,
    learner: ALSConfig,
    init: Factors | None = None,
) -> SubsetFit:
    """ALS on ``subset`` of ``train`` + ``fake`` (warm-started from ``init``), the set-aside
    real users folded in with all their ratings."""
    fitted = ALSLearner(learner).fit(
        train.with_matrix(subset.real), init=init, fake=subset.thin(fake)
    )
    user = fitted.user_factors.copy()
    if subset.set_aside.any():
        rows = np.flatnonzero(subset.set_aside)
        user[rows] = fold_in(train.matrix, fitted.item_factors, learner.lambda_u, rows)
    return SubsetFit(subset, fitted, user)


def _model(
    fit: SubsetFit,
    removed_real: np.ndarray,
    removed_fake: np.ndarray,
    info: dict[str, Any],
) -> DefendedModel:
    """A :class:`DefendedModel` of one ALS fit (its sweeps and convergence recorded)."""
    fitted = fit.fitted
    return DefendedModel(
        fit.user,
        fitted.item_factors.copy(),
        removed_real,
        removed_fake,
        fitted.converged,
        {"sweeps": fitted.n_sweeps, **info},
    )


def _weighted_model(
    problem: WeightedProblem, weights: np.ndarray, fit: WeightedFit, m: int, info: dict[str, Any]
) -> DefendedModel:
    """A :class:`DefendedModel` of a weighted fit (sweeps, KKT residual recorded)."""
    none = np.zeros(m, dtype=bool)
    kkt = problem.kkt_residual(weights, fit.user, fit.item)
    info = {"sweeps": fit.sweeps, "kkt_residual": kkt, **info}
    n_fake = problem.shape[0] - m
    return DefendedModel(fit.user[:m], fit.item, none, np.zeros(n_fake, bool), fit.converged, info)


def _initial_items(learner: ALSConfig, n_items: int) -> np.ndarray:
    """ALS's random start: ``init_scale * N(0, 1)`` item factors from ``default_rng(seed)``."""
    rng = np.random.default_rng(learner.seed)
    return learner.init_scale * rng.standard_normal((n_items, learner.rank))


# ---------------------------------------------------------------------------- defenses
def detect_and_remove(
    train: Ratings,
    fake: sp.csr_array,
    learner: ALSConfig,
    config: DetectRemoveConfig,
    score: ScoreFunction | None = None,
) -> DefendedModel:
    """Set aside the users scoring above the calibrated threshold, refit (module docstring).

    ``score`` replaces the config's detector (any :data:`ScoreFunction`; required for
    ``learned``).
    """
    subset, threshold = flagged_subset(train, fake, config, score)
    fit = fit_subset(train, subset, fake, learner)
    return _model(fit, subset.set_aside, ~subset.fake_rows, {"threshold": threshold})


def flagged_subset(
    train: Ratings,
    fake: sp.csr_array,
    config: DetectRemoveConfig,
    score: ScoreFunction | None = None,
) -> tuple[Subset, float]:
    """What detect-and-remove refits on: the users at or under the calibrated threshold
    (the flagged real users set aside, the flagged fake rows dropped); and the threshold."""
    score = score or detector_score(config.detector)
    m = train.n_users
    scores = np.asarray(score(combined(train, fake)), dtype=np.float64)
    if scores.shape != (m + fake.shape[0],) or not np.all(np.isfinite(scores)):
        raise DataError(f"detector {config.detector}: expected {m + fake.shape[0]} finite scores")
    reference = score(train.matrix) if config.calibration == "reference" else scores
    threshold = float(np.quantile(reference, 1 - config.fpr, method="higher"))
    flagged = scores > threshold
    real_out, fake_out = flagged[:m], flagged[m:]
    subset = Subset.of(_without_rows(train.matrix, real_out), fake, real_out, ~fake_out)
    return subset, threshold


def bagging(
    train: Ratings,
    fake: sp.csr_array,
    learner: ALSConfig,
    config: BaggingConfig,
    rng: np.random.Generator,
) -> DefendedModel:
    """Average of ``bags`` ALS fits on subsamples (bag ``b`` uses :func:`bag_learner`)."""
    models = []
    none_real, none_fake = np.zeros(train.n_users, bool), np.zeros(fake.shape[0], bool)
    for b, subset in enumerate(bag_subsets(train, fake, config, rng)):
        fit = fit_subset(train, subset, fake, bag_learner(learner, b))
        models.append(_model(fit, none_real, none_fake, {}))
    return DefendedModel.average(models, {"sweeps": [d.info["sweeps"] for d in models]})


def bag_learner(learner: ALSConfig, bag: int) -> ALSConfig:
    """Bag ``bag``'s learner: ``learner`` with seed ``seed + bag``."""
    return learner.replace(seed=learner.seed + bag)


def bag_subsets(
    train: IdMatrix, fake: sp.csr_array, config: BaggingConfig, rng: np.random.Generator
) -> list[Subset]:
    """Each bag's subsample, drawn in bag order with ``rng`` (it depends on the shapes and
    counts of ``train`` and ``fake``, not on the ratings' values). ``users``: a ``fraction``
    of all users, the real ones outside folded in, the fake ones outside dropped;
    ``ratings``: each rating kept with probability ``fraction``."""
    m, n_all = train.n_users, train.n_users + fake.shape[0]
    subsets = []
    for _ in range(config.bags):
        if config.unit == "users":
            keep = np.zeros(n_all, dtype=bool)
            keep[rng.choice(n_all, max(1, round(config.fraction * n_all)), replace=False)] = True
            real, rows, entries = _without_rows(train.matrix, ~keep[:m]), keep[m:], None
        else:
            real = _keep_entries(train.matrix, rng.random(train.nnz) < config.fraction)
            rows, entries = None, rng.random(fake.nnz) < config.fraction
        emptied = (np.diff(real.indptr) == 0) & (train.user_counts > 0)
        subsets.append(Subset.of(real, fake, emptied, rows, entries))
    return subsets


def trimmed(
    train: Ratings,
    fake: sp.csr_array,
    learner: ALSConfig,
    config: TrimmedConfig,
    known: PlainFits | None = None,
) -> DefendedModel:
    """Trimmed ALS (module docstring); residuals use every user's ALS fold-in against ``V``.

    ``fraction = 0`` is plain ALS; ``known``: plain fits to take the first round from.
    """
    result = trimmed_fit(train, fake, learner, config, known=known)
    model = _model(result.fit, result.removed_real, result.removed_fake, result.info)
    model.converged = result.converged
    return model


@dataclasses.dataclass
class TrimmedFit:
    """Trimmed ALS's last fit (on the ratings its last round kept), the users it removed
    (``users`` unit), its info and whether every fit of its rounds converged."""

    fit: SubsetFit
    removed_real: np.ndarray
    removed_fake: np.ndarray
    info: dict[str, Any]
    converged: bool


def trimmed_fit(
    train: Ratings,
    fake: sp.csr_array,
    learner: ALSConfig,
    config: TrimmedConfig,
    init: Factors | None = None,
    known: PlainFits | None = None,
) -> TrimmedFit:
    """The rounds of :func:`trimmed`; ``init`` warm-starts the first fit (on all the data);
    without it, a fit of ``known`` on the same data is the first round."""
    m = train.n_users
    everything = Subset.of(train.matrix, fake, np.zeros(m, bool))
    first = known.get(learner, train.matrix, fake) if known and init is None else None
    if first is not None:
        fit = SubsetFit(everything, first, first.user_factors.copy())
    else:
        fit = fit_subset(train, everything, fake, learner, init)
    matrix = combined(train, fake)
    counts = np.diff(matrix.indptr)
    real_out, fake_out = np.zeros(m, bool), np.zeros(fake.shape[0], bool)
    info: dict[str, Any] = {"sweeps": [fit.fitted.n_sweeps]}
    converged = fit.fitted.converged
    for _ in range(config.rounds if config.fraction > 0 else 0):
        fitted = fit.fitted
        item = fitted.item_factors
        everyone = fold_in(matrix, item, learner.lambda_u)
        rows = np.repeat(np.arange(matrix.shape[0]), counts)
        residual = matrix.data - np.einsum("pk,pk->p", everyone[rows], item[matrix.indices])
        start = Factors(fitted.user_factors, item, fitted.fake_user_factors)
        if config.unit == "ratings":
            keep = np.ones(matrix.nnz, dtype=bool)
            keep[
                np.argsort(-np.abs(residual), kind="stable")[: int(config.fraction * matrix.nnz)]
            ] = False
            real = _keep_entries(train.matrix, keep[: train.nnz])
            emptied = (np.diff(real.indptr) == 0) & (train.user_counts > 0)
            subset = Subset.of(real, fake, emptied, fake_entries=keep[train.nnz :])
            info["dropped_real_ratings"] = int(train.nnz - real.nnz)
            info["dropped_fake_ratings"] = int(fake.nnz - subset.fake_entries.sum())
        else:
            sq = np.bincount(rows, weights=residual**2, minlength=len(counts))
            mean_sq = sq / np.maximum(counts, 1)
            out = np.zeros(len(counts), dtype=bool)
            out[np.argsort(-mean_sq, kind="stable")[: int(config.fraction * len(counts))]] = True
            real_out, fake_out = out[:m], out[m:]
            entries = ~np.repeat(fake_out, np.diff(fake.indptr))
            real = _without_rows(train.matrix, real_out)
            subset = Subset.of(real, fake, real_out, fake_entries=entries)
        fit = fit_subset(train, subset, fake, learner, init=start)
        info["sweeps"].append(fit.fitted.n_sweeps)
        converged = converged and fit.fitted.converged
    return TrimmedFit(fit, real_out, fake_out, info, converged)


class PlainFits:
    """Plain ALS fits already computed (the clean model, its reseeded twin, the undefended
    poisoned models), by learner config and the content of the ratings and fake rows they
    were fitted on. A defense whose first fit is plain ALS on the same data (trimmed ALS's
    first round) takes the stored fit instead of refitting: the same model, bit for bit."""

    def __init__(self) -> None:
        self._fits: dict[tuple[str, str], ALSLearner] = {}

    @staticmethod
    def _key(learner: ALSConfig, train: sp.csr_array, fake: sp.csr_array) -> tuple[str, str]:
        digest = hashlib.blake2b(digest_size=16)
        for matrix in (train, fake):
            digest.update(np.asarray(matrix.shape, dtype=np.int64).tobytes())
            for part in (matrix.indptr, matrix.indices, matrix.data):
                digest.update(np.ascontiguousarray(part).tobytes())
        return learner.to_json(), digest.hexdigest()

    def add(self, fitted: ALSLearner, train: sp.csr_array, fake: sp.csr_array) -> None:
        """Keep ``fitted``, an ALS fit of its config on ``train`` plus ``fake`` from its own
        random start."""
        self._fits[self._key(fitted.config, train, fake)] = fitted

    def get(self, learner: ALSConfig, train: sp.csr_array, fake: sp.csr_array) -> ALSLearner | None:
        return self._fits.get(self._key(learner, train, fake))


def weighted_fit(
    problem: WeightedProblem, weights: np.ndarray, item: np.ndarray, learner: ALSConfig
) -> WeightedFit:
    """:func:`weighted_als` from ``item`` with the learner's caps, tolerances and Anderson
    memory."""
    return weighted_als(
        problem,
        weights,
        item,
        learner.max_sweeps,
        learner.tol,
        learner.kkt_tol,
        learner.anderson_memory,
    )


@dataclasses.dataclass
class ReweightedFit:
    """A reweighting defense's fit of the combined matrix (real rows, then fake rows), and the
    objective it is stationary for (``docs/math.md`` section 3.6)::

        L = sum_Omega c_i rho(X_ij - u_i.v_j) + sum_i a_i |u_i|^2 + sum_j b_j |v_j|^2

    Attributes:
        problem: the combined matrix and the per-row ``a_i`` (``lam_users``), ``b_j``.
        weights: the weights of the last weighted ALS (Huber: IRLS's last weights).
        fit: the factors (all rows) and how the sweeps ended.
        row_weights: ``c_i`` per row (the same for each of its ratings).
        delta: Huber's threshold (``rho`` Huber); ``inf``: ``rho(r) = r^2``.
        info: the defense's own numbers; start: Huber's plain ALS start (warm start).
    """

    problem: WeightedProblem
    weights: np.ndarray
    fit: WeightedFit
    row_weights: np.ndarray
    delta: float
    info: dict[str, Any]
    start: Factors | None = None

    @property
    def converged(self) -> bool:
        """Whether every fit inside the defense reached its tolerance."""
        return self.fit.converged

    def model(self, m: int) -> DefendedModel:
        """The :class:`DefendedModel` of the ``m`` real users (sweeps, KKT residual recorded)."""
        return _weighted_model(self.problem, self.weights, self.fit, m, self.info)


#: Most IRLS steps of a fit to Huber's fixed point (:func:`huber_fit` with ``stationary``).
MAX_IRLS_STEPS = 300


def huber_fit(
    train: Ratings,
    fake: sp.csr_array,
    learner: ALSConfig,
    config: HuberConfig,
    init: ReweightedFit | None = None,
    stationary: bool = False,
) -> ReweightedFit:
    """IRLS for the Huber loss (module docstring): ``config.iterations`` steps from the plain
    ALS fit of the data (warm from ``init``'s start when given).

    ``stationary``: instead, IRLS steps (from ``init``'s fit when given) until the Huber
    objective's relative KKT residual is at most the learner's ``kkt_tol`` (at most
    :data:`MAX_IRLS_STEPS`): the estimator that the defense's steps approximate, a stationary
    point of the Huber objective (``converged`` says whether it was reached).
    """
    matrix = combined(train, fake)
    problem = WeightedProblem.build(
        matrix,
        np.full(matrix.shape[0], learner.lambda_u),
        np.full(train.n_items, learner.lambda_v),
    )
    if stationary and init is not None:
        start, user, item = init.start, init.fit.user, init.fit.item
        sweeps, converged = [0], True
    else:
        als = ALSLearner(learner).fit(train, init=init.start if init else None, fake=fake)
        start = als.factors.copy()
        user = np.vstack([als.user_factors, als.fake_user_factors])
        item = als.item_factors
        sweeps, converged = [als.n_sweeps], als.converged

    def irls_weights() -> np.ndarray:
        residual = np.abs(problem.residuals(user, item))
        return np.minimum(1.0, config.delta / np.maximum(residual, np.finfo(float).tiny))

    def huber_kkt() -> float:  # w r = clip(r): the weighted gradient at IRLS weights is Huber's
        return problem.kkt_residual(irls_weights(), user, item)

    weights = irls_weights()
    steps = MAX_IRLS_STEPS if stationary else config.iterations
    for _ in range(steps):
        if stationary and huber_kkt() <= learner.kkt_tol:
            break
        weights = irls_weights()
        fit = weighted_fit(problem, weights, item, learner)
        user, item = fit.user, fit.item
        sweeps.append(fit.sweeps)
        converged = converged and fit.converged
    info: dict[str, Any] = {
        "irls_sweeps": sweeps,
        # how far the last weights are from their fixed point (0: IRLS has converged)
        "irls_weight_change": float(np.max(np.abs(irls_weights() - weights), initial=0.0)),
        "mean_weight_real": float(np.mean(weights[: train.nnz])) if train.nnz else math.nan,
        "mean_weight_fake": float(np.mean(weights[train.nnz :])) if fake.nnz else math.nan,
    }
    if stationary:
        info["huber_kkt_residual"] = kkt = huber_kkt()
        converged = converged and kkt <= learner.kkt_tol
    return ReweightedFit(
        problem,
        weights,
        WeightedFit(user, item, math.nan, sum(sweeps), converged),
        np.ones(matrix.shape[0]),
        config.delta,
        info,
        start,
    )


def huber(
    train: Ratings,
    fake: sp.csr_array,
    learner: ALSConfig,
    config: HuberConfig,
) -> DefendedModel:
    """IRLS for the Huber loss (module docstring), from the plain ALS fit of the data."""
    return huber_fit(train, fake, learner, config).model(train.n_users)


def influence_cap_fit(
    train: Ratings,
    fake: sp.csr_array,
    learner: ALSConfig,
    config: InfluenceCapConfig,
    init: ReweightedFit | None = None,
) -> ReweightedFit:
    """Weighted ALS with user weights ``c_i = min(1, cap * median / n_i)`` (module docstring),
    from ALS's random start (``init``'s items when given)."""
    matrix = combined(train, fake)
    counts = np.diff(matrix.indptr)
    median = float(np.median(counts[counts > 0])) if matrix.nnz else 1.0
    cap = np.minimum(1.0, config.cap * median / np.maximum(counts, 1))
    weights = np.repeat(cap, counts)
    problem = WeightedProblem.build(
        matrix, learner.lambda_u * cap, np.full(train.n_items, learner.lambda_v)
    )
    items = init.fit.item if init else _initial_items(learner, train.n_items)
    fit = weighted_fit(problem, weights, items, learner)
    info = {
        "median_profile": median,
        "capped_real": int(np.sum(cap[: train.n_users] < 1)),
        "capped_fake": int(np.sum(cap[train.n_users :] < 1)),
    }
    return ReweightedFit(problem, weights, fit, cap, math.inf, info)


def influence_cap(
    train: Ratings,
    fake: sp.csr_array,
    learner: ALSConfig,
    config: InfluenceCapConfig,
) -> DefendedModel:
    """Weighted ALS with user weights ``c_i = min(1, cap * median / n_i)`` (module docstring)."""
    return influence_cap_fit(train, fake, learner, config).model(train.n_users)


def als_wr_fit(
    train: Ratings,
    fake: sp.csr_array,
    learner: ALSConfig,
    config: ALSWRConfig,
    init: ReweightedFit | None = None,
) -> ReweightedFit:
    """ALS-WR's fit (:func:`als_wr`), from ALS's random start (``init``'s items when given)."""
    matrix = combined(train, fake)
    user_counts = np.maximum(np.diff(matrix.indptr), 1)
    item_counts = np.maximum(np.bincount(matrix.indices, minlength=train.n_items), 1)
    problem = WeightedProblem.build(matrix, config.lam * user_counts, config.lam * item_counts)
    weights = np.ones(matrix.nnz)
    items = init.fit.item if init else _initial_items(learner, train.n_items)
    fit = weighted_fit(problem, weights, items, learner)
    return ReweightedFit(problem, weights, fit, np.ones(matrix.shape[0]), math.inf, {})


def als_wr(
    train: Ratings,
    fake: sp.csr_array,
    learner: ALSConfig,
    config: ALSWRConfig,
) -> DefendedModel:
    """ALS-WR: ``L`` with ``lam n_i |u_i|^2 + lam n_j |v_j|^2`` (counts of at least 1)."""
    return als_wr_fit(train, fake, learner, config).model(train.n_users)


#: The defenses that fit a weighted objective (:class:`ReweightedFit`).
ReweightedConfig = HuberConfig | InfluenceCapConfig | ALSWRConfig


def reweighted_fit(
    train: Ratings,
    fake: sp.csr_array,
    learner: ALSConfig,
    config: ReweightedConfig,
    init: ReweightedFit | None = None,
    stationary: bool = False,
) -> ReweightedFit:
    """The fit of a reweighting defense (``init``: an earlier fit to warm-start from;
    ``stationary``: Huber's IRLS to its fixed point, :func:`huber_fit`)."""
    if isinstance(config, HuberConfig):
        return huber_fit(train, fake, learner, config, init, stationary)
    if isinstance(config, InfluenceCapConfig):
        return influence_cap_fit(train, fake, learner, config, init)
    return als_wr_fit(train, fake, learner, config, init)


def defense_from_spec(spec: str, detect: dict[str, Any] | None = None) -> DefenseConfig:
    """``NAME[:KEY=VALUE,...]`` (values read as JSON when they parse) as a defense config;
    ``detect`` fills detect-and-remove settings that the spec leaves out."""
    name, _, rest = spec.partition(":")
    if name not in DEFENSES:
        raise ConfigError(f"unknown defense {name!r} (one of {', '.join(DEFENSES)})")
    fields: dict[str, Any] = {"name": name}
    if name == "detect_remove":
        fields.update(detect or {})
    for item in filter(None, rest.split(",")):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"defense {spec!r}: expected KEY=VALUE, got {item!r}")
        try:
            fields[key] = json.loads(value)
        except json.JSONDecodeError:
            fields[key] = value
    return DEFENSES[name].from_dict(fields)


def defend(
    train: Ratings,
    fake: sp.csr_array,
    config: DefenseConfig,
    learner: ALSConfig,
    rng: np.random.Generator,
    score: ScoreFunction | None = None,
    known: PlainFits | None = None,
) -> DefendedModel:
    """Apply the defense ``config`` to ``train`` + ``fake`` (``rng``: bagging's draws;
    ``score``: detect-and-remove's score function, default its config's detector; ``known``:
    plain ALS fits already computed, :class:`PlainFits`)."""
    if isinstance(config, DetectRemoveConfig):
        return detect_and_remove(train, fake, learner, config, score)
    if isinstance(config, BaggingConfig):
        return bagging(train, fake, learner, config, rng)
    if isinstance(config, TrimmedConfig):
        return trimmed(train, fake, learner, config, known)
    if isinstance(config, HuberConfig):
        return huber(train, fake, learner, config)
    if isinstance(config, InfluenceCapConfig):
        return influence_cap(train, fake, learner, config)
    return als_wr(train, fake, learner, config)
