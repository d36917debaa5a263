"""Is the gradient PGA follows the true one? A check any user can run on any setting.

At the point PGA would take its gradient at iteration ``t`` (the fake matrix after ``t - 1``
PGA steps, refitted warm from the clean model with the attack's learner settings), compare:

* the **engine's gradient** ``g``: what ``AttackContext.gradient`` returns there, with the
  attack's own fit and solve tolerances;
* the **reference gradient** ``g*``: the same fake matrix refitted to a relative KKT residual
  of :class:`Reference`'s ``kkt`` (1e-10) and the adjoint solved to a true residual of its
  ``solve_tol`` (1e-8): exact to the digits that matter (docs/math.md);
* a **directional finite difference** of re-solved models along ``d = g* / |g*|``:
  ``(R(M~ + h d) - R(M~ - h d)) / 2h``, each side refitted to that KKT residual warm from the
  reference solution; it confirms ``g*`` without trusting any derivative code.

Reported: ``cos(g, g*)``, ``|g - g*| / |g*|``, the finite difference against ``g* . d`` and
``g . d``, the fit's KKT residual and the solve's true residual where ``g`` was taken, and
seconds.

:func:`check_promotion_gradient` does the same for a promotion attack on an implicit learner
(WRMF, BPR): ``g`` and ``g*`` on every ``m' x n`` entry (the attack ranks exchanges by all of
them), the finite difference along ``g*`` restricted to the profiles' items (weights 1 +- h:
moving an unstored entry would change BPR's sampled negatives).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import TypeVar, cast

import numpy as np
import scipy.sparse as sp

from cfpoison.attacks.engine import AttackConfig, attack_context
from cfpoison.attacks.gradient import ImplicitGradient, utility_gradient
from cfpoison.attacks.pga import run_pga
from cfpoison.attacks.promotion import (
    PromotionConfig,
    attack_refit,
    fit_implicit,
    promotion_profiles,
    promotion_utility,
)
from cfpoison.config import Record
from cfpoison.data.interactions import Interactions
from cfpoison.data.ratings import Ratings
from cfpoison.errors import ConfigError
from cfpoison.learners import BPRConfig, ImplicitLearnerConfig, LearnerConfig, WRMFConfig
from cfpoison.learners.base import Learner

TightConfig = TypeVar("TightConfig", bound=LearnerConfig | ImplicitLearnerConfig)
#: Sweep cap of the reference fits (they stop on the KKT residual long before it).
REFERENCE_MAX_SWEEPS = 100_000


@dataclasses.dataclass(frozen=True)
class GradientCheck(Record):
    """The outcome of :func:`check_gradient` (see the module docstring)."""

    iteration: int
    cos: float
    relative_error: float
    directional_fd: float
    directional_reference: float
    directional_engine: float
    fd_relative_error: float
    kkt_residual: float
    fit_converged: bool
    solve_residual: float
    solve_iterations: int
    solve_converged: bool
    engine_seconds: float
    reference_seconds: float
    reference_kkt_residual: float
    reference_solve_residual: float


@dataclasses.dataclass(frozen=True)
class Reference:
    """How the reference gradient is computed: fits to a relative KKT residual of ``kkt``,
    the adjoint solved to ``solve_tol`` (at most ``solve_max_iter`` iterations), central
    differences of step ``step`` along it."""

    kkt: float = 1e-10
    solve_tol: float = 1e-8
    solve_max_iter: int = 5000
    step: float = 1e-4


def tight_config(config: TightConfig, kkt_tol: float) -> TightConfig:
    """``config`` stopping on the relative KKT residual ``kkt_tol`` alone (no objective test;
    BPR's stationarity test is its KKT residual)."""
    if isinstance(config, BPRConfig):
        return config.replace(tol=kkt_tol, max_iters=REFERENCE_MAX_SWEEPS)
    if isinstance(config, WRMFConfig):
        return config.replace(kkt_tol=kkt_tol, max_sweeps=REFERENCE_MAX_SWEEPS)
    tight = config.replace(tol=0.0, kkt_tol=kkt_tol, max_sweeps=REFERENCE_MAX_SWEEPS)
    return cast(TightConfig, tight)


def check_gradient(
    train: Ratings,
    config: AttackConfig,
    *,
    iteration: int = 1,
    reference: Reference = Reference(),
    clean: Learner | None = None,
    progress: Callable[[str], None] | None = None,
) -> GradientCheck:
    """Compare the engine's gradient at PGA's iteration ``iteration`` with the true one;
    ``progress`` (if given) is called with a line as each phase starts."""
    say = progress or (lambda _: None)
    if config.method != "pga":
        raise ConfigError(f"gradcheck checks PGA's gradient; method is {config.method!r}")
    if iteration < 1:
        raise ConfigError(f"gradcheck: iteration must be >= 1, got {iteration}")
    say(f"iteration {iteration}: the clean fit and {iteration - 1} PGA step(s)")
    ctx = attack_context(train, config.replace(iterations=iteration - 1), clean=clean)
    fake = run_pga(ctx).fake
    say(f"iteration {iteration}: the engine's gradient")
    tick = time.perf_counter()
    learner = ctx.fit(fake, init=ctx.clean.factors)
    engine = ctx.gradient(learner, fake)
    engine_seconds = time.perf_counter() - tick
    g = engine.on_pattern(fake)

    say(f"iteration {iteration}: the reference, refitted to KKT {reference.kkt:g}")
    tick = time.perf_counter()
    tight = tight_config(config.learner, reference.kkt)
    reference_fit = ctx.fit_with(tight, fake, init=learner.factors)
    truth = utility_gradient(
        reference_fit,
        train.matrix,
        fake,
        ctx.utility,
        "exact",
        solve_tol=reference.solve_tol,
        solve_max_iter=reference.solve_max_iter,
        warm_start=engine.adjoint,
    )
    g_ref = truth.on_pattern(fake)
    norm_ref = float(np.linalg.norm(g_ref))
    if norm_ref == 0.0:
        raise ConfigError("gradcheck: the true gradient is zero at this point")
    direction = g_ref / norm_ref
    say(f"iteration {iteration}: two re-solved fits for the finite difference")
    values = []
    for sign in (1.0, -1.0):
        moved = _with_data(fake, fake.data + sign * reference.step * direction)
        refit = ctx.fit_with(tight, moved, init=reference_fit.factors)
        values.append(ctx.utility.value(refit.user_factors, refit.item_factors))
    fd = (values[0] - values[1]) / (2.0 * reference.step)
    reference_seconds = time.perf_counter() - tick

    return _verdict(iteration, g, g_ref, g, fd, engine, truth, engine_seconds, reference_seconds)


def check_promotion_gradient(
    train: Interactions,
    config: PromotionConfig,
    *,
    iteration: int = 1,
    reference: Reference = Reference(),
    progress: Callable[[str], None] | None = None,
) -> GradientCheck:
    """Compare the promotion attack's gradient of its learner at step ``iteration`` (the
    profiles after ``iteration - 1`` steps of ``config.method`` and the learner's fit the
    attack took its gradient at; refitted as the attack refits when the steps kept none)
    with the true one; module docstring."""
    say = progress or (lambda _: None)
    if config.method not in ("pga", "robust"):
        raise ConfigError(f"gradcheck checks gradient steps; method {config.method!r} takes none")
    if iteration < 1:
        raise ConfigError(f"gradcheck: iteration must be >= 1, got {iteration}")
    say(f"iteration {iteration}: the clean fit and {iteration - 1} {config.method} step(s)")
    clean = fit_implicit(config.learner, train)
    before = config.replace(iterations=iteration - 1)
    fake, targets, _, attacked = promotion_profiles(train, before, clean)
    utility = promotion_utility(train, clean, targets, config.top_k)
    say(f"iteration {iteration}: the engine's gradient")
    tick = time.perf_counter()
    learner = attacked if attacked is not None else attack_refit(config.learner, train, fake, clean)
    engine = utility_gradient(
        learner,
        train.matrix,
        fake,
        utility,
        solve_tol=config.solve_tol,
        solve_max_iter=config.solve_max_iter,
    )
    engine_seconds = time.perf_counter() - tick
    g = engine.dense().ravel()

    say(f"iteration {iteration}: the reference, refitted to KKT {reference.kkt:g}")
    tick = time.perf_counter()
    tight = tight_config(config.learner, reference.kkt)
    reference_fit = fit_implicit(tight, train, fake, learner.factors)
    truth = utility_gradient(
        reference_fit,
        train.matrix,
        fake,
        utility,
        solve_tol=reference.solve_tol,
        solve_max_iter=reference.solve_max_iter,
        warm_start=engine.adjoint,
    )
    g_ref = truth.dense().ravel()
    on_items = truth.on_pattern(fake)
    norm_items = float(np.linalg.norm(on_items))
    if norm_items == 0.0:
        raise ConfigError("gradcheck: the true gradient is zero on the profiles' items")
    say(f"iteration {iteration}: two re-solved fits for the finite difference")
    values = []
    for sign in (1.0, -1.0):
        moved = _with_data(fake, fake.data + sign * reference.step * on_items / norm_items)
        refit = fit_implicit(tight, train, moved, reference_fit.factors)
        values.append(utility.value(refit.user_factors, refit.item_factors))
    fd = (values[0] - values[1]) / (2.0 * reference.step)
    reference_seconds = time.perf_counter() - tick
    return _verdict(
        iteration,
        g,
        g_ref,
        engine.on_pattern(fake),
        fd,
        engine,
        truth,
        engine_seconds,
        reference_seconds,
        along=on_items,
    )


def _verdict(
    iteration: int,
    g: np.ndarray,
    g_ref: np.ndarray,
    g_along: np.ndarray,
    fd: float,
    engine: ImplicitGradient,
    reference: ImplicitGradient,
    engine_seconds: float,
    reference_seconds: float,
    along: np.ndarray | None = None,
) -> GradientCheck:
    """The check's record: ``g`` against ``g*`` on every compared entry, and the finite
    difference ``fd`` along ``d = along / |along|`` (``along``: ``g*`` where the difference
    moved the data; all of ``g*`` by default) against ``g* . d`` and the engine's ``g . d``
    (``g_along``: ``g`` on the same entries)."""
    along = g_ref if along is None else along
    norm_ref = float(np.linalg.norm(g_ref))
    norm_along = float(np.linalg.norm(along))
    norm_g = float(np.linalg.norm(g))
    cos = float(g @ g_ref) / (norm_g * norm_ref) if norm_g > 0 else math.nan
    return GradientCheck(
        iteration=iteration,
        cos=cos,
        relative_error=float(np.linalg.norm(g - g_ref)) / norm_ref,
        directional_fd=fd,
        directional_reference=norm_along,
        directional_engine=float(g_along @ along) / norm_along,
        fd_relative_error=abs(fd - norm_along) / max(abs(fd), np.finfo(float).tiny),
        kkt_residual=engine.kkt_residual,
        fit_converged=engine.fit_converged,
        solve_residual=engine.solver_residual,
        solve_iterations=engine.solver_iterations,
        solve_converged=engine.solver_converged,
        engine_seconds=engine_seconds,
        reference_seconds=reference_seconds,
        reference_kkt_residual=reference.kkt_residual,
        reference_solve_residual=reference.solver_residual,
    )


def _with_data(pattern: sp.csr_array, data: np.ndarray) -> sp.csr_array:
    out = pattern.copy()
    out.data = data
    return out


__all__ = ["GradientCheck", "check_gradient", "check_promotion_gradient", "tight_config"]
