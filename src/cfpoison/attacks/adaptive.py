"""Adaptive PGA: Algorithm 1 against a defended learner whose defense the attacker knows.

The method ``adaptive`` ascends ``R(P)``, the utility against the clean undefended model (what
the defense grid measures) at the defended prediction ``P``, exactly through the defense's fits:

* ``bagging``, ``trimmed``, ``detect_remove`` (:class:`cfpoison.defend.defenses.Subset`): ALS
  fits ``b = 1..B`` on subsets of the ratings, set-aside real users folded in,
  ``P = (1/B) sum_b U_b^+ V_b'``. While the subsets stay fixed, ``dR/dM~`` is the sum of each
  fit's implicit gradient (:func:`cfpoison.attacks.gradient.utility_gradient`) with the
  fold-in's adjoint in its right-hand side. Bagging redraws the defense's bags with the
  attack's seed (:func:`cfpoison.defend.defenses.bag_subsets`); trimming re-runs the rounds
  (:func:`cfpoison.defend.defenses.trimmed_fit`, exact except where a residual rank swaps);
  detect-and-remove projects every iterate under the detector's threshold
  (:func:`cfpoison.attacks.evasion.evade`). Derivation: ``docs/math.md`` section 3.8.
* ``huber``, ``influence_cap``, ``als_wr`` (:class:`cfpoison.defend.defenses.ReweightedFit`):
  one fit, stationary for the weighted objective
  ``L = sum_Omega c_i rho(X_ij - w_i.v_j) + sum_i a_i |w_i|^2 + sum_j b_j |v_j|^2``, whose
  gradient is the weighted Hessian's (:class:`cfpoison.learners.hessian.FactorHessian`) with the
  mixed partial scaled by each fake rating's curvature ``h_ij`` (``docs/math.md`` section 3.6).
  The defense's fit is re-run at every iterate, warm; for ``huber`` it is IRLS run to its
  fixed point (:func:`cfpoison.defend.defenses.huber_fit` with ``stationary``), the estimator
  the defense's few IRLS steps approximate, where a fake rating beyond ``delta`` has ``h = 0``.

Option ``defense``: the defense's config as a dict, or a name (its defaults); set both with
``cfpoison attack --against SPEC``.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, cast

import numpy as np
import scipy.sparse as sp

from cfpoison.attacks.engine import (
    AttackContext,
    MethodOutput,
    register_method,
    warn_untrustworthy,
)
from cfpoison.attacks.evasion import evade
from cfpoison.attacks.gradient import ImplicitGradient, system_gradient, utility_gradient
from cfpoison.attacks.pga import PGAOptions, fit_snapshot, pattern_options, run_pga
from cfpoison.attacks.robust import MeanGradient
from cfpoison.attacks.utility import Utility
from cfpoison.defend.defenses import (
    DEFENSES,
    LEARNED,
    ALSWRConfig,
    BaggingConfig,
    DefenseConfig,
    DetectRemoveConfig,
    HuberConfig,
    InfluenceCapConfig,
    ReweightedFit,
    Subset,
    SubsetFit,
    TrimmedConfig,
    bag_learner,
    bag_subsets,
    detector_score,
    fit_subset,
    flagged_subset,
    reweighted_fit,
    trimmed_fit,
)
from cfpoison.defend.model import combined
from cfpoison.errors import ConfigError
from cfpoison.learners import ALSConfig, ALSLearner
from cfpoison.learners.base import Factors, Snapshot
from cfpoison.learners.hessian import FactorHessian
from cfpoison.learners.weighted import WeightedFit, WeightedProblem, fold_in

#: Defenses with an adaptive attacker.
ADAPTIVE_DEFENSES = ("bagging", "trimmed", "detect_remove", "huber", "influence_cap", "als_wr")


def has_adaptive(defense: DefenseConfig) -> bool:
    """Whether :func:`run_adaptive` can attack ``defense`` (see the module docstring)."""
    if isinstance(defense, DetectRemoveConfig):
        return defense.detector != LEARNED and defense.calibration == "reference"
    return True


def defense_option(value: Any) -> DefenseConfig:
    """The defense of ``options["defense"]``: a defense config's dict or a defense name."""
    if isinstance(value, str) and value in DEFENSES:
        value = {"name": value}
    if not isinstance(value, dict) or value.get("name") not in DEFENSES:
        known = ", ".join(DEFENSES)
        raise ConfigError(f"adaptive: option defense must name a defense ({known}): {value!r}")
    config = DEFENSES[value["name"]].from_dict(value)
    if not has_adaptive(config):
        raise ConfigError(
            f"adaptive: no adaptive attacker against {config.label} (built: every defense but "
            "detect_remove with a learned detector or poisoned calibration)"
        )
    return config


def fold_in_adjoint(
    matrix: sp.csr_array,
    item: np.ndarray,
    user: np.ndarray,
    grad_user: np.ndarray,
    rows: np.ndarray,
    lam_u: float,
) -> np.ndarray:
    """``sum_i (du_i/dV)' g_i`` over the folded-in ``rows`` of ``matrix`` (docs/math.md 3.8):
    ``u_i`` (rows of ``user``) the fold-in against ``item``, ``g_i`` rows of ``grad_user``."""
    sub = sp.csr_array(matrix[rows])
    sub.sort_indices()
    k = item.shape[1]
    owner = np.repeat(np.arange(len(rows)), np.diff(sub.indptr))
    rated = item[sub.indices]
    gram = np.zeros((len(rows), k, k))
    np.add.at(gram, owner, rated[:, :, None] * rated[:, None, :])
    gram += lam_u * np.eye(k)
    w = np.linalg.solve(gram, grad_user[rows][:, :, None])[:, :, 0]
    u = user[rows]
    residual = sub.data - np.einsum("pk,pk->p", u[owner], rated)
    along = np.einsum("pk,pk->p", rated, w[owner])

    def scatter(values: np.ndarray, factors: np.ndarray) -> np.ndarray:
        return np.asarray(sp.csr_array((values, sub.indices, sub.indptr), sub.shape).T @ factors)

    return scatter(residual, w) - scatter(along, u)


@dataclasses.dataclass(frozen=True)
class _FitView:
    """``R(P)`` as a function of one fit's ALS factors ``(U_b, V_b)``, the other fits held
    fixed: what :func:`utility_gradient` differentiates for fit b (docs/math.md 3.8)."""

    utility: Utility
    train: sp.csr_array
    set_aside: np.ndarray
    lam_u: float
    n_fits: int
    other_user: np.ndarray  # the other fits' U^+ / B, side by side
    other_item: np.ndarray

    def gradient(self, user: np.ndarray, item: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        rows = np.flatnonzero(self.set_aside)
        full = user.copy()
        if len(rows):
            full[rows] = fold_in(self.train, item, self.lam_u, rows)
        k = user.shape[1]
        value, grad_user, grad_item = self.utility.gradient(
            np.hstack([full / self.n_fits, self.other_user]), np.hstack([item, self.other_item])
        )
        g_user = grad_user[:, :k] / self.n_fits
        g_item = grad_item[:, :k].copy()
        if len(rows):
            g_item += fold_in_adjoint(self.train, item, full, g_user, rows, self.lam_u)
            g_user[rows] = 0.0
        return value, g_user, g_item


@dataclasses.dataclass
class DefendedState:
    """The defense's ALS fits at one fake matrix, and what the defense did."""

    fits: list[SubsetFit]
    info: dict[str, Any] = dataclasses.field(default_factory=dict)

    def ensemble(self) -> tuple[np.ndarray, np.ndarray]:
        """``[U_1^+ .. U_B^+] / B`` and ``[V_1 .. V_B]``: the defended prediction's factors."""
        n = len(self.fits)
        user = np.hstack([f.user for f in self.fits]) / n
        return user, np.hstack([f.fitted.item_factors for f in self.fits])


class DefendedObjective:
    """PGA's objective (:class:`cfpoison.attacks.pga.Objective`) through a defense."""

    def __init__(self, ctx: AttackContext, defense: DefenseConfig):
        learner = ctx.config.learner
        if not isinstance(learner, ALSConfig):
            raise ConfigError("adaptive: the defenses build on ALS; use the als learner")
        self.ctx, self.defense, self.learner = ctx, defense, learner
        self.bags: list[Subset] | None = None
        self.adjoints: list[np.ndarray | None] = []
        self.score = (
            detector_score(defense.detector) if isinstance(defense, DetectRemoveConfig) else None
        )

    def fit(self, fake: sp.csr_array, previous: DefendedState | None) -> DefendedState:
        train, defense = self.ctx.train, self.defense
        init = [f.fitted.factors for f in previous.fits] if previous else None
        if isinstance(defense, BaggingConfig):
            if self.bags is None:
                rng = np.random.default_rng(self.ctx.config.seed)
                self.bags = bag_subsets(train, fake, defense, rng)
            fits = [
                fit_subset(train, s, fake, bag_learner(self.learner, b), init[b] if init else None)
                for b, s in enumerate(self.bags)
            ]
            return DefendedState(fits)
        if isinstance(defense, TrimmedConfig):
            result = trimmed_fit(train, fake, self.learner, defense, init[0] if init else None)
            return DefendedState([result.fit], {"trimmed_converged": result.converged})
        assert isinstance(defense, DetectRemoveConfig)
        subset, _ = flagged_subset(train, fake, defense, self.score)
        fit = fit_subset(train, subset, fake, self.learner, init[0] if init else None)
        flagged = {"flagged_real": int(subset.set_aside.sum())}
        return DefendedState([fit], {**flagged, "flagged_fake": int((~subset.fake_rows).sum())})

    def value(self, state: DefendedState) -> float:
        return self.ctx.utility.value(*state.ensemble())

    def gradient(self, state: DefendedState, fake: sp.csr_array) -> MeanGradient:
        """The sum over the fits of each one's implicit gradient (docs/math.md 3.8), in the
        container of robust PGA (its ``values`` here are the sum, not a mean)."""
        config, n = self.ctx.config, len(state.fits)
        if len(self.adjoints) != n:
            self.adjoints = [None] * n
        total = np.zeros(fake.nnz)
        parts = {}
        for b, fit in enumerate(state.fits):
            others = [f for c, f in enumerate(state.fits) if c != b]
            view = _FitView(
                self.ctx.utility,
                self.ctx.train.matrix,
                fit.subset.set_aside,
                float(fit.fitted.lambda_u),
                n,
                np.hstack([f.user for f in others]) / n if others else np.zeros((len(fit.user), 0)),
                np.hstack([f.fitted.item_factors for f in others])
                if others
                else np.zeros((len(fit.fitted.item_factors), 0)),
            )
            thin = fit.subset.thin(fake)
            grad = utility_gradient(
                fit.fitted,
                fit.subset.real,
                thin,
                cast(Utility, view),  # utility_gradient calls only .gradient(U, V)
                config.gradient,
                solve_tol=config.solve_tol,
                solve_max_iter=config.solve_max_iter,
                warm_start=self.adjoints[b],
            )
            self.adjoints[b] = grad.adjoint
            total[fit.subset.fake_mask(fake)] += grad.on_pattern(thin)
            diagnostics = {"utility": grad.utility, **grad.diagnostics()}
            warn_untrustworthy(f"{config.method} fit {b}", diagnostics)
            parts[f"fit{b}"] = diagnostics
        return MeanGradient(fake, total, parts)

    def record(self, state: DefendedState) -> dict[str, Any]:
        return dict(state.info)

    def snapshot(self, state: DefendedState) -> Snapshot:
        """Each fit b (part ``b``): its subset (the real ratings it kept, part ``real``, and
        the masks), its ALS fit and adjoint (part ``als``) and its folded-in users; the
        defense's info."""
        parts = {}
        for b, fit in enumerate(state.fits):
            subset = fit.subset
            arrays = {
                "fake_rows": subset.fake_rows,
                "fake_entries": subset.fake_entries,
                "set_aside": subset.set_aside,
                "user": fit.user,
            }
            real = Snapshot.of_matrix(subset.real)
            als = fit_snapshot(fit.fitted, self.adjoints[b])
            parts[str(b)] = Snapshot.nest({"real": real, "als": als}, arrays)
        return Snapshot.nest(parts, record={"fits": len(state.fits), "info": state.info})

    def restore(self, fake: sp.csr_array, saved: Snapshot) -> DefendedState:
        bagging = isinstance(self.defense, BaggingConfig)
        fits, self.adjoints = [], []
        for b in range(saved.record["fits"]):
            part = saved.part(str(b))
            a, real, als = part.arrays, part.part("real").matrix(), part.part("als")
            subset = Subset(real, a["fake_rows"], a["fake_entries"], a["set_aside"])
            learner = ALSLearner(bag_learner(self.learner, b) if bagging else self.learner)
            train = self.ctx.train.with_matrix(real)
            fitted = learner.restore(train, als.part("fit"), subset.thin(fake))
            fits.append(SubsetFit(subset, fitted, a["user"]))
            self.adjoints.append(als.arrays.get("adjoint"))
        if bagging:
            self.bags = [fit.subset for fit in fits]
        return DefendedState(fits, saved.record["info"])

    def project(self, fake: sp.csr_array) -> sp.csr_array:
        """Detect-and-remove: ``fake`` under the detector's threshold (continuous ratings)."""
        assert isinstance(self.defense, DetectRemoveConfig) and self.score is not None
        threat = self.ctx.config.threat
        return evade(
            self.ctx.train,
            fake,
            self.score,
            self.defense.fpr,
            threat.max_rating,
            snap_to_grid=False,
        ).fake


def reweighted_hessian(
    state: ReweightedFit, train: sp.csr_array, fake: sp.csr_array
) -> FactorHessian:
    """The weighted objective's Hessian at a reweighting defense's fit (module docstring):
    ``train`` and ``fake`` the real and fake rows of its combined matrix."""
    m, c = train.shape[0], state.row_weights
    return FactorHessian(
        train,
        fake,
        state.fit.user[:m],
        state.fit.user[m:],
        state.fit.item,
        state.problem.lam_users,
        state.problem.lam_items,
        weights=(np.repeat(c[:m], np.diff(train.indptr)), np.repeat(c[m:], np.diff(fake.indptr))),
        delta=state.delta,
    )


class ReweightedObjective:
    """PGA's objective (:class:`cfpoison.attacks.pga.Objective`) through a reweighting defense:
    the state is the defense's fit, the gradient the weighted objective's (module docstring)."""

    def __init__(self, ctx: AttackContext, defense: HuberConfig | InfluenceCapConfig | ALSWRConfig):
        learner = ctx.config.learner
        if not isinstance(learner, ALSConfig):
            raise ConfigError("adaptive: the defenses build on ALS; use the als learner")
        self.ctx, self.defense, self.learner = ctx, defense, learner
        self.adjoint: np.ndarray | None = None

    def fit(self, fake: sp.csr_array, previous: ReweightedFit | None) -> ReweightedFit:
        return reweighted_fit(
            self.ctx.train, fake, self.learner, self.defense, previous, stationary=True
        )

    def value(self, state: ReweightedFit) -> float:
        return self.ctx.utility.value(state.fit.user[: self.ctx.train.n_users], state.fit.item)

    def gradient(self, state: ReweightedFit, fake: sp.csr_array) -> ImplicitGradient:
        """The implicit gradient of the weighted objective; its fit counts as converged when the
        defense's fits did and the objective's KKT residual is within the learner's ``kkt_tol``
        (for Huber, IRLS may stop short of its fixed point)."""
        start = time.perf_counter()
        config = self.ctx.config
        hessian = reweighted_hessian(state, self.ctx.train.matrix, fake)
        kkt = hessian.kkt_residual()
        grad = system_gradient(
            hessian,
            self.ctx.utility,
            config.gradient,
            kkt_residual=kkt,
            fit_converged=state.converged
            and (self.learner.kkt_tol <= 0 or kkt <= self.learner.kkt_tol),
            solve_tol=config.solve_tol,
            solve_max_iter=config.solve_max_iter,
            warm_start=self.adjoint,
            start=start,
        )
        self.adjoint = grad.adjoint
        warn_untrustworthy(config.method, grad.diagnostics())
        return grad

    def record(self, state: ReweightedFit) -> dict[str, Any]:
        return {"sweeps": state.fit.sweeps, **state.info}

    def snapshot(self, state: ReweightedFit) -> Snapshot:
        """The defense's fit: factors, weights, regularization, Huber's start (part
        ``start``) and how it ended; and the adjoint."""
        fit, problem = state.fit, state.problem
        arrays = {
            "user": fit.user,
            "item": fit.item,
            "weights": state.weights,
            "row_weights": state.row_weights,
            "lam_users": problem.lam_users,
            "lam_items": problem.lam_items,
            "adjoint": self.adjoint,
        }
        start = {} if state.start is None else {"start": Snapshot(state.start.named(), {})}
        ended = {"objective": fit.objective, "sweeps": fit.sweeps, "converged": fit.converged}
        return Snapshot.nest(start, arrays, {**ended, "delta": state.delta, "info": state.info})

    def restore(self, fake: sp.csr_array, saved: Snapshot) -> ReweightedFit:
        a, r = saved.arrays, saved.record
        self.adjoint = a.get("adjoint")
        matrix = combined(self.ctx.train, fake)
        problem = WeightedProblem.build(matrix, a["lam_users"], a["lam_items"])
        fit = WeightedFit(a["user"], a["item"], r["objective"], r["sweeps"], r["converged"])
        start = Factors.of_named(saved.part("start").arrays) if "start" in r else None
        return ReweightedFit(
            problem, a["weights"], fit, a["row_weights"], r["delta"], r["info"], start
        )


@dataclasses.dataclass(frozen=True)
class AdaptiveOptions(PGAOptions):
    """Adaptive PGA's settings in ``AttackConfig.options``: PGA's ``start`` and the
    ``defense`` it attacks (a defense's name or its config's dict)."""

    defense: Any = "bagging"

    def __post_init__(self) -> None:
        defense_option(self.defense)


@register_method("adaptive", options=AdaptiveOptions)
def run_adaptive(ctx: AttackContext) -> MethodOutput:
    """PGA against ``options["defense"]`` (module docstring)."""
    config = ctx.config
    options = pattern_options(ctx, AdaptiveOptions, "adaptive", "a fixed pattern")
    defense = defense_option(options.defense)
    if isinstance(defense, HuberConfig | InfluenceCapConfig | ALSWRConfig):
        output = run_pga(ctx, ReweightedObjective(ctx, defense))
        output.info["defense"] = defense.to_dict()
        return output
    objective = DefendedObjective(ctx, defense)
    detect = isinstance(defense, DetectRemoveConfig)
    output = run_pga(ctx, objective, objective.project if detect else None)
    output.info["defense"] = defense.to_dict()
    if isinstance(defense, DetectRemoveConfig):
        assert objective.score is not None
        final = evade(
            ctx.train,
            output.fake,
            objective.score,
            defense.fpr,
            config.threat.max_rating,
            snap_to_grid=config.snap,
        )
        output.fake = final.fake
        output.info["still_flagged"] = final.still_flagged
    return output
