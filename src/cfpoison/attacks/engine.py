"""One entry point for every attack: :func:`run_attack` with an :class:`AttackConfig`.

``run_attack`` fits the clean model, builds the utility (resolving ``auto`` targets with the
attack's seed), runs the method, checks the output against the threat model, and evaluates it
(:func:`cfpoison.attacks.metrics.evaluate_profiles`). It is pure: no printing, no global state,
and the same config gives the same result.

Methods live in a registry (:func:`register_method`): ``pga`` and the baselines here; a method
not registered yet is looked up as a module ``cfpoison.attacks.<name>`` that registers itself
on import (``sgld``). A method receives an :class:`AttackContext` and returns a
:class:`MethodOutput`; method-specific settings go in ``AttackConfig.options``.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import math
import pkgutil
import time
from collections.abc import Callable
from typing import Any, ClassVar, Literal, cast

import numpy as np
import scipy.sparse as sp

from cfpoison.attacks.baselines import (
    average_attack,
    bandwagon_attack,
    random_attack,
    uniform_attack,
)
from cfpoison.attacks.checkpoint import Checkpoint
from cfpoison.attacks.gradient import GradientMethod, ImplicitGradient, utility_gradient
from cfpoison.attacks.metrics import evaluate_profiles
from cfpoison.attacks.threat import ThreatModel, grid_values, snap, violations
from cfpoison.attacks.utility import Utility, UtilityConfig, build_utility
from cfpoison.config import JsonConfig, Setting, require, require_ranges, settings_of
from cfpoison.data.ratings import Ratings
from cfpoison.errors import ConfigError, DataError
from cfpoison.learners import ALSConfig, BiasedConfig, LearnerConfig, NuclearConfig
from cfpoison.learners.base import Factors, Learner
from cfpoison.models import fit_learner, noise_floor, victim_start

log = logging.getLogger(__name__)

StepSchedule = Literal["constant", "invsqrt", "backtracking"]
StepDirection = Literal["auto", "gradient", "vertex"]

#: Each method's own step direction and item selection, where a config leaves them ``auto``:
#: robust PGA steps to the box's vertices on rare items (its strongest transfer to victims it
#: does not control, benchmarks/RESULTS.md "Robust availability that transfers"); every other
#: method keeps Algorithm 1's projected gradient steps on random items (the paper's, so
#: Figures 1 and 2 are unchanged).
METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    "robust": {"step_direction": "vertex", "item_selection": "rare"},
}
_PAPER_DEFAULTS: dict[str, Any] = {"step_direction": "gradient", "item_selection": "random"}


@dataclasses.dataclass(frozen=True)
class AttackConfig(JsonConfig):
    """Everything that determines an attack's result.

    Attributes:
        method: ``pga`` (Algorithm 1), ``uniform`` (the paper's baseline), the shilling
            attacks ``random`` / ``average`` / ``bandwagon``, ``sgld`` (Algorithm 2), or any
            method registered with :func:`register_method` (checked against the registry).
        learner: the attacked learner (its config; the attacker knows it, Kerckhoffs).
        threat: the budget (alpha, B, Lambda, item selection).
        utility: ``mu1``, ``mu2``, ``mu3``, targets, weights and the ranking's settings.
        gradient: ``exact`` (implicit, one MINRES solve) or ``paper`` (Eq. 12).
        iterations: gradient steps (PGA; SGLD reads it too).
        step_schedule, step_size: see :mod:`cfpoison.attacks.pga` (rating units; for the
            ``vertex`` direction the fraction of the way to the vertex, at most 1).
        step_direction: ``gradient`` (Algorithm 1's projected gradient step), ``vertex``
            (toward the box's vertex ``Lambda sign(G)``, Frank-Wolfe's direction:
            :mod:`cfpoison.attacks.pga`) or ``auto`` (the default): the method's own,
            :data:`METHOD_DEFAULTS` (``vertex`` for robust, ``gradient`` otherwise). ``auto``
            here and in ``threat.item_selection`` is resolved when the config is built, so a
            stored config always says what ran.
        tol: stop when a step moves no rating by more than this.
        solve_tol, solve_max_iter: the exact gradient's adjoint solve: its true relative
            residual ``|g - H z| / |g|`` and its iteration cap. 1e-4 gives cos >= 0.9999 with
            the true gradient on ml-latest-small at PGA's iterations 1 and 10, warm-started
            or not (with the learner's default KKT tolerance; ``cfpoison gradcheck``).
        snap: round the output ratings onto the data set's rating scale.
        seed: seeds everything random in the attack (initial profiles, auto target).
        options: the method's own settings, as JSON; each method parses them into its typed
            config (:func:`method_options`: PGA's ``start``, robust's ``surrogates``,
            adaptive's ``defense``, SGLD's :class:`~cfpoison.attacks.sgld.SGLDConfig`),
            checked when the config is built.
    """

    kind: ClassVar[str] = "attack"
    method: str = "pga"
    learner: ALSConfig | NuclearConfig | BiasedConfig = dataclasses.field(default_factory=ALSConfig)
    threat: ThreatModel = dataclasses.field(default_factory=ThreatModel)
    utility: UtilityConfig = dataclasses.field(default_factory=UtilityConfig)
    gradient: GradientMethod = "exact"
    iterations: int = 20
    step_schedule: StepSchedule = "backtracking"
    step_size: float = 1.0
    step_direction: StepDirection = "auto"
    tol: float = 1e-3
    solve_tol: float = 1e-4
    solve_max_iter: int = 500
    snap: bool = True
    seed: int = 0
    options: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        get_method(self.method)
        own = {**_PAPER_DEFAULTS, **METHOD_DEFAULTS.get(self.method, {})}
        if self.step_direction == "auto":
            object.__setattr__(self, "step_direction", own["step_direction"])
        if self.threat.item_selection == "auto":
            threat = dataclasses.replace(self.threat, item_selection=own["item_selection"])
            object.__setattr__(self, "threat", threat)
        method_options(self)
        require(self.iterations >= 0, f"iterations must be >= 0, got {self.iterations}")
        require(
            math.isfinite(self.step_size) and self.step_size > 0,
            f"step size must be > 0, got {self.step_size}",
        )
        require(self.tol >= 0, f"tol must be >= 0, got {self.tol}")
        require(0 < self.solve_tol < 1, f"solve_tol must be in (0, 1), got {self.solve_tol}")
        require_ranges(self, solve_max_iter=">= 1", seed=">= 0")


def attack_settings(skip: tuple[str, ...] = ()) -> dict[str, Setting]:
    """An attack's settings by flat name, as sweeps and ``cfpoison attack`` flags name them:
    AttackConfig's fields by their own name, the threat model's and the utility's too
    (``alpha``, ``mu1``), the learner's as ``learner.FIELD`` (:func:`settings_of`)."""
    return settings_of(AttackConfig, inline=("threat", "utility"), skip=skip)


#: The settings only gradient steps read.
STEP_SETTINGS = (
    "gradient",
    "iterations",
    "step_schedule",
    "step_size",
    "step_direction",
    "tol",
    "solve_tol",
    "solve_max_iter",
)
#: The methods that save their state after every step (their loop is PGA's) and resume.
CHECKPOINTED = ("pga", "robust", "adaptive")
#: The one-shot methods: no steps, no options.
BASELINES = ("uniform", "random", "average", "bandwagon")
#: The settings a method never reads, with why (a method not named here reads them all).
_UNREAD: dict[str, dict[str, str]] = {
    "sgld": dict.fromkeys(
        ("step_schedule", "step_size", "step_direction", "tol"),
        "sgld steps by its own schedule (--option step_size=S, step_decay=G)",
    ),
    **{
        name: dict.fromkeys((*STEP_SETTINGS, "options"), f"{name} takes no steps and no options")
        for name in BASELINES
    },
}


def ignored_settings(config: AttackConfig) -> dict[str, str]:
    """The settings (``attack_settings`` names, and ``options``) that ``config``'s method does
    not read at these values, each with the reason: a caller that was given one explicitly
    refuses it rather than ignore it silently."""
    ignored = dict(_UNREAD.get(config.method, {}))
    utility = config.utility
    if config.gradient == "paper":
        for name in ("solve_tol", "solve_max_iter"):
            ignored.setdefault(name, "the paper's gradient (Eq. 12) solves no adjoint system")
    if utility.mu2 == 0 and utility.mu3 == 0:
        reason = (
            "the utility ignores targets when mu2 = mu3 = 0 (the default): for an integrity "
            "attack give --mu1 0 --mu2 1 (or --mu3 1 for ranking)"
        )
        ignored.update(targets=reason, weights=reason)
    if utility.mu3 == 0:
        reason = "only the ranking utility (--mu3, nonzero) reads it"
        ignored.update(rank_candidates=reason, rank_temperature=reason)
    selection = config.threat.item_selection
    if config.method == "sgld" and selection != "random":
        ignored["item_selection"] = "sgld chooses its own items (each row's B largest)"
    elif selection == "greedy" and config.method in (*BASELINES, "robust", "adaptive"):
        ignored["item_selection"] = f"{config.method} keeps a fixed pattern (random or rare items)"
    return ignored


def count_untrustworthy(record: Any) -> int:
    """The gradient diagnostics with ``gradient_trustworthy`` False anywhere in ``record``
    (nested dicts and lists, as methods record them)."""
    if isinstance(record, dict):
        own = int(record.get("gradient_trustworthy") is False)
        return own + sum(count_untrustworthy(v) for v in record.values())
    if isinstance(record, list | tuple):
        return sum(count_untrustworthy(v) for v in record)
    return 0


def warn_untrustworthy(label: str, diagnostics: dict[str, Any]) -> None:
    """Log a warning when a gradient's :meth:`ImplicitGradient.diagnostics` say it was taken
    at an unconverged fit or from an unconverged solve."""
    if not diagnostics["gradient_trustworthy"]:
        log.warning(
            "%s: gradient outside tolerance (fit KKT %.1e, converged %s; solve residual "
            "%.1e after %d iterations, converged %s)",
            label,
            diagnostics["kkt_residual"],
            diagnostics["fit_converged"],
            diagnostics["solve_residual"],
            diagnostics["solve_iterations"],
            diagnostics["solve_converged"],
        )


@dataclasses.dataclass
class AttackContext:
    """What a method gets: the data, the clean model, the utility, and helpers.

    Attributes:
        train: the normal users' ratings (shifted scale).
        config: the attack config.
        clean: the learner fitted on ``train`` alone.
        utility: the attacker's utility against ``clean``.
        n_fake: ``m'``.
        grid: the shifted-scale rating grid within ``+-Lambda`` (None: continuous scale).
        rng: the attack's generator (seeded by ``config.seed``).
        progress: whether the method may show a progress bar.
        checkpoint: where a gradient method saves its state after every step and resumes
            from (None: nowhere).
    """

    train: Ratings
    config: AttackConfig
    clean: Learner
    utility: Utility
    n_fake: int
    grid: np.ndarray | None
    rng: np.random.Generator
    progress: bool = False
    last_adjoint: np.ndarray | None = None
    checkpoint: Checkpoint | None = None

    def fit(self, fake: sp.csr_array, init: Factors | None = None) -> Learner:
        """The learner refitted on ``train`` plus ``fake``, warm-started from ``init``."""
        return self.fit_with(self.config.learner, fake, init)

    def fit_with(
        self, learner: LearnerConfig, fake: sp.csr_array, init: Factors | None = None
    ) -> Learner:
        """A learner of another config (a tighter one, say) refitted like :meth:`fit`.

        ``init=None`` is the victim's own start; for a learner whose every start reaches the
        same minimiser (``unique_optimum``) that is the clean model's factors (same result,
        fewer sweeps)."""
        if init is None:
            init = victim_start(learner, self.clean)
        return fit_learner(learner, self.train, fake, init)

    def gradient(self, learner: Learner, fake: sp.csr_array) -> ImplicitGradient:
        """dR/dM~ at ``learner`` (fitted with ``fake``), by ``config.gradient``.

        The adjoint solve warm-starts from the previous call's solution. A gradient taken at
        an unconverged fit or from an unconverged solve is logged as a warning (and carries
        ``trustworthy = False`` into the method's history).
        """
        grad = utility_gradient(
            learner,
            self.train.matrix,
            fake,
            self.utility,
            self.config.gradient,
            solve_tol=self.config.solve_tol,
            solve_max_iter=self.config.solve_max_iter,
            warm_start=self.last_adjoint,
        )
        self.last_adjoint = grad.adjoint
        warn_untrustworthy(self.config.method, grad.diagnostics())
        return grad

    def target_ratings(self) -> tuple[np.ndarray, np.ndarray]:
        """Targets and their push/nuke ratings ``sign((mu2 + mu3) w_j) Lambda`` (none if that
        is 0): integrity and ranking both rise with a target's scores when ``mu w_j > 0``."""
        utility, lam = self.utility, self.config.threat.max_rating
        direction = np.sign((utility.mu2 + utility.mu3) * utility.weights)
        keep = direction != 0
        return utility.targets[keep], direction[keep] * lam


@dataclasses.dataclass
class MethodOutput:
    """A method's fake matrix (``m' x n`` CSR, shifted scale), history and extra info."""

    fake: sp.csr_array
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    info: dict[str, Any] = dataclasses.field(default_factory=dict)


AttackMethod = Callable[[AttackContext], MethodOutput]
#: A method's parser of ``AttackConfig.options`` into its typed settings.
OptionsParser = Callable[["AttackConfig"], JsonConfig]
_METHODS: dict[str, AttackMethod] = {}
_OPTIONS: dict[str, OptionsParser] = {}


def register_method(
    name: str, options: type[JsonConfig] | OptionsParser | None = None
) -> Callable[[AttackMethod], AttackMethod]:
    """Decorator: register ``fn(ctx) -> MethodOutput`` as the attack method ``name``;
    ``options`` gives the method's typed settings from ``AttackConfig.options``: a config
    class (its ``from_dict`` of the options) or a parser of the whole attack config (None:
    the method takes none)."""

    def decorate(fn: AttackMethod) -> AttackMethod:
        _METHODS[name] = fn
        if options is not None:
            _OPTIONS[name] = _parser(options)
        return fn

    return decorate


def _parser(options: type[JsonConfig] | OptionsParser) -> OptionsParser:
    """``options`` as a parser of the whole attack config."""
    if not isinstance(options, type):
        return options
    settings = cast(type[JsonConfig], options)

    def parse(config: AttackConfig) -> JsonConfig:
        return settings.from_dict(config.options)

    return parse


def method_options(config: AttackConfig) -> JsonConfig | None:
    """The typed settings of ``config.options`` for ``config``'s method (its registered
    parser: an unknown or bad option is a ConfigError), or None for a method that takes
    none (then any option is an error). ``AttackConfig`` calls it when it is built."""
    parse = _OPTIONS.get(config.method)
    if parse is None:
        if config.options:
            names = ", ".join(sorted(config.options))
            raise ConfigError(f"{config.method} takes no options, got {names}")
        return None
    return parse(config)


def get_method(name: str) -> AttackMethod:
    """The registered method ``name``, importing ``cfpoison.attacks.<name>`` if needed."""
    if name not in _METHODS and name.isidentifier():
        module = f"cfpoison.attacks.{name}"
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name != module:  # the plugin exists but lacks a dependency: say so
                raise
    if name not in _METHODS:
        known = ", ".join(available_methods())
        raise ConfigError(f"attack method {name!r} is not available (available: {known})")
    return _METHODS[name]


def available_methods() -> tuple[str, ...]:
    """Every method's name, sorted: the registry, once each public ``cfpoison.attacks``
    module (those that register themselves on import, like ``sgld``) is imported."""
    package = importlib.import_module("cfpoison.attacks")
    for module in pkgutil.iter_modules(package.__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"cfpoison.attacks.{module.name}")
    return tuple(sorted(_METHODS))


@register_method("uniform")
def _uniform(ctx: AttackContext) -> MethodOutput:
    threat = ctx.config.threat
    return MethodOutput(uniform_attack(ctx.train.matrix, threat, ctx.n_fake, ctx.grid, ctx.rng))


def _shilling(attack: Callable[..., sp.csr_array]) -> AttackMethod:
    def run(ctx: AttackContext) -> MethodOutput:
        targets, ratings = ctx.target_ratings()
        fake = attack(
            ctx.train.matrix, ctx.config.threat, ctx.n_fake, ctx.grid, ctx.rng, targets, ratings
        )
        return MethodOutput(fake)

    return run


register_method("random")(_shilling(random_attack))
register_method("average")(_shilling(average_attack))
register_method("bandwagon")(_shilling(bandwagon_attack))


@dataclasses.dataclass
class AttackResult:
    """The outcome of :func:`run_attack`.

    Attributes:
        config: the attack config.
        fake: the fake profiles, ``m' x n`` CSR on the shifted scale (columns = ``train``'s).
        history: per-iteration records (``utility``, ``gradient_norm``, ``step``, ``seconds``,
            ``retrain_seconds``, ``gradient_seconds``, ...); empty for one-shot methods.
        metrics: :func:`cfpoison.attacks.metrics.evaluate_profiles` of ``fake`` (with
            ``utility``, R of the retrained poisoned model, and ``utility_clean``).
        targets: target items as the data set's own ids.
        seconds: wall time of the whole attack.
        info: method-specific extras (for example PGA's stop reason).
    """

    config: AttackConfig
    fake: sp.csr_array
    history: list[dict[str, Any]]
    metrics: dict[str, Any]
    targets: list[int]
    seconds: float
    info: dict[str, Any]

    @property
    def utility_history(self) -> list[float]:
        return [float(h["utility"]) for h in self.history]

    @property
    def untrustworthy_gradients(self) -> int:
        """Gradients that came from an unconverged fit or solve, wherever a method records
        them in its history (a step's own, SGLD's per chain, each surrogate's or bag's)."""
        return count_untrustworthy(self.history)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: the metrics at the top level, then history, targets and the config."""
        return {
            **self.metrics,
            "method": self.config.method,
            "untrustworthy_gradients": self.untrustworthy_gradients,
            "targets": list(self.targets),
            "utility_history": self.utility_history,
            "history": self.history,
            "seconds": self.seconds,
            "info": self.info,
            "config": self.config.to_dict(),
        }


def attack_context(
    train: Ratings,
    config: AttackConfig,
    *,
    clean: Learner | None = None,
    progress: bool = False,
) -> AttackContext:
    """What a method of ``config`` starts from: the checked budget, the clean fit (given or
    computed), the utility (``auto`` targets drawn with the attack's seed) and the rng."""
    threat = config.threat
    if min(train.n_users, train.n_items, train.nnz) == 0:
        raise DataError(f"cannot attack {_emptiness(train)}")
    threat.check(train.n_users, train.n_items, train.scale)
    grid = grid_values(train.scale, threat.max_rating)
    rng = np.random.default_rng(config.seed)
    if clean is None:
        clean = fit_learner(config.learner, train)
    utility = build_utility(
        config.utility, train, clean.user_factors.copy(), clean.item_factors.copy(), rng
    )
    n_fake = threat.n_fake(train.n_users)
    return AttackContext(train, config, clean, utility, n_fake, grid, rng, progress)


def _emptiness(train: Ratings) -> str:
    """``NAME: m users, n items, r ratings`` and the preprocessing steps that emptied it."""
    text = f"{train.name}: {train.n_users} users, {train.n_items} items, {train.nnz} ratings"
    removals = [
        f"{step['step']} removed {step['users_removed']} users, {step['items_removed']} items"
        for step in train.steps
        if "users_removed" in step
    ]
    return text + (f" ({'; '.join(removals)})" if removals else " (an empty data set)")


def run_attack(
    train: Ratings,
    config: AttackConfig,
    *,
    test: Ratings | None = None,
    progress: bool = False,
    clean: Learner | None = None,
    floor: float | None = None,
    checkpoint: Checkpoint | None = None,
) -> AttackResult:
    """Run ``config`` against the learner fitted on ``train``; evaluate on ``test`` if given.

    ``clean`` (``config.learner`` fitted on ``train``) and ``floor`` (its seed-noise floor,
    :func:`cfpoison.models.noise_floor`) may be passed to share them between attacks
    on the same data and learner; they are computed when not given. ``checkpoint``: a
    gradient method (:data:`CHECKPOINTED`) saves its state there after every step and
    resumes from it; another method refuses one.
    """
    start = time.perf_counter()
    threat = config.threat
    method = get_method(config.method)
    if checkpoint is not None and config.method not in CHECKPOINTED:
        raise ConfigError(
            f"{config.method} keeps no checkpoint (only {', '.join(CHECKPOINTED)} do)"
        )
    ctx = attack_context(train, config, clean=clean, progress=progress)
    ctx.checkpoint = checkpoint
    clean, utility, grid, n_fake = ctx.clean, ctx.utility, ctx.grid, ctx.n_fake
    output = method(ctx)
    fake = output.fake
    if config.snap and grid is not None:
        fake = fake.copy()
        fake.data = snap(fake.data, threat.max_rating, grid)
    problems = violations(fake, threat, n_fake, grid if config.snap else None)
    if problems:
        raise RuntimeError(f"{config.method} broke the threat model: {'; '.join(problems)}")
    if floor is None:
        floor = noise_floor(train, config.learner, clean)
    metrics = evaluate_profiles(
        train,
        fake,
        config.learner,
        utility.targets,
        test,
        clean=clean,
        floor=floor,
        utility=utility,
    )
    return AttackResult(
        config=config,
        fake=fake,
        history=output.history,
        metrics=metrics,
        targets=[int(i) for i in train.item_ids[utility.targets]],
        seconds=time.perf_counter() - start,
        info=output.info,
    )
