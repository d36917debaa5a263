"""Attacker utilities (paper Eq. 7, 8, 9) in low-rank form: no ``m x n`` array anywhere.

With predictions ``P = U V^T`` of the poisoned model on the normal users, the clean
predictions ``Pbar = Ubar Vbar^T`` and the training set Omega of the normal users:

* availability (Eq. 7): ``R_av = sum_{Omega^C} (P - Pbar)^2 = sum_all - sum_Omega``, where
  ``sum_all = ||U V^T - Ubar Vbar^T||_F^2`` costs ``O((m + n) k^2)`` through ``k x k`` Gram
  matrices and ``sum_Omega`` costs ``O(|Omega| k)`` (``docs/math.md`` section 2);
* integrity (Eq. 8): ``R_in = sum_i sum_{j in J0} w_j u_i . v_j = (sum_i u_i) . (sum_j w_j v_j)``;
* ranking (beyond the paper): with the candidates ``C_i`` (the clean model's top
  ``rank_candidates`` items that user i has not rated, targets excluded) and the pairs P of a
  normal user i and a target t that i has not rated, minus the weighted mean smoothed rank of
  the target among the candidates,
  ``R_rk = -(1/|P|) sum_{(i,t) in P} w_t sum_{j in C_i} sigma((s_ij - s_it) / T)``,
  ``s = u . v`` and T the temperature (``docs/math.md`` section 2.1). A target that beats
  every candidate scores 0; one below them all scores ``-w_t |C_i|``. With C_i the clean top
  k' >= k the target enters user i's top k about when fewer than k candidates beat it;
* hybrid (Eq. 9, extended): ``mu1 R_av + mu2 R_in + mu3 R_rk`` (any coefficient may be
  negative).

The fake users' predictions never enter R. Gradients are with respect to ``(U, V)``; the fake
users' factors ``U~`` have zero gradient.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Literal

import numpy as np
import scipy.sparse as sp
from scipy.special import expit

from cfpoison.config import JsonConfig, require
from cfpoison.data.ratings import Ratings
from cfpoison.errors import ConfigError
from cfpoison.learners._sparse import sddmm, with_values
from cfpoison.models.measures import unseen_shift
from cfpoison.models.ranking import top_unrated, unrated_pairs

#: The paper's integrity setting: a target whose mean predicted rating is about 0.8 on the
#: shifted scale, with weight 2.
AUTO_TARGET_LEVEL = 0.8
DEFAULT_TARGET_WEIGHT = 2.0


@dataclasses.dataclass(frozen=True)
class UtilityConfig(JsonConfig):
    """The attacker's goal ``mu1 R_av + mu2 R_in + mu3 R_rk`` (module docstring).

    Attributes:
        mu1: weight of availability (Eq. 7).
        mu2: weight of integrity (Eq. 8).
        mu3: weight of ranking: minus the targets' smoothed rank among each normal user's
            top candidates (not in the paper).
        targets: target items J0 as the data set's own item ids, or ``"auto"`` (the paper: one
            random item whose mean predicted rating over normal users is about 0.8 on the
            shifted scale, drawn with the attack's seed).
        weights: ``w_j`` for each target (empty: 2 for each, the paper's choice).
        rank_candidates: ranking: each user's candidates, the clean model's top items among
            those the user has not rated (targets excluded); twice the top 10 by default.
        rank_temperature: ranking: the sigmoid's temperature T on the shifted scale (a
            target 0.3 below the clean 10th item, the median on ml-latest-small, is 3 T).
    """

    mu1: float = 1.0
    mu2: float = 0.0
    mu3: float = 0.0
    targets: tuple[int, ...] | Literal["auto"] = "auto"
    weights: tuple[float, ...] = ()
    rank_candidates: int = 20
    rank_temperature: float = 0.1

    def __post_init__(self) -> None:
        require(
            all(math.isfinite(mu) for mu in (self.mu1, self.mu2, self.mu3)),
            "mu1, mu2, mu3 must be finite",
        )
        require(self.mu1 != 0 or self.mu2 != 0 or self.mu3 != 0, "mu1, mu2 and mu3 cannot all be 0")
        require(
            self.rank_candidates >= 1,
            f"rank_candidates must be >= 1, got {self.rank_candidates}",
        )
        require(
            math.isfinite(self.rank_temperature) and self.rank_temperature > 0,
            f"rank_temperature must be > 0, got {self.rank_temperature}",
        )
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


def candidate_pattern(top: np.ndarray, n_items: int) -> sp.csr_array:
    """The ``m x n`` CSR pattern (values 1) of :func:`top_unrated`'s lists (``-1`` dropped)."""
    ordered = np.sort(top, axis=1)  # pads (-1) first; sorted indices per row
    indptr = np.concatenate([[0], np.cumsum((top >= 0).sum(axis=1))])
    indices = ordered[ordered >= 0]
    return sp.csr_array((np.ones(len(indices)), indices, indptr), shape=(len(top), n_items))


@dataclasses.dataclass(frozen=True)
class Utility:
    """``R(U, V) = mu1 R_av + mu2 R_in + mu3 R_rk`` against a fixed clean model (see module
    docstring).

    Attributes:
        omega: the normal users' training matrix (its pattern is Omega), ``m x n`` CSR.
        clean_user, clean_item: ``Ubar`` (m x k0) and ``Vbar`` (n x k0) of the clean model.
        targets: target columns J0; weights: ``w_j``.
        candidates: ranking: the ``m x n`` CSR pattern of each user's candidates C_i
            (:func:`candidate_pattern`; needed when ``mu3 != 0``).
        temperature: ranking: the sigmoid's temperature T.
        ranking_loss: ranking: ``sigmoid`` counts the candidates above the target smoothly,
            ``sigma(d)``; ``softplus`` charges ``log(1 + e^d)`` instead, whose slope stays
            ``1 / T`` for a target far below its candidates, where the sigmoid's vanishes
            (a cold item: the implicit promotion attacks).
    """

    mu1: float
    mu2: float
    omega: sp.csr_array
    clean_user: np.ndarray
    clean_item: np.ndarray
    targets: np.ndarray
    weights: np.ndarray
    mu3: float = 0.0
    candidates: sp.csr_array | None = None
    temperature: float = 0.1
    ranking_loss: Literal["sigmoid", "softplus"] = "sigmoid"

    def __post_init__(self) -> None:
        if len(self.targets) != len(self.weights):
            raise ConfigError("targets and weights differ in length")
        if (self.mu2 != 0 or self.mu3 != 0) and len(self.targets) == 0:
            raise ConfigError("an integrity or ranking utility (mu2, mu3) needs a target")
        if self.mu3 != 0 and self.candidates is None:
            raise ConfigError("a ranking utility (mu3 != 0) needs each user's candidates")

    def availability(self, user: np.ndarray, item: np.ndarray) -> float:
        """Eq. 7: squared change of the predictions on the unseen entries of normal users."""
        return unseen_shift(self.omega, user, item, self.clean_user, self.clean_item)[0]

    def integrity(self, user: np.ndarray, item: np.ndarray) -> float:
        """Eq. 8: ``sum_i sum_{j in J0} w_j u_i . v_j``."""
        return float(user.sum(axis=0) @ (self.weights @ item[self.targets]))

    @functools.cached_property
    def pair_weights(self) -> np.ndarray:
        """``m x |J0|``: ``w_t / |P|`` where user i has not rated target t (a pair of P), else 0."""
        unrated = unrated_pairs(self.omega, self.targets)
        return unrated * self.weights[None, :] / max(int(unrated.sum()), 1)

    def ranking(self, user: np.ndarray, item: np.ndarray) -> float:
        """``R_rk``: minus the weighted mean smoothed rank of the targets (module docstring)."""
        return self._ranking(user, item, gradient=False)[0]

    def _ranking(
        self, user: np.ndarray, item: np.ndarray, gradient: bool
    ) -> tuple[float, np.ndarray | None, np.ndarray | None]:
        """``R_rk`` and, if asked, its gradients. With ``h_ij = c_i l'(d_ij) / T`` (l the loss),
        ``d_ij = (s_ij - s_it) / T`` and ``c_i`` the pair weight: ``dR/du_i = -sum_j h_ij
        (v_j - v_t)``, ``dR/dv_j = -sum_i h_ij u_i`` (j a candidate), ``dR/dv_t = sum_ij h_ij
        u_i``; one sampled product on the candidate pattern per target."""
        assert self.candidates is not None
        pattern = self.candidates
        rows = np.repeat(np.arange(pattern.shape[0]), np.diff(pattern.indptr))
        scores = sddmm(pattern, user, item)
        grad_user = np.zeros_like(user) if gradient else None
        grad_item = np.zeros_like(item) if gradient else None
        value = 0.0
        for t, target in enumerate(self.targets):
            weight = self.pair_weights[:, t]
            d = (scores - (user @ item[target])[rows]) / self.temperature
            sigma = expit(d)
            if self.ranking_loss == "softplus":
                value -= float(weight[rows] @ np.logaddexp(0.0, d))
                slope = sigma
            else:
                value -= float(weight[rows] @ sigma)
                slope = sigma * (1.0 - sigma)
            if grad_user is None or grad_item is None:
                continue
            h = with_values(pattern, weight[rows] * slope / self.temperature)
            row_sum = np.asarray(h.sum(axis=1)).ravel()
            grad_user -= h @ item - row_sum[:, None] * item[target]
            grad_item -= h.T @ user
            grad_item[target] += row_sum @ user
        return value, grad_user, grad_item

    def value(self, user: np.ndarray, item: np.ndarray) -> float:
        """Eq. 9 with ranking: ``mu1 R_av + mu2 R_in + mu3 R_rk``."""
        out = 0.0
        if self.mu1:
            out += self.mu1 * self.availability(user, item)
        if self.mu2:
            out += self.mu2 * self.integrity(user, item)
        if self.mu3:
            out += self.mu3 * self.ranking(user, item)
        return out

    def gradient(self, user: np.ndarray, item: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """``(R, dR/dU, dR/dV)``.

        ``dR_av/dU = 2 (U V'V - Ubar Vbar'V - D V)``, ``dR_av/dV = 2 (V U'U - Vbar Ubar'U - D'U)``
        with D the differences on Omega; ``dR_in/du_i = sum_j w_j v_j``,
        ``dR_in/dv_j = w_j sum_i u_i``; ranking: :meth:`_ranking`.
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
        if self.mu3:
            rk, rk_user, rk_item = self._ranking(user, item, gradient=True)
            assert rk_user is not None and rk_item is not None
            value += self.mu3 * rk
            grad_user += self.mu3 * rk_user
            grad_item += self.mu3 * rk_item
        return value, grad_user, grad_item

    def with_clean(self, clean_user: np.ndarray, clean_item: np.ndarray) -> Utility:
        """The same goal (targets, candidates) against another clean model (a surrogate's)."""
        return dataclasses.replace(self, clean_user=clean_user, clean_item=clean_item)


def build_utility(
    config: UtilityConfig,
    ratings: Ratings,
    clean_user: np.ndarray,
    clean_item: np.ndarray,
    rng: np.random.Generator,
) -> Utility:
    """The utility of ``config`` against the clean model fitted on ``ratings``; a ranking
    part takes its candidates from that clean model."""
    targets, weights = resolve_targets(config, ratings, clean_user, clean_item, rng)
    candidates = None
    if config.mu3 != 0:
        top = top_unrated(
            ratings.matrix, clean_user, clean_item, config.rank_candidates, exclude=targets
        )
        candidates = candidate_pattern(top, ratings.n_items)
    return Utility(
        config.mu1,
        config.mu2,
        ratings.matrix,
        clean_user,
        clean_item,
        targets,
        weights,
        config.mu3,
        candidates,
        config.rank_temperature,
    )
