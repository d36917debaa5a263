"""SGLD: fake users that mimic normal users (paper section 4.3, Algorithm 2, Eq. 15-17).

Posterior over the dense fake matrix ``M~`` (``m' x n``, shifted scale)::

    log p(M~ | M) = -sum_ij (M~_ij - xi_j)^2 / (2 sigma_j^2) + beta R(M~) + const

with the item-wise Gaussian prior of the normal users (``prior="paper"``: mean and variance
over all ``m`` users, unrated entries counted as 0, so popular items get large ``xi_j`` and
``sigma_j``; ``prior="observed"``: over each item's observed ratings, the global ones for
items nobody rated) and ``R`` the attacker's utility at the learner's solution on
``[M; M~]``. Its gradient is ``-(M~ - Xi) Sigma^{-1} + beta dR/dM~``, with ``dR/dM~`` from the
exact implicit gradient on all ``m' n`` entries (:meth:`ImplicitGradient.dense`).

One SGLD step with step size ``s_t = s_0 (1 + t)^(-gamma)`` and preconditioner ``P``::

    M~ <- M~ + (s_t / 2) P grad log p(M~ | M) + sqrt(s_t) P^(1/2) eps,   eps ~ N(0, I)

``preconditioner="identity"`` is Eq. 17 exactly (noise ``N(0, s_t I)``); ``"prior"``
(default) uses ``P = Sigma``: the same posterior, but the prior part contracts every item at
the same rate ``s_t / 2`` whatever its ``sigma_j``, so one step size suits popular and rare
items alike (with ``P = I`` a step must stay below ``4 min_j sigma_j^2`` to be stable).
Variances are floored at ``min_variance`` (an item nobody rated has ``sigma_j = 0``).

``box=True`` (default) clips every iterate to ``[-Lambda, Lambda]`` (projected Langevin
dynamics, sampling the posterior restricted to the box). Eq. 17 as printed (``box=False``)
is unconstrained, and ``R`` grows without bound with the fake ratings: on ml-latest-small
at ``beta = 0.6`` the largest ``|M~_ij|`` passed 50 within five steps while the utility
grew 200-fold, none of which survives the final projection.

Chains start from prior samples (Algorithm 2, line 3). The learner sees the fake rows dense
(every item stored) while sampling. Candidates (the last ``samples`` iterates of each chain,
evenly spaced over its second half) are projected onto the feasible set: each row's B
entries of largest absolute value, clipped to ``+-Lambda`` and snapped to the rating scale;
the learner is refitted on each projected candidate from the caller's default start
(``fit(fake, None)``, what the victim would do; a warm start from the chain's dense-row
solution can settle in another local optimum, with a utility measured at 3x the victim's
on a small test problem) and the candidate of highest utility is kept.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Literal

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from cfpoison.attacks.engine import AttackConfig, AttackContext, MethodOutput, register_method
from cfpoison.attacks.gradient import ImplicitGradient
from cfpoison.attacks.threat import ThreatModel, project_dense
from cfpoison.attacks.utility import Utility
from cfpoison.config import JsonConfig, require
from cfpoison.data.ratings import item_moments
from cfpoison.errors import ConfigError
from cfpoison.learners.base import Factors, Learner


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
        prior: ``paper`` (all users, unrated = 0) or ``observed`` (observed ratings only).
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
    prior: Literal["paper", "observed"] = "paper"
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
        require(self.prior in ("paper", "observed"), "SGLD prior: paper or observed")
        require(self.preconditioner in ("prior", "identity"), "preconditioner: prior or identity")
        require(
            math.isfinite(self.min_variance) and self.min_variance > 0,
            f"min variance must be > 0, got {self.min_variance}",
        )

    def step(self, t: int) -> float:
        """``s_t = s_0 (1 + t)^(-gamma)``."""
        return self.step_size * (1.0 + t) ** (-self.step_decay)


@dataclasses.dataclass(frozen=True)
class ItemPrior:
    """Independent Gaussians ``N(xi_j, sigma_j^2)`` for the ratings of each item."""

    mean: np.ndarray
    variance: np.ndarray

    @classmethod
    def from_ratings(
        cls, train: sp.csr_array, mode: Literal["paper", "observed"], min_variance: float
    ) -> ItemPrior:
        """The normal users' prior (see module docstring for the two modes)."""
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

    def log_density(self, dense: np.ndarray) -> float:
        """``-sum_ij (M~_ij - xi_j)^2 / (2 sigma_j^2)`` (up to a constant)."""
        return float(-0.5 * np.sum((dense - self.mean) ** 2 / self.variance))

    def gradient(self, dense: np.ndarray) -> np.ndarray:
        """``-(M~ - Xi) Sigma^{-1}``."""
        return -(dense - self.mean) / self.variance


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


@dataclasses.dataclass(frozen=True)
class Posterior:
    """``log p(M~ | M)`` of Eq. 16 and its gradient, each at a refitted learner.

    ``fit(fake, init)`` fits the learner on the normal users plus the fake rows (CSR),
    warm-started from ``init``; ``gradient(learner, fake)`` is the implicit ``dR/dM~`` there.
    With ``beta = 0`` the posterior is the prior: no learner is fitted (``R`` is NaN).
    """

    prior: ItemPrior
    beta: float
    fit: Fit
    gradient: Gradient

    def evaluate(
        self, dense: np.ndarray, init: Factors | None = None
    ) -> tuple[float, float, np.ndarray, Learner | None]:
        """``(log p, R, grad log p, fitted learner)`` at the dense fake matrix ``dense``."""
        log_prior, grad_prior = self.prior.log_density(dense), self.prior.gradient(dense)
        if self.beta == 0:
            return log_prior, float("nan"), grad_prior, None
        fake = dense_pattern(dense)
        learner = self.fit(fake, init)
        grad = self.gradient(learner, fake)
        log_p = log_prior + self.beta * grad.utility
        return log_p, grad.utility, grad_prior + self.beta * grad.dense(), learner


@dataclasses.dataclass(frozen=True)
class SGLDStep:
    """One SGLD iteration of one chain."""

    chain: int
    iteration: int
    utility: float
    log_posterior: float
    step: float
    seconds: float


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
        log_p, utility, grad, learner = posterior.evaluate(dense, factors)
        factors = None if learner is None else learner.factors
        s = config.step(t)
        dense = dense + 0.5 * s * precondition * grad
        dense += np.sqrt(s) * noise_scale * rng.standard_normal(dense.shape)
        if max_rating is not None:
            np.clip(dense, -max_rating, max_rating, out=dense)
        step = SGLDStep(chain, t + 1, utility, log_p, s, time.perf_counter() - begin)
        history.append(step)
        if on_sample is not None:
            on_sample(step, dense)
    return dense, history


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
    prior = ItemPrior.from_ratings(train, config.prior, config.min_variance)
    posterior = Posterior(prior, config.beta, fit, gradient)
    keep = set(candidate_iterations(config.iterations, config.samples))
    history: list[SGLDStep] = []
    candidates: list[SGLDCandidate] = []
    best: tuple[float, sp.csr_array, Factors] | None = None
    for chain, chain_rng in enumerate(rng.spawn(config.chains)):

        def on_sample(step: SGLDStep, dense: np.ndarray) -> None:
            nonlocal best
            if progress is not None:
                progress(step)
            if step.iteration not in keep:
                return
            fake = project_dense(dense, threat, grid)
            refit = fit(fake, None)
            value = utility.value(refit.user_factors, refit.item_factors)
            candidates.append(SGLDCandidate(step.chain, step.iteration, value))
            if best is None or value > best[0]:
                best = (value, fake, refit.factors.copy())

        start = prior.sample(n_fake, chain_rng)
        if config.box:
            np.clip(start, -threat.max_rating, threat.max_rating, out=start)
        box = threat.max_rating if config.box else None
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


@register_method("sgld")
def run_sgld(ctx: AttackContext) -> MethodOutput:
    """The engine's ``sgld`` method: :func:`sgld_attack` on the attack's data and learner.

    The history holds one record per SGLD step (``chain``, ``iteration``, ``utility`` of the
    dense iterate, ``log_posterior``, ``step``, ``seconds``); ``info`` the SGLD settings and
    every projected candidate's utility.
    """
    config = sgld_config(ctx.config)
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
