"""Contract test mixins: what every learner and every attack method must do.

A test class inherits a contract and defines the one fixture it names (class-scoped, as a
``@classmethod``: pytest deprecates class-scoped fixtures that are instance methods); pytest
then runs the contract's tests on it.

* :class:`LearnerContract` needs ``learner_case`` (a :class:`LearnerCase`): ``fit`` returns
  the learner, the factors have the data's shapes, a fit reaches a small relative KKT
  residual, a refit from its own solution stays there and stops after a sweep or two, a fixed
  seed gives the same factors, ``predict`` is the factors' row dot products and refuses bad
  indices, and the config round-trips JSON.
* :class:`AttackMethodContract` needs ``attack_case`` (an :class:`AttackCase`): through
  :func:`run_attack` the method's profiles are feasible (``m'`` rows, at most ``B`` items per
  row, ``|r| <= Lambda``, on the rating grid when snapped), a fixed seed gives the same
  profiles and another seed different ones, and the result's JSON round-trips its config.
* :func:`assert_gauged_solve`: a whole-system adjoint solve that gauges the rotations
  changes nothing at an exact fit and pays for none of their inconsistency at an inexact one.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

from cfpoison.attacks.engine import AttackConfig, AttackResult, available_methods, run_attack
from cfpoison.attacks.threat import grid_values
from cfpoison.data.interactions import Interactions
from cfpoison.data.ratings import Ratings
from cfpoison.errors import DataError
from cfpoison.learners import ImplicitLearnerConfig, Learner, LearnerConfig, build_learner
from cfpoison.learners.adjoint import AdjointSystem, minres_solve

#: A converged fit's relative KKT residual is at most this.
KKT_TOL = 1e-6


@dataclasses.dataclass(frozen=True)
class LearnerCase:
    """A learner config (tight enough to converge) and a small problem with fake rows."""

    config: LearnerConfig | ImplicitLearnerConfig
    ratings: Ratings | Interactions
    fake: sp.csr_array

    def fit(self, **changes: object) -> Learner:
        config = self.config.replace(**changes) if changes else self.config
        return build_learner(config).fit(self.ratings, fake=self.fake)


class LearnerContract:
    """Mixin for a learner's test class; the class defines the fixture ``learner_case``."""

    @pytest.fixture(scope="class")
    @classmethod
    def fitted(cls, learner_case: LearnerCase) -> Learner:
        return learner_case.fit()

    def test_fit_returns_the_learner_with_factors_of_the_data_shapes(
        self, learner_case: LearnerCase
    ) -> None:
        learner = build_learner(learner_case.config)
        with pytest.raises(RuntimeError):
            learner.objective()  # not fitted yet
        assert learner.fit(learner_case.ratings, fake=learner_case.fake) is learner
        assert isinstance(learner, Learner)
        f, k = learner.factors, learner.user_factors.shape[1]
        assert k >= 1
        assert f.user.shape == (learner_case.ratings.n_users, k)
        assert f.item.shape == (learner_case.ratings.n_items, k)
        assert f.fake_user.shape == (learner_case.fake.shape[0], k)
        for block in (f.user, f.item, f.fake_user):
            assert np.all(np.isfinite(block))

    def test_refit_from_its_own_solution_is_stationary(
        self, learner_case: LearnerCase, fitted: Learner
    ) -> None:
        assert fitted.kkt_residual() <= KKT_TOL
        again = build_learner(learner_case.config).fit(
            learner_case.ratings, init=fitted.factors, fake=learner_case.fake
        )
        assert again.n_sweeps <= 2
        assert again.kkt_residual() <= KKT_TOL
        rows, cols, _ = learner_case.ratings.triples()
        np.testing.assert_allclose(
            again.predict(rows, cols), fitted.predict(rows, cols), rtol=0, atol=1e-5
        )
        assert again.objective() <= fitted.objective() * (1 + 1e-9)

    def test_a_fixed_seed_gives_the_same_factors(
        self, learner_case: LearnerCase, fitted: Learner
    ) -> None:
        again = learner_case.fit()
        np.testing.assert_array_equal(again.user_factors, fitted.user_factors)
        np.testing.assert_array_equal(again.item_factors, fitted.item_factors)
        np.testing.assert_array_equal(again.fake_user_factors, fitted.fake_user_factors)

    def test_predict_is_the_factors_dot_product_and_checks_indices(self, fitted: Learner) -> None:
        m, n = fitted.user_factors.shape[0], fitted.item_factors.shape[0]
        users, items = np.array([0, m - 1, m // 2]), np.array([n - 1, 0, n // 2])
        expected = np.sum(fitted.user_factors[users] * fitted.item_factors[items], axis=1)
        np.testing.assert_allclose(fitted.predict(users, items), expected, rtol=1e-12)
        for bad_users, bad_items in (([m], [0]), ([0], [n]), ([-1], [0]), ([0, 1], [0])):
            with pytest.raises(DataError):
                fitted.predict(np.array(bad_users), np.array(bad_items))

    def test_config_round_trips_json(self, learner_case: LearnerCase, fitted: Learner) -> None:
        config = learner_case.config
        again = type(config).from_json(config.to_json())
        assert again == config and again.digest() == config.digest()
        assert fitted.config == config


@dataclasses.dataclass(frozen=True)
class AttackCase:
    """A small data set and an attack config whose ``method`` is the one under test."""

    train: Ratings
    config: AttackConfig


class AttackMethodContract:
    """Mixin for an attack method's test class; the class defines the fixture
    ``attack_case``."""

    @pytest.fixture(scope="class")
    @classmethod
    def attacked(cls, attack_case: AttackCase) -> AttackResult:
        return run_attack(attack_case.train, attack_case.config)

    def test_the_method_is_registered(self, attack_case: AttackCase) -> None:
        assert attack_case.config.method in available_methods()

    @pytest.mark.parametrize("snap", [True, False])
    def test_profiles_are_feasible(
        self, attack_case: AttackCase, attacked: AttackResult, snap: bool
    ) -> None:
        config, train = attack_case.config, attack_case.train
        result = attacked if snap else run_attack(train, config.replace(snap=False))
        threat, fake = config.threat, result.fake
        assert fake.shape == (threat.n_fake(train.n_users), train.n_items)
        lengths = np.diff(fake.indptr)
        assert lengths.min() >= 1 and lengths.max() <= threat.items_per_user
        for row in range(fake.shape[0]):  # no column twice in a row
            columns = fake.indices[fake.indptr[row] : fake.indptr[row + 1]]
            assert len(np.unique(columns)) == len(columns)
        assert np.all(np.isfinite(fake.data))
        assert np.abs(fake.data).max() <= threat.max_rating + 1e-12
        grid = grid_values(train.scale, threat.max_rating)
        if snap and grid is not None:
            distance = np.abs(fake.data[:, None] - grid[None, :]).min(axis=1)
            assert distance.max() <= 1e-12

    def test_a_fixed_seed_gives_the_same_profiles(
        self, attack_case: AttackCase, attacked: AttackResult
    ) -> None:
        config, train = attack_case.config, attack_case.train
        again = run_attack(train, config)
        assert (again.fake != attacked.fake).nnz == 0
        assert again.targets == attacked.targets
        assert again.utility_history == attacked.utility_history
        other = run_attack(train, config.replace(seed=config.seed + 1))
        assert (other.fake != attacked.fake).nnz > 0  # the seed is used

    def test_result_json_round_trips_its_config(
        self, attack_case: AttackCase, attacked: AttackResult
    ) -> None:
        payload = json.loads(json.dumps(attacked.to_dict()))
        assert payload["method"] == attack_case.config.method
        assert AttackConfig.from_dict(payload["config"]) == attack_case.config
        assert payload["n_fake"] == attacked.fake.shape[0]


def assert_gauged_solve(
    exact: tuple[AdjointSystem, np.ndarray], inexact: tuple[AdjointSystem, np.ndarray], fake
) -> None:
    """``(system, rhs)`` at an exact fit and at one stationary to about 1e-5, ``rhs`` the
    gradient of a utility of ``U V'``: the gauged ``system.solve`` takes the plain MINRES's
    iterations at the exact fit, with the same fake-entry gradient; at the inexact one at most
    a third of them, and both give the exact fit's gradient to 1e-3."""

    def plain(system: Any, rhs: np.ndarray) -> Any:
        return minres_solve(system.matvec, system.precondition, rhs, 1e-8, 5000)

    system, rhs = exact
    gauged, reference_solve = system.solve(rhs, 1e-8, 5000), plain(system, rhs)
    assert gauged.converged and gauged.iterations == reference_solve.iterations
    reference = system.fake_gradient(reference_solve.x, fake)
    np.testing.assert_allclose(system.fake_gradient(gauged.x, fake), reference, rtol=1e-8)
    system, rhs = inexact
    gauged, unguarded = system.solve(rhs, 1e-8, 5000), plain(system, rhs)
    assert gauged.converged and gauged.iterations <= unguarded.iterations / 3
    for x in (gauged.x, unguarded.x):
        gradient = system.fake_gradient(x, fake)
        assert np.linalg.norm(gradient - reference) <= 1e-3 * np.linalg.norm(reference)
