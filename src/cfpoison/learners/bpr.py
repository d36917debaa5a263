"""BPR-MF (Rendle et al. 2009) fitted to a stationary point of a fixed-sample objective.

Scores ``s_ui = u_u.v_i`` (users x items, no biases). With ``W = [U; U~]`` (normal users,
then fake users), ``l(x) = -ln sigma(x)`` and, for each positive ``(u, i)``, a fixed set
``N_ui`` of ``S`` negatives drawn once from the config's seed (``docs/bpr.md``)::

    L = sum_u sum_{i in I_u} r_ui sum_{j in N_ui} l(s_ui - s_uj)
        + sum_f sum_i w_fi sum_{j in N_fi} l(s~_fi - s_fj)
        + lam (||U||^2 + ||U~||^2 + ||V||^2)

``r_ui`` is the interaction's stored weight (1 when binarised), ``w_fi in [0, 1]`` the fake
users' relaxed weights (an entry not stored: 0). A normal user's negatives are uniform over
the items the user has not interacted with; a fake user's ``N_fi`` is uniform over the items
``!= i``, drawn by a counter-based hash of ``(seed, f, i, s)`` for every ``(f, i)``, so it is
independent of ``w`` (L is smooth in ``w``) and the dense fake gradient is defined on all
``m' x n`` entries. SGD with fresh negatives has no stationary point; this L has one, and the
fit is a stationary point of it to ``|grad L| / |2 lam theta| <= tol``, so the implicit
function theorem gives the attacker's gradient (``docs/math.md`` section 3):
``z = H^{-1} g``, ``dR/dw_fi = -(d grad L / d w_fi) . z``.

The fit is a truncated Newton method (Newton-CG) with the exact Hessian-vector products of
:class:`BPRSystem`, block-Jacobi preconditioned, with an Armijo line search; the full
objective over all non-interacted negatives costs 3.1 s per gradient on ml-latest-small
(2 cores, 461M pairs), against 243k pairs for ``S = 5`` (``docs/bpr.md``).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable
from typing import Any, Literal, Self

import numpy as np
import scipy.sparse as sp

from cfpoison.config import require_ranges
from cfpoison.data.interactions import Interactions
from cfpoison.errors import DataError
from cfpoison.learners import bpr_kernels as kern
from cfpoison.learners._sparse import checked_fake
from cfpoison.learners.adjoint import SolveResult, minres_solve
from cfpoison.learners.base import Factors, LearnerSettings, cap_log_level, serial_blas
from cfpoison.learners.factored import FittedLearner
from cfpoison.learners.hessian import rotations_to_gauge
from cfpoison.learners.kernels import set_threads

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class BPRConfig(LearnerSettings):
    """BPR-MF on the fixed-sample objective ``L`` (module docstring).

    Attributes:
        rank: number of latent factors k; the defaults (16, lam 1, S 5) give HR@10 0.63
            on a random 80/20 split of ml-latest-small binarised (popularity: 0.55).
        lam: regularization of every factor row (``lam ||theta||^2``; the data term grows
            with ``negatives``, so lam is relative to it).
        negatives: negatives S drawn once per positive (and per fake user-item cell).
        max_iters: cap on Newton iterations; a fit that hits it is reported (``converged``
            False, a logged warning).
        tol: stop when the relative stationarity ``|grad L| / |2 lam theta|`` is at most this.
        init_scale: standard deviation of the random initial factors (all of U, U~, V).
        seed: seed of the initial factors and of the negatives.
        threads: numba threads (0 = all cores).
    """

    name: Literal["bpr"] = "bpr"
    rank: int = 16
    lam: float = 1.0
    negatives: int = 5
    max_iters: int = 200
    tol: float = 1e-6
    init_scale: float = 0.1
    seed: int = 0
    threads: int = 0

    def __post_init__(self) -> None:
        require_ranges(
            self,
            "bpr",
            rank=">= 1",
            lam="finite > 0",
            negatives=">= 1",
            max_iters=">= 1",
            tol="> 0",
            init_scale="finite > 0",
            seed=">= 0",
            threads=">= 0",
        )


@dataclasses.dataclass(frozen=True)
class Pairs:
    """The sampled triples of L, grouped by user row of ``W = [U; U~]`` and indexed by item.

    Attributes:
        indptr: pairs of row r are ``indptr[r]:indptr[r + 1]`` (``m + m' + 1``).
        pos, neg, weight, rows: each pair's positive, negative, weight and row of W.
        item_ptr, occurrences: :func:`cfpoison.learners.bpr_kernels.group_by_item`.
        n_users, n_fake, n_items: the shapes.
    """

    indptr: np.ndarray
    pos: np.ndarray
    neg: np.ndarray
    weight: np.ndarray
    rows: np.ndarray
    item_ptr: np.ndarray
    occurrences: np.ndarray
    n_users: int
    n_fake: int
    n_items: int

    @classmethod
    def build(cls, train: sp.csr_array, fake: sp.csr_array, negatives: int, seed: int) -> Pairs:
        """The triples of ``train`` (``m x n``, weights > 0, sorted) and ``fake`` (checked)."""
        m, n = train.shape
        if np.any(np.diff(train.indptr) >= n):
            raise DataError("bpr: a user has interacted with every item (no negatives)")
        s = negatives
        real_ptr = np.asarray(train.indptr, dtype=np.int64)
        real_idx = np.asarray(train.indices, dtype=np.int64)
        fake_ptr = np.asarray(fake.indptr, dtype=np.int64)
        fake_idx = np.asarray(fake.indices, dtype=np.int64)
        neg = np.concatenate(
            [
                kern.real_negatives(real_ptr, real_idx, n, s, kern.stream_key(seed, 0)),
                kern.fake_negatives(fake_ptr, fake_idx, n, s, kern.stream_key(seed, 1)),
            ]
        )
        pos = np.repeat(np.concatenate([real_idx, fake_idx]), s).astype(np.int32)
        weight = np.repeat(np.concatenate([train.data, fake.data]).astype(np.float64), s)
        indptr = np.concatenate([real_ptr, real_ptr[-1] + fake_ptr[1:]]) * s
        rows = np.repeat(np.arange(m + fake.shape[0], dtype=np.int64), np.diff(indptr))
        item_ptr, occurrences = kern.group_by_item(pos, neg, n)
        return cls(indptr, pos, neg, weight, rows, item_ptr, occurrences, m, fake.shape[0], n)


class BPRSystem:
    """L's value, gradient and exact Hessian at ``theta = (U, U~, V)``; an
    :class:`~cfpoison.learners.adjoint.AdjointSystem`.

    Flat vectors are ``[vec(U), vec(U~), vec(V)]`` (row-major). For a pair with
    ``x = w.(v_i - v_j)`` and a direction with ``dx = dw.(v_i - v_j) + w.(dv_i - dv_j)``,
    ``H d`` gains ``c l'' dx (v_i - v_j) + c l' (dv_i - dv_j)`` at ``w``, and
    ``+-(c l'' dx w + c l' dw)`` at ``v_i`` (+) and ``v_j`` (-); plus ``2 lam d``. The
    diagonal blocks are ``2 lam I + sum c l'' (v_i - v_j)(v_i - v_j)'`` (users) and
    ``2 lam I + sum c l'' w w'`` (items), positive definite: the block-Jacobi preconditioner.
    H is singular along the rotations ``(W S, V S)``, S skew, at a minimum and indefinite
    away from one: solves use MINRES.
    """

    def __init__(
        self,
        pairs: Pairs,
        theta: np.ndarray,
        rank: int,
        lam: float,
        negatives: int,
        seed: int,
    ):
        self.pairs, self.theta, self.k, self.lam = pairs, theta, rank, lam
        self.negatives, self.seed = negatives, seed
        rows = pairs.n_users + pairs.n_fake
        self.W = theta[: rows * rank].reshape(rows, rank)
        self.V = theta[rows * rank :].reshape(pairs.n_items, rank)
        size = len(pairs.pos)
        self.first, self.second = np.empty(size), np.empty(size)
        loss = np.empty(rows)
        grad = np.empty_like(theta)
        gW, gV = self._halves(grad)
        kern.pair_terms(
            pairs.indptr,
            pairs.pos,
            pairs.neg,
            pairs.weight,
            self.W,
            self.V,
            self.first,
            self.second,
            loss,
            gW,
        )
        gV[:] = 0.0
        kern.item_sums(
            pairs.item_ptr,
            pairs.occurrences,
            pairs.rows,
            self.first,
            self.W,
            np.empty(0),
            self.W,
            gV,
        )
        self.penalty_grad = 2.0 * lam * theta
        self.value = float(loss.sum()) + lam * float(theta @ theta)
        self.grad = grad + self.penalty_grad
        self._blocks: tuple[np.ndarray, np.ndarray] | None = None
        self._diagonals: np.ndarray | None = None

    def _halves(self, flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = self.pairs.n_users + self.pairs.n_fake
        return flat[: rows * self.k].reshape(rows, self.k), flat[rows * self.k :].reshape(
            -1, self.k
        )

    @property
    def user(self) -> np.ndarray:
        return self.W[: self.pairs.n_users]

    @property
    def fake_user(self) -> np.ndarray:
        return self.W[self.pairs.n_users :]

    @property
    def item(self) -> np.ndarray:
        return self.V

    def kkt_residual(self) -> float:
        """Relative stationarity ``|grad L| / |2 lam theta|`` (0 at a stationary point)."""
        scale = float(np.linalg.norm(self.penalty_grad))
        return float(np.linalg.norm(self.grad)) / scale if scale > 0 else math.inf

    def matvec(self, flat: np.ndarray) -> np.ndarray:
        """``H d`` (class docstring): one pass over the pairs by user, one by item."""
        p = self.pairs
        flat = np.ascontiguousarray(flat, dtype=np.float64)
        dW, dV = self._halves(flat)
        out = 2.0 * self.lam * flat
        oW, oV = self._halves(out)
        scaled = np.empty(len(p.pos))
        kern.hessian_users(
            p.indptr, p.pos, p.neg, self.first, self.second, self.W, self.V, dW, dV, scaled, oW
        )
        kern.item_sums(p.item_ptr, p.occurrences, p.rows, scaled, self.W, self.first, dW, oV)
        return out

    def diagonal_blocks(self) -> np.ndarray:
        """H's diagonal ``k x k`` blocks, users (``m + m'``) then items."""
        if self._diagonals is None:
            p, diagonal = self.pairs, 2.0 * self.lam
            users = kern.user_blocks(p.indptr, p.pos, p.neg, self.second, self.V, diagonal)
            items = kern.item_blocks(
                p.item_ptr, p.occurrences, p.rows, self.second, self.W, diagonal
            )
            self._diagonals = np.concatenate([users, items])
        return self._diagonals

    def block_inverse(self) -> tuple[np.ndarray, np.ndarray]:
        """Inverses of H's diagonal ``k x k`` blocks, users (``m + m'``) and items."""
        if self._blocks is None:
            inverses = np.linalg.inv(self.diagonal_blocks())
            self._blocks = (inverses[: len(self.W)], inverses[len(self.W) :])
        return self._blocks

    def precondition(self, rhs: np.ndarray) -> np.ndarray:
        """H's block-diagonal inverse applied to ``rhs``."""
        users, items = self.block_inverse()
        rW, rV = self._halves(np.asarray(rhs, dtype=np.float64))
        return np.concatenate(
            [np.einsum("rab,rb->ra", users, rW).ravel(), np.einsum("rab,rb->ra", items, rV).ravel()]
        )

    def rhs(self, grad_user: np.ndarray, grad_item: np.ndarray) -> np.ndarray:
        """``g = (dR/dU, 0, dR/dV)`` flat."""
        zero = np.zeros(self.pairs.n_fake * self.k)
        return np.concatenate([np.ravel(grad_user), zero, np.ravel(grad_item)])

    def solve(
        self, rhs: np.ndarray, tol: float, max_iter: int, x0: np.ndarray | None = None
    ) -> SolveResult:
        """``H z = rhs`` by block-Jacobi preconditioned MINRES, stopped on the true relative
        residual (:func:`cfpoison.learners.adjoint.minres_solve`), the rotations
        ``(W S, V S)`` gauged where ``rhs`` is orthogonal to them
        (:func:`cfpoison.learners.hessian.solve`)."""
        factors = np.vstack([self.W, self.V])
        rotations = rotations_to_gauge(
            (factors,), (rhs.reshape(factors.shape),), factors, self.diagonal_blocks()
        )
        with serial_blas():
            return minres_solve(self.matvec, self.precondition, rhs, tol, max_iter, x0, rotations)

    def _mixed_arguments(self, adjoint: np.ndarray) -> tuple[Any, ...]:
        """What the mixed-partial kernels take after the pattern: ``U~``, ``V``, the
        adjoint's fake-user and item halves, the negatives and their stream."""
        zW, zV = self._halves(np.ascontiguousarray(adjoint, dtype=np.float64))
        zF = np.ascontiguousarray(zW[self.pairs.n_users :])
        fake_user = np.ascontiguousarray(self.fake_user)
        return fake_user, self.V, zF, zV, self.negatives, kern.stream_key(self.seed, 1)

    def fake_gradient(self, adjoint: np.ndarray, pattern: sp.csr_array) -> np.ndarray:
        """``dR/dw_fi = -sum_j l'(x) ((v_i - v_j).z_f + u~_f.(z_i - z_j))`` on the stored
        entries of ``pattern`` (``m' x n``), CSR order."""
        if pattern.shape != (self.pairs.n_fake, self.pairs.n_items):
            raise DataError(f"bpr: pattern of shape {pattern.shape}, expected the fake rows'")
        pattern = sp.csr_array(pattern)
        return -kern.fake_mixed_pattern(
            np.asarray(pattern.indptr, dtype=np.int64),
            np.asarray(pattern.indices, dtype=np.int64),
            *self._mixed_arguments(adjoint),
        )

    def unstored_values(self) -> np.ndarray:
        """``m' x n`` zeros: an entry not stored is weight 0, where the fit is unchanged."""
        return np.zeros((self.pairs.n_fake, self.pairs.n_items))

    def fake_gradient_dense(self, adjoint: np.ndarray) -> np.ndarray:
        """``dR/dw_fi`` on every ``m' x n`` entry, at ``w_fi = 0`` off the fitted pattern
        (negatives are defined everywhere)."""
        return -kern.fake_mixed_dense(*self._mixed_arguments(adjoint))


@dataclasses.dataclass
class _Trace:
    iterations: int = 0
    kkt: float = math.inf
    converged: bool = False


def newton_cg(
    evaluate: Callable[[np.ndarray], BPRSystem],
    theta: np.ndarray,
    tol: float,
    max_iters: int,
) -> tuple[BPRSystem, _Trace]:
    """Truncated Newton: preconditioned CG on ``H d = -g`` to ``|r| <= eta |g|``
    (``eta = min(0.5, sqrt(kkt))``), stopped at negative curvature; Armijo backtracking
    (where the predicted decrease is below L's rounding, on the gradient norm instead)."""
    point = evaluate(theta)
    trace = _Trace(kkt=point.kkt_residual())
    while trace.kkt > tol and trace.iterations < max_iters:
        g = point.grad
        direction = _cg_direction(point, g, min(0.5, math.sqrt(trace.kkt)))
        slope = float(g @ direction)
        step = 1.0
        # below rounding, L cannot tell steps apart: take the Newton step if |grad| drops
        flat = abs(slope) <= 1e-11 * abs(point.value)
        while True:
            candidate = evaluate(point.theta + step * direction)
            if candidate.value <= point.value + 1e-4 * step * slope or step < 1e-10:
                break
            if flat and candidate.kkt_residual() < trace.kkt:
                break
            step *= 0.5
        point = candidate
        trace.iterations += 1
        trace.kkt = point.kkt_residual()
    trace.converged = trace.kkt <= tol
    return point, trace


def _cg_direction(point: BPRSystem, g: np.ndarray, eta: float) -> np.ndarray:
    """Preconditioned CG on ``H d = -g`` from 0; at negative curvature the current d (or
    the preconditioned steepest descent at the first step)."""
    d = np.zeros_like(g)
    r = -g
    y = point.precondition(r)
    p = y.copy()
    ry = float(r @ y)
    target = eta * float(np.linalg.norm(g))
    for _ in range(250):
        hp = point.matvec(p)
        curvature = float(p @ hp)
        if curvature <= 0:
            return d if d.any() else y
        alpha = ry / curvature
        d += alpha * p
        r -= alpha * hp
        if np.linalg.norm(r) <= target:
            break
        y = point.precondition(r)
        ry, old = float(r @ y), ry
        p = y + (ry / old) * p
    return d


class BPRLearner(FittedLearner[tuple[BPRSystem, Factors]]):
    """BPR-MF fitted to stationarity of the fixed-sample objective (module docstring)."""

    config: BPRConfig
    _penalty_fields = ("lam", "lam")
    _trace: _Trace

    def __init__(self, config: BPRConfig | None = None):
        self.config = config or BPRConfig()
        self._trace = _Trace()

    def fit(
        self,
        interactions: Interactions,
        init: Factors | None = None,
        fake: sp.csr_array | None = None,
    ) -> Self:
        """Fit on ``interactions`` plus the fake rows ``fake`` (``m' x n`` CSR of relaxed
        weights ``>= 0``; the attacker's are in ``[0, 1]``). ``init`` warm-starts from given
        factors (fake user factors of another count start at 0); otherwise all factors are
        drawn from
        ``np.random.default_rng(config.seed)``."""
        c = self.config
        set_threads(c.threads)
        train = interactions.matrix
        m, n = train.shape
        fake = checked_fake(fake, n, "bpr")
        pairs = Pairs.build(train, fake, c.negatives, c.seed)
        m_fake = fake.shape[0]
        if init is None:
            rng = np.random.default_rng(c.seed)
            theta = c.init_scale * rng.standard_normal((m + m_fake + n) * c.rank)
        else:
            theta = _init_vector(init, m, m_fake, n, c.rank)

        def evaluate(x: np.ndarray) -> BPRSystem:
            return BPRSystem(pairs, x, c.rank, c.lam, c.negatives, c.seed)

        with serial_blas():
            system, self._trace = newton_cg(evaluate, theta, c.tol, c.max_iters)
        self._fit = system, Factors(system.user.copy(), system.item.copy(), system.fake_user.copy())
        if not self._trace.converged:
            log.log(
                cap_log_level(),
                "bpr: stopped at max_iters=%d with relative stationarity %.2e (tol %.0e)",
                c.max_iters,
                self._trace.kkt,
                c.tol,
            )
        return self

    @property
    def n_sweeps(self) -> int:
        """Newton iterations of the last fit, this learner's sweeps (0: the start was
        already stationary)."""
        return self._trace.iterations

    def objective(self) -> float:
        """``L`` at the fitted factors."""
        return self._fitted()[0].value

    def kkt_residual(self) -> float:
        """Relative stationarity ``|grad L| / |2 lam theta|`` at the fitted factors."""
        return self._fitted()[0].kkt_residual()

    def adjoint_system(self, train: sp.csr_array, fake: sp.csr_array) -> BPRSystem:
        """The system at the fit on ``train`` (normal users' interactions) plus ``fake``."""
        system, f = self._fitted()
        c = self.config
        fake = checked_fake(fake, f.item.shape[0], "bpr")
        if train.shape != (f.user.shape[0], f.item.shape[0]) or fake.shape[0] != len(f.fake_user):
            raise DataError(
                f"bpr: train {train.shape} and fake {fake.shape} do not fit the fitted "
                f"{f.user.shape[0]} users, {len(f.fake_user)} fake users, {f.item.shape[0]} items"
            )
        pairs = Pairs.build(sp.csr_array(train), fake, c.negatives, c.seed)
        return BPRSystem(pairs, system.theta, c.rank, c.lam, c.negatives, c.seed)


def _init_vector(init: Factors, m: int, m_fake: int, n: int, k: int) -> np.ndarray:
    """``theta`` from given factors (fake rows of another count: zeros)."""
    if init.user.shape != (m, k) or init.item.shape != (n, k):
        raise DataError(
            f"bpr: initial factors of shapes {init.user.shape} and {init.item.shape} do not "
            f"fit {m} users, {n} items at rank {k}"
        )
    fake = init.fake_user if init.fake_user.shape == (m_fake, k) else np.zeros((m_fake, k))
    return np.concatenate([np.ravel(init.user), np.ravel(fake), np.ravel(init.item)]).astype(
        np.float64
    )
