"""Robust PGA: Algorithm 1 on the expected utility over a panel of surrogate learners.

Not knowing the victim's seed, split, regularization or biases, the attacker fits surrogates
``s = 1..S`` on their own training ratings plus the fakes, each with its own clean model and
utility ``R_s`` (availability against its own clean predictions), and ascends::

    Rbar(M~) = (1/S) sum_s R_s(theta_s*(M~)),     dRbar/dM~ = (1/S) sum_s dR_s/dM~

each ``dR_s/dM~`` the exact implicit gradient of surrogate s (:mod:`cfpoison.attacks.gradient`),
fit and adjoint solve warm-started from the surrogate's previous ones. Steps, backtracking
(accepted when ``Rbar`` rises), start and stopping are PGA's (:mod:`cfpoison.attacks.pga`);
items are ``random`` only. A surrogate (:class:`SurrogateSpec`) is a victim spec
(:class:`cfpoison.victims.VictimSpec`: ``als``, ``nuclear``, ``biased``), a learner seed offset
and a split: a random ``fraction`` of the attacker's training ratings, drawn with the generator
seeded by ``(attack seed, split_offset)`` (``split_offset = 0``: all). It starts from the attack's
learner config if of the attacked kind, else from its kind's defaults (``params`` override).

Option ``aggregate``: ``mean`` (above) or ``worst``, the soft minimum over the surrogates of
each utility relative to its value at PGA's start, ``r_s = R_s / |R_s(M~_0)|``::

    Rbar = -tau log (1/S) sum_s exp(-r_s / tau),   dRbar/dM~ = sum_s p_s dR_s/dM~ / |R_s(M~_0)|

with ``p = softmax(-r / tau)``: the step serves the surrogate that has gained least, so that no
surrogate's scale dominates it. Option ``surrogates``: a panel (:class:`SurrogatePanel` as a
dict) or a preset name (:data:`PRESETS`); ``cfpoison attack --surrogates PANEL`` sets both.
"""

from __future__ import annotations

import dataclasses
import logging
import tomllib
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

from cfpoison.attacks.engine import (
    AttackContext,
    MethodOutput,
    register_method,
    warn_untrustworthy,
)
from cfpoison.attacks.gradient import utility_gradient
from cfpoison.attacks.pga import PGAOptions, fit_snapshot, pattern_options, run_pga
from cfpoison.attacks.utility import Utility
from cfpoison.config import JsonConfig, preset_or_file, require, require_unique
from cfpoison.data.ratings import Ratings
from cfpoison.errors import ConfigError
from cfpoison.learners import LearnerConfig, build_learner
from cfpoison.learners.base import Learner, Snapshot
from cfpoison.victims.spec import VictimSpec

log = logging.getLogger(__name__)

#: How the surrogates' utilities combine (option ``aggregate``; module docstring).
AGGREGATES = ("mean", "worst")
#: ``worst``: the soft minimum's temperature, in units of each utility at PGA's start (0.05:
#: a surrogate 0.1 behind the others weighs e^2 = 7.4 times as much).
WORST_TEMPERATURE = 0.05

#: Kinds a surrogate may be: cfpoison's learners, whose implicit gradients are exact.
SURROGATE_KINDS = ("als", "nuclear", "biased")


@dataclasses.dataclass(frozen=True)
class SurrogateSpec(VictimSpec):
    """One surrogate: a victim spec the attacker can differentiate (module docstring).

    Attributes:
        name: label in the attack's history (unique within a panel).
        model: ``als``, ``nuclear`` or ``biased``.
        params: fields of the kind's config (not ``seed``).
        split_offset: 0: the attacker's whole training split; ``s >= 1``: the random
            ``fraction`` of its ratings drawn with the generator seeded by (attack seed, s).
        optional: must be false (every surrogate can run).
        seed: the surrogate learner's seed is the attack learner's seed plus this.
        fraction: share of the attacker's ratings in a split (``split_offset >= 1``).
    """

    seed: int = 0
    fraction: float = 0.9

    def __post_init__(self) -> None:
        require(
            self.model in SURROGATE_KINDS,
            f"surrogate '{self.name}': model must be one of {', '.join(SURROGATE_KINDS)}, "
            f"got {self.model!r}",
        )
        require(not self.optional, f"surrogate '{self.name}': optional is for victims only")
        require(self.split_offset >= 0, f"surrogate '{self.name}': split_offset must be >= 0")
        require(self.seed >= 0, f"surrogate '{self.name}': seed must be >= 0, got {self.seed}")
        require(
            0 < self.fraction <= 1,
            f"surrogate '{self.name}': fraction must be in (0, 1], got {self.fraction}",
        )
        super().__post_init__()

    def learner_config(self, attacked: LearnerConfig) -> LearnerConfig:
        """The surrogate's learner: ``attacked`` with ``params`` when of the same kind, else the
        kind's defaults with ``params``; seeded with ``attacked.seed + seed``."""
        seed = attacked.seed + self.seed
        if attacked.name == self.model:
            try:
                return type(attacked).from_dict({**attacked.to_dict(), **self.params, "seed": seed})
            except ConfigError as err:
                raise ConfigError(f"surrogate '{self.name}': {err}") from None
        config: LearnerConfig = self.config(seed)
        return config


@dataclasses.dataclass(frozen=True)
class SurrogatePanel(JsonConfig):
    """The surrogates whose mean utility the robust attack ascends (names unique)."""

    surrogates: tuple[SurrogateSpec, ...]

    def __post_init__(self) -> None:
        names = [s.name for s in self.surrogates]
        require_unique(
            names, "surrogates: list at least one surrogate", "surrogates: duplicate name(s)"
        )


#: ``default``: the attacked learner itself, ALS on two 90% splits at other seeds (one at
#: lam 12), and biased MF (lam 12) on a third split: seeds, splits, lam values, biased and not.
#: The attacked learner keeps its own stationarity (KKT 1e-5); the other three are fitted to
#: KKT 1e-4, where their gradients still have cos 0.995-0.99998 with the exact ones (ALS,
#: ``cfpoison gradcheck --learner.kkt-tol 1e-4`` at steps 1 and 5, lam 8 and 12) and their
#: adjoint solves converge in 28-71 iterations since the rotations are gauged (without the
#: gauge the biased one hit its 500-iteration cap; ``docs/math.md`` 3.3). On ml-latest-small
#: this halves the robust attack (0.46x wall, alternating A/B runs) and moves every
#: default-panel victim's shift by at most 0.03x uniform (``benchmarks/RESULTS.md``). The
#: biased surrogate stops on its KKT residual only (its objective-change stop leaves 1e-3).
PRESETS: dict[str, SurrogatePanel] = {
    "default": SurrogatePanel(
        (
            SurrogateSpec("self", "als"),
            SurrogateSpec("als-split1", "als", {"kkt_tol": 1e-4}, split_offset=1, seed=11),
            SurrogateSpec(
                "als-lam12-split2",
                "als",
                {"lambda_u": 12.0, "lambda_v": 12.0, "kkt_tol": 1e-4},
                split_offset=2,
                seed=12,
            ),
            SurrogateSpec(
                "biased-lam12-split3",
                "biased",
                {
                    "lambda_u": 12.0,
                    "lambda_v": 12.0,
                    "tol": 0.0,
                    "kkt_tol": 1e-4,
                    "max_sweeps": 2000,
                },
                split_offset=3,
                seed=13,
            ),
        )
    )
}


def load_surrogates(text: str) -> SurrogatePanel:
    """A preset name, else the path of a TOML file of ``[[surrogates]]`` tables (the fields of
    :class:`SurrogateSpec`)."""
    path = preset_or_file(text, PRESETS, "surrogates")
    if isinstance(path, SurrogatePanel):
        return path
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        return SurrogatePanel.from_dict(data)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, ConfigError, TypeError) as err:
        raise ConfigError(f"{path}: {err}") from None


def panel_option(value: Any) -> SurrogatePanel:
    """The panel of ``options["surrogates"]``: a preset name or a panel's dict."""
    if isinstance(value, str) and value in PRESETS:
        return PRESETS[value]
    if isinstance(value, dict):
        try:
            return SurrogatePanel.from_dict(value)
        except TypeError as err:  # a missing required field (name, model)
            raise ConfigError(f"surrogates: {err}") from None
    presets = ", ".join(sorted(PRESETS))
    raise ConfigError(f"robust: option surrogates must be a preset ({presets}) or a panel object")


def subsample(train: Ratings, fraction: float, rng: np.random.Generator) -> Ratings:
    """``round(fraction * |Omega|)`` of the stored ratings, drawn without replacement; the same
    users and items (explicit zeros kept)."""
    matrix = train.matrix
    keep = np.sort(rng.choice(matrix.nnz, size=round(fraction * matrix.nnz), replace=False))
    rows = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))[keep]
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=matrix.shape[0]))])
    sub = sp.csr_array((matrix.data[keep], matrix.indices[keep], indptr), shape=matrix.shape)
    return train.with_matrix(sub, step={"step": "subsample", "fraction": fraction})


@dataclasses.dataclass
class Surrogate:
    """One surrogate at attack time: its data, learner config, clean fit, utility and the
    adjoint of its last solve (the next solve's warm start)."""

    name: str
    train: Ratings
    learner: LearnerConfig
    clean: Learner
    utility: Utility
    adjoint: np.ndarray | None = None

    def fit(self, fake: sp.csr_array, previous: Learner | None) -> Learner:
        """Refit on the surrogate's ratings plus ``fake``, warm-started from ``previous``."""
        init = (previous or self.clean).factors
        return build_learner(self.learner).fit(self.train, init=init, fake=fake)

    def restore(self, fake: sp.csr_array, saved: Snapshot) -> Learner:
        """The fit on ``fake`` and the adjoint that :func:`fit_snapshot` saved."""
        self.adjoint = saved.arrays.get("adjoint")
        return build_learner(self.learner).restore(self.train, saved.part("fit"), fake)

    def value(self, learner: Learner) -> float:
        return self.utility.value(learner.user_factors, learner.item_factors)

    def gradient(
        self,
        learner: Learner,
        fake: sp.csr_array,
        ctx: AttackContext,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """``dR_s/dM~`` on ``fake``'s stored entries (CSR order) and its diagnostics, with the
        attack config's solve tolerance and cap."""
        config = ctx.config
        grad = utility_gradient(
            learner,
            self.train.matrix,
            fake,
            self.utility,
            config.gradient,
            solve_tol=config.solve_tol,
            solve_max_iter=config.solve_max_iter,
            warm_start=self.adjoint,
        )
        self.adjoint = grad.adjoint
        values = grad.on_pattern(fake)
        diagnostics = {"utility": grad.utility, **grad.diagnostics()}
        warn_untrustworthy(f"{config.method} surrogate '{self.name}'", diagnostics)
        return values, diagnostics


def build_surrogates(ctx: AttackContext, panel: SurrogatePanel) -> list[Surrogate]:
    """The panel's surrogates against ``ctx``: each split drawn, each clean model fitted (the
    attack's own clean fit for a surrogate identical to the attacked learner), each utility on
    the attack's targets and weights against the surrogate's own clean predictions."""
    attacked = ctx.config.learner
    out = []
    for spec in panel.surrogates:
        config = spec.learner_config(attacked)
        train = ctx.train
        if spec.split_offset > 0:
            rng = np.random.default_rng([ctx.config.seed, spec.split_offset])
            train = subsample(ctx.train, spec.fraction, rng)
        if config == attacked and train is ctx.train:
            clean: Learner = ctx.clean
        else:
            clean = build_learner(config).fit(train)
        if not clean.converged:
            log.warning(
                "%s surrogate '%s': clean fit unconverged (KKT %.1e)",
                ctx.config.method,
                spec.name,
                clean.kkt_residual(),
            )
        utility = ctx.utility.with_clean(clean.user_factors.copy(), clean.item_factors.copy())
        out.append(Surrogate(spec.name, train, config, clean, utility))
    return out


@dataclasses.dataclass(frozen=True)
class MeanGradient:
    """``sum_s p_s dR_s/dM~`` on one fake pattern (``p_s = 1/S``: the mean; or the soft
    minimum's weights), with each surrogate's diagnostics."""

    pattern: sp.csr_array
    values: np.ndarray
    parts: dict[str, dict[str, Any]]

    def on_pattern(self, pattern: sp.csr_array) -> np.ndarray:
        """The mean gradient on ``pattern`` (the one it was computed on)."""
        if pattern is not self.pattern:
            raise ValueError("robust gradient: asked on another pattern than its own")
        return self.values

    def diagnostics(self) -> dict[str, Any]:
        """The worst fit and solve over the surrogates (PGA's keys), then each surrogate's."""
        parts = list(self.parts.values())
        return {
            "kkt_residual": max(p["kkt_residual"] for p in parts),
            "fit_converged": all(p["fit_converged"] for p in parts),
            "solve_iterations": sum(p["solve_iterations"] for p in parts),
            "solve_residual": max(p["solve_residual"] for p in parts),
            "solve_converged": all(p["solve_converged"] for p in parts),
            "gradient_trustworthy": all(p["gradient_trustworthy"] for p in parts),
            "surrogates": self.parts,
        }


class RobustObjective:
    """PGA's objective (:class:`cfpoison.attacks.pga.Objective`) over surrogates: the state is
    one fitted learner per surrogate, the value their mean utility, or with ``aggregate``
    ``worst`` the soft minimum of their utilities relative to PGA's start (module docstring)."""

    def __init__(self, ctx: AttackContext, surrogates: list[Surrogate], aggregate: str = "mean"):
        if aggregate not in AGGREGATES:
            raise ConfigError(
                f"robust: option aggregate must be one of {', '.join(AGGREGATES)}, "
                f"got {aggregate!r}"
            )
        self.ctx = ctx
        self.surrogates = surrogates
        self.aggregate = aggregate
        self.scales = np.ones(len(surrogates))

    def fit(self, fake: sp.csr_array, previous: list[Learner] | None) -> list[Learner]:
        if previous is not None:
            return [s.fit(fake, p) for s, p in zip(self.surrogates, previous, strict=True)]
        state = [s.fit(fake, None) for s in self.surrogates]
        if self.aggregate == "worst":  # PGA's start: each utility's unit
            start = np.abs(list(self.values(state).values()))
            if not np.all(start > 0):
                raise ConfigError("robust: aggregate worst needs nonzero utilities at the start")
            self.scales = 1.0 / start
        return state

    def values(self, state: list[Learner]) -> dict[str, float]:
        """Each surrogate's utility ``R_s`` at ``state``."""
        return {s.name: s.value(f) for s, f in zip(self.surrogates, state, strict=True)}

    def _weights(self, state: list[Learner]) -> tuple[float, np.ndarray]:
        """The value and ``dvalue/dR_s``: the mean (``1/S`` each), or the soft minimum
        ``-tau log mean_s exp(-r_s / tau)`` of ``r_s = R_s / |R_s(start)|`` (weights
        ``softmax(-r / tau)_s / |R_s(start)|``)."""
        raw = np.array(list(self.values(state).values()))
        if self.aggregate == "mean":
            return float(np.mean(raw)), np.full(len(raw), 1.0 / len(raw))
        relative = -(raw * self.scales) / WORST_TEMPERATURE
        shift = relative.max()
        softmax = np.exp(relative - shift)
        total = softmax.sum()
        value = -WORST_TEMPERATURE * (shift + np.log(total / len(raw)))
        return float(value), softmax / total * self.scales

    def value(self, state: list[Learner]) -> float:
        return self._weights(state)[0]

    def gradient(self, state: list[Learner], fake: sp.csr_array) -> MeanGradient:
        parts = [s.gradient(f, fake, self.ctx) for s, f in zip(self.surrogates, state, strict=True)]
        weights = self._weights(state)[1]
        total = np.sum([w * values for w, (values, _) in zip(weights, parts, strict=True)], axis=0)
        names = [s.name for s in self.surrogates]
        return MeanGradient(fake, total, dict(zip(names, [d for _, d in parts], strict=True)))

    def record(self, state: list[Learner]) -> dict[str, Any]:
        return {"surrogate_utility": self.values(state)}

    def snapshot(self, state: list[Learner]) -> Snapshot:
        """Each surrogate's fit and adjoint (part ``s``: the s-th), and ``worst``'s scales."""
        pairs = zip(self.surrogates, state, strict=True)
        parts = {str(i): fit_snapshot(f, s.adjoint) for i, (s, f) in enumerate(pairs)}
        return Snapshot.nest(parts, {"scales": self.scales})

    def restore(self, fake: sp.csr_array, saved: Snapshot) -> list[Learner]:
        self.scales = saved.arrays["scales"]
        return [s.restore(fake, saved.part(str(i))) for i, s in enumerate(self.surrogates)]


@dataclasses.dataclass(frozen=True)
class RobustOptions(PGAOptions):
    """Robust PGA's settings in ``AttackConfig.options``: PGA's ``start``, the
    ``surrogates`` (a preset name or a panel's dict) and how their utilities ``aggregate``
    (module docstring)."""

    surrogates: Any = "default"
    aggregate: Literal["mean", "worst"] = "mean"

    def __post_init__(self) -> None:
        panel_option(self.surrogates)


@register_method("robust", options=RobustOptions)
def run_robust(ctx: AttackContext) -> MethodOutput:
    """PGA on the mean utility over ``options["surrogates"]`` (module docstring)."""
    options = pattern_options(ctx, RobustOptions, "robust", "greedy: one learner")
    panel = panel_option(options.surrogates)
    objective = RobustObjective(ctx, build_surrogates(ctx, panel), options.aggregate)
    output = run_pga(ctx, objective)
    output.info["surrogates"] = {
        s.name: {
            "learner": s.learner.to_dict(),
            "ratings": s.train.nnz,
            "clean_converged": bool(s.clean.converged),
        }
        for s in objective.surrogates
    }
    return output
