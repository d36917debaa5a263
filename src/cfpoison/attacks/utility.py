"""Attacker utilities (paper Eq. 7, 8, 9) in low-rank form: no ``m x n`` array anywhere.

With predictions ``P = U V^T`` of the poisoned model on the normal users, the clean
predictions ``Pbar = Ubar Vbar^T`` and the training set Omega of the normal users:

* availability (Eq. 7): ``R_av = sum_{Omega^C} (P - Pbar)^2 = sum_all - sum_Omega``, where
  ``sum_all = ||U V^T - Ubar Vbar^T||_F^2`` costs ``O((m + n) k^2)`` through ``k x k`` Gram
  matrices and ``sum_Omega`` costs ``O(|Omega| k)`` (``docs/math.md`` section 2);
* integrity (Eq. 8): ``R_in = sum_i sum_{j in J0} w_j u_i . v_j = (sum_i u_i) . (sum_j w_j v_j)``;
* hybrid (Eq. 9): ``mu1 R_av + mu2 R_in`` (either coefficient may be negative).

The fake users' predictions never enter R. Gradients are with respect to ``(U, V)``; the fake
users' factors ``U~`` have zero gradient.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import numpy as np
import scipy.sparse as sp

from cfpoison.config import JsonConfig, require
from cfpoison.data.ratings import Ratings
from cfpoison.errors import ConfigError
from cfpoison.learners._sparse import sddmm, with_values

#: The paper's integrity setting: a target whose mean predicted rating is about 0.8 on the
#: shifted scale, with weight 2.
AUTO_TARGET_LEVEL = 0.8
DEFAULT_TARGET_WEIGHT = 2.0


@dataclasses.dataclass(frozen=True)
class UtilityConfig(JsonConfig):
    """The attacker's goal ``mu1 R_av + mu2 R_in``.

    Attributes:
        mu1: weight of availability (Eq. 7).
        mu2: weight of integrity (Eq. 8).
        targets: target items J0 as the data set's own item ids, or ``"auto"`` (the paper: one
            random item whose mean predicted rating over normal users is about 0.8 on the
            shifted scale, drawn with the attack's seed).
        weights: ``w_j`` for each target (empty: 2 for each, the paper's choice).
    """

    mu1: float = 1.0
    mu2: float = 0.0
    targets: tuple[int, ...] | Literal["auto"] = "auto"
    weights: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        require(math.isfinite(self.mu1) and math.isfinite(self.mu2), "mu1, mu2 must be finite")
        require(self.mu1 != 0 or self.mu2 != 0, "mu1 and mu2 cannot both be 0")
        if self.targets == "auto":
            require(len(self.weights) <= 1, "auto target takes at most one weight")
        else:
            require(len(self.targets) > 0, "targets: give at least one item id, or auto")
            require(len(set(self.targets)) == len(self.targets), "targets: duplicate item ids")
            require(
                len(self.weights) in (0, len(self.targets)),
                f"weights: expected {len(self.targets)} values, got {len(self.weights)}",
            )
        require(all(math.isfinite(w) for w in self.weights), "weights must be finite")


def choose_auto_target(
    clean_user: np.ndarray,
    clean_item: np.ndarray,
    rng: np.random.Generator,
    level: float = AUTO_TARGET_LEVEL,
    candidates: int = 20,
) -> int:
    """Column of a random item among the ``candidates`` whose mean prediction is nearest ``level``.

    The mean predicted rating of item j over the m normal users is ``mean_i(u_i) . v_j``.
    """
    means = clean_item @ clean_user.mean(axis=0)
    nearest = np.argsort(np.abs(means - level), kind="stable")[: max(1, candidates)]
    return int(rng.choice(nearest))


def resolve_targets(
    config: UtilityConfig,
    ratings: Ratings,
    clean_user: np.ndarray,
    clean_item: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Target columns and weights (``auto`` draws one item with ``rng``)."""
    if config.targets == "auto":
        columns = np.array([choose_auto_target(clean_user, clean_item, rng)], dtype=np.int64)
    else:
        columns = ratings.item_index(np.asarray(config.targets, dtype=np.int64))
    weights = (
        np.asarray(config.weights, dtype=np.float64)
        if config.weights
        else np.full(len(columns), DEFAULT_TARGET_WEIGHT)
    )
    return columns, weights


def unseen_shift(
    omega: sp.csr_array,
    user: np.ndarray,
    item: np.ndarray,
    clean_user: np.ndarray,
    clean_item: np.ndarray,
) -> tuple[float, sp.csr_array]:
    """``sum_{Omega^C} (u_i.v_j - ubar_i.vbar_j)^2`` and the differences D on Omega (CSR).

    ``sum_all = tr(U'U V'V) - 2 tr((Ubar'U)(V'Vbar)) + tr(Ubar'Ubar Vbar'Vbar)`` minus the sum
    over Omega, whose differences come from one sampled product of ``[U, Ubar]`` and
    ``[V, -Vbar]``.
    """
    total = (
        np.sum((user.T @ user) * (item.T @ item))
        - 2.0 * np.sum((clean_user.T @ user) * (clean_item.T @ item))
        + np.sum((clean_user.T @ clean_user) * (clean_item.T @ clean_item))
    )
    diff = sddmm(omega, np.hstack([user, clean_user]), np.hstack([item, -clean_item]))
    return float(total - diff @ diff), with_values(omega, diff)


@dataclasses.dataclass(frozen=True)
class Utility:
    """``R(U, V) = mu1 R_av + mu2 R_in`` against a fixed clean model (see module docstring).

    Attributes:
        omega: the normal users' training matrix (its pattern is Omega), ``m x n`` CSR.
        clean_user, clean_item: ``Ubar`` (m x k0) and ``Vbar`` (n x k0) of the clean model.
        targets: target columns J0; weights: ``w_j``.
    """

    mu1: float
    mu2: float
    omega: sp.csr_array
    clean_user: np.ndarray
    clean_item: np.ndarray
    targets: np.ndarray
    weights: np.ndarray

    def __post_init__(self) -> None:
        if len(self.targets) != len(self.weights):
            raise ConfigError("targets and weights differ in length")
        if self.mu2 != 0 and len(self.targets) == 0:
            raise ConfigError("an integrity utility (mu2 != 0) needs at least one target")

    def availability(self, user: np.ndarray, item: np.ndarray) -> float:
        """Eq. 7: squared change of the predictions on the unseen entries of normal users."""
        return unseen_shift(self.omega, user, item, self.clean_user, self.clean_item)[0]

    def integrity(self, user: np.ndarray, item: np.ndarray) -> float:
        """Eq. 8: ``sum_i sum_{j in J0} w_j u_i . v_j``."""
        return float(user.sum(axis=0) @ (self.weights @ item[self.targets]))

    def value(self, user: np.ndarray, item: np.ndarray) -> float:
        """Eq. 9: ``mu1 R_av + mu2 R_in``."""
        out = 0.0
        if self.mu1:
            out += self.mu1 * self.availability(user, item)
        if self.mu2:
            out += self.mu2 * self.integrity(user, item)
        return out

    def gradient(self, user: np.ndarray, item: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """``(R, dR/dU, dR/dV)``.

        ``dR_av/dU = 2 (U V'V - Ubar Vbar'V - D V)``, ``dR_av/dV = 2 (V U'U - Vbar Ubar'U - D'U)``
        with D the differences on Omega; ``dR_in/du_i = sum_j w_j v_j``,
        ``dR_in/dv_j = w_j sum_i u_i``.
        """
        grad_user = np.zeros_like(user)
        grad_item = np.zeros_like(item)
        value = 0.0
        if self.mu1:
            av, diff = unseen_shift(self.omega, user, item, self.clean_user, self.clean_item)
            value += self.mu1 * av
            scale = 2.0 * self.mu1
            grad_user += scale * (
                user @ (item.T @ item) - self.clean_user @ (self.clean_item.T @ item) - diff @ item
            )
            grad_item += scale * (
                item @ (user.T @ user)
                - self.clean_item @ (self.clean_user.T @ user)
                - diff.T @ user
            )
        if self.mu2:
            weighted = self.weights @ item[self.targets]
            column_sum = user.sum(axis=0)
            value += self.mu2 * float(column_sum @ weighted)
            grad_user += self.mu2 * weighted[None, :]
            np.add.at(grad_item, self.targets, self.mu2 * self.weights[:, None] * column_sum)
        return value, grad_user, grad_item


def build_utility(
    config: UtilityConfig,
    ratings: Ratings,
    clean_user: np.ndarray,
    clean_item: np.ndarray,
    rng: np.random.Generator,
) -> Utility:
    """The utility of ``config`` against the clean model fitted on ``ratings``."""
    targets, weights = resolve_targets(config, ratings, clean_user, clean_item, rng)
    return Utility(config.mu1, config.mu2, ratings.matrix, clean_user, clean_item, targets, weights)
