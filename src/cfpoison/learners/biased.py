"""Biased matrix factorization (global mean, user and item biases, factors) fitted by ALS.

Objective, on the shifted scale, real rows ``i`` (Omega) and fake rows (Omega~) alike::

    B(U, U~, V, b, b~, c) = sum_Omega (M_ij - mu - b_i - c_j - u_i.v_j)^2
                            + sum_Omega~ (M~_ij - mu - b~_i - c_j - u~_i.v_j)^2
                            + lam_U (||U||^2 + ||U~||^2) + lam_V ||V||^2
                            + lam_b (||b||^2 + ||b~||^2 + ||c||^2)

``mu`` is fixed at the mean of all observed ratings (real and fake), as Surprise and cmfrec do.
One sweep solves every user row exactly for ``[u_i, b_i]`` with ``[v_j, 1]`` fixed, then every
item row for ``[v_j, c_j]`` with ``[u_i, 1]`` fixed, by the ridge kernels of
:mod:`cfpoison.learners.kernels`. Their penalty is one ``lam |x|^2``; the bias gets its own
``lam_b`` through a change of variables: on the user side the unknown is ``[u_i, s b_i]`` and
the feature ``[v_j, 1/s]`` with ``s = sqrt(lam_b / lam_U)`` (same product, penalty
``lam_U |u_i|^2 + lam_b b_i^2``); on the item side ``s = sqrt(lam_b / lam_V)``.

Stopping: relative objective change ``<= tol`` or relative KKT residual ``||grad B|| /
||grad penalty|| <= kkt_tol`` (every block, biases included), at most ``max_sweeps``.

The fitted model exposes *augmented* factors whose product is the full prediction, so that
every low-rank metric of cfpoison applies unchanged::

    user_factors = [U, b + mu, 1],   item_factors = [V, 1, c]   (rank k + 2)
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal, Self

import numpy as np
import scipy.sparse as sp

from cfpoison.config import require_ranges
from cfpoison.data.ratings import Ratings
from cfpoison.errors import DataError
from cfpoison.learners import kernels
from cfpoison.learners._sparse import weighted_blocks, with_values
from cfpoison.learners.adjoint import SolveResult, minres_solve
from cfpoison.learners.base import Factors, LearnerSettings, serial_blas
from cfpoison.learners.factored import (
    SWEEP_BOUNDS,
    Backend,
    Problem,
    Structure,
    SweptLearner,
    Trace,
    backend_module,
    check_indices,
    sweep_until,
)
from cfpoison.learners.hessian import rotations_to_gauge


@dataclasses.dataclass(frozen=True)
class BiasedConfig(LearnerSettings):
    """Biased MF by ALS (module docstring).

    Attributes:
        rank: number of latent factors k (the biases come on top).
        lambda_u, lambda_v: regularization of user (and fake user) and item factors.
        lambda_bias: regularization ``lam_b`` of the user, fake-user and item biases. The
            defaults (rank 10, lam 8, lam_b 1) give test RMSE 0.863 on ml-latest-small
            (cfpoison's split, seed 7; ALS: 0.909); lam_b 3 gives 0.863, 8 gives 0.866.
        max_sweeps, tol, kkt_tol, anderson_memory, init_scale, seed, threads, backend: as
            in :class:`cfpoison.learners.als.ALSConfig` (Anderson mixing of ``[V, c]``). Mix
            only with the KKT criterion (``tol = 0``): a mixed sweep can change the objective
            little far from a stationary point, so the objective-change test stops early (on
            ml-latest-small at tol 1e-6: KKT 9e-3 instead of 2e-3). With ``kkt_tol = 1e-5``,
            memory 5 takes 88-102 sweeps where plain sweeps take 409-533, to the same
            objective; robust PGA's biased surrogate keeps plain sweeps (with mixing, its
            8-step attack on ml-latest-small ran 35-46% faster but ended with a lower utility
            at 3 of 3 seeds, benchmarks/RESULTS.md).
    """

    name: Literal["biased"] = "biased"
    rank: int = 10
    lambda_u: float = 8.0
    lambda_v: float = 8.0
    lambda_bias: float = 1.0
    max_sweeps: int = 200
    tol: float = 1e-6
    kkt_tol: float = 1e-6
    anderson_memory: int = 0
    init_scale: float = 0.1
    seed: int = 0
    threads: int = 0
    backend: Backend = "numba"

    def __post_init__(self) -> None:
        require_ranges(
            self,
            "biased",
            rank=">= 1",
            lambda_u="> 0",
            lambda_v="> 0",
            lambda_bias="> 0",
            **SWEEP_BOUNDS,
        )


@dataclasses.dataclass
class BiasedState:
    """The fitted parameters: factors (rank k), biases and the global mean ``mu``."""

    user: np.ndarray  # m x k
    item: np.ndarray  # n x k
    fake_user: np.ndarray  # m' x k
    user_bias: np.ndarray  # m
    item_bias: np.ndarray  # n
    fake_user_bias: np.ndarray  # m'
    mu: float

    @classmethod
    def of(cls, blocks: Factors, mu: float) -> BiasedState:
        """Views into the parameter blocks ``[U, b]``, ``[V, c]``, ``[U~, b~]`` (the last
        column of each is the bias)."""
        return cls(
            blocks.user[:, :-1],
            blocks.item[:, :-1],
            blocks.fake_user[:, :-1],
            blocks.user[:, -1],
            blocks.item[:, -1],
            blocks.fake_user[:, -1],
            mu,
        )

    def compact(self) -> BiasedState:
        """The same parameters in contiguous arrays of their own."""
        c = np.ascontiguousarray
        return BiasedState(
            c(self.user),
            c(self.item),
            c(self.fake_user),
            c(self.user_bias),
            c(self.item_bias),
            c(self.fake_user_bias),
            self.mu,
        )

    def augmented(self) -> Factors:
        """``[U, b + mu, 1]``, ``[V, 1, c]`` and ``[U~, b~ + mu, 1]``: products = predictions."""

        def side(x: np.ndarray, shift: np.ndarray) -> np.ndarray:
            return np.column_stack([x, shift, np.ones(len(x))])

        item = np.column_stack([self.item, np.ones(len(self.item)), self.item_bias])
        return Factors(
            side(self.user, self.user_bias + self.mu),
            item,
            side(self.fake_user, self.fake_user_bias + self.mu),
        )


def _offset(structure: Structure, shift: np.ndarray) -> Structure:
    """The structure with ``shift[index]`` subtracted from each stored value."""
    indptr, indices, data = structure
    return indptr, indices, kernels.offset_values(indices, data, shift)


def _with_column(x: np.ndarray, value: float) -> np.ndarray:
    return np.ascontiguousarray(np.column_stack([x, np.full(len(x), value)]))


class BiasedLearner(SweptLearner[tuple[Problem, BiasedState]]):
    """Biased MF fitted by ALS; ``factors`` are the augmented ones (module docstring)."""

    config: BiasedConfig

    def __init__(self, config: BiasedConfig | None = None):
        self.config = config or BiasedConfig()
        self._ops = backend_module(self.config.backend)
        self._trace = Trace([], math.inf, False)

    # ------------------------------------------------------------------ fitting
    def fit(
        self, ratings: Ratings, init: Factors | None = None, fake: sp.csr_array | None = None
    ) -> Self:
        """Fit on ``ratings`` plus the fake rows ``fake`` (``m' x n`` CSR, shifted scale).

        ``init`` warm-starts from augmented factors of rank k + 2 (``factors`` of an earlier
        fit): its item factors and item biases; otherwise the item factors are drawn from
        ``np.random.default_rng(config.seed)`` and the item biases start at 0.
        """
        c = self.config
        self._ops.set_threads(c.threads)
        p = Problem.build(ratings, fake)
        total = len(p.rows[2]) + len(p.fake_rows[2])
        mu = float((p.rows[2].sum() + p.fake_rows[2].sum()) / total) if total else 0.0
        if init is None:
            rng = np.random.default_rng(c.seed)
            item = c.init_scale * rng.standard_normal((p.n_items, c.rank))
            item_bias = np.zeros(p.n_items)
        else:
            if init.item.shape != (p.n_items, c.rank + 2):
                raise DataError(
                    f"initial item factors of shape {init.item.shape}: expected the augmented "
                    f"({p.n_items}, {c.rank + 2}) of a biased fit"
                )
            item, item_bias = init.item[:, : c.rank].copy(), init.item[:, c.rank + 1].copy()
        blocks = Factors(
            np.zeros((p.n_users, c.rank + 1)),
            np.column_stack([item, item_bias]),
            np.zeros((p.n_fake, c.rank + 1)),
        )
        self._fit = p, BiasedState.of(blocks, mu)
        self._trace = sweep_until(
            _BiasedHalfSteps(self), blocks, c.max_sweeps, c.tol, c.kkt_tol, memory=c.anderson_memory
        )
        self._fit = p, self.state.compact()
        return self

    def _update_users(self, p: Problem, s: BiasedState) -> None:
        """``[u_i, b_i]`` (and the fake rows) exactly minimise ``B`` for fixed ``V, c``."""
        c = self.config
        scale = math.sqrt(c.lambda_bias / c.lambda_u)
        features = _with_column(s.item, 1.0 / scale)
        k = c.rank + 1
        for structure, x, bias in (
            (p.rows, s.user, s.user_bias),
            (p.fake_rows, s.fake_user, s.fake_user_bias),
        ):
            if len(x) == 0:
                continue
            out = np.empty((len(x), k))
            shifted = _offset(structure, s.item_bias + s.mu)
            self._ops.solve_rows(
                *shifted, features, *kernels.empty_source(len(x), k), c.lambda_u, out
            )
            x[:] = out[:, :-1]
            bias[:] = out[:, -1] / scale

    def _update_items(self, p: Problem, s: BiasedState) -> float:
        """``[v_j, c_j]`` exactly minimise ``B`` for fixed users; returns the data term."""
        c = self.config
        scale = math.sqrt(c.lambda_bias / c.lambda_v)
        out = np.empty((p.n_items, c.rank + 1))
        fit = self._ops.solve_rows(
            *_offset(p.cols, s.user_bias + s.mu),
            _with_column(s.user, 1.0 / scale),
            *_offset(p.fake_cols, s.fake_user_bias + s.mu),
            _with_column(s.fake_user, 1.0 / scale),
            c.lambda_v,
            out,
        )
        s.item[:] = out[:, :-1]
        s.item_bias[:] = out[:, -1] / scale
        return float(np.sum(fit))

    def _penalty(self, s: BiasedState) -> float:
        c = self.config
        users = float(np.sum(s.user**2) + np.sum(s.fake_user**2))
        biases = float(np.sum(s.user_bias**2) + np.sum(s.fake_user_bias**2))
        biases += float(np.sum(s.item_bias**2))
        return c.lambda_u * users + c.lambda_v * float(np.sum(s.item**2)) + c.lambda_bias * biases

    def _residuals(
        self, item_block: bool = True
    ) -> tuple[float, list[tuple[np.ndarray, np.ndarray | None, np.ndarray]]]:
        """Data term and, per block, ``(x, residual-weighted sum g, penalty weights)``.

        Rows of ``x`` are ``[u_i, b_i]`` (users, fake users) or ``[v_j, c_j]`` (items), and
        ``g = sum (d - x.[y, 1]) [y, 1]`` with ``d`` the rating minus the other side's
        bias and ``mu``, so that ``grad B = 2 (weights * x - g)``. ``item_block=False``
        leaves the items' ``g`` out (None): right after the item half-step it is
        ``weights * x`` to rounding.
        """
        p, s = self._fitted()
        c = self.config
        user_weights = np.array([c.lambda_u] * c.rank + [c.lambda_bias])
        item_weights = np.array([c.lambda_v] * c.rank + [c.lambda_bias])
        item_x = np.column_stack([s.item, s.item_bias])
        total = 0.0
        blocks: list[tuple[np.ndarray, np.ndarray | None, np.ndarray]] = []
        for structure, x, bias in (
            (p.rows, s.user, s.user_bias),
            (p.fake_rows, s.fake_user, s.fake_user_bias),
        ):
            ux = np.ascontiguousarray(np.column_stack([x, bias]))
            g = np.empty_like(ux)
            sq = self._ops.residual_rows(
                *_offset(structure, s.item_bias + s.mu),
                _with_column(s.item, 1.0),
                *kernels.empty_source(len(ux), c.rank + 1),
                ux,
                g,
            )
            total += float(np.sum(sq))
            blocks.append((ux, g, user_weights))
        if not item_block:
            blocks.append((item_x, None, item_weights))
            return total, blocks
        g = np.empty_like(item_x)
        self._ops.residual_rows(
            *_offset(p.cols, s.user_bias + s.mu),
            _with_column(s.user, 1.0),
            *_offset(p.fake_cols, s.fake_user_bias + s.mu),
            _with_column(s.fake_user, 1.0),
            np.ascontiguousarray(item_x),
            g,
        )
        blocks.append((item_x, g, item_weights))
        return total, blocks

    def _saved_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return {k: np.asarray(v) for k, v in vars(self.state).items()}, {}

    def _restored_state(
        self, problem: Problem, arrays: dict[str, np.ndarray], record: dict[str, Any]
    ) -> tuple[Problem, BiasedState]:
        a = arrays
        state = BiasedState(
            a["user"],
            a["item"],
            a["fake_user"],
            a["user_bias"],
            a["item_bias"],
            a["fake_user_bias"],
            float(a["mu"]),
        )
        return problem, state

    # ------------------------------------------------------------------ fitted state
    @property
    def state(self) -> BiasedState:
        """Factors, biases and ``mu`` of the fit (a reference; copy before modifying)."""
        return self._fitted()[1]

    @property
    def factors(self) -> Factors:
        """The augmented factors ``[U, b + mu, 1]``, ``[V, 1, c]``, ``[U~, b~ + mu, 1]``."""
        return self.state.augmented()

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """``mu + b_i + c_j + u_i.v_j`` (shifted scale) for parallel index arrays."""
        s = self.state
        users, items = check_indices(users, items, len(s.user), len(s.item))
        dots = np.asarray(self._ops.dot_rows(s.user, s.item, users, items))
        return s.mu + s.user_bias[users] + s.item_bias[items] + dots

    def objective(self) -> float:
        """``B`` at the fitted parameters."""
        return self._residuals()[0] + self._penalty(self.state)

    def adjoint_system(self, train: sp.csr_array, fake: sp.csr_array) -> BiasedHessian:
        """The Hessian of ``B`` at this fit (on the data it was fitted on: ``train`` and
        ``fake`` must be those rows' shapes)."""
        p, _ = self._fitted()
        if train.shape != (p.n_users, p.n_items) or fake.shape != (p.n_fake, p.n_items):
            raise ValueError("biased MF: the adjoint system of another data set than the fit's")
        return BiasedHessian(self)

    def kkt_residual(self, item_block: bool = True) -> float:
        """Relative KKT residual ``||grad B|| / ||grad penalty||`` over every block (the
        items' gradient taken as zero with ``item_block=False``, as after their half-step)."""
        _, blocks = self._residuals(item_block)
        grad = sum(float(np.sum((w * x - g) ** 2)) for x, g, w in blocks if g is not None)
        reg = sum(float(np.sum((w * x) ** 2)) for x, _, w in blocks)
        if grad == 0.0:
            return 0.0
        return math.sqrt(grad / reg) if reg > 0 else math.inf


class _BiasedHalfSteps:
    """:func:`cfpoison.learners.factored.sweep_until`'s half-steps on a biased fit whose
    state views the parameter blocks being swept (:meth:`BiasedState.of`)."""

    def __init__(self, learner: BiasedLearner):
        self.learner = learner

    def update_users(self, f: Factors) -> None:
        self.learner._update_users(*self.learner._fitted())

    def update_items(self, f: Factors) -> float:
        return self.learner._update_items(*self.learner._fitted())

    def penalty(self, f: Factors) -> float:
        return self.learner._penalty(self.learner.state)

    def kkt_after_items(self, f: Factors) -> float:
        return self.learner.kkt_residual(item_block=False)


class BiasedHessian:
    """The :class:`cfpoison.learners.adjoint.AdjointSystem` of a biased fit.

    With the free parameters ``theta = ([U, b], [U~, b~], [V, c])`` at a stationary point of
    ``B``, ``p_ij = mu + b_i + c_j + u_i.v_j`` and ``mu`` the mean of the N observed ratings
    (so ``dmu/dM~_ij = 1/N``), for a utility of the augmented factors::

        z = H^-1 g,   g = dR/dtheta
        dR/dM~_ij = (dR/dmu) / N + 2 (z[x~_i].[v_j, 1] + z[y_j].[u~_i, 1]) - z.w / N

    where ``w = d(grad B)/dmu`` has ``2 sum_(j in row a) [v_j, 1]`` in user row ``a`` and
    ``2 sum_(i in column j) [u_i, 1]`` in item row ``j``. H is applied matrix-free:
    ``H d = 2 (dp [y, 1] - r [d_v, 0]) + 2 Lambda d`` (per block) with ``dp`` the first-order
    change of the predictions and ``r`` the residuals; its exact diagonal blocks
    ``2 (sum [v_j, 1][v_j, 1]' + Lambda)`` (and the item side's) are the preconditioner.
    ``dR/dmu`` comes from the last :meth:`rhs`; the derivative exists on the fitted fake
    pattern only (a new entry would move ``mu``), so :meth:`fake_gradient_dense` refuses.
    """

    def __init__(self, learner: BiasedLearner):
        p, s = learner._fitted()
        c = learner.config
        self.k = k = c.rank
        stacked = sp.csr_array(
            sp.vstack(
                [
                    sp.csr_array((p.rows[2], p.rows[1], p.rows[0]), shape=(p.n_users, p.n_items)),
                    sp.csr_array(
                        (p.fake_rows[2], p.fake_rows[1], p.fake_rows[0]),
                        shape=(p.n_fake, p.n_items),
                    ),
                ],
                format="csr",
            )
        )
        stacked.sort_indices()
        self.n_users, self.n_fake, self.n_obs = p.n_users, p.n_fake, stacked.nnz
        self.fake_pattern = sp.csr_array(
            (np.ones(len(p.fake_rows[2])), p.fake_rows[1], p.fake_rows[0]),
            shape=(p.n_fake, p.n_items),
        )
        self._indptr = np.asarray(stacked.indptr, dtype=np.int64)
        self._indices = np.asarray(stacked.indices, dtype=np.int64)
        self._rows = np.repeat(np.arange(stacked.shape[0]), np.diff(self._indptr))
        users = np.vstack([s.user, s.fake_user])
        self._x = np.column_stack([users, np.concatenate([s.user_bias, s.fake_user_bias])])
        self._y = np.column_stack([s.item, s.item_bias])
        self._ones_u = np.column_stack([users, np.ones(len(users))])  # [u_i, 1]
        self._ones_v = np.column_stack([s.item, np.ones(len(s.item))])  # [v_j, 1]
        predictions = s.mu + self._x[self._rows, k] + self._y[self._indices, k]
        predictions += np.asarray(kernels.csr_dot(self._indptr, self._indices, users, s.item))
        self._shape = stacked.shape
        self._residual = self._csr(stacked.data - predictions)
        self._reg_x = np.array([c.lambda_u] * k + [c.lambda_bias])
        self._reg_y = np.array([c.lambda_v] * k + [c.lambda_bias])
        augmented = s.augmented()
        self._user, self._item = augmented.user, augmented.item
        self._fake_user = augmented.fake_user
        ones = self._csr(np.ones(self.n_obs))
        self._w = np.concatenate(
            [(2 * (ones @ self._ones_v)).ravel(), (2 * (ones.T @ self._ones_u)).ravel()]
        )
        self._dr_dmu = 0.0
        self._diagonals = np.concatenate(
            [
                self._diagonal(ones, self._ones_v, self._reg_x),
                self._diagonal(sp.csr_array(ones.T), self._ones_u, self._reg_y),
            ]
        )
        inverses = np.linalg.inv(self._diagonals)
        self._blocks = [inverses[: len(self._x)], inverses[len(self._x) :]]

    def _csr(self, values: np.ndarray) -> sp.csr_array:
        return sp.csr_array((values, self._indices, self._indptr), shape=self._shape)

    @staticmethod
    def _diagonal(ones: sp.csr_array, other: np.ndarray, reg: np.ndarray) -> np.ndarray:
        """H's diagonal blocks ``2 (sum_(c in row r) y_c y_c' + diag(reg))``, every row r."""
        blocks = weighted_blocks([(ones, ones.data, other)], np.zeros(ones.shape[0]), False)
        blocks += 2.0 * np.diag(reg)
        return blocks

    @property
    def user(self) -> np.ndarray:
        """The normal users' augmented factors ``[U, b + mu, 1]``."""
        return self._user

    @property
    def item(self) -> np.ndarray:
        """The augmented item factors ``[V, 1, c]``."""
        return self._item

    def _split(self, flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cut = len(self._x) * (self.k + 1)
        return flat[:cut].reshape(len(self._x), self.k + 1), flat[cut:].reshape(-1, self.k + 1)

    def matvec(self, flat: np.ndarray) -> np.ndarray:
        """``H d`` (class docstring)."""
        k, rows, indices = self.k, self._rows, self._indices
        dx, dy = self._split(np.asarray(flat, dtype=np.float64).ravel())
        dp = np.einsum("ij,ij->i", dx[rows], self._ones_v[indices])
        dp += np.einsum("ij,ij->i", dy[indices], self._ones_u[rows])
        change = self._csr(dp)
        dv = np.column_stack([dy[:, :k], np.zeros(len(dy))])
        du = np.column_stack([dx[:, :k], np.zeros(len(dx))])
        hx = 2 * (change @ self._ones_v - self._residual @ dv) + 2 * self._reg_x * dx
        hy = 2 * (change.T @ self._ones_u - self._residual.T @ du) + 2 * self._reg_y * dy
        return np.concatenate([hx.ravel(), hy.ravel()])

    def rhs(self, grad_user: np.ndarray, grad_item: np.ndarray) -> np.ndarray:
        """``g`` from the utility's gradient in the augmented factors; records ``dR/dmu``."""
        k = self.k
        g_x = np.zeros_like(self._x)
        g_x[: self.n_users] = grad_user[:, : k + 1]
        g_y = np.column_stack([grad_item[:, :k], grad_item[:, k + 1]])
        self._dr_dmu = float(np.sum(grad_user[:, k]))
        return np.concatenate([g_x.ravel(), g_y.ravel()])

    def precondition(self, rhs: np.ndarray) -> np.ndarray:
        x, y = self._split(np.asarray(rhs, dtype=np.float64))
        return np.concatenate(
            [
                np.einsum("rab,rb->ra", self._blocks[0], x).ravel(),
                np.einsum("rab,rb->ra", self._blocks[1], y).ravel(),
            ]
        )

    def solve(
        self, rhs: np.ndarray, tol: float, max_iter: int, x0: np.ndarray | None = None
    ) -> SolveResult:
        """``H z = rhs`` by MINRES on the whole system, the rotations of ``[U; U~; V]`` gauged
        where ``rhs`` is orthogonal to them (:func:`~cfpoison.learners.hessian.solve`: at a
        fit stationary only to a tolerance, H is not exactly singular along them)."""
        factors = np.vstack([self._x, self._y])
        rotations = rotations_to_gauge(
            (factors,), (rhs.reshape(factors.shape),), factors, self._diagonals, self.k
        )
        with serial_blas():
            return minres_solve(self.matvec, self.precondition, rhs, tol, max_iter, x0, rotations)

    def fake_gradient(self, adjoint: np.ndarray, pattern: sp.csr_array) -> np.ndarray:
        """``dR/dM~_ij`` (class docstring) at the stored entries of ``pattern``, which must be
        stored in the fitted fake matrix too."""
        ones = with_values(pattern, np.ones(pattern.nnz))
        if (
            pattern.shape != self.fake_pattern.shape
            or ones.multiply(self.fake_pattern).nnz < ones.nnz
        ):
            raise ValueError("biased MF: the gradient exists on the fitted fake pattern only")
        z_x, z_y = self._split(adjoint)
        correction = (self._dr_dmu - float(adjoint @ self._w)) / self.n_obs
        rows = self.n_users + np.repeat(np.arange(pattern.shape[0]), np.diff(pattern.indptr))
        cols = np.asarray(pattern.indices, dtype=np.int64)
        values = 2 * np.einsum("ij,ij->i", z_x[rows], self._ones_v[cols])
        values += 2 * np.einsum("ij,ij->i", z_y[cols], self._ones_u[rows])
        return values + correction

    def fake_gradient_dense(self, adjoint: np.ndarray) -> np.ndarray:
        raise ValueError("biased MF: the gradient exists on the fitted fake pattern only")

    def unstored_values(self) -> np.ndarray:
        """The fake users' predictions ``mu + b~_i + c_j + u~_i.v_j`` (``m' x n``)."""
        return self._fake_user @ self._item.T
