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

from cfpoison.learners._sparse import block_apply, hessian_rows, sddmm, with_values
from cfpoison.learners.base import cached_csc, serial_blas
from cfpoison.learners.kernels import empty_source, ridge_inverses


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
        self._train_csc = _sorted_csc(self.train, cached=True)
        self._fake_csc = _sorted_csc(self.fake, cached=False)
        self._residual_train_csc = self._train_csc.data - sddmm(
            _transposed(self._train_csc), self.item, self.user
        )
        self._residual_fake_csc = self._fake_csc.data - sddmm(
            _transposed(self._fake_csc), self.item, self.fake_user
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
        """``H x`` for a flat direction ``x`` (see the module docstring); numba, parallel."""
        flat = np.ascontiguousarray(flat, dtype=np.float64)
        du, df, dv = self.split(flat)
        out = np.empty_like(flat)
        hu, hf, hv = self.split(out)
        hu[:] = 2.0 * self.lambda_u * du
        hf[:] = 2.0 * self.lambda_u * df
        hv[:] = 2.0 * self.lambda_v * dv
        hessian_rows(self.train, self._residual_train.data, self.user, du, self.item, dv, hu)
        hessian_rows(self.fake, self._residual_fake.data, self.fake_user, df, self.item, dv, hf)
        hessian_rows(self._train_csc, self._residual_train_csc, self.item, dv, self.user, du, hv)
        hessian_rows(self._fake_csc, self._residual_fake_csc, self.item, dv, self.fake_user, df, hv)
        return out

    def block_inverse(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Inverses of H's diagonal ``k x k`` blocks, for U, U~ and V."""
        k = self.rank
        return (
            ridge_inverses(
                *_parts(self.train), self.item, *empty_source(len(self.user), k), self.lambda_u, 2.0
            ),
            ridge_inverses(
                *_parts(self.fake),
                self.item,
                *empty_source(len(self.fake_user), k),
                self.lambda_u,
                2.0,
            ),
            ridge_inverses(
                *_parts(self._train_csc),
                self.user,
                *_parts(self._fake_csc),
                self.fake_user,
                self.lambda_v,
                2.0,
            ),
        )

    def block_jacobi(self) -> BlockJacobi:
        """The block-Jacobi preconditioner ``diag(H)^{-1}`` (the paper's Eq. 12 blocks)."""
        return BlockJacobi(self, *self.block_inverse())


def _sorted_csc(matrix: sp.csr_array, cached: bool) -> sp.csc_array:
    """``matrix`` in CSC form with sorted indices (cached per object for the data set)."""
    if cached:
        return cached_csc(matrix)
    csc = sp.csc_array(matrix)
    csc.sort_indices()
    return csc


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
    """Solution ``x``, Krylov iterations, the true relative residual ``|b - H x| / |b|``, and
    whether it reached the requested tolerance within the iteration cap."""

    x: np.ndarray
    iterations: int
    relative_residual: float
    converged: bool


def solve(
    hessian: FactorHessian,
    rhs: np.ndarray,
    preconditioner: BlockJacobi | None = None,
    tol: float = 1e-8,
    max_iter: int = 500,
    x0: np.ndarray | None = None,
) -> SolveResult:
    """``H x = rhs`` to a true relative residual ``|rhs - H x| / |rhs| <= tol``.

    Preconditioned MINRES (``scipy.sparse.linalg.minres``), warm-started from ``x0``. MINRES
    rather than CG: at a solution that is stationary only to a tolerance, H is slightly
    indefinite along the rotations (differentiating ``L(theta exp(tS))`` twice gives
    ``(theta S)' H (theta S) = -grad L . (theta S^2)``), where CG breaks down; MINRES needs only
    symmetry, costs one product per iteration like CG, and the rotation components of x do not
    change ``dR/dM~`` (module :mod:`cfpoison.attacks.gradient`).

    SciPy's ``rtol`` is a backward-error test on the preconditioned residual, looser than the
    true residual by a problem-dependent factor; so the solve runs in rounds: after each, the
    true residual is measured, and if it is above ``tol`` MINRES restarts from the current x
    with a ten times tighter internal tolerance, until ``tol`` or ``max_iter`` iterations in
    all (then ``converged`` is False and the residual reached is reported).
    """
    norm_b = float(np.linalg.norm(rhs))
    if norm_b == 0.0:
        return SolveResult(np.zeros_like(rhs), 0, 0.0, True)
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

    x = np.zeros_like(rhs) if x0 is None else np.array(x0, dtype=np.float64)
    with serial_blas():
        residual = 1.0 if x0 is None else float(np.linalg.norm(rhs - hessian.matvec(x))) / norm_b
        inner = tol
        while residual > tol and iterations < max_iter and inner > 1e-16:
            x, _ = spla.minres(
                operator,
                rhs,
                x0=x,
                M=inverse,
                rtol=inner,
                maxiter=max_iter - iterations,
                callback=count,
            )
            residual = float(np.linalg.norm(rhs - hessian.matvec(x))) / norm_b
            inner *= 0.1
    return SolveResult(x, iterations, residual, residual <= tol)
