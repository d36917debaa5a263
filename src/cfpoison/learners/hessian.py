"""Hessian-vector products of the factored objective and a preconditioned Krylov solver.

The objective (one convention everywhere, see ``learners/base.py``)::

    L(U, U~, V) = sum_Omega (M_ij - u_i.v_j)^2 + sum_Omega~ (M~_ij - u~_i.v_j)^2
                  + lam_U (||U||^2 + ||U~||^2) + lam_V ||V||^2

With ``W = [U; U~]``, residuals ``E_ij = M_ij - w_i.v_j`` and, for a direction ``(dW, dV)``,
``dE_ij = -(dw_i.v_j + w_i.dv_j)`` on the observed entries::

    H_W = -2 dE V  - 2 E dV  + 2 lam_U dW
    H_V = -2 dE'W  - 2 E'dW  + 2 lam_V dV

at ``O(|Omega| k)``, never forming H (dense fake rows, SGLD's chains, go through BLAS:
``docs/math.md`` section 5). The diagonal blocks ``2 (lam_U I + sum_{j in Omega_i} v_j v_j')``
and ``2 (lam_V I + sum_{i in Omega'_j} w_i w_i')`` give the block-Jacobi preconditioner and,
alone, the paper's Eq. 12. H is singular along the rotations ``(W S, V S)``, ``S``
skew-symmetric, but consistent for right-hand sides that depend on ``U V'`` only; :func:`solve`
runs MINRES on the Schur complement, its rotations gauged (:class:`Rotations`), to a true
residual (``docs/math.md`` sections 3.2-3.4).

The reweighting defenses' weighted objective ``L = sum_Omega c_ij rho(M_ij - w_i.v_j) +
sum_i a_i |w_i|^2 + sum_j b_j |v_j|^2`` (``rho(r) = r^2`` or Huber's with threshold ``delta``)
has the same products with ``E`` replaced by ``c rho'(E) / 2``, the first term's ``dE`` by
``h dE`` (``h = c rho''(E) / 2``) and ``lam_U``, ``lam_V`` by the per-row ``a_i``, ``b_j``
(``docs/math.md`` section 3.6); without weights, threshold or per-row terms it is H above.
"""

from __future__ import annotations

import abc
import dataclasses
import math
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from cfpoison.learners._sparse import (
    block_apply,
    hessian_rows,
    sddmm,
    weighted_blocks,
    with_values,
)
from cfpoison.learners.base import FactorViews, cached_csc, serial_blas
from cfpoison.learners.factored import DenseBlock
from cfpoison.learners.kernels import empty_source, ridge_blocks


@dataclasses.dataclass
class FactorHessian:
    """H of L at ``(U, U~, V)``, for the normal block ``train`` and the fake block ``fake``.

    Vectors are flat: ``[vec(U), vec(U~), vec(V)]`` (row-major), see :meth:`split`.

    Attributes:
        train: normal users' ratings (m x n CSR, shifted scale); its CSC copy is cached per
            matrix object (``learners.base.cached_csc``), so repeated calls on the same
            training matrix pay for the transpose once.
        fake: fake users' ratings (m' x n CSR).
        lambda_u: ``lam_U``, or one regularization ``a_i > 0`` per row of ``[U; U~]``
            (``m + m'``: the weighted objective of the module docstring).
        lambda_v: ``lam_V``, or one ``b_j > 0`` per item.
        weights: the per-rating weights ``c_ij >= 0`` of ``train`` and of ``fake`` (each in its
            CSR order); None: all 1.
        delta: Huber's threshold (shifted scale); ``inf``: the squared loss.
    """

    train: sp.csr_array
    fake: sp.csr_array
    user: np.ndarray
    fake_user: np.ndarray
    item: np.ndarray
    lambda_u: float | np.ndarray
    lambda_v: float | np.ndarray
    weights: tuple[np.ndarray, np.ndarray] | None = None
    delta: float = math.inf

    def __post_init__(self) -> None:
        k = self.item.shape[1]
        self.user = np.ascontiguousarray(self.user, dtype=np.float64).reshape(-1, k)
        self.fake_user = np.ascontiguousarray(self.fake_user, dtype=np.float64).reshape(-1, k)
        self.item = np.ascontiguousarray(self.item, dtype=np.float64)
        m, n = len(self.user), len(self.item)
        # a scalar stays a float (exactly today's products); a vector becomes a column
        lam_users = _per_row(self.lambda_u, m + len(self.fake_user), "lambda_u")
        lam_items = _per_row(self.lambda_v, n, "lambda_v")
        self._lam_user: float | np.ndarray = lam_users
        self._lam_fake: float | np.ndarray = lam_users
        self._lam_item: float | np.ndarray = lam_items
        if isinstance(lam_users, np.ndarray):
            self._lam_user, self._lam_fake = lam_users[:m, None], lam_users[m:, None]
        if isinstance(lam_items, np.ndarray):
            self._lam_item = lam_items[:, None]
        if not (self.delta > 0):
            raise ValueError(f"Huber threshold must be > 0, got {self.delta}")
        self.weighted = self.weights is not None or math.isfinite(self.delta)
        self._jacobi: BlockJacobi | None = None
        self._train_csc = _sorted_csc(self.train, cached=True)
        self._fake_csc = _sorted_csc(self.fake, cached=False)
        residual_train = self.train.data - sddmm(self.train, self.user, self.item)
        residual_fake = self.fake.data - sddmm(self.fake, self.fake_user, self.item)
        self._curvature: tuple[np.ndarray | None, ...] = (None,) * 4
        self._dense: DenseBlock | None = None
        n_fake = len(self.fake_user)
        dense = n_fake and self.fake.nnz == n_fake * n and self.fake.has_sorted_indices
        if dense and not self.weighted:  # SGLD's dense rows: their products through BLAS
            self._dense = DenseBlock.of(np.asarray(self.fake.data).reshape(n_fake, n))
        if not self.weighted:
            self._residual_train = with_values(self.train, residual_train)
            self._residual_fake = with_values(self.fake, residual_fake)
            self._residual_train_csc = self._train_csc.data - sddmm(
                _transposed(self._train_csc), self.item, self.user
            )
            self._residual_fake_csc = self._fake_csc.data - sddmm(
                _transposed(self._fake_csc), self.item, self.fake_user
            )
            return
        weights = self.weights or (np.ones(self.train.nnz), np.ones(self.fake.nnz))
        parts = []
        for pattern, residual, c in zip(
            (self.train, self.fake), (residual_train, residual_fake), weights, strict=True
        ):
            c = np.asarray(c, dtype=np.float64)
            if c.shape != (pattern.nnz,) or not np.all(c >= 0):
                raise ValueError(f"expected {pattern.nnz} rating weights >= 0")
            psi = c * np.clip(residual, -self.delta, self.delta)
            curvature = c * (np.abs(residual) <= self.delta)
            to_csc = _csc_order(pattern)
            parts.append((psi, curvature, psi[to_csc], curvature[to_csc]))
        (psi_t, h_t, psi_t_csc, h_t_csc), (psi_f, h_f, psi_f_csc, h_f_csc) = parts
        self._residual_train = with_values(self.train, psi_t)
        self._residual_fake = with_values(self.fake, psi_f)
        self._residual_train_csc, self._residual_fake_csc = psi_t_csc, psi_f_csc
        self._curvature = (h_t, h_f, h_t_csc, h_f_csc)

    @property
    def fake_curvature(self) -> np.ndarray | None:
        """``h = c rho''(E) / 2`` on the fake ratings (CSR order; None: 1 everywhere): the mixed
        partial ``d grad L / d M~_ij`` is ``-2 h_ij`` times ``v_j`` and ``u~_i``."""
        return self._curvature[1]

    @property
    def rank(self) -> int:
        return int(self.item.shape[1])

    @property
    def size(self) -> int:
        return (self.user.shape[0] + self.fake_user.shape[0] + self.item.shape[0]) * self.rank

    def split(self, flat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Views ``(U-part, U~-part, V-part)`` of a flat vector."""
        k = self.rank
        m, mf = self.user.shape[0], self.fake_user.shape[0]
        return (
            flat[: m * k].reshape(m, k),
            flat[m * k : (m + mf) * k].reshape(mf, k),
            flat[(m + mf) * k :].reshape(-1, k),
        )

    def gradient(self) -> np.ndarray:
        """``grad L`` (flat): ``-2 Psi V + 2 a W`` and ``-2 Psi'W + 2 b V`` (unweighted:
        ``Psi = E``, ``a = lam_U``, ``b = lam_V``)."""
        gu = -2.0 * (self._residual_train @ self.item) + 2.0 * self._lam_user * self.user
        gf = -2.0 * (self._residual_fake @ self.item) + 2.0 * self._lam_fake * self.fake_user
        gv = (
            -2.0 * (self._residual_train.T @ self.user)
            - 2.0 * (self._residual_fake.T @ self.fake_user)
            + 2.0 * self._lam_item * self.item
        )
        return np.concatenate([gu.ravel(), gf.ravel(), gv.ravel()])

    def kkt_residual(self) -> float:
        """``|grad L| / |grad penalty|``: the learners' relative KKT residual, of this L."""
        penalty = np.concatenate(
            [
                (2.0 * self._lam_user * self.user).ravel(),
                (2.0 * self._lam_fake * self.fake_user).ravel(),
                (2.0 * self._lam_item * self.item).ravel(),
            ]
        )
        scale = float(np.linalg.norm(penalty))
        return float(np.linalg.norm(self.gradient())) / scale if scale > 0 else math.inf

    def matvec(self, flat: np.ndarray) -> np.ndarray:
        """``H x`` for a flat direction ``x`` (see the module docstring); numba, parallel."""
        flat = np.ascontiguousarray(flat, dtype=np.float64)
        du, df, dv = self.split(flat)
        out = np.empty_like(flat)
        hu, hf, hv = self.split(out)
        hu[:] = 2.0 * self._lam_user * du
        hf[:] = 2.0 * self._lam_fake * df
        hv[:] = 2.0 * self._lam_item * dv
        h_t, h_f, h_t_csc, h_f_csc = self._curvature
        hessian_rows(self.train, self._residual_train.data, self.user, du, self.item, dv, hu, h_t)
        hessian_rows(
            self._train_csc, self._residual_train_csc, self.item, dv, self.user, du, hv, h_t_csc
        )
        if self._dense is not None:
            hf += self._dense_part(0, df, dv)
            hv += self._dense_part(1, dv, df)
            return out
        hessian_rows(
            self.fake, self._residual_fake.data, self.fake_user, df, self.item, dv, hf, h_f
        )
        hessian_rows(
            self._fake_csc, self._residual_fake_csc, self.item, dv, self.fake_user, df, hv, h_f_csc
        )
        return out

    def _dense_part(self, side: int, own: np.ndarray | None, other: np.ndarray) -> np.ndarray:
        """The dense fake block's share of ``H x`` on side ``side`` (0: the fake users, 1: the
        items): ``2 dX (Y'Y) + 2 X (dY'Y + Y'dY) - 2 D dY`` (the ``dX`` term when ``own`` is
        given), ``X`` this side's factors, ``Y`` the other side's, ``D`` the dense fake values
        (transposed for the items). On the users it is ``-2 dE V - 2 E dV`` with
        ``E = D - U~V'`` and ``dE = -(dU~ V' + U~ dV')``."""
        assert self._dense is not None
        if side == 0:
            x, y, values = self.fake_user, self.item, self._dense.values
        else:
            x, y, values = self.item, self.fake_user, self._dense.transposed
        out = 2.0 * (x @ (other.T @ y + y.T @ other)) - 2.0 * (values @ other)
        if own is not None:
            out += 2.0 * (own @ (y.T @ y))
        return out

    def couple_to_users(self, dv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The off-diagonal block ``B dV`` of ``H`` (rows of U and U~), ``B = d2L/dW dV``."""
        k = self.rank
        hu, hf = np.zeros((len(self.user), k)), np.zeros((len(self.fake_user), k))
        zero_u, zero_f = np.zeros_like(hu), np.zeros_like(hf)
        h_t, h_f, _, _ = self._curvature
        hessian_rows(
            self.train, self._residual_train.data, self.user, zero_u, self.item, dv, hu, h_t
        )
        if self._dense is not None:
            return hu, self._dense_part(0, None, dv)
        hessian_rows(
            self.fake, self._residual_fake.data, self.fake_user, zero_f, self.item, dv, hf, h_f
        )
        return hu, hf

    def couple_to_items(self, du: np.ndarray, df: np.ndarray) -> np.ndarray:
        """The off-diagonal block ``B' dW`` of ``H`` (rows of V)."""
        hv = np.zeros_like(self.item)
        zero = np.zeros_like(hv)
        _, _, h_t_csc, h_f_csc = self._curvature
        hessian_rows(
            self._train_csc, self._residual_train_csc, self.item, zero, self.user, du, hv, h_t_csc
        )
        if self._dense is not None:
            return hv + self._dense_part(1, None, df)
        hessian_rows(
            self._fake_csc,
            self._residual_fake_csc,
            self.item,
            zero,
            self.fake_user,
            df,
            hv,
            h_f_csc,
        )
        return hv

    def user_blocks(self, invert: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """H's diagonal ``k x k`` blocks of U and U~, ``2 (lam_U I + sum v v')`` (or inverses;
        weighted: ``2 (a_i I + sum h v v')``)."""
        k = self.rank
        if isinstance(self._lam_user, np.ndarray) or self.weighted:
            h_t, h_f, _, _ = self._curvature
            return tuple(  # type: ignore[return-value]
                weighted_blocks([(pattern, _ones(pattern, h), self.item)], _column(lam, n), invert)
                for pattern, h, lam, n in (
                    (self.train, h_t, self._lam_user, len(self.user)),
                    (self.fake, h_f, self._lam_fake, len(self.fake_user)),
                )
            )
        return tuple(  # type: ignore[return-value]
            ridge_blocks(
                *_parts(pattern),
                self.item,
                *empty_source(rows, k),
                self._lam_user,
                2.0,
                invert,
            )
            for pattern, rows in ((self.train, len(self.user)), (self.fake, len(self.fake_user)))
        )

    def item_blocks(self, invert: bool = False) -> np.ndarray:
        """H's diagonal ``k x k`` blocks of V, ``2 (lam_V I + sum w w')`` (or inverses;
        weighted: ``2 (b_j I + sum h w w')``)."""
        if isinstance(self._lam_item, np.ndarray) or self.weighted:
            _, _, h_t, h_f = self._curvature
            sources = [
                (self._train_csc, _ones(self._train_csc, h_t), self.user),
                (self._fake_csc, _ones(self._fake_csc, h_f), self.fake_user),
            ]
            return weighted_blocks(sources, _column(self._lam_item, len(self.item)), invert)
        return ridge_blocks(
            *_parts(self._train_csc),
            self.user,
            *_parts(self._fake_csc),
            self.fake_user,
            self._lam_item,
            2.0,
            invert,
        )

    def block_inverse(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Inverses of H's diagonal ``k x k`` blocks, for U, U~ and V."""
        return (*self.user_blocks(invert=True), self.item_blocks(invert=True))

    # ------------------------------------------------- the AdjointSystem protocol
    def rhs(self, grad_user: np.ndarray, grad_item: np.ndarray) -> np.ndarray:
        """``g = (dR/dU, 0, dR/dV)`` as a flat vector."""
        return np.concatenate([grad_user.ravel(), np.zeros(self.fake_user.size), grad_item.ravel()])

    def solve(
        self, rhs: np.ndarray, tol: float, max_iter: int, x0: np.ndarray | None = None
    ) -> SolveResult:
        """:func:`solve` (the Schur complement by MINRES) with the block-Jacobi blocks."""
        return solve(self, rhs, self.block_jacobi(), tol, max_iter, x0=x0)

    def precondition(self, rhs: np.ndarray) -> np.ndarray:
        """The inverse diagonal blocks applied to ``rhs``: alone, the paper's Eq. 12."""
        return self.block_jacobi()(rhs)

    def fake_gradient(self, adjoint: np.ndarray, pattern: sp.csr_array) -> np.ndarray:
        """``dR/dM~_ij = 2 h_ij (v_j . z[u~_i] + u~_i . z[v_j])`` at the stored entries of
        ``pattern`` (CSR order); ``h`` = 1 unweighted, else the curvature on the fake ratings
        (defined on the pattern the Hessian was built on)."""
        _, z_fake, z_item = self.split(adjoint)
        values = 2.0 * sddmm(
            pattern, np.hstack([z_fake, self.fake_user]), np.hstack([self.item, z_item])
        )
        curvature = self.fake_curvature
        if curvature is None:
            return values
        if len(curvature) != pattern.nnz:
            raise ValueError("weighted gradient: asked on another pattern than its own")
        return curvature * values

    def fake_gradient_dense(self, adjoint: np.ndarray) -> np.ndarray:
        """``2 (z[U~] V' + U~ z[V]')`` on all ``m' x n`` entries (unweighted only: a weighted
        objective gives no weight to a rating it does not hold)."""
        if self.fake_curvature is not None:
            raise ValueError("weighted gradient: defined on the fake pattern only")
        _, z_fake, z_item = self.split(adjoint)
        return 2.0 * (z_fake @ self.item.T + self.fake_user @ z_item.T)

    def unstored_values(self) -> np.ndarray:
        """The fake users' predictions ``U~ V'``: a rating equal to its prediction leaves the
        fit stationary."""
        return self.fake_user @ self.item.T

    def block_jacobi(self) -> BlockJacobi:
        """The block-Jacobi preconditioner ``diag(H)^{-1}`` (the paper's Eq. 12 blocks),
        computed once per Hessian."""
        if self._jacobi is None:
            self._jacobi = BlockJacobi(self, *self.block_inverse())
        return self._jacobi


class SquaredLossLearner(FactorViews):
    """A learner whose fit is a stationary point of the squared-loss ``L`` of
    :mod:`cfpoison.learners.base` (ALS; nuclear norm at its balanced factors): its adjoint
    system is :class:`FactorHessian` at its factors."""

    @property
    @abc.abstractmethod
    def lambda_u(self) -> float: ...

    @property
    @abc.abstractmethod
    def lambda_v(self) -> float: ...

    def adjoint_system(self, train: sp.csr_array, fake: sp.csr_array) -> FactorHessian:
        """H of ``L`` at the fit on ``train`` (the normal users) plus ``fake``."""
        f = self.factors
        return FactorHessian(
            train, fake, f.user, f.fake_user, f.item, float(self.lambda_u), float(self.lambda_v)
        )


def _sorted_csc(matrix: sp.csr_array, cached: bool) -> sp.csc_array:
    """``matrix`` in CSC form with sorted indices (cached per object for the data set)."""
    if cached:
        return cached_csc(matrix)
    csc = sp.csc_array(matrix)
    csc.sort_indices()
    return csc


def _per_row(lam: float | np.ndarray, rows: int, name: str) -> float | np.ndarray:
    """A scalar regularization as a float, a per-row one as a validated vector."""
    if np.ndim(lam) == 0:
        return float(lam)
    vector = np.asarray(lam, dtype=np.float64)
    if vector.shape != (rows,) or not np.all(vector > 0):
        raise ValueError(f"{name}: expected {rows} per-row values > 0, got shape {vector.shape}")
    return vector


def _column(lam: float | np.ndarray, rows: int) -> np.ndarray:
    """Per-row regularization as a vector of ``rows`` (a scalar repeated)."""
    return np.full(rows, lam) if isinstance(lam, float) else lam.ravel()


def _ones(pattern: sp.csr_array | sp.csc_array, weight: np.ndarray | None) -> np.ndarray:
    """``weight``, or 1 for every stored entry of ``pattern``."""
    return np.ones(pattern.nnz) if weight is None else weight


def _csc_order(matrix: sp.csr_array) -> np.ndarray:
    """Entry p of ``matrix``'s sorted CSC order is entry ``order[p]`` of its CSR order."""
    position = with_values(matrix, np.arange(1, matrix.nnz + 1, dtype=np.float64))
    return _sorted_csc(position, cached=False).data.astype(np.int64) - 1


def _parts(matrix: sp.csr_array | sp.csc_array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(indptr, indices, data)`` of a compressed matrix as the kernels take them."""
    return (
        np.asarray(matrix.indptr, dtype=np.int64),
        np.asarray(matrix.indices, dtype=np.int32),
        np.asarray(matrix.data, dtype=np.float64),
    )


def _transposed(csc: sp.csc_array) -> sp.csr_array:
    """The CSR view of ``csc``'s transpose (same arrays, no copy)."""
    return sp.csr_array((csc.data, csc.indices, csc.indptr), shape=csc.shape[::-1])


@dataclasses.dataclass
class BlockJacobi:
    """Applies the inverse diagonal blocks of a :class:`FactorHessian` to flat vectors."""

    hessian: FactorHessian
    user: np.ndarray
    fake_user: np.ndarray
    item: np.ndarray

    def __call__(self, flat: np.ndarray) -> np.ndarray:
        out = np.empty_like(flat)
        for block, src, dst in zip(
            (self.user, self.fake_user, self.item),
            self.hessian.split(flat),
            self.hessian.split(out),
            strict=True,
        ):
            block_apply(block, src, dst)
        return out


@dataclasses.dataclass(frozen=True)
class SolveResult:
    """Solution ``x``, Krylov iterations, the true relative residual ``|b - H x| / |b|`` (the
    rotations' gauge term excepted where the solve gauges them, :func:`solve`), and
    whether it reached the requested tolerance within the iteration cap."""

    x: np.ndarray
    iterations: int
    relative_residual: float
    converged: bool


def _apply(blocks: np.ndarray, x: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    block_apply(blocks, x, out)
    return out


class Rotations:
    """The rotations ``T = {Z A : A skew-symmetric}`` of factors ``Z`` (``n x k``, the rows
    that rotate together) and the gauge term ``D Y (Y'D Y)^+ Y'D`` that gives them unit
    curvature in the metric of the block-diagonal ``D`` (``blocks``: one ``k x k`` block per
    row of ``Z``). With ``rotating = r < k`` only the first ``r`` columns rotate (``A`` is 0
    outside its leading ``r x r`` block): biased MF's rows ``[u, b]``, whose bias is fixed.

    ``Y`` is never formed: for a basis direction ``E_ab = e_a e_b' - e_b e_a'`` (``a < b``),
    ``Y'x`` is the upper triangle of ``C - C'`` with ``C = Z'X``, ``Y w`` is ``Z A`` with ``A``
    the skew matrix of ``w``, and ``Y'D Y`` is assembled from
    ``K[a, b, c, d] = sum_i z_ia z_ic D_i[b, d]``: ``O(n k^4)`` once, ``O(n k^2)`` per
    product (``docs/math.md`` section 3.3).
    """

    def __init__(self, factors: np.ndarray, blocks: np.ndarray, rotating: int | None = None):
        self.factors, self.blocks = factors, blocks
        n, k = factors.shape
        self.upper = np.triu_indices(k if rotating is None else rotating, 1)
        outer = (factors[:, :, None] * factors[:, None, :]).reshape(n, k * k)
        kron = (outer.T @ blocks.reshape(n, k * k)).reshape(k, k, k, k).transpose(0, 2, 1, 3)
        full = kron - kron.transpose(0, 1, 3, 2) - kron.transpose(1, 0, 2, 3)
        full += kron.transpose(1, 0, 3, 2)  # [ab, cd] = <Z E_ab, D Z E_cd>
        a, b = self.upper
        self.gram = full[a, b][:, a, b]
        # (Y'D Y)^+: two columns of Z at 0 (a nuclear norm's shrunk rank) rotate nothing
        values, vectors = np.linalg.eigh(self.gram)
        keep = values > 1e-12 * max(float(values.max(initial=0.0)), 1e-300)
        self.inverse = (vectors[:, keep] / values[keep]) @ vectors[:, keep].T

    def term(self, x: np.ndarray) -> np.ndarray:
        """``D Y (Y'D Y)^+ Y'D x`` for a flat ``x`` of ``Z``'s size."""
        dx = _apply(self.blocks, x.reshape(self.factors.shape))
        c = self.factors.T @ dx
        skew = np.zeros_like(c)
        skew[self.upper] = self.inverse @ (c - c.T)[self.upper]
        skew -= skew.T
        return _apply(self.blocks, self.factors @ skew).ravel()


def rotations_to_gauge(
    parts: tuple[np.ndarray, ...],
    rhs: tuple[np.ndarray, ...],
    kept: np.ndarray,
    blocks: np.ndarray,
    rotating: int | None = None,
) -> Rotations | None:
    """The kept side's :class:`Rotations` (factors ``kept``, diagonal ``blocks``, the first
    ``rotating`` columns: all by default) where ``rhs`` is orthogonal, to rounding, to every
    rotation of all the factors ``parts`` (``skew(sum Z_p' g_p) = 0`` on those columns: a
    utility of ``U V'``); None where it is not, or where fewer than 2 columns rotate."""
    r = kept.shape[1] if rotating is None else rotating
    if r < 2:
        return None
    c = sum(p[:, :r].T @ g[:, :r] for p, g in zip(parts, rhs, strict=True))
    scale = math.sqrt(sum(float(np.sum(p[:, :r] ** 2)) for p in parts))
    scale *= math.sqrt(sum(float(np.sum(g[:, :r] ** 2)) for g in rhs))
    if np.abs(c - c.T).max() > 1e-9 * scale:
        return None
    return Rotations(np.ascontiguousarray(kept), blocks, rotating)


def schur_minres(
    schur: Callable[[np.ndarray], np.ndarray],
    precondition: Callable[[np.ndarray], np.ndarray],
    reduced: np.ndarray,
    kept: np.ndarray,
    expand: Callable[[np.ndarray], np.ndarray],
    full: tuple[Callable[[np.ndarray], np.ndarray], np.ndarray, slice],
    rotations: Rotations | None,
    tol: float,
    max_iter: int,
) -> SolveResult:
    """MINRES on a Schur complement ``S x_K = reduced`` from ``kept``, to a true residual of
    the full system ``full = (H's product, rhs, the kept block's slice)``: the solution is
    ``expand(x_K)``, the residual re-measured with one product with H and MINRES resumed
    until ``tol`` or ``max_iter`` iterations. With ``rotations`` their gauge term is added to
    S, and subtracted from the measured residual's kept block (:func:`solve`)."""
    matvec_full, rhs, block = full
    norm_b = float(np.linalg.norm(rhs))
    if norm_b == 0.0:
        return SolveResult(np.zeros_like(rhs), 0, 0.0, True)

    def matvec(x: np.ndarray) -> np.ndarray:
        return schur(x) if rotations is None else schur(x) + rotations.term(x)

    def measured(x_kept: np.ndarray) -> tuple[np.ndarray, float]:
        x = expand(x_kept)
        r = rhs - matvec_full(x)
        if rotations is not None:
            r[block] -= rotations.term(x_kept)
        return x, float(np.linalg.norm(r)) / norm_b

    iterations = 0
    x, residual = measured(kept)
    while residual > tol and iterations < max_iter:
        # the recurrence drifts from the true residual by rounding: re-measure, resume
        kept, done, _ = minres(
            matvec, precondition, reduced, kept, tol * norm_b, max_iter - iterations
        )
        iterations += max(done, 1)
        x, residual = measured(kept)
    return SolveResult(x, iterations, residual, residual <= tol)


class _SchurSystem:
    """``H x = g`` with the larger block eliminated exactly.

    In the user/item blocks, ``H = [[D_W, B], [B', D_V]]`` with ``D_W`` and ``D_V`` block
    diagonal (one ``k x k`` block per row), so eliminating one side is exact and cheap. Keeping
    items (when there are fewer items than users)::

        (D_V - B' D_W^-1 B) x_V = g_V - B' D_W^-1 g_W,    x_W = D_W^-1 (g_W - B x_V)

    and symmetrically when users are kept. The Schur complement S is symmetric, positive
    semidefinite where H is, and one product with it costs the same two passes over the
    ratings as one product with H.
    """

    def __init__(self, hessian: FactorHessian, preconditioner: BlockJacobi, rhs: np.ndarray):
        self.h = hessian
        self.p = preconditioner
        self.keep_items = len(hessian.item) <= len(hessian.user) + len(hessian.fake_user)
        self.g = [np.ascontiguousarray(part) for part in hessian.split(rhs)]
        cut = hessian.user.size + hessian.fake_user.size
        if self.keep_items:
            self.d_item = hessian.item_blocks()
            self.size = hessian.item.size
            self.block = slice(cut, None)
        else:
            self.d_user, self.d_fake = hessian.user_blocks()
            self.size = cut
            self.block = slice(0, cut)

    def rotations(self) -> Rotations | None:
        """The kept side's rotations to gauge (:func:`rotations_to_gauge`)."""
        h = self.h
        parts = (h.user, h.fake_user, h.item)
        if self.keep_items:
            return rotations_to_gauge(parts, tuple(self.g), h.item, self.d_item)
        kept = np.vstack([h.user, h.fake_user])
        blocks = np.concatenate([self.d_user, self.d_fake])
        return rotations_to_gauge(parts, tuple(self.g), kept, blocks)

    def _users(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n_user = self.h.user.size
        return x[:n_user].reshape(self.h.user.shape), x[n_user:].reshape(self.h.fake_user.shape)

    def _eliminated_users(self, xv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``D_W^-1 (g_W - B x_V)``."""
        bu, bf = self.h.couple_to_users(xv)
        return _apply(self.p.user, self.g[0] - bu), _apply(self.p.fake_user, self.g[1] - bf)

    def _eliminated_items(self, xu: np.ndarray, xf: np.ndarray) -> np.ndarray:
        """``D_V^-1 (g_V - B' x_W)``."""
        return _apply(self.p.item, self.g[2] - self.h.couple_to_items(xu, xf))

    def matvec(self, x: np.ndarray) -> np.ndarray:
        if self.keep_items:
            xv = x.reshape(self.h.item.shape)
            bu, bf = self.h.couple_to_users(xv)
            wu, wf = _apply(self.p.user, bu), _apply(self.p.fake_user, bf)
            return (_apply(self.d_item, xv) - self.h.couple_to_items(wu, wf)).ravel()
        xu, xf = self._users(x)
        bu, bf = self.h.couple_to_users(_apply(self.p.item, self.h.couple_to_items(xu, xf)))
        return np.concatenate(
            [(_apply(self.d_user, xu) - bu).ravel(), (_apply(self.d_fake, xf) - bf).ravel()]
        )

    def precondition(self, x: np.ndarray) -> np.ndarray:
        """The kept side's diagonal blocks inverted (block Jacobi on S's leading term)."""
        if self.keep_items:
            return _apply(self.p.item, x.reshape(self.h.item.shape)).ravel()
        xu, xf = self._users(x)
        return np.concatenate(
            [_apply(self.p.user, xu).ravel(), _apply(self.p.fake_user, xf).ravel()]
        )

    def reduced_rhs(self) -> np.ndarray:
        """``g_V - B' D_W^-1 g_W`` (items kept) or ``g_W - B D_V^-1 g_V`` (users kept)."""
        if self.keep_items:
            wu, wf = _apply(self.p.user, self.g[0]), _apply(self.p.fake_user, self.g[1])
            return (self.g[2] - self.h.couple_to_items(wu, wf)).ravel()
        bu, bf = self.h.couple_to_users(_apply(self.p.item, self.g[2]))
        return np.concatenate([(self.g[0] - bu).ravel(), (self.g[1] - bf).ravel()])

    def restrict(self, x: np.ndarray) -> np.ndarray:
        """The kept part of a full flat vector."""
        xu, xf, xv = self.h.split(x)
        return xv.ravel().copy() if self.keep_items else np.concatenate([xu.ravel(), xf.ravel()])

    def expand(self, x: np.ndarray) -> np.ndarray:
        """The full solution from the kept part."""
        if self.keep_items:
            xv = x.reshape(self.h.item.shape)
            xu, xf = self._eliminated_users(xv)
        else:
            xu, xf = self._users(x)
            xv = self._eliminated_items(xu, xf)
        return np.concatenate([xu.ravel(), xf.ravel(), xv.ravel()])


def minres(
    matvec: Callable[[np.ndarray], np.ndarray],
    precondition: Callable[[np.ndarray], np.ndarray],
    b: np.ndarray,
    x: np.ndarray,
    target: float,
    max_iter: int,
) -> tuple[np.ndarray, int, float]:
    """Preconditioned MINRES (Paige and Saunders 1975, as in SciPy's ``minres``) for
    symmetric ``A`` and SPD ``M``, stopped on the true residual ``|b - A x| <= target``.

    Besides ``x_k = x_(k-1) + phi_k w_k``, it carries ``A w_k`` by the same three-term
    recurrence, so the residual ``r_k = r_(k-1) - phi_k A w_k`` (unpreconditioned) is known
    at every iteration for a few vector operations; SciPy's own stopping test is a
    preconditioned backward error that can stop far above (or below) ``target``. Returns
    ``x``, the iterations and ``|r|`` by the recurrence (callers re-measure it).
    """
    residual = b - matvec(x)
    norm = float(np.linalg.norm(residual))
    r1 = residual.copy()
    y = precondition(r1)
    beta = math.sqrt(max(float(r1 @ y), 0.0))
    if norm <= target or beta == 0.0:
        return x, 0, norm
    r2 = r1.copy()
    old_beta, dbar, epsilon, phibar, cs, sn = 0.0, 0.0, 0.0, beta, -1.0, 0.0
    w = np.zeros_like(b)
    w2 = np.zeros_like(b)
    aw = np.zeros_like(b)
    aw2 = np.zeros_like(b)
    for iteration in range(1, max_iter + 1):
        v = y / beta
        av = matvec(v)
        y = av - (beta / old_beta) * r1 if iteration > 1 else av.copy()
        alpha = float(v @ y)
        y -= (alpha / beta) * r2
        r1, r2 = r2, y
        y = precondition(r2)
        old_beta, beta = beta, math.sqrt(max(float(r2 @ y), 0.0))
        old_epsilon = epsilon
        delta = cs * dbar + sn * alpha
        gbar = sn * dbar - cs * alpha
        epsilon = sn * beta
        dbar = -cs * beta
        gamma = max(math.hypot(gbar, beta), np.finfo(float).eps)
        cs, sn = gbar / gamma, beta / gamma
        phi = cs * phibar
        phibar *= sn
        w1, w2 = w2, w
        w = (v - old_epsilon * w1 - delta * w2) / gamma
        aw1, aw2 = aw2, aw
        aw = (av - old_epsilon * aw1 - delta * aw2) / gamma
        x = x + phi * w
        residual -= phi * aw
        norm = float(np.linalg.norm(residual))
        if norm <= target or beta == 0.0:
            return x, iteration, norm
    return x, max_iter, norm


def solve(
    hessian: FactorHessian,
    rhs: np.ndarray,
    preconditioner: BlockJacobi | None = None,
    tol: float = 1e-8,
    max_iter: int = 500,
    x0: np.ndarray | None = None,
) -> SolveResult:
    """``H x = rhs`` to a true relative residual ``|rhs - H x| / |rhs| <= tol`` (the rotations'
    gauge term excepted, below).

    The larger of the user and item blocks is eliminated exactly (:class:`_SchurSystem`) and
    preconditioned MINRES (:func:`minres`, the kept side's inverse diagonal
    blocks, from ``preconditioner`` or :meth:`FactorHessian.block_jacobi`) solves the Schur
    complement, warm-started from the kept part of ``x0``: about half the iterations of the
    same MINRES on the whole H (``docs/math.md`` section 3.3), each on vectors of the kept
    side only. MINRES rather than CG: at a solution that is stationary
    only to a tolerance, H (and S) is slightly indefinite along the rotations (differentiating
    ``L(theta exp(tS))`` twice gives ``(theta S)' H (theta S) = -grad L . (theta S^2)``),
    where CG breaks down; MINRES needs only symmetry, and the rotation components of x do
    not change ``dR/dM~`` (module :mod:`cfpoison.attacks.gradient`).

    **The rotations are gauged** where ``rhs`` is orthogonal to them (every utility of
    ``U V'``): S is nearly singular along the kept side's rotations ``Y`` (eigenvalues
    ``~KKT``, not 0), and the system's small inconsistency there cost MINRES hundreds of
    iterations to resolve by huge rotation components. The gauge term
    ``D Y (Y'D Y)^+ Y'D`` (:class:`Rotations`) gives them unit curvature in the
    preconditioner's metric and leaves the rest of the spectrum as it was, since ``rhs`` has
    no component there. The solution differs only along the rotations; the residual measured
    is the gauged system's (``docs/math.md`` section 3.3).

    :func:`minres` stops on the true residual of the Schur system (the full system's, the
    eliminated block being exact); the residual is then re-measured with one product with H,
    and if rounding left it above ``tol`` MINRES resumes from the current x, until ``tol`` or
    ``max_iter`` iterations in all (then ``converged`` is False and the residual reached is
    reported).
    """
    with serial_blas():
        system = _SchurSystem(hessian, preconditioner or hessian.block_jacobi(), rhs)
        kept = np.zeros(system.size) if x0 is None else system.restrict(np.asarray(x0, float))
        return schur_minres(
            system.matvec,
            system.precondition,
            system.reduced_rhs(),
            kept,
            system.expand,
            (hessian.matvec, rhs, system.block),
            system.rotations(),
            tol,
            max_iter,
        )
