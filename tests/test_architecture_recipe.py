"""``docs/architecture.md``'s recipe "to add a learner", followed for a toy learner.

The toy is plain alternating least squares written with NumPy row solves (no kernels, no
acceleration): step 1 (a config and a learner inheriting ``SquaredLossLearner``), step 2 (one
line in ``LEARNERS``), step 3 (the learner, gradient and model contracts), and then PGA on it
through the ordinary attack engine. If the recipe misses a file, this test fails.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import ClassVar, Literal, Self

import numpy as np
import pytest
import scipy.sparse as sp

from cfpoison.attacks import AttackConfig, ThreatModel, UtilityConfig, run_attack
from cfpoison.config import JsonConfig, require
from cfpoison.data.ratings import Ratings
from cfpoison.learners import LEARNERS
from cfpoison.learners.base import Factors
from cfpoison.learners.factored import check_indices
from cfpoison.learners.hessian import FactorHessian, SquaredLossLearner
from cfpoison.models import FittedModel
from contracts import LearnerCase, LearnerContract
from test_gradient_contract import CASES, GradientCase, _explicit, fit_case
from test_gradient_contract import (
    test_gradient_matches_finite_differences_of_resolved_fits as gradient_contract,
)
from test_models import MODELS, FittedModelContract, _learner, data  # noqa: F401 (its fixture)


@dataclasses.dataclass(frozen=True)
class ToyConfig(JsonConfig):
    """Step 1: the config (a name, the kind, whether starts matter, validated fields)."""

    kind: ClassVar[str] = "learner"
    unique_optimum: ClassVar[bool] = False
    name: Literal["toy"] = "toy"
    rank: int = 2
    lambda_u: float = 1.0
    lambda_v: float = 1.5
    kkt_tol: float = 1e-11
    max_sweeps: int = 20_000
    seed: int = 0

    def __post_init__(self) -> None:
        require(self.rank >= 1, "toy: rank must be >= 1")
        require(self.lambda_u > 0 and self.lambda_v > 0, "toy: lambdas must be > 0")


class ToyLearner(SquaredLossLearner):
    """Step 1: the learner: exact row solves of ``L`` by NumPy, until the KKT tolerance."""

    def __init__(self, config: ToyConfig | None = None) -> None:
        self.config = config or ToyConfig()
        self._factors: Factors | None = None
        self._hessian: FactorHessian | None = None
        self.history: list[float] = []

    def fit(
        self, ratings: Ratings, init: Factors | None = None, fake: sp.csr_array | None = None
    ) -> Self:
        c = self.config
        fake = sp.csr_array((0, ratings.n_items)) if fake is None else sp.csr_array(fake)
        stacked = sp.csr_array(sp.vstack([ratings.matrix, fake], format="csr"))
        rng = np.random.default_rng(c.seed)
        item = rng.normal(0, 0.1, (ratings.n_items, c.rank)) if init is None else init.item
        users = np.zeros((stacked.shape[0], c.rank))
        self.history = []
        for _ in range(c.max_sweeps):
            users = _solve_rows(stacked, item, c.lambda_u)
            item = _solve_rows(sp.csr_array(stacked.T), users, c.lambda_v)
            m = ratings.n_users
            self._factors = Factors(users[:m], item, users[m:])
            self._hessian = self.adjoint_system(ratings.matrix, fake)
            self.history.append(self.objective())
            if self._hessian.kkt_residual() <= c.kkt_tol:
                break
        return self

    @property
    def factors(self) -> Factors:
        if self._factors is None:
            raise RuntimeError("toy: call fit() first")
        return self._factors

    @property
    def lambda_u(self) -> float:
        return self.config.lambda_u

    @property
    def lambda_v(self) -> float:
        return self.config.lambda_v

    @property
    def n_sweeps(self) -> int:
        return len(self.history)

    @property
    def converged(self) -> bool:
        return self.kkt_residual() <= self.config.kkt_tol

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        f = self.factors
        users, items = check_indices(users, items, len(f.user), len(f.item))
        return np.einsum("pk,pk->p", f.user[users], f.item[items])

    def objective(self) -> float:
        h, c = self._fitted_hessian(), self.config
        residual = np.concatenate([h._residual_train.data, h._residual_fake.data])
        penalty = c.lambda_u * (np.sum(h.user**2) + np.sum(h.fake_user**2))
        return float(residual @ residual + penalty + c.lambda_v * np.sum(h.item**2))

    def kkt_residual(self) -> float:
        return self._fitted_hessian().kkt_residual()

    def _fitted_hessian(self) -> FactorHessian:
        if self._hessian is None:
            raise RuntimeError("toy: call fit() first")
        return self._hessian


def _solve_rows(matrix: sp.csr_array, other: np.ndarray, lam: float) -> np.ndarray:
    """``argmin_x sum_j (M_rj - x.y_j)^2 + lam |x|^2`` for every row r."""
    k = other.shape[1]
    out = np.zeros((matrix.shape[0], k))
    for r in range(matrix.shape[0]):
        cols = matrix.indices[matrix.indptr[r] : matrix.indptr[r + 1]]
        y = other[cols]
        values = matrix.data[matrix.indptr[r] : matrix.indptr[r + 1]]
        out[r] = np.linalg.solve(y.T @ y + lam * np.eye(k), y.T @ values)
    return out


@pytest.fixture(scope="module", autouse=True)
def registered() -> Iterator[None]:
    """Step 2: one line in ``LEARNERS`` (undone after this module)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(LEARNERS, "toy", (ToyConfig, ToyLearner))
        patch.setitem(CASES, "toy", GradientCase(ToyConfig(), *_explicit(5), fit_case))
        patch.setitem(MODELS, "toy", _learner(ToyConfig()))
        yield


class TestToyLearner(LearnerContract):
    """Step 3: the learner contract."""

    @pytest.fixture(scope="class")
    @staticmethod
    def learner_case() -> LearnerCase:
        ratings, fake = _explicit(2)
        return LearnerCase(ToyConfig(), ratings, fake)  # type: ignore[arg-type]


@pytest.mark.parametrize("model", ["toy"], indirect=True)
class TestToyModel(FittedModelContract):
    """Step 3: the model contract."""


@pytest.mark.parametrize("goal", ["availability", "integrity"])
def test_toy_gradient_contract(goal: str) -> None:
    """Step 3: the gradient contract."""
    gradient_contract("toy", goal)


def test_pga_attacks_the_toy_learner() -> None:
    """And the ordinary attack engine runs PGA on it, every gradient trustworthy."""
    ratings, _ = _explicit(8, m=40, n=20)
    config = AttackConfig(
        learner=ToyConfig(kkt_tol=1e-8),  # type: ignore[arg-type]
        threat=ThreatModel(alpha=0.05, items_per_user=6),
        utility=UtilityConfig(mu1=0.0, mu2=1.0, targets=(5,)),
        iterations=2,
    )
    result = run_attack(ratings, config)
    assert isinstance(result, object) and result.fake.shape[0] == 2
    assert all(h["gradient_trustworthy"] for h in result.history if "gradient_trustworthy" in h)
    assert result.metrics["target_mean_after"][0] > result.metrics["target_mean_before"][0]
    assert isinstance(ToyLearner(ToyConfig()).fit(ratings), FittedModel)
