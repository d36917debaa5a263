"""SGLD's trade-off between attack and detection against beta (paper sections 4.3 and 5).

The paper chose ``beta = 0.6``, where the p-value of its paired t-test "stabilizes around
0.7" while the utility stays close to PGA's. Two sweeps, run like the paper's figures
(resumable store, CSV/Parquet table, PNG/SVG figure, Markdown/HTML report):

* ``beta``: SGLD at one budget for each beta, plotting against beta ``log10`` of the
  paper's t-test p-value (``ttest_pvalue``, items paired) and of the activity-matched
  user-paired t-test's (``ttest_users_pvalue``), the attacker's utility (with the clean
  model's as reference) and the RMSE shift (with the seed-noise floor);
* ``compare``: PGA (random items, Algorithm 1), SGLD at ``beta = 0.6`` and the uniform attack
  at the same budget, the same metrics: the paper's claims (PGA detected with p < 0.05, SGLD
  not with p > 0.5, SGLD's RMSE shift above the uniform attack's) side by side.

Cells run through :class:`DetectingRunner`: the attack runner with the detectors on, their
t-test p-value and ROC AUCs lifted to top-level metrics so that the figures can plot them.

The paper does not say which numbers its t-test pairs; under the literal reading (items
paired, :mod:`cfpoison.detect.ttest`) the p-value measures how far the fakes' mean number of
ratings is from the normal users', whatever items they rate, so a p > 0.7 says the paper's
SGLD profiles had about its users' average activity, not that they look real
(``docs/math.md`` section 6). This sweep therefore also plots the calibrated activity-matched
test (``ttest_users_log10_pvalue``) next to the two-sided AUC of the best detector and of the
learned one, and runs SGLD in mimic mode (``sgld_mode``; ``paper`` is Algorithm 2 as printed).
What it measured is in ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from cfpoison.errors import ConfigError
from cfpoison.experiments.attack_runner import AttackRunner
from cfpoison.experiments.paper.figures_1_2 import SGLD_BETA, FigurePart
from cfpoison.experiments.sweeps.runners import CellOutcome, RunContext
from cfpoison.experiments.sweeps.spec import PlotSpec, SweepSpec

BETAS = (0.0, 0.1, 0.3, 0.6, 1.0, 2.0)
QUICK_BETAS = (0.0, 0.6, 2.0)
COMPARED = ("pga", "uniform")
METRICS = (
    "rmse_shift",
    "best_auc_two_sided",
    "learned_auc_two_sided",
    "ttest_users_log10_pvalue",
    "ttest_log10_pvalue",
)
P_FLOOR = 1e-300  # log10 of a p-value that underflowed to 0 is plotted as -300


class DetectingRunner(AttackRunner):
    """The ``attack`` runner with ``detect`` forced on and its key numbers lifted.

    Adds ``ttest_users_pvalue`` (the user-paired t-test), ``log10`` of both t-tests'
    p-values (``ttest_log10_pvalue``, ``ttest_users_log10_pvalue``: the p-values of
    interest span hundreds of orders of magnitude), ``auc_<detector>`` for every shilling
    detector, the two-sided AUC of the best detector (``best_auc_two_sided``, the learned one
    included, named in ``best_detector``) and of the learned detector
    (``learned_auc_two_sided``, None below two fakes) to the cell's metrics, next to the
    nested ``detection`` report.
    """

    def normalize(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        return super().normalize({**settings, "detect": True})

    def run(self, config: Mapping[str, Any], context: RunContext) -> CellOutcome:
        outcome = super().run(config, context)
        detection = outcome.metrics["detection"]
        users_p = detection["ttest_users"]["pvalue"]
        learned = detection["learned"]
        lifted = {
            "ttest_users_pvalue": users_p,
            "ttest_log10_pvalue": _log10(outcome.metrics["ttest_pvalue"]),
            "ttest_users_log10_pvalue": _log10(users_p),
            "best_detector": detection["best_detector"],
            "best_auc_two_sided": detection["best_auc_two_sided"],
            "learned_auc_two_sided": None if learned is None else learned["auc_two_sided"],
        }
        lifted.update({f"auc_{name}": m["auc"] for name, m in detection["detectors"].items()})
        return CellOutcome({**outcome.metrics, **lifted}, outcome.history)


def _log10(pvalue: float | None) -> float | None:
    """``log10(max(p, P_FLOOR))``; None stays None (an undefined test)."""
    if pvalue is None or math.isnan(pvalue):
        return None
    return math.log10(max(pvalue, P_FLOOR))


RUNNER = DetectingRunner()
RUNNER_NAME = "attack_detect"  # the built-in name (sweeps.runners.BUILTIN_RUNNERS)


@dataclasses.dataclass(frozen=True)
class BetaBudget:
    """How much to run: SGLD's steps and chains, PGA's steps, learner settings."""

    betas: tuple[float, ...]
    seeds: int
    sgld: dict[str, Any]
    pga_iterations: int
    learner: dict[str, Any]


FULL = BetaBudget(BETAS, 1, {"iterations": 10, "sgld.chains": 1, "sgld.samples": 2}, 10, {})
QUICK = BetaBudget(
    QUICK_BETAS,
    1,
    {"iterations": 2, "sgld.chains": 1, "sgld.samples": 1},
    2,
    # stationary enough for the gradient (cos 0.987 at PGA's first step on ml-latest-small,
    # `cfpoison gradcheck --learner.kkt-tol 1e-4 --learner.max-sweeps 300`); the earlier
    # objective-change stop 1e-4 with 30 sweeps left KKT 1.2e-2 and cos -0.06
    {"learner.kkt_tol": 1e-4, "learner.max_sweeps": 300},
)


def beta_parts(
    *,
    dataset: str = "ml-latest-small",
    alpha: float = 0.03,
    items_per_user: int = 100,
    mu1: float = 1.0,
    mu2: float = 0.0,
    quick: bool = False,
    seeds: int | None = None,
    betas: tuple[float, ...] | None = None,
    sgld_mode: str = "mimic",
) -> list[FigurePart]:
    """The ``beta`` and ``compare`` sweeps (module docstring) at one budget and utility;
    ``sgld_mode``: SGLD's ``mode`` option (``mimic`` or ``paper``, Algorithm 2 as printed)."""
    if sgld_mode not in ("mimic", "paper"):
        raise ConfigError(f"SGLD mode: mimic or paper, got {sgld_mode!r}")
    budget = QUICK if quick else FULL
    if seeds is not None:
        if seeds < 1:
            raise ConfigError(f"seeds must be >= 1, got {seeds}")
        budget = dataclasses.replace(budget, seeds=seeds)
    if betas is not None:
        if not betas or any(b < 0 for b in betas):
            raise ConfigError(f"betas must be a non-empty list of values >= 0, got {betas}")
        budget = dataclasses.replace(budget, betas=tuple(betas))
    base = {
        "dataset": dataset,
        "learner": "als",
        "alpha": alpha,
        "items_per_user": items_per_user,
        "mu1": mu1,
        "mu2": mu2,
        **budget.learner,
    }
    seed_axis = {"seed": tuple(range(budget.seeds))}
    sgld = {
        "method": ("sgld",),
        "sgld.mode": (sgld_mode,),
        **{k: (v,) for k, v in budget.sgld.items()},
    }
    beta_plot = PlotSpec(
        x="beta",
        x_label="beta",
        x_scale=1.0,
        curve="method",
        panel=(),
        metrics=METRICS,
        references={},
    )
    compare_plot = beta_plot.replace(x="alpha", x_label="malicious users (%)", x_scale=100.0)
    notes = _notes(alpha, items_per_user, mu1, mu2, budget, quick, sgld_mode)
    return [
        FigurePart(
            "beta",
            f"SGLD against beta on {dataset}",
            SweepSpec(
                runner=RUNNER_NAME,
                base=base,
                grid=({**sgld, "beta": budget.betas, **seed_axis},),
                plot=beta_plot,
            ),
            notes,
        ),
        FigurePart(
            "compare",
            f"PGA, SGLD (beta {SGLD_BETA}) and uniform on {dataset}",
            SweepSpec(
                runner=RUNNER_NAME,
                base=base,
                grid=(
                    {**sgld, "beta": (SGLD_BETA,), **seed_axis},
                    {
                        "method": COMPARED,
                        "iterations": (budget.pga_iterations,),
                        **seed_axis,
                    },
                ),
                plot=compare_plot,
            ),
            notes,
        ),
    ]


def _notes(
    alpha: float,
    items_per_user: int,
    mu1: float,
    mu2: float,
    budget: BetaBudget,
    quick: bool,
    sgld_mode: str,
) -> tuple[str, ...]:
    notes = [
        "Paper: Li et al. 2016, section 4.3 (SGLD) and section 5 (beta = 0.6, paired t-test "
        "p about 0.7 for SGLD, p < 0.05 for PGA).",
        f"Budget alpha = {100 * alpha:g}%, B = {items_per_user}, Lambda = 2; utility "
        f"mu1 = {mu1:g}, mu2 = {mu2:g}; alternating minimization with its defaults.",
        f"SGLD settings: mode {sgld_mode}, {budget.sgld} (others at SGLDConfig's defaults); "
        f"PGA runs {budget.pga_iterations} steps.",
        "best_auc_two_sided: the highest max(AUC, 1 - AUC) over the shilling detectors and "
        "the learned detector (gradient boosting on per-user features, real users against the "
        "labelled fakes, 5-fold out-of-fold; learned_auc_two_sided). Even between two groups "
        "of real users the best of nine two-sided AUCs is about 0.63 and the learned one 0.57 "
        "(10 held-out groups of 19 on ml-latest-small): neither is 0.5 at chance.",
        "ttest_pvalue is the paper's test (per item: the fraction of each group's users who "
        "rated it, paired over items): it measures the fake users' activity B against the "
        "normal users' mean activity. ttest_users_pvalue pairs each fake user with "
        "activity-matched normal users on the mean log rating frequency of the items rated: "
        "it measures item choice (see cfpoison.detect.ttest).",
    ]
    if quick:
        notes.append("QUICK RUN: a smoke test of the pipeline, not a measurement.")
    return tuple(notes)
