"""Projected gradient ascent on the fake ratings (paper Algorithm 1, Eq. 10).

An :class:`Objective` (fits, utility, gradient: the attack's learner, or :mod:`.robust`'s
surrogates) is ascended: each iteration takes the implicit gradient ``G = dR/dM~`` at the
fit of ``M~(t)`` (:mod:`cfpoison.attacks.gradient`), steps, and refits warm. The step
(``step_direction``) is ``gradient``: ``Proj(M~ + s_t G / ||G||_max)``, ``G`` scaled by its
largest entry the projection lets move (``s_t`` in shifted rating units); or ``vertex``:
``M~ + s_t (Lambda sign(G) - M~)``, ``s_t <= 1``, Frank-Wolfe's direction, on a fixed pattern
only (``docs/math.md`` section 3.7). Items: ``random`` keeps Algorithm 1's B random items per
fake user (projection: clip to ``+-Lambda``); ``greedy`` steps all n items (an unrated one from
its prediction ``u~_i . v_j``, :meth:`ImplicitGradient.dense`) and keeps each row's B items of
largest first-order gain ``G_ij (Y_ij - u~_i . v_j)`` (backtracking: on the current pattern).

Schedules: ``constant``, ``invsqrt`` (``s / sqrt(t + 1)``) and ``backtracking``: from
``min(s, 2 s_{t-1})`` (``s_{t-1}`` after a halved step), halve at most :data:`MAX_HALVINGS`
times until the refitted utility rises at a stationary fit, else stop. A candidate refit gets
:data:`CANDIDATE_SWEEPS` sweeps; one not stationary by then (usually crossing a saddle) is set
aside and the step halved; if no smaller step ascends, the largest set-aside one that ascended
gets :data:`FINISH_SWEEPS` more, except at the last step (``docs/math.md`` section 3.5).

Start (:class:`PGAOptions`): ``uniform`` (Algorithm 1) or a shilling baseline (``average``,
``bandwagon``); with ``mu2`` or ``mu3`` nonzero every fake also rates the targets, from
``sign((mu2 + mu3) w_j) Lambda`` (a departure: random patterns rarely hold a target). Stops
after ``iterations`` steps, when no rating moves by more than ``tol`` or backtracking finds no
ascent; returns the iterate of highest utility (snapped to the rating grid if asked).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from cfpoison.attacks.baselines import average_attack, bandwagon_attack, uniform_attack
from cfpoison.attacks.checkpoint import StepState
from cfpoison.attacks.engine import (
    AttackContext,
    MethodOutput,
    method_options,
    register_method,
)
from cfpoison.attacks.gradient import ImplicitGradient
from cfpoison.attacks.threat import clip_values, include_items, pattern_matrix, top_b_pattern
from cfpoison.config import JsonConfig
from cfpoison.errors import ConfigError
from cfpoison.learners import build_learner
from cfpoison.learners.base import Snapshot, caps_expected
from cfpoison.learners.factored import SweptLearner

if TYPE_CHECKING:
    from cfpoison.learners import LearnerConfig
    from cfpoison.learners.base import Learner

State = TypeVar("State")
Options = TypeVar("Options", bound="PGAOptions")
#: Most halvings of one backtracking step.
MAX_HALVINGS = 6
#: Sweeps (nuclear norm: iterations) a backtracking candidate's warm refit may take.
CANDIDATE_SWEEPS = 200
#: Sweeps (nuclear norm: iterations) a set-aside candidate may take to finish its refit.
FINISH_SWEEPS = 1000
#: Where PGA may start (:class:`PGAOptions`).
STARTS = {"uniform": None, "average": average_attack, "bandwagon": bandwagon_attack}
Start = Literal["uniform", "average", "bandwagon"]


@dataclasses.dataclass(frozen=True)
class PGAOptions(JsonConfig):
    """PGA's settings in ``AttackConfig.options``: ``start``, the profiles its steps start
    from (module docstring). Robust and adaptive PGA extend it."""

    start: Start = "uniform"


def pattern_options(ctx: AttackContext, kind: type[Options], method: str, why: str) -> Options:
    """The ``kind`` options of a PGA variant whose fake users keep one item pattern; greedy
    item selection is a ConfigError ``"{method}: item selection must be random or rare
    ({why})"``."""
    if ctx.config.threat.item_selection == "greedy":
        raise ConfigError(f"{method}: item selection must be random or rare ({why})")
    options = method_options(ctx.config)
    assert isinstance(options, kind)
    return options


def pga_start(ctx: AttackContext) -> sp.csr_array:
    """PGA's first fake matrix (module docstring), targets included."""
    options = method_options(ctx.config)
    assert isinstance(options, PGAOptions)
    start = options.start
    threat = ctx.config.threat
    targets, ratings = ctx.target_ratings()
    baseline = STARTS[start]
    if baseline is None:
        fake = uniform_attack(ctx.train.matrix, threat, ctx.n_fake, None, ctx.rng)
        return include_items(fake, targets, ratings)
    return baseline(ctx.train.matrix, threat, ctx.n_fake, ctx.grid, ctx.rng, targets, ratings)


def _step_size(schedule: str, size: float, t: int, last: float, grow: bool = True) -> float:
    """The first step tried at iteration ``t``; ``last`` is the previous accepted step and
    ``grow`` whether it was accepted without halving (backtracking only)."""
    if schedule == "constant":
        return size
    if schedule == "invsqrt":
        return size / math.sqrt(t + 1)
    return min(size, 2.0 * last) if grow else last


def _random_step(
    fake: sp.csr_array, gradient: np.ndarray, step: float, max_rating: float
) -> sp.csr_array:
    """Algorithm 1 on a fixed pattern: ``clip(M~ + s G / ||G_free||_max)``.

    ``G_free`` leaves out the entries that the clip would stop (at ``+Lambda`` with ``G > 0``
    or at ``-Lambda`` with ``G < 0``), so the largest *feasible* move is ``s``.
    """
    blocked = ((fake.data >= max_rating) & (gradient > 0)) | (
        (fake.data <= -max_rating) & (gradient < 0)
    )
    free = np.abs(gradient[~blocked])
    scale = free.max() if free.size else 0.0
    moved = fake.copy()
    if scale > 0:
        moved.data = moved.data + step * gradient / scale
    return clip_values(moved, max_rating)


def _vertex_step(
    fake: sp.csr_array, gradient: np.ndarray, step: float, max_rating: float
) -> sp.csr_array:
    """``M~ + min(s, 1) (Lambda sign(G) - M~)`` on the pattern (an entry with ``G = 0`` stays)."""
    vertex = np.where(gradient == 0, fake.data, max_rating * np.sign(gradient))
    moved = fake.copy()
    moved.data = fake.data + min(step, 1.0) * (vertex - fake.data)
    return moved


def _greedy_step(
    fake: sp.csr_array,
    grad: ImplicitGradient,
    step: float,
    max_rating: float,
    items_per_user: int,
) -> sp.csr_array:
    """Step every item of every fake row, then keep each row's B items of largest first-order gain.

    With P the current predictions ``U~ V'`` and ``Y = clip(X + s G / ||G||_max)`` (X the
    current ratings on the pattern, P elsewhere: rating an item at its prediction leaves the
    model unchanged), rating item j at ``Y_ij`` instead of not at all changes R by about
    ``G_ij (Y_ij - P_ij)``; the B items of largest such gain are kept.
    """
    dense_grad = grad.dense()
    prediction = grad.system.unstored_values()
    base = np.clip(prediction, -max_rating, max_rating)
    rows = np.repeat(np.arange(fake.shape[0]), np.diff(fake.indptr))
    base[rows, fake.indices] = fake.data
    scale = np.abs(dense_grad).max()
    if scale > 0:
        base += step * dense_grad / scale
    moved = np.clip(base, -max_rating, max_rating)
    columns = top_b_pattern(dense_grad * (moved - prediction), items_per_user)
    return pattern_matrix(columns, np.take_along_axis(moved, columns, axis=1), fake.shape[1])


def _largest_change(first: sp.csr_array, second: sp.csr_array) -> float:
    """``max |A - B|`` for equal patterns; infinite when the rated items differ."""
    same = np.array_equal(first.indptr, second.indptr) and np.array_equal(
        first.indices, second.indices
    )
    if not same:
        return math.inf
    return float(np.abs(first.data - second.data).max()) if first.nnz else 0.0


class PatternGradient(Protocol):
    """A gradient PGA can step along: ``dR/dM~`` on a pattern, and how it was computed."""

    def on_pattern(self, pattern: sp.csr_array) -> np.ndarray: ...

    def diagnostics(self) -> dict[str, Any]: ...


class Objective(Protocol[State]):
    """What PGA ascends: fitted states of the fake matrix, their utility and its gradient."""

    def fit(self, fake: sp.csr_array, previous: State | None) -> State:
        """The fit on the real ratings plus ``fake``, warm-started from ``previous`` (None: the
        clean fit)."""
        ...

    def value(self, state: State) -> float:
        """The utility R at ``state``."""
        ...

    def gradient(self, state: State, fake: sp.csr_array) -> PatternGradient:
        """``dR/dM~`` at ``state`` (greedy item selection needs an :class:`ImplicitGradient`)."""
        ...

    def record(self, state: State) -> dict[str, Any]:
        """Extra entries of the history record of an accepted iterate."""
        ...

    def snapshot(self, state: State) -> Snapshot:
        """What the next step depends on besides the iterate: ``state``'s fits, and the
        adjoint solutions that the next gradient's solves warm-start from (checkpoints)."""
        ...

    def restore(self, fake: sp.csr_array, saved: Snapshot) -> State:
        """The state that :meth:`snapshot` saved at ``fake``, its adjoints set back: bit for
        bit, without a sweep."""
        ...


def fit_snapshot(learner: Learner, adjoint: np.ndarray | None) -> Snapshot:
    """A fitted learner (its :meth:`~cfpoison.learners.factored.SweptLearner.snapshot`, part
    ``fit``) and ``adjoint``, the warm start of its next gradient's solve (None: none)."""
    if not isinstance(learner, SweptLearner):
        raise TypeError(f"{type(learner).__name__}: a fit that cannot be restored")
    return Snapshot.nest({"fit": learner.snapshot()}, {"adjoint": adjoint})


class LearnerObjective:
    """Algorithm 1's objective: the attack config's learner and utility (``ctx``)."""

    def __init__(self, ctx: AttackContext):
        self.ctx = ctx

    def fit(self, fake: sp.csr_array, previous: Learner | None) -> Learner:
        """The learner refitted warm; a backtracking candidate's refit is capped at
        :data:`CANDIDATE_SWEEPS` (module docstring)."""
        if previous is None:
            return self.ctx.fit(fake, init=self.ctx.clean.factors)
        learner = self.ctx.config.learner
        if self.ctx.config.step_schedule != "backtracking":
            return self.ctx.fit_with(learner, fake, init=previous.factors)
        with caps_expected():  # an unfinished candidate is set aside, never used as is
            return self.ctx.fit_with(_capped(learner), fake, init=previous.factors)

    def finish(self, fake: sp.csr_array, partial: Learner) -> Learner:
        """A capped refit continued, from where it stopped, for :data:`FINISH_SWEEPS` more."""
        learner = _capped(self.ctx.config.learner, FINISH_SWEEPS)
        return self.ctx.fit_with(learner, fake, init=partial.factors)

    def value(self, state: Learner) -> float:
        return self.ctx.utility.value(state.user_factors, state.item_factors)

    def gradient(self, state: Learner, fake: sp.csr_array) -> ImplicitGradient:
        return self.ctx.gradient(state, fake)

    def record(self, state: Learner) -> dict[str, Any]:
        """The refit's sweeps, where the learner counts them (ALS, biased MF)."""
        sweeps = getattr(state, "n_sweeps", None)
        return {} if sweeps is None else {"fit_sweeps": int(sweeps)}

    def snapshot(self, state: Learner) -> Snapshot:
        return fit_snapshot(state, self.ctx.last_adjoint)

    def restore(self, fake: sp.csr_array, saved: Snapshot) -> Learner:
        self.ctx.last_adjoint = saved.arrays.get("adjoint")
        learner = build_learner(self.ctx.config.learner)
        return learner.restore(self.ctx.train, saved.part("fit"), fake)


def run_pga(
    ctx: AttackContext,
    objective: Objective[Any] | None = None,
    project: Callable[[sp.csr_array], sp.csr_array] | None = None,
) -> MethodOutput:
    """Algorithm 1 from :func:`pga_start` on ``objective`` (default: :class:`LearnerObjective`
    of ``ctx``); see the module docstring. ``project``, when given, is applied to the start
    and after every step's clip (a further projection of the feasible set, for example under
    a detector's threshold: :mod:`cfpoison.attacks.adaptive`)."""

    if objective is None:
        objective = LearnerObjective(ctx)
    config, threat = ctx.config, ctx.config.threat
    take_step = _vertex_step if config.step_direction == "vertex" else _random_step
    if config.step_direction == "vertex" and threat.item_selection == "greedy":
        raise ConfigError("the vertex step direction needs a fixed pattern (random or rare items)")
    fake = pga_start(ctx)
    if project is not None:
        fake = project(fake)
    resumed = ctx.checkpoint.load() if ctx.checkpoint is not None else None
    if resumed is not None:
        fake = resumed.fake
    start = time.perf_counter()
    if resumed is not None and resumed.objective is not None:
        learner = objective.restore(fake, resumed.objective)
    else:  # the start, or the iterate of an old checkpoint (:mod:`.checkpoint`)
        learner = objective.fit(fake, None)
    value = objective.value(learner)
    first_fit = time.perf_counter() - start
    history: list[dict[str, Any]] = [
        _record(0, value, 0.0, 0.0, first_fit, first_fit, 0.0, objective.record(learner))
    ]
    best_value, best_fake = value, fake
    last_step, grow = config.step_size, True
    if resumed is not None:
        history, best_value, best_fake = resumed.history, resumed.best_value, resumed.best_fake
        last_step, grow = resumed.last_step, resumed.grow
    done = 0 if resumed is None else resumed.iteration
    stop_reason = "iterations"
    bar = tqdm(
        total=config.iterations,
        initial=done,
        desc=ctx.config.method,
        disable=not ctx.progress,
        leave=False,
    )
    for t in range(done, config.iterations):
        tick = time.perf_counter()
        grad = objective.gradient(learner, fake)
        grad_seconds = time.perf_counter() - tick
        on_pattern = grad.on_pattern(fake)
        grad_norm = float(np.linalg.norm(on_pattern))
        step = first = _step_size(config.step_schedule, config.step_size, t, last_step, grow)
        retrain_seconds = 0.0
        tried = 0
        accepted: tuple[sp.csr_array, Any, float] | None = None
        crossing: tuple[sp.csr_array, Any, float] | None = None  # ascended, not stationary
        reselect = threat.item_selection == "greedy"
        for _ in range(MAX_HALVINGS + 1):
            if reselect:
                if not isinstance(grad, ImplicitGradient):
                    raise ConfigError("greedy item selection needs one learner's full gradient")
                candidate = _greedy_step(fake, grad, step, threat.max_rating, threat.items_per_user)
            else:
                candidate = take_step(fake, on_pattern, step, threat.max_rating)
            if project is not None:
                candidate = project(candidate)
            if _largest_change(candidate, fake) <= config.tol:
                stop_reason = "converged"
                break
            tock = time.perf_counter()
            refit = objective.fit(candidate, learner)
            tried += 1
            retrain_seconds += time.perf_counter() - tock
            new_value = objective.value(refit)
            stationary = bool(getattr(refit, "converged", True))
            if config.step_schedule != "backtracking" or (new_value > value and stationary):
                accepted = (candidate, refit, new_value)
                break
            if new_value > value and crossing is None:
                crossing = (candidate, refit, step)
            if reselect:  # keep the items, backtrack along the fixed pattern instead
                reselect = False
                continue
            step *= 0.5
        finish = getattr(objective, "finish", None)
        last = t + 1 == config.iterations
        if accepted is None and crossing is not None and finish is not None and not last:
            # no smaller step reached a stationary ascent: let the largest one finish crossing
            tock = time.perf_counter()
            refit = finish(crossing[0], crossing[1])
            retrain_seconds += time.perf_counter() - tock
            new_value = objective.value(refit)
            if new_value > value:  # not stationary after FINISH_SWEEPS: flagged, as any fit
                accepted = (crossing[0], refit, new_value)
                step = crossing[2]
                stop_reason = "iterations"
        if accepted is None:
            if stop_reason != "converged":
                stop_reason = "last step set aside" if last and crossing else "no ascent"
            break
        fake, learner, value = accepted
        last_step, grow = step, step == first
        if value > best_value:
            best_value, best_fake = value, fake
        history.append(
            _record(
                t + 1,
                value,
                grad_norm,
                step,
                time.perf_counter() - tick,
                retrain_seconds,
                grad_seconds,
                {**grad.diagnostics(), **objective.record(learner), "candidates": tried},
            )
        )
        if ctx.checkpoint is not None:
            snapshot = objective.snapshot(learner)
            ctx.checkpoint.save(
                StepState(
                    t + 1, fake, best_fake, value, best_value, last_step, grow, history, snapshot
                )
            )
        bar.update(1)
        bar.set_postfix(utility=f"{value:.4g}")
    bar.close()
    info: dict[str, Any] = {"stop_reason": stop_reason, "best_utility": best_value}
    if resumed is not None:
        info["resumed_after_step"] = resumed.iteration
    return MethodOutput(fake=best_fake, history=history, info=info)


def _capped(learner: LearnerConfig, sweeps: int | None = None) -> LearnerConfig:
    """``learner`` with its sweep cap lowered to ``sweeps`` (:data:`CANDIDATE_SWEEPS`)."""
    sweeps = CANDIDATE_SWEEPS if sweeps is None else sweeps
    return learner.replace(max_sweeps=min(learner.max_sweeps, sweeps))


def _record(
    iteration: int,
    utility: float,
    grad_norm: float,
    step: float,
    seconds: float,
    retrain_seconds: float,
    gradient_seconds: float,
    diagnostics: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One history record; ``diagnostics`` is :meth:`ImplicitGradient.diagnostics` of the
    gradient that produced the step (absent for the starting point) with the objective's
    :meth:`Objective.record` of the iterate."""
    return {
        "iteration": iteration,
        "utility": utility,
        "gradient_norm": grad_norm,
        "step": step,
        "seconds": seconds,
        "retrain_seconds": retrain_seconds,
        "gradient_seconds": gradient_seconds,
        **(diagnostics or {}),
    }


register_method("pga", options=PGAOptions)(run_pga)
