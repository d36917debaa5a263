"""SGLD: fake users that mimic normal users (paper section 4.3, Algorithm 2, Eq. 15-17).

Samples the fake matrix ``M~`` (``m' x n``, shifted scale) from the posterior
``log p(M~ | M) = -sum_ij (M~_ij - xi_j)^2 / (2 sigma_j^2) + beta R(M~) + const``: an item-wise
Gaussian prior of the normal users (``prior="paper"``: moments over all ``m`` users, unrated
entries as 0; ``"observed"``: over each item's observed ratings; ``"centred"``: observed
ratings minus their user's mean) tilted by the utility ``R`` at the learner's solution, whose
gradient ``dR/dM~`` is the exact implicit one. One step, ``s_t = s_0 (1 + t)^(-gamma)``::

    M~ <- M~ + (s_t / 2) P grad log p(M~ | M) + sqrt(s_t) P^(1/2) eps,   eps ~ N(0, I)

``preconditioner="identity"`` is Eq. 17; ``"prior"`` (default) takes ``P = Sigma``, one step
size for popular and rare items. Variances are floored at ``min_variance``; ``box=True``
(default) clips every iterate to ``[-Lambda, Lambda]`` (projected Langevin). Paper mode: chains
from prior samples; the learner inside the chain is fitted on each fake row's B largest
``|M~_ij|`` (``support="top-b"``, the default: ``R`` of rows the attacker can inject, ``dR/dM~``
zero off them, ``m' B`` fake entries) or on the whole dense rows (``support="dense"``,
Algorithm 2 as printed: ``m' n`` entries, :meth:`ImplicitGradient.dense`). Candidates (the last
``samples`` iterates of each chain's second half) keep each row's B largest ``|M~_ij|``,
clipped and snapped; the learner is refitted on each from the victim's default start and the
best is kept. ``docs/math.md`` section 5.

Mimic mode (``mode="mimic"``, an extension): each fake row copies a real user's shape (length,
ratings) on items near the template's (:func:`mimic_pattern`); the chain runs on a latent
score per item, the template's ratings handed out by rank (:meth:`MimicPattern.assign`).
``docs/math.md`` section 5.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from cfpoison.attacks.engine import AttackConfig, AttackContext, MethodOutput, register_method
from cfpoison.attacks.gradient import ImplicitGradient
from cfpoison.attacks.threat import (
    ThreatModel,
    pattern_matrix,
    project_dense,
    snap,
    top_b_pattern,
)
from cfpoison.attacks.utility import Utility
from cfpoison.config import JsonConfig, require
from cfpoison.data.ratings import item_moments
from cfpoison.errors import ConfigError
from cfpoison.learners.base import Factors, Learner

PriorMode = Literal["paper", "observed", "centred"]
MIMIC_EPS = 1e-3  # weight of an item nobody sharing the template's items rated (relative)


@dataclasses.dataclass(frozen=True)
class SGLDConfig(JsonConfig):
    """Settings of the SGLD attack (Algorithm 2).

    Attributes:
        beta: weight of the utility in the posterior (Eq. 15); 0 samples the prior.
        iterations: SGLD steps T per chain.
        chains: independent chains, each started from its own prior sample.
        samples: projected candidates per chain, taken from its second half.
        step_size: ``s_0``.
        step_decay: ``gamma`` in ``s_t = s_0 (1 + t)^(-gamma)`` (0: constant steps).
        mode: ``paper`` (Algorithm 2: dense chains, top-B projection) or ``mimic`` (chains
            on the values of a pattern sampled like a real user's; module docstring).
        support: paper mode: the chain's learner sees each fake row's B largest
            ``|M~_ij|`` (``top-b``) or every entry (``dense``, Algorithm 2 as printed); mimic
            rows have a real user's shape, so only ``top-b`` applies there.
        prior: ``paper`` (all users, unrated = 0), ``observed`` (observed ratings only) or
            ``centred`` (observed ratings minus their user's mean); ``auto``: ``paper`` in
            paper mode, ``centred`` in mimic mode.
        window: mimic mode: each item a template user rated is replaced by one of the
            ``2 window + 1`` items nearest to it in popularity rank.
        agreement: mimic mode: ``template`` (each fake's ratings correlate with the crowd's
            item means as much as its template's do, as near as the ranks allow;
            :meth:`MimicPattern.assign`), ``floor`` (at least as much) or ``free`` (the
            gradient reorders them at will).
        preconditioner: ``prior`` (``P = Sigma``) or ``identity`` (Eq. 17 as printed).
        min_variance: floor of ``sigma_j^2``.
        box: clip every iterate to ``[-Lambda, Lambda]`` (projected Langevin).
    """

    beta: float = 0.6
    iterations: int = 20
    chains: int = 2
    samples: int = 3
    step_size: float = 0.1
    step_decay: float = 0.0
    mode: Literal["paper", "mimic"] = "paper"
    support: Literal["dense", "top-b"] = "top-b"
    prior: PriorMode | Literal["auto"] = "auto"
    window: int = 10
    agreement: Literal["template", "floor", "free"] = "template"
    preconditioner: Literal["prior", "identity"] = "prior"
    min_variance: float = 1e-4
    box: bool = True

    def __post_init__(self) -> None:
        require(math.isfinite(self.beta) and self.beta >= 0, f"beta must be >= 0: {self.beta}")
        require(self.iterations >= 1, f"SGLD iterations must be >= 1, got {self.iterations}")
        require(self.chains >= 1, f"SGLD chains must be >= 1, got {self.chains}")
        require(self.samples >= 1, f"SGLD samples must be >= 1, got {self.samples}")
        require(
            math.isfinite(self.step_size) and self.step_size > 0,
            f"SGLD step size must be > 0, got {self.step_size}",
        )
        require(
            math.isfinite(self.step_decay) and 0 <= self.step_decay <= 1,
            f"SGLD step decay gamma must be in [0, 1], got {self.step_decay}",
        )
        require(self.mode in ("paper", "mimic"), f"SGLD mode: paper or mimic, got {self.mode!r}")
        require(
            self.support in ("dense", "top-b"),
            f"SGLD support: dense or top-b, got {self.support!r}",
        )
        require(
            self.mode == "paper" or self.support == "top-b",
            "SGLD support dense is for paper mode (mimic rows have a real user's shape)",
        )
        require(
            self.prior in ("paper", "observed", "centred", "auto"),
            "SGLD prior: paper, observed, centred or auto",
        )
        require(self.window >= 0, f"SGLD window must be >= 0, got {self.window}")
        require(
            self.agreement in ("template", "floor", "free"),
            f"SGLD agreement: template, floor or free, got {self.agreement!r}",
        )
        require(self.preconditioner in ("prior", "identity"), "preconditioner: prior or identity")
        require(
            math.isfinite(self.min_variance) and self.min_variance > 0,
            f"min variance must be > 0, got {self.min_variance}",
        )

    def step(self, t: int) -> float:
        """``s_t = s_0 (1 + t)^(-gamma)``."""
        return self.step_size * (1.0 + t) ** (-self.step_decay)

    @property
    def prior_mode(self) -> PriorMode:
        """The prior in use (``auto`` resolved by the mode)."""
        if self.prior == "auto":
            return "paper" if self.mode == "paper" else "centred"
        return self.prior


@dataclasses.dataclass(frozen=True)
class ItemPrior:
    """Independent Gaussians ``N(xi_j, sigma_j^2)`` for the ratings of each item."""

    mean: np.ndarray
    variance: np.ndarray

    @classmethod
    def from_ratings(cls, train: sp.csr_array, mode: PriorMode, min_variance: float) -> ItemPrior:
        """The normal users' prior (see module docstring for the three modes)."""
        if mode == "centred":  # each rating minus its user's mean rating
            rows = np.repeat(np.arange(train.shape[0]), np.diff(train.indptr))
            lengths = np.maximum(np.diff(train.indptr), 1)
            user_mean = np.bincount(rows, train.data, train.shape[0]) / lengths
            train = sp.csr_array(
                (train.data - user_mean[rows], train.indices, train.indptr), shape=train.shape
            )
        counts, mean, variance = item_moments(train)
        if mode == "paper":  # over all m users, an unrated entry counting as 0
            share = counts / train.shape[0]
            second = share * (variance + mean**2)
            mean = share * mean
            variance = second - mean**2
        return cls(mean, np.maximum(variance, min_variance))

    def sample(self, n_fake: int, rng: np.random.Generator) -> np.ndarray:
        """``n_fake x n`` draws (Algorithm 2, line 3)."""
        return self.mean + np.sqrt(self.variance) * rng.standard_normal((n_fake, len(self.mean)))

    def log_density_and_gradient(self, state: np.ndarray) -> tuple[float, np.ndarray]:
        """``-sum_ij (M~_ij - xi_j)^2 / (2 sigma_j^2)`` (up to a constant) and its gradient
        ``-(M~ - Xi) Sigma^{-1}``, in one array the size of ``state`` (GBs at ML-20M scale)."""
        scale = 1.0 / np.sqrt(self.variance)
        gradient = state - self.mean
        gradient *= scale  # (M~ - Xi) / sigma
        log_density = -0.5 * float(np.vdot(gradient, gradient))
        gradient *= -scale
        return log_density, gradient


def dense_pattern(dense: np.ndarray) -> sp.csr_array:
    """An ``m' x n`` CSR storing every entry of ``dense`` (zeros included: all are ratings)."""
    rows, n = dense.shape
    return sp.csr_array(
        (
            np.ascontiguousarray(dense, dtype=np.float64).ravel(),
            np.tile(np.arange(n, dtype=np.int64), rows),
            np.arange(rows + 1, dtype=np.int64) * n,
        ),
        shape=dense.shape,
    )


Fit = Callable[[sp.csr_array, Factors | None], Learner]
Gradient = Callable[[Learner, sp.csr_array], ImplicitGradient]


def dense_gradient(grad: ImplicitGradient, fake: sp.csr_array) -> np.ndarray:
    """``dR/dM~`` on every entry (the chain's state is the dense ``m' x n`` matrix)."""
    return grad.dense()


def pattern_gradient(grad: ImplicitGradient, fake: sp.csr_array) -> np.ndarray:
    """``dR/dM~`` on the stored entries of ``fake`` (the state is its values, CSR order)."""
    return grad.on_pattern(fake)


def top_b_rows(items_per_user: int) -> Callable[[np.ndarray], sp.csr_array]:
    """The fake rows of a dense state that keep each row's B largest ``|M~_ij|`` (values as
    they are: no clip, no rounding, so ``R`` stays differentiable in them)."""

    def to_fake(state: np.ndarray) -> sp.csr_array:
        columns = top_b_pattern(np.abs(state), items_per_user)
        return pattern_matrix(columns, np.take_along_axis(state, columns, axis=1), state.shape[1])

    return to_fake


def support_gradient(grad: ImplicitGradient, fake: sp.csr_array) -> sp.csr_array:
    """``dR/dM~`` of a dense state whose learner saw only ``fake``'s entries: their gradient,
    zero elsewhere (an entry off the support does not enter the fit), stored sparse."""
    return sp.csr_array((grad.on_pattern(fake), fake.indices, fake.indptr), shape=fake.shape)


def add_scaled(step: np.ndarray, scale: float, gradient: np.ndarray | sp.csr_array) -> None:
    """``step += scale * gradient`` in place (a sparse gradient touches its entries only)."""
    if isinstance(gradient, sp.csr_array):
        rows = np.repeat(np.arange(gradient.shape[0]), np.diff(gradient.indptr))
        step[rows, gradient.indices] += scale * gradient.data
    else:
        step += scale * gradient


@dataclasses.dataclass(frozen=True)
class Posterior:
    """``log p(M~ | M)`` of Eq. 16 and its gradient, each at a refitted learner.

    ``fit(fake, init)`` fits the learner on the normal users plus the fake rows (CSR),
    warm-started from ``init``; ``gradient(learner, fake)`` is the implicit ``dR/dM~`` there.
    The chain's state ``x`` is turned into fake rows by ``to_fake`` (paper mode: the dense
    matrix itself), and ``gradient_of`` reads ``dR/dx`` off the implicit gradient. With
    ``beta = 0`` the posterior is the prior: no learner is fitted (``R`` is NaN).
    """

    prior: ItemPrior
    beta: float
    fit: Fit
    gradient: Gradient
    to_fake: Callable[[np.ndarray], sp.csr_array] = dense_pattern
    gradient_of: Callable[[ImplicitGradient, sp.csr_array], np.ndarray | sp.csr_array] = (
        dense_gradient
    )

    def evaluate(
        self, state: np.ndarray, init: Factors | None = None
    ) -> tuple[float, float, np.ndarray, Learner | None, dict[str, Any]]:
        """``(log p, R, grad log p, fitted learner, gradient diagnostics)`` at the chain's
        state (:meth:`ImplicitGradient.diagnostics`: the fit's KKT residual, the solve's)."""
        log_prior, step = self.prior.log_density_and_gradient(state)
        if self.beta == 0:
            return log_prior, float("nan"), step, None, {}
        fake = self.to_fake(state)
        learner = self.fit(fake, init)
        grad = self.gradient(learner, fake)
        add_scaled(step, self.beta, self.gradient_of(grad, fake))
        return log_prior + self.beta * grad.utility, grad.utility, step, learner, grad.diagnostics()


@dataclasses.dataclass(frozen=True)
class MimicPattern:
    """Fake rows shaped like real users (mimic mode): the rated items and their ratings.

    ``pattern`` is the ``m' x n`` CSR of rated items (sorted indices, placeholder values);
    ``values`` holds, per stored entry in CSR order, each row's ratings sorted ascending.
    ``crowd`` (per stored entry) is the item's mean observed rating ``r_j`` and
    ``agreement_target`` (per row) the Pearson correlation of the row's ratings with ``crowd``
    that :meth:`assign` aims at (None: none); ``at_least``: only rows below it are moved.
    """

    pattern: sp.csr_array
    values: np.ndarray
    crowd: np.ndarray | None = None
    agreement_target: np.ndarray | None = None
    at_least: bool = False

    def _ranked(self, latent: np.ndarray, first: np.ndarray | None = None) -> np.ndarray:
        """The row's k-th smallest ``latent`` gets its k-th smallest rating (ties by column);
        with ``first``, ranked by ``first`` and its ties by ``latent``."""
        keys = (latent, self._rows) if first is None else (latent, first, self._rows)
        data = np.empty(len(latent))
        data[np.lexsort(keys)] = self.values
        return data

    @property
    def _rows(self) -> np.ndarray:
        return np.repeat(np.arange(self.pattern.shape[0]), np.diff(self.pattern.indptr))

    def agreement(self, data: np.ndarray) -> np.ndarray:
        """Per row, the Pearson correlation of ``data`` with ``crowd`` (0 when either is
        constant): the learned detector's ``deviation_corr``."""
        assert self.crowd is not None
        return row_correlation(self.pattern.indptr, data, self.crowd)

    def assign(self, latent: np.ndarray) -> sp.csr_array:
        """Rank-preserving map: in each row the item of the k-th smallest ``latent`` value
        gets the row's k-th smallest rating (ties by column, stable).

        With ``agreement_target``, a row whose ratings correlate less (or, unless
        ``at_least``, more) with the crowd than its target is ranked by
        ``latent + s lam crowd`` instead (``s = +1`` below the target, ``-1`` above):
        ``lam`` is bracketed on ``0, 2^-4, ..., 2^10`` between the last that does not reach
        the target and the first that does, bisected 12 times, and of the bracket's two ends
        the one whose correlation is nearer the target is kept (ranks are discrete: always
        reaching it would overshoot on average); by ``s crowd`` alone, ties by ``latent``, if
        no ``lam`` reaches it.
        """
        data = self._ranked(latent)
        if self.agreement_target is not None and self.crowd is not None:
            target, rows, crowd = self.agreement_target, self._rows, self.crowd
            now = self.agreement(data)
            sign = np.where(now < target, 1.0, -1.0)
            pending = now < target if self.at_least else np.abs(now - target) > 1e-12

            def order(lam: np.ndarray) -> np.ndarray:
                return self._ranked(latent + (sign * lam)[rows] * crowd)

            def reaches(lam: np.ndarray) -> np.ndarray:
                return sign * (self.agreement(order(lam)) - target) >= 0

            low, high = np.zeros(len(target)), np.full(len(target), np.inf)
            for lam in 2.0 ** np.arange(-4, 11):
                open_ = pending & np.isinf(high)
                if not open_.any():
                    break
                met = open_ & reaches(np.full(len(target), lam))
                high[met] = lam
                low[open_ & ~met] = lam
            bracketed = pending & np.isfinite(high)
            for _ in range(12):
                mid = np.where(bracketed, (low + high) / 2, 0.0)
                met = reaches(mid)
                high = np.where(bracketed & met, mid, high)
                low = np.where(bracketed & ~met, mid, low)
            above = order(np.where(bracketed, high, 0.0))
            below = order(np.where(bracketed, low, 0.0))
            gap = np.abs(self.agreement(below) - target) < np.abs(self.agreement(above) - target)
            take = (bracketed & ~gap)[rows]
            data[take] = above[take]
            take = (bracketed & gap)[rows]
            data[take] = below[take]
            take = (pending & ~bracketed)[rows]
            data[take] = self._ranked(latent, sign[rows] * crowd)[take]
        return sp.csr_array(
            (data, self.pattern.indices, self.pattern.indptr), shape=self.pattern.shape
        )


def row_correlation(indptr: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per CSR row, the Pearson correlation of the entries ``a`` and ``b`` (0 when either is
    constant on the row, or the row is empty)."""
    n_rows = len(indptr) - 1
    rows = np.repeat(np.arange(n_rows), np.diff(indptr))
    size = np.maximum(np.diff(indptr), 1)

    def centred(x: np.ndarray) -> np.ndarray:
        return x - (np.bincount(rows, x, n_rows) / size)[rows]

    ca, cb = centred(a), centred(b)
    cov = np.bincount(rows, ca * cb, n_rows)
    scale = np.sqrt(np.bincount(rows, ca * ca, n_rows) * np.bincount(rows, cb * cb, n_rows))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(scale > 1e-12, cov / scale, 0.0)


def mimic_pattern(
    train: sp.csr_array,
    items_per_user: int,
    n_fake: int,
    window: int,
    rng: np.random.Generator,
) -> MimicPattern:
    """Draw each fake row's length, items and ratings from the real users (module docstring).

    A template real user ``t`` with at most ``items_per_user`` ratings (any user if none has
    so few) gives the length and the multiset of ratings (a random B of them if it has
    more). Each of the template's items is replaced by an item among the ``2 window + 1``
    nearest to it in popularity rank, drawn with probability proportional to
    ``eps + w_j``, ``w_j = sum_{u != t} |I_u cap I_t| [u rated j]`` (how much the users who
    share the template's items rate ``j``: taste, not just popularity), all distinct. Each
    row's ``agreement_target`` is its template's correlation with the crowd on the template's own
    items (:func:`row_correlation`), ``crowd`` the items' mean observed ratings.
    """
    n = train.shape[1]
    crowd = item_moments(train)[1]
    lengths = np.diff(train.indptr)
    eligible = np.flatnonzero((lengths >= 1) & (lengths <= items_per_user))
    if len(eligible) == 0:
        eligible = np.flatnonzero(lengths >= 1)
    by_popularity = np.argsort(-np.bincount(train.indices, minlength=n), kind="stable")
    rank = np.empty(n, dtype=np.int64)
    rank[by_popularity] = np.arange(n)
    pattern = sp.csr_array((np.ones(train.nnz), train.indices, train.indptr), shape=train.shape)
    columns, values, agreement = [], [], []
    for user in rng.choice(eligible, size=n_fake):
        span = slice(train.indptr[user], train.indptr[user + 1])
        size = min(span.stop - span.start, items_per_user)
        picked = rng.choice(span.stop - span.start, size, replace=False)
        overlap = pattern @ _indicator(train.indices[span], n)
        overlap[user] = 0.0
        weights = pattern.T @ overlap
        weights = MIMIC_EPS + weights / max(float(weights.max()), 1.0)
        chosen = np.empty(size, dtype=np.int64)
        for k, r in enumerate(rank[train.indices[span][picked]]):
            half = window
            while True:  # widen the window until it holds an item not chosen yet
                candidates = by_popularity[max(0, r - half) : r + half + 1]
                p = weights[candidates] * ~np.isin(candidates, chosen[:k])
                if p.sum() > 0:
                    break
                half += 1
            chosen[k] = rng.choice(candidates, p=p / p.sum())
        columns.append(np.sort(chosen))
        values.append(np.sort(train.data[span][picked]))
        own = np.array([0, size])
        agreement.append(
            row_correlation(own, train.data[span][picked], crowd[train.indices[span][picked]])[0]
        )
    indptr = np.r_[0, np.cumsum([len(c) for c in columns])].astype(np.int64)
    indices = np.concatenate(columns).astype(np.int64)
    out = sp.csr_array((np.zeros(len(indices)), indices, indptr), shape=(n_fake, n))
    return MimicPattern(out, np.concatenate(values), crowd[indices], np.array(agreement))


def _indicator(items: np.ndarray, n: int) -> np.ndarray:
    """The 0/1 vector of length ``n`` with ones at ``items``."""
    out = np.zeros(n)
    out[items] = 1.0
    return out


@dataclasses.dataclass(frozen=True)
class SGLDStep:
    """One SGLD iteration of one chain."""

    chain: int
    iteration: int
    utility: float
    log_posterior: float
    step: float
    seconds: float
    gradient: dict[str, Any] = dataclasses.field(default_factory=dict)  # its diagnostics


@dataclasses.dataclass(frozen=True)
class SGLDCandidate:
    """A projected sample and the utility of the model refitted on it."""

    chain: int
    iteration: int
    utility: float


@dataclasses.dataclass(frozen=True)
class SGLDResult:
    """The best projected sample (``fake``, ``m' x n`` CSR) and how it was found.

    ``factors`` are the learner's solution on it (what ``utility`` was measured at).
    """

    fake: sp.csr_array
    utility: float
    factors: Factors
    history: list[SGLDStep]
    candidates: list[SGLDCandidate]
    prior: ItemPrior


def candidate_iterations(iterations: int, samples: int) -> list[int]:
    """Up to ``samples`` iterations evenly spaced over the second half, ending at the last."""
    first = iterations // 2 + 1
    return sorted(set(np.rint(np.linspace(first, iterations, samples)).astype(int).tolist()))


def sgld_chain(
    posterior: Posterior,
    config: SGLDConfig,
    start: np.ndarray,
    rng: np.random.Generator,
    chain: int = 0,
    max_rating: float | None = None,
    on_sample: Callable[[SGLDStep, np.ndarray], None] | None = None,
) -> tuple[np.ndarray, list[SGLDStep]]:
    """Run T steps of Eq. 17 from ``start``; ``on_sample(step, M~)`` after each.

    With ``max_rating`` (``Lambda``) every iterate is clipped to ``[-Lambda, Lambda]``. Each
    fit is warm-started from the previous one.
    """
    dense = np.array(start, dtype=np.float64)
    precondition = posterior.prior.variance if config.preconditioner == "prior" else 1.0
    noise_scale = np.sqrt(precondition)
    history: list[SGLDStep] = []
    factors: Factors | None = None
    for t in range(config.iterations):
        begin = time.perf_counter()
        log_p, utility, grad, learner, diagnostics = posterior.evaluate(dense, factors)
        factors = None if learner is None else learner.factors
        s = config.step(t)
        grad *= 0.5 * s * precondition  # in place: at ML-20M scale each array is GBs
        dense += grad
        noise = rng.standard_normal(out=grad)
        noise *= np.sqrt(s) * noise_scale
        dense += noise
        if max_rating is not None:
            np.clip(dense, -max_rating, max_rating, out=dense)
        step = SGLDStep(chain, t + 1, utility, log_p, s, time.perf_counter() - begin, diagnostics)
        history.append(step)
        if on_sample is not None:
            on_sample(step, dense)
    return dense, history


Project = Callable[[np.ndarray], sp.csr_array]


def _setup_chain(
    train: sp.csr_array,
    config: SGLDConfig,
    prior: ItemPrior,
    fit: Fit,
    gradient: Gradient,
    threat: ThreatModel,
    n_fake: int,
    grid: np.ndarray | None,
    rng: np.random.Generator,
) -> tuple[Posterior, np.ndarray, Project, float | None]:
    """One chain's posterior, start, projection onto the feasible set and box (by mode)."""
    if config.mode == "paper":
        box = threat.max_rating if config.box else None
        start = prior.sample(n_fake, rng)
        if box is not None:
            np.clip(start, -box, box, out=start)

        def project(dense: np.ndarray) -> sp.csr_array:
            return project_dense(dense, threat, grid)

        posterior = Posterior(prior, config.beta, fit, gradient)
        if config.support == "top-b":
            rows = top_b_rows(threat.items_per_user)
            posterior = dataclasses.replace(posterior, to_fake=rows, gradient_of=support_gradient)
        return posterior, start, project, box
    mimic = mimic_pattern(train, threat.items_per_user, n_fake, config.window, rng)
    mimic = dataclasses.replace(mimic, values=snap(mimic.values, threat.max_rating, grid))
    if config.agreement == "free":
        mimic = dataclasses.replace(mimic, agreement_target=None)
    elif config.agreement == "floor":
        mimic = dataclasses.replace(mimic, at_least=True)
    local = ItemPrior(prior.mean[mimic.pattern.indices], prior.variance[mimic.pattern.indices])
    posterior = Posterior(local, config.beta, fit, gradient, mimic.assign, pattern_gradient)
    return posterior, local.sample(1, rng)[0], mimic.assign, None


def sgld_attack(
    train: sp.csr_array,
    fit: Fit,
    gradient: Gradient,
    utility: Utility,
    threat: ThreatModel,
    n_fake: int,
    config: SGLDConfig,
    rng: np.random.Generator,
    grid: np.ndarray | None = None,
    progress: Callable[[SGLDStep], None] | None = None,
) -> SGLDResult:
    """Algorithm 2 with several chains; the best projected candidate by ``utility``.

    ``train`` is the normal users' matrix (the prior's data). ``fit(fake, init)`` fits the
    learner on it plus ``fake`` (CSR) from ``init``, or from the victim's own start when
    ``init`` is None; ``gradient(learner, fake)`` is ``dR/dM~`` there; ``grid`` is the
    shifted-scale rating grid (None: continuous, no rounding).
    """
    threat.check(train.shape[0], train.shape[1])
    prior = ItemPrior.from_ratings(train, config.prior_mode, config.min_variance)
    keep = set(candidate_iterations(config.iterations, config.samples))
    history: list[SGLDStep] = []
    candidates: list[SGLDCandidate] = []
    best: tuple[float, sp.csr_array, Factors] | None = None
    for chain, chain_rng in enumerate(rng.spawn(config.chains)):
        posterior, start, project, box = _setup_chain(
            train, config, prior, fit, gradient, threat, n_fake, grid, chain_rng
        )

        def on_sample(step: SGLDStep, state: np.ndarray, project: Project = project) -> None:
            nonlocal best
            if progress is not None:
                progress(step)
            if step.iteration not in keep:
                return
            fake = project(state)
            refit = fit(fake, None)
            value = utility.value(refit.user_factors, refit.item_factors)
            candidates.append(SGLDCandidate(step.chain, step.iteration, value))
            if best is None or value > best[0]:
                best = (value, fake, refit.factors.copy())

        _, steps = sgld_chain(posterior, config, start, chain_rng, chain, box, on_sample)
        history.extend(steps)
    assert best is not None
    value, fake, factors = best
    return SGLDResult(fake, value, factors, history, candidates, prior)


def sgld_config(attack: AttackConfig) -> SGLDConfig:
    """SGLD's settings: ``attack.options`` plus ``attack.iterations`` (T); the one check of
    SGLD's options (the engine and the sweep runner both call it)."""
    options = dict(attack.options)
    if "iterations" in options:
        raise ConfigError("set SGLD's iterations T with the attack's iterations, not options")
    return SGLDConfig.from_dict({**options, "iterations": attack.iterations})


@register_method("sgld", options=sgld_config)
def run_sgld(ctx: AttackContext) -> MethodOutput:
    """The engine's ``sgld`` method: :func:`sgld_attack` on the attack's data and learner.

    The history holds one record per SGLD step (``chain``, ``iteration``, ``utility`` of the
    dense iterate, ``log_posterior``, ``step``, ``seconds``); ``info`` the SGLD settings and
    every projected candidate's utility.
    """
    config = sgld_config(ctx.config)
    if ctx.config.threat.item_selection != "random":
        raise ConfigError(
            "sgld chooses its own items (each row's B largest, or a real user's shape); "
            f"item selection {ctx.config.threat.item_selection!r} does not apply"
        )
    bar = tqdm(
        total=config.chains * config.iterations, desc="sgld", disable=not ctx.progress, leave=False
    )

    def advance(step: SGLDStep) -> None:
        bar.update(1)
        bar.set_postfix(chain=step.chain, utility=f"{step.utility:.4g}")

    try:
        result = sgld_attack(
            ctx.train.matrix,
            ctx.fit,
            ctx.gradient,
            ctx.utility,
            ctx.config.threat,
            ctx.n_fake,
            config,
            ctx.rng,
            ctx.grid if ctx.config.snap else None,
            advance,
        )
    finally:
        bar.close()
    return MethodOutput(
        fake=result.fake,
        history=[dataclasses.asdict(step) for step in result.history],
        info={
            "sgld": config.to_dict(),
            "best_utility": result.utility,
            "candidates": [dataclasses.asdict(c) for c in result.candidates],
        },
    )
