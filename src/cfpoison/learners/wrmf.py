"""WRMF: implicit-feedback ALS (Hu, Koren and Volinsky 2008) with relaxed fake rows.

With the real users' interaction weights ``r_ij > 0`` (the stored entries of
``Interactions.matrix``) and the fake users' relaxed weights ``w_fj in [0, 1]`` (an ``m' x n``
CSR; not stored means ``w = 0``), every entry of ``[U; U~] V'`` has a confidence ``c`` and a
preference ``p``: ``c = 1 + alpha r, p = 1`` on a real interaction, ``c = 1 + alpha w,
p = w`` on a fake entry, ``c = 1, p = 0`` elsewhere, so that ``w = 1`` is a real interaction
of weight 1 and ``w = 0`` none, smoothly in between (``docs/wrmf.md``)::

    L(U, U~, V) = sum_{all i, j} c_ij (p_ij - u_i.v_j)^2 + lam (||U||^2 + ||U~||^2 + ||V||^2)

Write ``W = [U; U~]``, ``s = w_i.v_j``, and on the stored entries ``a = c - 1`` and
``t = c p``. Then ``L = tr(W'W V'V) + sum_stored (a s^2 - 2 t s + c p^2) + lam (...)``, the
gradient is ``2 W (V'V + lam I) - 2 E V`` (and symmetrically for V) with ``E = t - a s`` on
the stored entries, and a row's exact minimiser is ``(V'V + lam I + sum a v v')^-1 sum t v``
(:mod:`cfpoison.learners.wrmf_kernels`): ``O(nnz k^2 + (m + n) k^3)`` per sweep, never
``m x n``.

Stopping: after each sweep the relative KKT residual ``||grad L|| / ||2 lam theta||`` (0 at a
stationary point, 1 when the factors ignore the data) is compared with ``kkt_tol``; a warm
start from a solution stops after one sweep. :meth:`WRMFLearner.adjoint_system` gives the
exact implicit gradient of a utility with respect to the fake weights (:class:`WRMFSystem`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Literal, Self

import numpy as np
import scipy.sparse as sp

from cfpoison.config import require_ranges
from cfpoison.data.interactions import Interactions
from cfpoison.errors import DataError
from cfpoison.learners import kernels, wrmf_kernels
from cfpoison.learners._sparse import block_apply, checked_fake, hessian_rows, sddmm
from cfpoison.learners.base import Factors, LearnerSettings, cached_csc, serial_blas
from cfpoison.learners.factored import SweptLearner, Trace, random_factors, sweep_until
from cfpoison.learners.hessian import SolveResult, rotations_to_gauge, schur_minres

log = logging.getLogger(__name__)

Structure = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


@dataclasses.dataclass(frozen=True)
class WRMFConfig(LearnerSettings):
    """Implicit ALS on ``L`` (module docstring).

    Attributes:
        rank: number of latent factors k. 32: HR@10 0.206 on ml-latest-small (below),
            against 0.191 at 16 and 0.192 at 64, at a quarter of rank 64's cost per sweep.
        lam: regularization of every factor (users, fake users, items).
        alpha: confidence slope, ``c = 1 + alpha r``. The defaults ``lam = 10, alpha = 10``
            gave the best HR@10 of a grid (lam 1-100, alpha 1-30; rank 32) on ml-latest-small
            binarised at ratings >= 4, one held-out interaction per user ranked among all
            unrated items: 0.206 (alpha 3: 0.206 but twice the sweeps; alpha 1: 0.202;
            alpha 30: 0.166; lam 1: 0.192; lam 100: 0.178); 609 users, so +-0.016.
        max_sweeps: cap on the number of sweeps (users and fake users, then items); a fit
            that hits it is reported (``converged`` False, a logged warning).
        kkt_tol: stop when the relative KKT residual is at most this (0: run ``max_sweeps``).
            The default 1e-6 makes the implicit gradient exact (``docs/wrmf.md``).
        anderson_memory: sweeps mixed by Anderson acceleration of the item factors (0: plain
            ALS, no extrapolation), as :func:`cfpoison.learners.factored.sweep_until`.
        init_scale: standard deviation of the random initial item factors.
        seed: seed of the random initialisation (``np.random.default_rng(seed)``).
        threads: numba threads (0 = all cores).
    """

    name: Literal["wrmf"] = "wrmf"
    rank: int = 32
    lam: float = 10.0
    alpha: float = 10.0
    max_sweeps: int = 3000
    kkt_tol: float = 1e-6
    anderson_memory: int = 5
    init_scale: float = 0.1
    seed: int = 0
    threads: int = 0

    def __post_init__(self) -> None:
        require_ranges(
            self,
            "wrmf",
            rank=">= 1",
            lam="finite > 0",
            alpha="finite >= 0",
            max_sweeps=">= 1",
            kkt_tol=">= 0",
            anderson_memory=">= 0",
            init_scale="> 0",
            threads=">= 0",
        )


@dataclasses.dataclass(frozen=True)
class _Block:
    """One group of rows (real or fake users) in both orientations with, per stored entry,
    ``a = c - 1`` and ``t = c p``; ``const = sum c p^2`` (``L`` at zero factors, less lam)."""

    csr: sp.csr_array
    csc: sp.csc_array
    rows: Structure
    cols: Structure
    const: float

    @classmethod
    def of(cls, matrix: sp.csr_array, csc: sp.csc_array, alpha: float, fake: bool) -> _Block:
        """Real users (``c = 1 + alpha r``, ``p = 1``) or fake ones (``c = 1 + alpha w``,
        ``p = w``) from the stored weights of ``matrix`` and its CSC copy ``csc``."""

        def structure(compressed: sp.csr_array | sp.csc_array) -> Structure:
            x = np.asarray(compressed.data, dtype=np.float64)
            c = 1.0 + alpha * x
            return (
                np.ascontiguousarray(compressed.indptr, dtype=np.int64),
                np.ascontiguousarray(compressed.indices, dtype=np.int32),
                alpha * x,
                c * x if fake else c,
            )

        x = np.asarray(matrix.data, dtype=np.float64)
        const = float(np.sum((1.0 + alpha * x) * (x * x if fake else 1.0)))
        return cls(matrix, csc, structure(matrix), structure(csc), const)


class _Objective:
    """``L`` on one problem (real block, fake block, ``lam``): half-steps, value, KKT."""

    def __init__(self, train: sp.csr_array, fake: sp.csr_array, lam: float, alpha: float):
        fake_csc = sp.csc_array(fake)
        fake_csc.sort_indices()
        self.train = _Block.of(train, cached_csc(train), alpha, fake=False)
        self.fake = _Block.of(fake, fake_csc, alpha, fake=True)
        self.lam = lam
        self.alpha = alpha
        self.shape = (train.shape[0], fake.shape[0], train.shape[1])

    def shared(self, *blocks: np.ndarray) -> np.ndarray:
        """``sum X'X + lam I`` over the given factor blocks."""
        k = blocks[0].shape[1]
        return sum((x.T @ x for x in blocks), self.lam * np.eye(k))

    def update_users(self, f: Factors) -> None:
        """``U`` and ``U~`` exactly minimise ``L`` for fixed ``V`` (in place)."""
        shared, k = self.shared(f.item), f.item.shape[1]
        for block, out in ((self.train, f.user), (self.fake, f.fake_user)):
            if len(out):
                empty = wrmf_kernels.empty_source(len(out), k)
                wrmf_kernels.solve_rows(*block.rows, f.item, *empty, shared, out)

    def update_items(self, f: Factors) -> None:
        """``V`` exactly minimises ``L`` for fixed ``U``, ``U~`` (in place)."""
        wrmf_kernels.solve_rows(
            *self.train.cols,
            f.user,
            *self.fake.cols,
            f.fake_user,
            self.shared(f.user, f.fake_user),
            f.item,
        )

    def evaluate(self, f: Factors, item_block: bool = True) -> tuple[float, float]:
        """``L`` and the relative KKT residual ``||grad L|| / ||2 lam theta||``;
        ``item_block=False`` leaves out V's gradient (zero to rounding after
        :meth:`update_items`)."""
        gram_v, gram_w = f.item.T @ f.item, f.user.T @ f.user + f.fake_user.T @ f.fake_user
        eye = self.lam * np.eye(f.item.shape[1])
        value = float(np.sum(gram_w * gram_v)) + self.train.const + self.fake.const
        sq = 0.0
        for block, x in ((self.train, f.user), (self.fake, f.fake_user)):
            g = x @ (gram_v + eye)
            value += float(np.sum(wrmf_kernels.residual_rows(*block.rows, f.item, x, g)))
            sq += float(np.sum(g * g))
        if item_block:
            g = f.item @ (gram_w + eye)
            for block, x in ((self.train, f.user), (self.fake, f.fake_user)):
                wrmf_kernels.residual_rows(*block.cols, x, f.item, g)
            sq += float(np.sum(g * g))
        norm = sum(float(np.sum(x * x)) for x in (f.user, f.fake_user, f.item))
        value += self.lam * norm
        kkt = math.sqrt(sq) / (self.lam * math.sqrt(norm)) if norm > 0 else math.inf
        return value, 0.0 if sq == 0 else kkt


class _HalfSteps:
    """:func:`cfpoison.learners.factored.sweep_until`'s half-steps on WRMF's objective: the
    objective comes with its KKT residual from one pass after the item half-step."""

    def __init__(self, objective: _Objective, measure: bool):
        self.objective = objective
        self.measure = measure
        self._kkt = math.nan

    def update_users(self, f: Factors) -> None:
        self.objective.update_users(f)

    def update_items(self, f: Factors) -> float:
        self.objective.update_items(f)
        if not self.measure:
            return math.nan
        value, self._kkt = self.objective.evaluate(f, item_block=False)
        return value

    def penalty(self, f: Factors) -> float:
        return 0.0  # in update_items' value

    def kkt_after_items(self, f: Factors) -> float:
        return self._kkt


class WRMFLearner(SweptLearner[tuple[_Objective, Factors]]):
    """Implicit ALS; see the module docstring for the objective and the stopping rule."""

    config: WRMFConfig
    _penalty_fields = ("lam", "lam")

    def __init__(self, config: WRMFConfig | None = None):
        self.config = config or WRMFConfig()
        self._trace = Trace([], math.inf, False)

    # ------------------------------------------------------------------ fitting
    def fit(
        self,
        interactions: Interactions,
        init: Factors | None = None,
        fake: sp.csr_array | None = None,
    ) -> Self:
        """Fit on ``interactions`` plus the relaxed fake rows ``fake`` (``m' x n``, weights
        ``>= 0``; the attacker's are in ``[0, 1]``). ``init`` warm-starts from given factors
        (only its item factors matter: users are solved first); otherwise the item factors
        are drawn from
        ``np.random.default_rng(config.seed)``."""
        c = self.config
        if not isinstance(interactions, Interactions):
            raise DataError(f"wrmf: fit takes Interactions, got {type(interactions).__name__}")
        train = interactions.matrix
        m, n = train.shape
        fake = checked_fake(fake, n, "wrmf")
        objective = _Objective(train, fake, c.lam, c.alpha)
        if init is None:
            f = random_factors(
                np.random.default_rng(c.seed), m, fake.shape[0], n, c.rank, c.init_scale
            )
        elif init.item.shape != (n, c.rank) or init.user.shape != (m, c.rank):
            raise DataError(
                f"wrmf: initial factors of shapes {init.user.shape} and {init.item.shape} "
                f"do not fit {m} users and {n} items at rank {c.rank}"
            )
        else:  # users are solved first: only the item factors shape the result
            f = Factors(
                np.zeros((m, c.rank)),
                np.array(init.item, dtype=np.float64, order="C"),
                np.zeros((fake.shape[0], c.rank)),
            )
        kernels.set_threads(c.threads)
        self._trace = self._run(objective, f)
        self._fit = objective, f
        self._log_if_capped(log)
        return self

    def _run(self, objective: _Objective, f: Factors) -> Trace:
        """Sweeps until ``kkt_tol`` or ``max_sweeps`` (``f`` in place), accelerated as
        :func:`cfpoison.learners.factored.sweep_until` accelerates ALS. With ``kkt_tol = 0``
        and no mixing nothing is measured (the history holds NaN)."""
        c = self.config
        steps = _HalfSteps(objective, measure=c.kkt_tol > 0 or c.anderson_memory > 0)
        return sweep_until(steps, f, c.max_sweeps, 0.0, c.kkt_tol, memory=c.anderson_memory)

    # ------------------------------------------------------------------ fitted state
    def objective(self) -> float:
        """``L`` at the fitted factors."""
        objective, f = self._fitted()
        return objective.evaluate(f)[0]

    def kkt_residual(self) -> float:
        """Relative KKT residual ``||grad L|| / ||2 lam theta||`` (every block, recomputed)."""
        objective, f = self._fitted()
        return objective.evaluate(f)[1]

    def adjoint_system(self, train: sp.csr_array, fake: sp.csr_array) -> WRMFSystem:
        """H of ``L`` at the fit, for ``train`` (the interactions matrix it was fitted on)
        and ``fake`` (the same fake rows)."""
        objective, f = self._fitted()
        m, m_fake, n = objective.shape
        if train.shape != (m, n) or train.nnz != objective.train.csr.nnz:
            raise DataError(f"wrmf: train {train.shape} is not the {m} x {n} matrix of the fit")
        fake = checked_fake(fake, n, "wrmf")
        if fake.shape[0] != m_fake:
            raise DataError(f"wrmf: {fake.shape[0]} fake rows, the fit had {m_fake}")
        if not (isinstance(train, sp.csr_array) and train.dtype == np.float64):
            train = sp.csr_array(train, dtype=np.float64)  # else: its cached CSC is reused
        return WRMFSystem(_Objective(train, fake, objective.lam, objective.alpha), f)


def fold_in(
    matrix: sp.csr_array, item: np.ndarray, config: WRMFConfig, rows: np.ndarray
) -> np.ndarray:
    """The user factors of ``rows`` of ``matrix`` (interaction weights) that exactly minimise
    ``L`` for the fixed item factors ``item``: each row's confidence-weighted ridge problem,
    as a user absent from the fit is folded into it (``len(rows) x k``)."""
    k = item.shape[1]
    objective = _Objective(
        sp.csr_array(matrix[np.asarray(rows)]),
        sp.csr_array((0, matrix.shape[1])),
        config.lam,
        config.alpha,
    )
    f = Factors(np.zeros((len(rows), k)), np.ascontiguousarray(item), np.zeros((0, k)))
    with serial_blas():
        objective.update_users(f)
    return f.user


def _keys(matrix: sp.csr_array, n: int) -> np.ndarray:
    """``row n + column`` of every stored entry, in CSR order."""
    rows = np.repeat(np.arange(matrix.shape[0], dtype=np.int64), np.diff(matrix.indptr))
    return rows * n + matrix.indices


def _apply(blocks: np.ndarray, x: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    block_apply(blocks, x, out)
    return out


class WRMFSystem:
    """H of the WRMF objective at a fit, and the mixed partials ``d grad L / d w``.

    Flat vectors are ``[vec(U), vec(U~), vec(V)]`` (row-major), i.e. side 0 ``W = [U; U~]``
    and side 1 ``V``. For a direction ``(dW, dV)``, with ``ds = dw_i.v_j + w_i.dv_j`` and
    ``E = t - a s`` on the stored entries (``docs/wrmf.md``)::

        H_W = 2 dW (V'V + lam I) + 2 W (dV'V + V'dV) + 2 sum_stored (a ds v_j - E dv_j)
        H_V = 2 dV (W'W + lam I) + 2 V (dW'W + W'dW) + 2 sum_stored (a ds w_i - E dw_i)

    ``O(nnz k + (m + n) k^2)``, H never formed. Its diagonal blocks are
    ``2 (V'V + lam I + sum a v v')`` per user and ``2 (W'W + lam I + sum a w w')`` per item.
    H is singular along the rotations ``(W S, V S)``; right-hand sides from ``R(U V')`` are
    orthogonal to them (``docs/math.md`` 3.2-3.3), hence MINRES.
    """

    def __init__(self, objective: _Objective, factors: Factors):
        self._objective = objective
        self.m, self.m_fake, self.n = objective.shape
        self.k = factors.item.shape[1]
        self._w = np.ascontiguousarray(np.vstack([factors.user, factors.fake_user]))
        self._v = np.ascontiguousarray(factors.item, dtype=np.float64)
        lam_eye = objective.lam * np.eye(self.k)
        self._shared = (self._v.T @ self._v + lam_eye, self._w.T @ self._w + lam_eye)
        self._rows = (slice(0, self.m), slice(self.m, self.m + self.m_fake))
        self._residuals: list[tuple[np.ndarray, np.ndarray]] = []  # (CSR, CSC) order
        for block, rows in zip((objective.train, objective.fake), self._rows, strict=True):
            n_rows = rows.stop - rows.start
            transposed = sp.csr_array(
                (block.csc.data, block.csc.indices, block.csc.indptr), shape=(self.n, n_rows)
            )
            by_row = sddmm(block.csr, self._w[rows], self._v)
            by_col = sddmm(transposed, self._v, self._w[rows])
            self._residuals.append(
                (block.rows[3] - block.rows[2] * by_row, block.cols[3] - block.cols[2] * by_col)
            )
        self._inverse = (self._blocks(0, invert=True), self._blocks(1, invert=True))
        self._kept: np.ndarray | None = None  # the Schur solve's kept-side blocks

    # ------------------------------------------------------------------ AdjointSystem
    @property
    def user(self) -> np.ndarray:
        return self._w[: self.m]

    @property
    def item(self) -> np.ndarray:
        return self._v

    @property
    def fake_user(self) -> np.ndarray:
        return self._w[self.m :]

    def rhs(self, grad_user: np.ndarray, grad_item: np.ndarray) -> np.ndarray:
        """``g = (dR/dU, 0, dR/dV)`` flat."""
        if grad_user.shape != (self.m, self.k) or grad_item.shape != (self.n, self.k):
            raise DataError(
                f"wrmf: gradients of shapes {grad_user.shape} and {grad_item.shape}, expected "
                f"{(self.m, self.k)} and {(self.n, self.k)}"
            )
        zero = np.zeros(self.m_fake * self.k)
        return np.concatenate([np.ravel(grad_user), zero, np.ravel(grad_item)])

    def matvec(self, flat: np.ndarray) -> np.ndarray:
        """``H x`` (class docstring)."""
        dw, dv = self._sides(np.ascontiguousarray(flat, dtype=np.float64))
        out = np.empty(len(flat))
        hw, hv = self._sides(out)
        hw[:] = self._dense(0, dw, dv)
        hv[:] = self._dense(1, dv, dw)
        self._sparse(0, dw, dv, hw)
        self._sparse(1, dv, dw, hv)
        return out

    def precondition(self, rhs: np.ndarray) -> np.ndarray:
        """H's inverse diagonal blocks applied to ``rhs``."""
        xw, xv = self._sides(np.ascontiguousarray(rhs, dtype=np.float64))
        return np.concatenate(
            [_apply(self._inverse[0], xw).ravel(), _apply(self._inverse[1], xv).ravel()]
        )

    def solve(
        self, rhs: np.ndarray, tol: float, max_iter: int, x0: np.ndarray | None = None
    ) -> SolveResult:
        """``H z = rhs`` to a true relative residual ``<= tol``, by MINRES on the Schur
        complement of the larger side (:func:`cfpoison.learners.hessian.schur_minres`, as
        :func:`cfpoison.learners.hessian.solve`, the rotations gauged): keeping side K and
        eliminating E, ``(D_K - B_KE D_E^-1 B_EK) z_K = g_K - B_KE D_E^-1 g_E`` and
        ``z_E = D_E^-1 (g_E - B_EK z_K)``, preconditioned by ``D_K^-1``."""
        keep = 1 if self.n <= self.m + self.m_fake else 0
        drop = 1 - keep
        if self._kept is None:
            self._kept = self._blocks(keep, invert=False)
        kept_blocks = self._kept
        g = self._sides(np.ascontiguousarray(rhs, dtype=np.float64))
        shape = g[keep].shape

        def schur(x: np.ndarray) -> np.ndarray:
            xk = x.reshape(shape)
            eliminated = _apply(self._inverse[drop], self._couple(drop, xk))
            return (_apply(kept_blocks, xk) - self._couple(keep, eliminated)).ravel()

        def precondition(x: np.ndarray) -> np.ndarray:
            return _apply(self._inverse[keep], x.reshape(shape)).ravel()

        def expand(x: np.ndarray) -> np.ndarray:
            parts = [x.reshape(shape), x.reshape(shape)]
            parts[drop] = _apply(self._inverse[drop], g[drop] - self._couple(drop, parts[keep]))
            return np.concatenate([parts[0].ravel(), parts[1].ravel()])

        reduced = (g[keep] - self._couple(keep, _apply(self._inverse[drop], g[drop]))).ravel()
        kept = np.zeros(reduced.size)
        if x0 is not None and x0.shape == rhs.shape:
            kept = self._sides(np.asarray(x0, dtype=np.float64))[keep].ravel().copy()
        cut = (self.m + self.m_fake) * self.k
        block = slice(cut, None) if keep else slice(0, cut)
        factors = (self._w, self._v)
        rotations = rotations_to_gauge(factors, g, factors[keep], kept_blocks)
        with serial_blas():
            return schur_minres(
                schur,
                precondition,
                reduced,
                kept,
                expand,
                (self.matvec, rhs, block),
                rotations,
                tol,
                max_iter,
            )

    def fake_gradient(self, adjoint: np.ndarray, pattern: sp.csr_array) -> np.ndarray:
        """``dR/dw_fj = kappa_fj (v_j . z[u~_f] + u~_f . z[v_j])`` on the stored entries of
        ``pattern`` (``m' x n``, CSR order), ``kappa = 2 (1 + 2 alpha w - alpha s)``:
        ``d grad L / d w_fj`` is ``-kappa v_j`` in ``u~_f``'s block and ``-kappa u~_f`` in
        ``v_j``'s (``docs/wrmf.md``); ``w = 0`` where ``fake`` stores nothing."""
        pattern = sp.csr_array(pattern)
        if pattern.shape != (self.m_fake, self.n):
            raise DataError(f"wrmf: pattern {pattern.shape}, expected {(self.m_fake, self.n)}")
        _, z_fake, z_item = self._split(adjoint)
        fake = self._objective.fake.csr
        w = np.zeros(pattern.nnz)
        if fake.nnz:  # w at the pattern's entries: a sorted search of (row, column) keys
            keys = _keys(pattern, self.n)
            stored = _keys(fake, self.n)  # sorted: canonical CSR
            at = np.minimum(np.searchsorted(stored, keys), len(stored) - 1)
            w = np.where(stored[at] == keys, fake.data[at], 0.0)
        score = sddmm(pattern, self.fake_user, self._v)
        dot = sddmm(pattern, np.hstack([z_fake, self.fake_user]), np.hstack([self._v, z_item]))
        alpha = self._objective.alpha
        return 2.0 * (1.0 + 2.0 * alpha * w - alpha * score) * dot

    def fake_gradient_dense(self, adjoint: np.ndarray) -> np.ndarray:
        """:meth:`fake_gradient` on every ``m' x n`` entry (``w = 0`` is in the domain)."""
        _, z_fake, z_item = self._split(adjoint)
        w = self._objective.fake.csr.toarray()
        alpha = self._objective.alpha
        kappa = 2.0 * (1.0 + 2.0 * alpha * w - alpha * (self.fake_user @ self._v.T))
        return kappa * (z_fake @ self._v.T + self.fake_user @ z_item.T)

    def unstored_values(self) -> np.ndarray:
        """``m' x n`` zeros: an entry the fake rows do not store is ``w = 0``, where
        :meth:`fake_gradient_dense` differentiates it."""
        return np.zeros((self.m_fake, self.n))

    # ------------------------------------------------------------------ pieces of H
    def _sides(self, flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Views ``(W-part, V-part)`` of a flat vector."""
        cut = (self.m + self.m_fake) * self.k
        return flat[:cut].reshape(-1, self.k), flat[cut:].reshape(-1, self.k)

    def _split(self, adjoint: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(z[U], z[U~], z[V])`` of a flat vector of H's size."""
        size = (self.m + self.m_fake + self.n) * self.k
        if adjoint.shape != (size,):
            raise DataError(f"wrmf: adjoint of shape {adjoint.shape}, expected ({size},)")
        zw, zv = self._sides(adjoint)
        return zw[: self.m], zw[self.m :], zv

    def _factor(self, side: int) -> np.ndarray:
        return self._w if side == 0 else self._v

    def _dense(self, side: int, own: np.ndarray | None, other: np.ndarray) -> np.ndarray:
        """The Gram term's share of side ``side`` of ``H x``: ``2 dX (Y'Y + lam I)`` (when
        ``own`` is given) ``+ 2 X (dY'Y + Y'dY)``, X this side's factors, Y the other's."""
        x, y = self._factor(side), self._factor(1 - side)
        out = 2.0 * x @ (other.T @ y + y.T @ other)
        if own is not None:
            out += 2.0 * own @ self._shared[side]
        return out

    def _sparse(self, side: int, own: np.ndarray, other: np.ndarray, out: np.ndarray) -> None:
        """``out += 2 sum_stored (a ds y - E dy)`` for side ``side`` (:func:`hessian_rows`)."""
        blocks = (self._objective.train, self._objective.fake)
        for block, rows, (by_row, by_col) in zip(blocks, self._rows, self._residuals, strict=True):
            if block.csr.nnz == 0:
                continue
            if side == 0:
                hessian_rows(
                    block.csr,
                    by_row,
                    self._w[rows],
                    own[rows],
                    self._v,
                    other,
                    out[rows],
                    block.rows[2],
                )
            else:
                hessian_rows(
                    block.csc,
                    by_col,
                    self._v,
                    own,
                    self._w[rows],
                    other[rows],
                    out,
                    block.cols[2],
                )

    def _couple(self, side: int, other: np.ndarray) -> np.ndarray:
        """The off-diagonal block ``B`` into side ``side`` from the other side's ``other``."""
        out = self._dense(side, None, other)
        self._sparse(side, np.zeros_like(out), other, out)
        return out

    def _blocks(self, side: int, invert: bool) -> np.ndarray:
        """H's diagonal ``k x k`` blocks of side ``side`` (or their inverses)."""
        o = self._objective
        shared = self._shared[side]
        if side == 1:
            return wrmf_kernels.ridge_blocks(
                *o.train.cols, self.user, *o.fake.cols, self.fake_user, shared, 2.0, invert
            )
        parts = []
        for block, rows in ((o.train, self.m), (o.fake, self.m_fake)):
            empty = wrmf_kernels.empty_source(rows, self.k)
            parts.append(
                wrmf_kernels.ridge_blocks(*block.rows, self._v, *empty, shared, 2.0, invert)
            )
        return np.concatenate(parts)
