"""Promotion attacks on implicit-feedback rankers (WRMF, BPR): fake users as sets of items.

Threat: ``m' = ceil(alpha m)`` fake users, each interacting with every target and with at most
``B`` items in all (default: the median real profile length), weight 1 on each.

Goal: the targets' hit ratio at K over the users without an interaction with them, through
its smooth surrogate, the ranking utility with the softplus loss over each user's clean top-K
(``docs/math.md`` section 7.3; T a tenth of the clean candidates' score spread).

Methods:

* ``pga``: vertex steps on the B-sparse box: at a binary profile the exact gradient
  ``G = dR/dW`` (every entry, through the learner's adjoint system) prices each exchange of a
  held filler ``j`` for an unheld item ``l`` at ``G_fl - G_fj``; a step makes the ``s`` best
  positive exchanges per profile, backtracking halves ``s`` until the refitted utility rises;
  ``pool`` > 0 lets a step bring in only the ``pool`` items most co-interacted with the
  targets' users (``benchmarks/RESULTS.md``: it did not hold on a second split, so it is off);
* ``robust``: the same on the mean utility over surrogate learners (:func:`default_surrogates`);
* ``random``, ``popular`` (fillers half among the 5% most popular items) and ``covisitation``
  (fillers in proportion to their co-interactions with the targets): the frameworks' baselines.

Results are :class:`PromotionResult`: profiles, per-step history, metrics; nothing prints.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import scipy.sparse as sp

from cfpoison.attacks.engine import count_untrustworthy
from cfpoison.attacks.gradient import utility_gradient
from cfpoison.attacks.utility import Utility, candidate_pattern
from cfpoison.config import JsonConfig, require, require_ranges
from cfpoison.data.interactions import Interactions
from cfpoison.data.profiles import profile_sizes
from cfpoison.errors import BudgetError, ConfigError
from cfpoison.learners import (
    BPRConfig,
    BPRLearner,
    ImplicitLearnerConfig,
    WRMFConfig,
    WRMFLearner,
    build_learner,
)
from cfpoison.learners.base import Factors, caps_expected
from cfpoison.models.measures import hit_ratio, ndcg
from cfpoison.models.ranking import top_unrated

ImplicitLearner = WRMFLearner | BPRLearner
PromotionMethod = Literal["pga", "robust", "random", "popular", "covisitation"]
METHODS: tuple[str, ...] = ("pga", "robust", "random", "popular", "covisitation")
#: T = this fraction of the standard deviation of the clean candidates' scores.
TEMPERATURE_FRACTION = 0.1
#: Most halvings of the swap count in one step's backtracking.
MAX_HALVINGS = 5
#: The sweep cap of a WRMF refit inside the attack (a warm refit takes 60-500 sweeps; fake
#: profiles sharing the targets make slow modes that can take thousands).
REFIT_SWEEPS = 600
#: The cut-offs every promotion is measured at.
CUTOFFS = (10, 50)


@dataclasses.dataclass(frozen=True)
class PromotionConfig(JsonConfig):
    """Everything that determines a promotion attack's result.

    Attributes:
        method: one of :data:`METHODS` (module docstring).
        learner: the attacked learner (Kerckhoffs: the attacker knows it).
        alpha: fake users as a fraction of the normal users, ``m' = ceil(alpha m)``.
        items_per_user: ``B``, the most items one fake user interacts with, targets included
            (0: the median real profile length).
        targets: the data set's ids of the target items; empty: ``n_targets`` drawn with the
            seed among the unpopular items (interacted with by at least one and at most the
            median number of users, ARLib's "unpopular" targets).
        n_targets: how many targets to draw when ``targets`` is empty.
        top_k: K of the hit ratio the attack promotes (and of its candidates C_i).
        iterations: gradient steps (``pga``, ``robust``).
        swaps: the first step's swaps per profile (0: half the fillers).
        start: the baseline whose profiles the gradient steps start from (``pga``, ``robust``).
        pool: the items the gradient steps may bring in: the ``pool`` most co-interacted with
            the targets' users (0: every item).
        surrogates: the robust method's learners (empty: :func:`default_surrogates`).
        solve_tol, solve_max_iter: the adjoint solve's true relative residual and cap.
        seed: seeds everything random (targets, fillers, the starting profiles).
    """

    kind: ClassVar[str] = "promotion"
    method: PromotionMethod = "robust"
    learner: WRMFConfig | BPRConfig = dataclasses.field(default_factory=WRMFConfig)
    alpha: float = 0.01
    items_per_user: int = 0
    targets: tuple[int, ...] = ()
    n_targets: int = 5
    top_k: int = 50
    iterations: int = 8
    swaps: int = 0
    start: Literal["random", "popular", "covisitation"] = "covisitation"
    pool: int = 0
    surrogates: tuple[WRMFConfig | BPRConfig, ...] = ()
    solve_tol: float = 1e-4
    solve_max_iter: int = 500
    seed: int = 0

    def __post_init__(self) -> None:
        require(self.method in METHODS, f"method must be one of {', '.join(METHODS)}")
        require(0 < self.alpha <= 1, f"alpha must be in (0, 1], got {self.alpha}")
        require(self.items_per_user >= 0, "items_per_user must be >= 0 (0: the median)")
        require_ranges(self, n_targets=">= 1", top_k=">= 1", iterations=">= 0", swaps=">= 0")
        require(self.pool >= 0, f"pool must be >= 0 (0: every item), got {self.pool}")
        require(0 < self.solve_tol < 1, f"solve_tol must be in (0, 1), got {self.solve_tol}")
        require(self.solve_max_iter >= 1, "solve_max_iter must be >= 1")
        require(self.seed >= 0, f"seed must be >= 0, got {self.seed}")


@dataclasses.dataclass
class PromotionResult:
    """What :func:`run_promotion` computed.

    Attributes:
        config: the config that produced it.
        fake: ``m' x n`` CSR of interaction weights (1 on each profile's items).
        fake_user_ids: ids for the fake users, above every real user id.
        targets: the target columns; target_ids: their data set ids.
        history: one record per step (utility, swaps, gradient diagnostics, seconds, and the
            sweeps of its refits, every surrogate and backtracking candidate together).
        metrics: :func:`promotion_metrics` on the attacked learner, plus the run's figures.
    """

    config: PromotionConfig
    fake: sp.csr_array
    fake_user_ids: np.ndarray
    targets: np.ndarray
    target_ids: list[int]
    history: list[dict[str, Any]]
    metrics: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "targets": self.target_ids,
            "n_fake": int(self.fake.shape[0]),
            "history": self.history,
            "metrics": self.metrics,
        }


def fit_implicit(
    config: ImplicitLearnerConfig,
    train: Interactions,
    fake: sp.csr_array | None = None,
    init: Factors | None = None,
) -> ImplicitLearner:
    """``config`` fitted on ``train`` plus ``fake``, warm-started from ``init``."""
    return build_learner(config).fit(train, init=init, fake=fake)


def draw_targets(train: Interactions, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` distinct unpopular columns: interacted with by at least one and at most the
    median number of users (among items with any interaction)."""
    counts = train.item_counts
    seen = counts[counts > 0]
    if len(seen) == 0:
        raise BudgetError("no item has an interaction: nothing to promote")
    pool = np.flatnonzero((counts > 0) & (counts <= np.median(seen)))
    if len(pool) < count:
        raise BudgetError(f"{count} targets asked, only {len(pool)} unpopular items")
    return np.sort(rng.choice(pool, size=count, replace=False))


def budget(train: Interactions, config: PromotionConfig, n_targets: int) -> tuple[int, int]:
    """``(m', B)``: fake users and items per profile (targets included)."""
    b = config.items_per_user or int(np.median(train.user_counts))
    if b < n_targets:
        raise BudgetError(f"B = {b} items per fake user cannot hold {n_targets} targets")
    if b > train.n_items:
        raise BudgetError(f"B = {b} items per fake user, but there are {train.n_items} items")
    return math.ceil(config.alpha * train.n_users), b


def profiles(columns: Sequence[np.ndarray], n_items: int) -> sp.csr_array:
    """The ``m' x n`` CSR with weight 1 on each row's columns."""
    rows = [np.unique(c) for c in columns]
    indptr = np.concatenate([[0], np.cumsum([len(r) for r in rows])])
    indices = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    return sp.csr_array((np.ones(len(indices)), indices, indptr), shape=(len(rows), n_items))


def baseline_profiles(
    method: str,
    train: Interactions,
    targets: np.ndarray,
    n_fake: int,
    b: int,
    rng: np.random.Generator,
) -> sp.csr_array:
    """The targets plus ``B - |targets|`` fillers per profile (module docstring):
    ``random`` uniform over the other items, ``popular`` half among the 5% most popular
    items and half uniform, ``covisitation`` in proportion to co-interactions with the
    targets (uniform where there are too few)."""
    n, fillers = train.n_items, b - len(targets)
    weights = np.ones(n)
    if method == "popular":
        counts = train.item_counts.astype(np.float64)
        top = np.argsort(-counts, kind="stable")[: max(fillers, math.ceil(0.05 * n))]
        weights = np.zeros(n)
        weights[top] = 1.0
    elif method == "covisitation":
        weights = covisitation(train, targets)
    elif method != "random":
        raise ConfigError(f"unknown baseline {method!r}")
    weights[targets] = 0.0
    columns = []
    for _ in range(n_fake):
        chosen = _draw(weights, fillers, rng)
        if method == "popular":  # the other half uniform, as bandwagon profiles do
            keep = chosen[: fillers - fillers // 2]
            rest = np.ones(n)
            rest[targets] = rest[keep] = 0.0
            chosen = np.concatenate([keep, _draw(rest, fillers // 2, rng)])
        columns.append(np.concatenate([targets, chosen]))
    return profiles(columns, n)


def covisitation(train: Interactions, targets: np.ndarray) -> np.ndarray:
    """Each item's interactions from the users who interacted with a target."""
    likers = np.flatnonzero(np.asarray(train.matrix[:, targets].sum(axis=1)).ravel() > 0)
    return np.bincount(train.matrix[likers].indices, minlength=train.n_items).astype(np.float64)


def candidate_items(train: Interactions, targets: np.ndarray, pool: int) -> np.ndarray:
    """The mask of the items a gradient step may bring in: the ``pool`` most co-interacted
    with the targets' users (ties by column; 0: every item)."""
    if pool == 0:
        return np.ones(train.n_items, dtype=bool)
    weights = covisitation(train, targets)
    allowed = np.zeros(train.n_items, dtype=bool)
    allowed[np.argsort(-weights, kind="stable")[:pool]] = True
    return allowed & (weights > 0)


def _draw(weights: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` distinct columns in proportion to ``weights``, topped up uniformly over the
    other columns (never the zero-weight ones that are excluded: weight 0 and not in use)."""
    positive = np.flatnonzero(weights > 0)
    take = min(count, len(positive))
    chosen = (
        rng.choice(
            positive, size=take, replace=False, p=weights[positive] / weights[positive].sum()
        )
        if take
        else np.zeros(0, dtype=np.int64)
    )
    if take < count:
        free = np.setdiff1d(np.flatnonzero(weights == 0), chosen)
        chosen = np.concatenate([chosen, rng.choice(free, size=count - take, replace=False)])
    return chosen.astype(np.int64)


@dataclasses.dataclass
class _Surrogate:
    """One learner the attack ascends on: its config, clean fit, utility and last adjoint."""

    config: ImplicitLearnerConfig
    clean: ImplicitLearner
    utility: Utility
    adjoint: np.ndarray | None = None
    fitted: ImplicitLearner | None = None


def promotion_utility(
    train: Interactions, clean: ImplicitLearner, targets: np.ndarray, top_k: int
) -> Utility:
    """The smoothed-rank utility of the targets against ``clean`` (module docstring)."""
    omega = train.matrix
    top = top_unrated(omega, clean.user_factors, clean.item_factors, top_k, exclude=targets)
    pattern = candidate_pattern(top, train.n_items)
    rows = np.repeat(np.arange(pattern.shape[0]), np.diff(pattern.indptr))
    scores = np.einsum("pk,pk->p", clean.user_factors[rows], clean.item_factors[pattern.indices])
    spread = float(np.std(scores)) if len(scores) else 1.0
    return Utility(
        0.0,
        0.0,
        omega,
        clean.user_factors,
        clean.item_factors,
        np.asarray(targets, dtype=np.int64),
        np.ones(len(targets)),
        mu3=1.0,
        candidates=pattern,
        temperature=max(TEMPERATURE_FRACTION * spread, 1e-6),
        ranking_loss="softplus",
    )


def default_surrogates(learner: ImplicitLearnerConfig) -> tuple[ImplicitLearnerConfig, ...]:
    """The attacked learner itself, at another seed and at half its rank (BPR's fits cost
    minutes on ml-latest-small, so the other family is an explicit choice)."""
    return (
        learner,
        learner.replace(seed=learner.seed + 1),
        learner.replace(rank=max(learner.rank // 2, 1), seed=learner.seed + 3),
    )


def run_promotion(
    train: Interactions,
    config: PromotionConfig,
    *,
    clean: ImplicitLearner | None = None,
    progress: Callable[[str], None] | None = None,
) -> PromotionResult:
    """Compute the fake profiles of ``config`` against ``train`` and measure them on the
    attacked learner (``clean``: its fit on ``train``, computed when not given)."""
    start = time.perf_counter()
    clean = clean or fit_implicit(config.learner, train)
    fake, targets, history, _ = promotion_profiles(train, config, clean, progress)
    metrics = promotion_metrics(train, fake, config.learner, targets, clean=clean)
    metrics["seconds"] = time.perf_counter() - start
    metrics["untrustworthy_gradients"] = count_untrustworthy(history)
    start_id = int(np.max(train.user_ids)) + 1 if train.n_users else 1
    n_fake = fake.shape[0]
    return PromotionResult(
        config,
        fake,
        np.arange(start_id, start_id + n_fake),
        targets,
        [int(i) for i in train.item_ids[targets]],
        history,
        metrics,
    )


def promotion_profiles(
    train: Interactions,
    config: PromotionConfig,
    clean: ImplicitLearner,
    progress: Callable[[str], None] | None = None,
) -> tuple[sp.csr_array, np.ndarray, list[dict[str, Any]], ImplicitLearner | None]:
    """The fake profiles of ``config`` (``clean``: the attacked learner fitted on ``train``),
    the target columns, the per-step history, unmeasured, and the attacked learner as the
    attack last refitted it on them (None when no step refits it: the baselines, or
    surrogates without it)."""
    rng = np.random.default_rng(config.seed)
    if config.targets:
        targets = np.sort(train.item_index(np.asarray(config.targets)))
    else:
        targets = draw_targets(train, config.n_targets, rng)
    n_fake, b = budget(train, config, len(targets))
    history: list[dict[str, Any]] = []
    if config.method not in ("pga", "robust"):
        fake = baseline_profiles(config.method, train, targets, n_fake, b, rng)
        return fake, targets, history, None
    start_fake = baseline_profiles(config.start, train, targets, n_fake, b, rng)
    learners = (
        (config.learner,)
        if config.method == "pga"
        else (config.surrogates or default_surrogates(config.learner))
    )
    surrogates = [
        _Surrogate(c, fitted, promotion_utility(train, fitted, targets, config.top_k))
        for c in learners
        for fitted in [clean if c == config.learner else fit_implicit(c, train)]
    ]
    allowed = candidate_items(train, targets, config.pool)
    fake = _ascend(train, surrogates, start_fake, targets, allowed, config, history, progress)
    attacked = next((s.fitted for s in surrogates if s.config == config.learner), None)
    return fake, targets, history, attacked


def _ascend(
    train: Interactions,
    surrogates: list[_Surrogate],
    fake: sp.csr_array,
    targets: np.ndarray,
    allowed: np.ndarray,
    config: PromotionConfig,
    history: list[dict[str, Any]],
    progress: Callable[[str], None] | None,
) -> sp.csr_array:
    """Vertex steps with backtracking on the mean utility, bringing in ``allowed`` items only
    (module docstring)."""
    value, fits = _refit(train, surrogates, fake)
    _commit(surrogates, fits)
    fillers = int(np.diff(fake.indptr).max()) - len(targets)
    swaps = config.swaps or max(fillers // 2, 1)
    history.append(
        {"step": 0, "utility": value, "swaps": 0, "seconds": 0.0, "sweeps": _sweeps(fits)}
    )
    for step in range(1, config.iterations + 1):
        t0 = time.perf_counter()
        gradient, diagnostics = _mean_gradient(train, surrogates, fake, config)
        accepted, sweeps = False, 0
        for _ in range(MAX_HALVINGS + 1):
            moved, made = _swap(fake, gradient, targets, swaps, allowed)
            if made == 0:
                break
            candidate, fits = _refit(train, surrogates, moved)
            sweeps += _sweeps(fits)
            if candidate > value:
                fake, value, accepted = moved, candidate, True
                _commit(surrogates, fits)
                break
            swaps = max(swaps // 2, 1)
            if made <= len(surrogates) and swaps == 1:
                break
        history.append(
            {
                "step": step,
                "utility": value,
                "swaps": swaps if accepted else 0,
                "accepted": accepted,
                "gradients": diagnostics,
                "seconds": time.perf_counter() - t0,
                "sweeps": sweeps,
            }
        )
        if progress is not None:
            record = history[-1]
            progress(
                f"step {step}: utility {value:.4g} ({'accepted' if accepted else 'no ascent'}, "
                f"{record['sweeps']} refit sweeps, {record['seconds']:.1f} s)"
            )
        if not accepted:
            break
    return fake


def _refit(
    train: Interactions, surrogates: list[_Surrogate], fake: sp.csr_array
) -> tuple[float, list[ImplicitLearner]]:
    """The mean utility after refitting each surrogate on ``train + fake`` (warm-started from
    its last accepted fit), and the refits."""
    values, fits = [], []
    for s in surrogates:
        fitted = attack_refit(s.config, train, fake, s.fitted or s.clean)
        values.append(s.utility.value(fitted.user_factors, fitted.item_factors))
        fits.append(fitted)
    return float(np.mean(values)), fits


def _sweeps(fits: Sequence[ImplicitLearner]) -> int:
    """The sweeps (BPR: Newton iterations) of ``fits`` together."""
    return sum(f.n_sweeps for f in fits)


def attack_refit(
    config: ImplicitLearnerConfig, train: Interactions, fake: sp.csr_array, last: ImplicitLearner
) -> ImplicitLearner:
    """``config`` refitted on ``train + fake`` as the attack refits it: warm from ``last``
    (fake users from its fake factors when the count matches, else 0), WRMF capped at
    :data:`REFIT_SWEEPS` (an unconverged refit is reported by its gradient's record)."""
    init = last.factors
    start = Factors(init.user, init.item, _fake_start(init, fake))
    if isinstance(config, WRMFConfig):
        config = config.replace(max_sweeps=min(config.max_sweeps, REFIT_SWEEPS))
    with caps_expected():
        return fit_implicit(config, train, fake, start)


def _commit(surrogates: list[_Surrogate], fits: list[ImplicitLearner]) -> None:
    for s, fitted in zip(surrogates, fits, strict=True):
        s.fitted = fitted


def _fake_start(init: Factors, fake: sp.csr_array) -> np.ndarray:
    rows = fake.shape[0]
    if init.fake_user.shape[0] == rows:
        return init.fake_user
    return np.zeros((rows, init.item.shape[1]))


def _mean_gradient(
    train: Interactions,
    surrogates: list[_Surrogate],
    fake: sp.csr_array,
    config: PromotionConfig,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """The mean over surrogates of ``dR_s/dW`` on every ``m' x n`` entry, each normalised by
    its largest magnitude (so that no surrogate's scale dominates), and the diagnostics."""
    total = np.zeros(fake.shape)
    diagnostics = []
    for s in surrogates:
        assert s.fitted is not None
        grad = utility_gradient(
            s.fitted,
            train.matrix,
            fake,
            s.utility,
            solve_tol=config.solve_tol,
            solve_max_iter=config.solve_max_iter,
            warm_start=s.adjoint,
        )
        s.adjoint = grad.adjoint
        dense = grad.dense()
        scale = float(np.max(np.abs(dense)))
        total += dense / scale if scale > 0 else dense
        diagnostics.append(
            {"learner": s.config.name, "utility": grad.utility, **grad.diagnostics()}
        )
    return total / len(surrogates), diagnostics


def _swap(
    fake: sp.csr_array,
    gradient: np.ndarray,
    targets: np.ndarray,
    swaps: int,
    allowed: np.ndarray | None = None,
) -> tuple[sp.csr_array, int]:
    """Each profile with up to ``swaps`` of its held fillers exchanged for unheld items (of
    ``allowed``, a mask; default every item), the pairs of largest positive first-order gain
    ``G_fl - G_fj`` (targets never move)."""
    columns, made = [], 0
    protected = np.zeros(fake.shape[1], dtype=bool)
    protected[targets] = True
    for f in range(fake.shape[0]):
        held = fake.indices[fake.indptr[f] : fake.indptr[f + 1]]
        g = gradient[f]
        fillers = held[~protected[held]]
        free = np.ones(fake.shape[1], dtype=bool) if allowed is None else allowed.copy()
        free[held] = False
        free[protected] = False
        unheld = np.flatnonzero(free)
        worst = fillers[np.argsort(g[fillers], kind="stable")][:swaps]
        best = unheld[np.argsort(-g[unheld], kind="stable")][: len(worst)]
        gain = g[best] - g[worst]
        k = int(np.sum(gain > 0))  # both sorted: the first k pairs gain
        made += k
        columns.append(np.concatenate([np.setdiff1d(held, worst[:k]), best[:k]]))
    return profiles(columns, fake.shape[1]), made


def promotion_metrics(
    train: Interactions,
    fake: sp.csr_array,
    learner: ImplicitLearnerConfig,
    targets: np.ndarray,
    *,
    clean: ImplicitLearner | None = None,
    cutoffs: Sequence[int] = CUTOFFS,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The targets' HR@K and NDCG@K (means over targets; per target too) on the learner
    fitted clean (seed s), poisoned (seed s) and clean at seed s + 1 (the noise floor: the
    change of each measure between two clean fits); ``progress`` is called before each fit."""
    say = progress or (lambda _: None)
    if clean is None:
        say("clean fit")
        clean = fit_implicit(learner, train)
    say("poisoned fit")
    poisoned = fit_implicit(learner, train, fake)
    say(f"clean fit at seed {learner.seed + 1} (the floor)")
    other = fit_implicit(learner.replace(seed=learner.seed + 1), train)
    sizes = profile_sizes(fake)
    out: dict[str, Any] = {"n_fake": sizes["n_fake"], "items_per_fake": sizes["items"]}
    omega = train.matrix
    for k in cutoffs:
        for name, measure in (("hr", hit_ratio), ("ndcg", ndcg)):
            before = measure(omega, clean, targets, k)
            after = measure(omega, poisoned, targets, k)
            reseeded = measure(omega, other, targets, k)
            out[f"{name}@{k}_before"] = float(np.nanmean(before))
            out[f"{name}@{k}_after"] = float(np.nanmean(after))
            out[f"{name}@{k}_floor"] = float(np.nanmean(np.abs(reseeded - before)))
            out[f"{name}@{k}_per_target_after"] = [float(v) for v in after]
    out["converged"] = bool(clean.converged and poisoned.converged and other.converged)
    return out
