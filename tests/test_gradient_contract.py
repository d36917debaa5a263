"""One gradient contract for every differentiable learner.

Through the one path (:func:`cfpoison.attacks.gradient.utility_gradient` on the learner's
adjoint system), ``dR/dM~`` on the fake pattern must match central differences of re-solved
fits (each refit warm-started and driven to a tight KKT residual) with cosine >= 0.99, for an
availability, an integrity, a ranking and a promotion (softplus ranking) utility. A new
learner joins by adding its case.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

from cfpoison.attacks import AttackConfig, ThreatModel, UtilityConfig, run_attack
from cfpoison.attacks.gradient import utility_gradient
from cfpoison.attacks.utility import Utility, candidate_pattern
from cfpoison.data.interactions import Interactions
from cfpoison.data.ratings import Ratings, RatingScale
from cfpoison.learners import (
    ALSConfig,
    BiasedConfig,
    BPRConfig,
    NuclearConfig,
    WRMFConfig,
    build_learner,
)
from cfpoison.models.ranking import top_unrated

TIGHT = {"tol": 0.0, "kkt_tol": 1e-11}


@dataclasses.dataclass(frozen=True)
class GradientCase:
    """A learner config fitted tightly, the data it is fitted on, and the fake rows."""

    config: Any
    data: Any
    fake: sp.csr_array
    fit: Callable[[Any, Any, sp.csr_array, Any], Any]


def _explicit(seed: int, m: int = 24, n: int = 14, m_fake: int = 3) -> tuple[Ratings, sp.csr_array]:
    rng = np.random.default_rng(seed)
    mask = rng.random((m, n)) < 0.5
    mask[:, 0] = mask[0, :] = True
    M = np.clip(rng.normal(size=(m, 2)) @ rng.normal(size=(n, 2)).T / 1.5, -2, 2)
    rows, cols = np.nonzero(mask)
    matrix = sp.csr_array((M[rows, cols], (rows, cols)), shape=(m, n))
    ratings = Ratings(matrix, np.arange(m) + 1, np.arange(n) + 1, RatingScale(1, 5, 0.5), "g")
    fr, fc = np.nonzero(rng.random((m_fake, n)) < 0.5)
    fake = sp.csr_array((rng.uniform(-2, 2, len(fr)), (fr, fc)), shape=(m_fake, n))
    fake.sort_indices()
    return ratings, fake


def _implicit(
    seed: int, m: int = 24, n: int = 14, m_fake: int = 2
) -> tuple[Interactions, sp.csr_array]:
    """Thresholded low-rank preferences, and fake rows of relaxed weights inside (0, 1)."""
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=(m, 2)) @ rng.normal(size=(2, n))
    users, items = np.nonzero(scores > 0.3)
    data = Interactions.from_triples(users + 1, items + 1, name="g")
    fr, fc = np.nonzero(rng.random((m_fake, data.n_items)) < 0.4)
    fake = sp.csr_array((rng.uniform(0.2, 0.8, len(fr)), (fr, fc)), shape=(m_fake, data.n_items))
    fake.sort_indices()
    return data, fake


def fit_case(config: Any, data: Ratings | Interactions, fake: sp.csr_array, init: Any) -> Any:
    return build_learner(config).fit(data, init=init, fake=fake)


def _cases() -> dict[str, GradientCase]:
    ratings, fake = _explicit(5)
    return {
        "als": GradientCase(
            ALSConfig(rank=2, lambda_u=1.0, lambda_v=1.5, max_sweeps=50_000, **TIGHT),
            ratings,
            fake,
            fit_case,
        ),
        "nuclear": GradientCase(
            NuclearConfig(
                lam=3.0, rank=2, tol=0.0, kkt_tol=1e-11, certificate_tol=1e-9, max_sweeps=200_000
            ),
            ratings,
            fake,
            fit_case,
        ),
        "biased": GradientCase(
            BiasedConfig(
                rank=2, lambda_u=1.0, lambda_v=1.5, lambda_bias=0.5, max_sweeps=50_000, **TIGHT
            ),
            ratings,
            fake,
            fit_case,
        ),
        "wrmf": GradientCase(
            WRMFConfig(rank=2, lam=1.0, alpha=2.0, kkt_tol=1e-11, max_sweeps=50_000, threads=1),
            *_implicit(6),
            fit_case,
        ),
        "bpr": GradientCase(
            BPRConfig(rank=2, lam=0.5, negatives=3, tol=1e-11, max_iters=500, threads=1),
            *_implicit(7),
            fit_case,
        ),
    }


CASES = _cases()
GOALS = {
    "availability": (1.0, 0.0, 0.0, "sigmoid"),
    "integrity": (0.0, 1.0, 0.0, "sigmoid"),
    "ranking": (0.0, 0.0, 1.0, "sigmoid"),
    "promotion": (0.0, 0.0, 1.0, "softplus"),
}


def _utility(case: GradientCase, goal: str) -> Utility:
    mu1, mu2, mu3, loss = GOALS[goal]
    clean = case.fit(case.config, case.data, sp.csr_array((0, case.data.n_items)), None)
    omega = case.data.matrix
    target = np.array([int(np.argmin(np.diff(omega.tocsc().indptr)))])  # the least-rated item
    top = top_unrated(omega, clean.user_factors, clean.item_factors, 4, exclude=target)
    return Utility(
        mu1,
        mu2,
        omega,
        clean.user_factors,
        clean.item_factors,
        target,
        np.array([1.0]),
        mu3=mu3,
        candidates=candidate_pattern(top, omega.shape[1]),
        temperature=0.5,
        ranking_loss=loss,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("goal", list(GOALS))
@pytest.mark.parametrize("name", list(CASES))
def test_gradient_matches_finite_differences_of_resolved_fits(name: str, goal: str) -> None:
    case = CASES[name]
    utility = _utility(case, goal)
    fitted = case.fit(case.config, case.data, case.fake, None)
    grad = utility_gradient(
        fitted, case.data.matrix, case.fake, utility, solve_tol=1e-11, solve_max_iter=5000
    )
    assert grad.trustworthy, grad.diagnostics()
    analytic = grad.on_pattern(case.fake)
    eps, numeric = 1e-5, []
    for t in range(case.fake.nnz):
        values = []
        for sign in (1.0, -1.0):
            moved = case.fake.copy()
            moved.data = moved.data.copy()
            moved.data[t] += sign * eps
            refit = case.fit(case.config, case.data, moved, fitted.factors)
            values.append(utility.value(refit.user_factors, refit.item_factors))
        numeric.append((values[0] - values[1]) / (2 * eps))
    numeric_arr = np.array(numeric)
    cosine = float(analytic @ numeric_arr) / (
        np.linalg.norm(analytic) * np.linalg.norm(numeric_arr)
    )
    assert cosine >= 0.99, (name, goal, cosine)


def test_biased_mf_is_attacked_directly() -> None:
    """``AttackConfig(learner=BiasedConfig(...))``: PGA through biased MF's own adjoint system
    raises the target, with every gradient trustworthy."""
    ratings, _ = _explicit(8, m=40, n=20)
    config = AttackConfig(
        learner=BiasedConfig(rank=2, threads=1, kkt_tol=1e-8, max_sweeps=5000),
        threat=ThreatModel(alpha=0.05, items_per_user=6),
        utility=UtilityConfig(mu1=0.0, mu2=1.0, targets=(5,)),
        iterations=3,
        seed=0,
    )
    result = run_attack(ratings, AttackConfig.from_json(config.to_json()))
    steps = [h for h in result.history if "gradient_trustworthy" in h]
    assert steps and all(h["gradient_trustworthy"] for h in steps)
    assert result.metrics["target_mean_after"][0] > result.metrics["target_mean_before"][0] + 0.1
