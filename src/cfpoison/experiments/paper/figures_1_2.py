"""The paper's Figures 1 and 2 (Li et al. 2016, section 5) as sweeps.

Both figures plot, against the percentage of malicious users, the RMSE shift of the
predictions on unseen entries and the target item's mean predicted rating (both in stars), in
four panels ``(mu1, mu2) = (1, 0), (1, -1), (0, 1), (-1, 1)``, for PGA, SGLD (beta = 0.6) and
the uniform attack, beside the stronger of the average and bandwagon shilling attacks (by the
attacker's utility in each panel) as a reference curve. Figure 1 attacks alternating
minimization on MovieLens; Figure 2 attacks nuclear-norm minimization on the paper's subset
of 1000 users x 1700 movies (the most active users and the most rated movies; ml-latest-small
has only 610 users, and the titles give the real sizes) and, here, on the full set as well.
The target is the paper's: one random item whose mean predicted rating is about 0.8 on the
shifted scale, weight 2.

The paper does not list its x values, B, Lambda or the learners' rank and regularization;
we use alpha = 1..5 %, B = 100, Lambda = 2 (the whole shifted scale), the learners'
defaults except nuclear norm's lam (``NUCLEAR_LAM``), and say so in the report. ``quick``
keeps the same shape on a smaller grid (two alphas, two seeds, a few iterations, looser
learner and gradient-solve tolerances) so that Figure 1 runs in minutes on two cores; its
numbers are a smoke test, not a reproduction.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from cfpoison.errors import ConfigError
from cfpoison.experiments.sweeps.spec import PlotSpec, SweepSpec

FigureName = Literal["fig1", "fig2"]
PANELS = ((1.0, 0.0), (1.0, -1.0), (0.0, 1.0), (-1.0, 1.0))
METHODS = ("pga", "sgld", "uniform")
SHILLING = ("average", "bandwagon")
PLOT = PlotSpec(
    x_label="malicious users (% of normal users)",
    metrics=("rmse_shift_stars", "target_mean_after"),
    floors={"rmse_shift_stars": "rmse_shift_noise_floor_stars"},
    baselines=SHILLING,
    y_spans={"target_mean_after": 0.5},
)
SGLD_BETA = 0.6
# Nuclear norm's lam for Figure 2: on ml-latest-small's 610 x 1700 subset lam = 20 gives a
# rank-25 solution with test RMSE 0.90 and a 15 s fit; the learner's default lam = 8 gives
# rank 100 and 2-3 minutes per fit (measured on 2 cores), too slow for hundreds of refits.
NUCLEAR_LAM = 20.0


@dataclasses.dataclass(frozen=True)
class Budget:
    """How much of the grid to run."""

    alphas: tuple[float, ...]
    seeds: int
    iterations: int  # PGA steps
    sgld_iterations: int  # SGLD steps per chain
    learner: dict[str, Any]  # learner settings beyond the defaults
    gradient: dict[str, Any]  # settings of the implicit gradient's linear solve
    sgld: dict[str, Any]  # SGLD settings beyond the defaults (besides beta)


# One SGLD chain of 20 steps: SGLD was 80% of the full Figure 1's projected 45 minutes with
# two chains (benchmarks/RESULTS.md, issue 13); one keeps the grid within 30 minutes on 2 cores.
FULL = Budget((0.01, 0.02, 0.03, 0.04, 0.05), 3, 20, 20, {}, {}, {"sgld.chains": 1})
QUICK = Budget(
    (0.01, 0.03),
    2,
    2,
    3,
    {"learner.kkt_tol": 1e-4, "learner.max_sweeps": 300},
    {"solve_tol": 1e-2, "solve_max_iter": 100},
    {"sgld.chains": 1, "sgld.samples": 2},
)


@dataclasses.dataclass(frozen=True)
class FigurePart:
    """One sweep of a figure: its output name, title, sweep and notes for the report."""

    name: str
    title: str
    spec: SweepSpec
    notes: tuple[str, ...]


def figure_parts(
    figure: str,
    *,
    dataset: str = "ml-latest-small",
    quick: bool = False,
    seeds: int | None = None,
    methods: tuple[str, ...] = METHODS + SHILLING,
) -> list[FigurePart]:
    """The sweeps of ``figure``: ``fig1`` one, ``fig2`` the 1000 x 1700 subset and the full set."""
    budget = QUICK if quick else FULL
    if seeds is not None:
        if seeds < 1:
            raise ConfigError(f"seeds must be >= 1, got {seeds}")
        budget = dataclasses.replace(budget, seeds=seeds)
    unknown = sorted(set(methods) - set(METHODS + SHILLING))
    if unknown:
        choices = ", ".join(METHODS + SHILLING)
        raise ConfigError(f"unknown method(s) {', '.join(unknown)}; choose from {choices}")
    notes = _notes(budget, quick)
    if figure == "fig1":
        base = {"dataset": dataset, "learner": "als", **budget.learner, **budget.gradient}
        title = f"Figure 1: alternating minimization on {dataset}"
        return [FigurePart("fig1", title, _spec(base, budget, methods), notes)]
    if figure == "fig2":
        base = {
            "dataset": dataset,
            "learner": "nuclear",
            "learner.lam": NUCLEAR_LAM,
            **_nuclear(budget.learner),
            **budget.gradient,
        }
        subset = {**base, "preprocess.top_users": 1000, "preprocess.top_items": 1700}
        return [
            FigurePart(
                "fig2-subset",
                f"Figure 2: nuclear norm on {dataset}, the paper's subset (top 1000 users x "
                "1700 movies)",
                _spec(subset, budget, methods),
                notes,
            ),
            FigurePart(
                "fig2-full",
                f"Figure 2 (full set): nuclear norm on {dataset}",
                _spec(base, budget, methods),
                notes,
            ),
        ]
    raise ConfigError(f"unknown figure {figure!r}: fig1 or fig2")


def _nuclear(learner: dict[str, Any]) -> dict[str, Any]:
    """Quick learner settings that nuclear norm also has (it has no max_sweeps)."""
    return {k: v for k, v in learner.items() if k in ("learner.tol", "learner.kkt_tol")}


def _spec(base: dict[str, Any], budget: Budget, methods: tuple[str, ...]) -> SweepSpec:
    common = {"alpha": budget.alphas, "seed": tuple(range(budget.seeds))}
    blocks = []
    for mu1, mu2 in PANELS:
        panel = {"mu1": (mu1,), "mu2": (mu2,), **common}
        plain = tuple(m for m in methods if m != "sgld")
        if plain:
            blocks.append({**panel, "method": plain, "iterations": (budget.iterations,)})
        if "sgld" in methods:
            sgld = {
                "method": ("sgld",),
                "beta": (SGLD_BETA,),
                "iterations": (budget.sgld_iterations,),
                **{name: (value,) for name, value in budget.sgld.items()},
            }
            blocks.append({**panel, **sgld})
    return SweepSpec(runner="attack", base=base, grid=tuple(blocks), plot=PLOT)


def _notes(budget: Budget, quick: bool) -> tuple[str, ...]:
    alphas = ", ".join(f"{100 * a:g}%" for a in budget.alphas)
    notes = [
        "Paper: Li, Wang, Singh, Vorobeychik, Data Poisoning Attacks on Factorization-Based "
        "Collaborative Filtering, NIPS 2016, Figures 1 and 2.",
        f"Malicious users: {alphas} of the normal users; {budget.seeds} seeds per point "
        "(each seed draws the attack's random items, the auto target and the learner's "
        "initialisation); curves are the mean, error bars one standard deviation over seeds. "
        "The grey band is the seed-noise floor (the shift between two clean fits that differ "
        "only in their seed): a shift inside it is no evidence of an attack. The dashed "
        "reference curve is the stronger shilling attack (average or bandwagon, by the "
        "attacker's mean utility in the panel); the tables list both.",
        "Not given in the paper, chosen here: the x values, B = 100 items per fake user, "
        "Lambda = 2 (the whole shifted scale), ALS's default rank and regularization, "
        f"nuclear norm's lam = {NUCLEAR_LAM:g}.",
        f"SGLD uses beta = {SGLD_BETA} (the paper's choice) with its default prior, "
        f"{budget.sgld_iterations} steps on one chain (Algorithm 2, the paper's mode).",
    ]
    if quick:
        notes.append(
            f"QUICK RUN: {budget.iterations} PGA steps, {budget.sgld_iterations} SGLD steps on "
            "one chain, looser learner and gradient-solve tolerances. A smoke test of the "
            "pipeline, not a reproduction."
        )
    return tuple(notes)
