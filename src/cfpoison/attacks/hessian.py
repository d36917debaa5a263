"""Hessian-vector products of the factored objective and a preconditioned Krylov solver.

The objective (one convention everywhere, see ``learners/base.py``)::

    L(U, U~, V) = sum_Omega (M_ij - u_i.v_j)^2 + sum_Omega~ (M~_ij - u~_i.v_j)^2
                  + lam_U (||U||^2 + ||U~||^2) + lam_V ||V||^2

Write ``W = [U; U~]`` and ``E`` for the residuals ``M_ij - w_i.v_j`` on the observed entries.
For a direction ``(dW, dV)``, with ``dE_ij = -(dw_i.v_j + w_i.dv_j)`` on the observed entries::

    H_W = -2 dE V  - 2 E dV  + 2 lam_U dW
    H_V = -2 dE'W  - 2 E'dW  + 2 lam_V dV

which costs ``O(|Omega| k)`` and never forms H. The exact diagonal blocks of H are
``2 (lam_U I + sum_{j in Omega_i} v_j v_j')`` for user i and
``2 (lam_V I + sum_{i in Omega'_j} w_i w_i')`` for item j; their inverses are the block-Jacobi
preconditioner of :func:`solve` and, applied alone, the paper's Eq. 12.

H is singular along the ``k(k-1)/2`` rotations ``(W S, V S)`` (S skew-symmetric), which leave
L unchanged; right-hand sides that depend on ``U V'`` only are orthogonal to them, so the
system is consistent and a Krylov method converges on it (``docs/math.md`` section 3).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from cfpoison.attacks._sparse import row_grams, sddmm, with_values
from cfpoison.learners.base import cached_csc


@dataclasses.dataclass
class FactorHessian:
    """H of L at ``(U, U~, V)``, for the normal block ``train`` and the fake block ``fake``.

    Vectors are flat: ``[vec(U), vec(U~), vec(V)]`` (row-major), see :meth:`split`.

    Attributes:
        train: normal users' ratings (m x n CSR, shifted scale); its CSC copy is cached per
            matrix object (``learners.base.cached_csc``), so repeated calls on the same
            training matrix pay for the transpose once.
        fake: fake users' ratings (m' x n CSR).
    """

    train: sp.csr_array
    fake: sp.csr_array
    user: np.ndarray
    fake_user: np.ndarray
    item: np.ndarray
    lambda_u: float
    lambda_v: float

    def __post_init__(self) -> None:
        k = self.item.shape[1]
        self.user = np.ascontiguousarray(self.user, dtype=np.float64).reshape(-1, k)
        self.fake_user = np.ascontiguousarray(self.fake_user, dtype=np.float64).reshape(-1, k)
        self.item = np.ascontiguousarray(self.item, dtype=np.float64)
        self._residual_train = with_values(
            self.train, self.train.data - sddmm(self.train, self.user, self.item)
        )
        self._residual_fake = with_values(
            self.fake, self.fake.data - sddmm(self.fake, self.fake_user, self.item)
        )

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
        """``grad L`` (flat): ``-2 E V + 2 lam_U W`` and ``-2 E'W + 2 lam_V V``."""
        gu = -2.0 * (self._residual_train @ self.item) + 2.0 * self.lambda_u * self.user
        gf = -2.0 * (self._residual_fake @ self.item) + 2.0 * self.lambda_u * self.fake_user
        gv = (
            -2.0 * (self._residual_train.T @ self.user)
            - 2.0 * (self._residual_fake.T @ self.fake_user)
            + 2.0 * self.lambda_v * self.item
        )
        return np.concatenate([gu.ravel(), gf.ravel(), gv.ravel()])

    def matvec(self, flat: np.ndarray) -> np.ndarray:
        """``H x`` for a flat direction ``x`` (see the module docstring)."""
        du, df, dv = self.split(flat)
        out = np.empty_like(flat)
        hu, hf, hv = self.split(out)
        hv[:] = 2.0 * self.lambda_v * dv
        for pattern, residual, factor, d_factor, h_factor in (
            (self.train, self._residual_train, self.user, du, hu),
            (self.fake, self._residual_fake, self.fake_user, df, hf),
        ):
            d_res = with_values(
                pattern, -sddmm(pattern, np.hstack([d_factor, factor]), np.hstack([self.item, dv]))
            )
            h_factor[:] = (
                -2.0 * (d_res @ self.item) - 2.0 * (residual @ dv) + 2.0 * self.lambda_u * d_factor
            )
            hv -= 2.0 * (d_res.T @ factor) + 2.0 * (residual.T @ d_factor)
        return out

    def block_inverse(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Inverses of H's diagonal ``k x k`` blocks, for U, U~ and V."""
        eye = np.eye(self.rank)
        csc = cached_csc(self.train)
        train_t = sp.csr_array((csc.data, csc.indices, csc.indptr), shape=csc.shape[::-1])
        item_gram = row_grams(train_t, self.user)
        item_gram += row_grams(self.fake.T.tocsr(), self.fake_user)
        blocks = (
            row_grams(self.train, self.item) + self.lambda_u * eye,
            row_grams(self.fake, self.item) + self.lambda_u * eye,
            item_gram + self.lambda_v * eye,
        )
        return tuple(np.linalg.inv(2.0 * b) for b in blocks)  # type: ignore[return-value]

    def block_jacobi(self) -> BlockJacobi:
        """The block-Jacobi preconditioner ``diag(H)^{-1}`` (the paper's Eq. 12 blocks)."""
        return BlockJacobi(self, *self.block_inverse())


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
            dst[:] = np.einsum("rab,rb->ra", block, src)
        return out


@dataclasses.dataclass(frozen=True)
class SolveResult:
    """Solution ``x``, Krylov iterations, and the relative residual ``|b - H x| / |b|``."""

    x: np.ndarray
    iterations: int
    relative_residual: float


def solve(
    hessian: FactorHessian,
    rhs: np.ndarray,
    preconditioner: BlockJacobi | None = None,
    tol: float = 1e-8,
    max_iter: int = 500,
) -> SolveResult:
    """``H x = rhs`` by preconditioned MINRES from ``x = 0`` (``scipy.sparse.linalg.minres``).

    MINRES rather than CG: at a solution that is stationary only to a tolerance, H is
    slightly indefinite along the rotations (differentiating ``L(theta exp(tS))`` twice gives
    ``(theta S)' H (theta S) = -grad L . (theta S^2)``), where CG breaks down; MINRES needs only
    symmetry, costs one product per iteration like CG, and the rotation components of x do not
    change ``dR/dM~`` (module :mod:`cfpoison.attacks.gradient`). ``tol`` applies to the
    preconditioned residual; the reported residual is the plain one.
    """
    norm_b = float(np.linalg.norm(rhs))
    if norm_b == 0.0:
        return SolveResult(np.zeros_like(rhs), 0, 0.0)
    size = rhs.shape[0]
    operator = spla.LinearOperator((size, size), matvec=hessian.matvec, dtype=np.float64)
    inverse = (
        None
        if preconditioner is None
        else spla.LinearOperator((size, size), matvec=preconditioner, dtype=np.float64)
    )
    iterations = 0

    def count(_: np.ndarray) -> None:
        nonlocal iterations
        iterations += 1

    x, _ = spla.minres(operator, rhs, M=inverse, rtol=tol, maxiter=max_iter, callback=count)
    residual = float(np.linalg.norm(rhs - hessian.matvec(x))) / norm_b
    return SolveResult(x, iterations, residual)
