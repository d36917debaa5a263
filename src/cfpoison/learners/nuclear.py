"""Nuclear-norm minimization (the paper's Eq. 3 and Eq. 5), solved in factored form.

Objective, over the stacked matrix ``[X; X~]`` of real and fake rows::

    N(X) = ||R_Omega(M - X)||_F^2 + ||R_Omega~(M~ - X~)||_F^2 + 2 lam ||[X; X~]||_*

Since ``||X||_* = min_{U V^T = X} (||U||^2 + ||V||^2) / 2``, ``N`` equals the ALS objective
``L`` with ``lam_U = lam_V = lam`` minimised over factors of any rank ``r >= rank(X*)``
(``docs/math.md`` section 4). The solver runs the ALS sweeps of
:mod:`cfpoison.learners.als` at a working rank ``r`` (no dense ``m x n`` iterate anywhere),
balances the result with a thin SVD (``X = A S B^T``, ``U = A S^1/2``, ``V = B S^1/2``) and
checks optimality with a certificate on the sparse residual ``Rr = R_Omega(M - X)``:

* ``spectral_ratio = ||Rr||_2 / lam`` (at the optimum ``Rr = lam (A B^T + W)`` with
  ``||W||_2 <= 1``, so the ratio is at most 1); computed with a sparse SVD;
* the duality gap ``N(X) - 2 D(Y)`` with the dual point ``Y = Rr min(1, lam / ||Rr||_2)``
  and ``D(Y) = <Y, M> - ||Y||^2 / 2`` (every ``Y`` supported on Omega with ``||Y||_2 <= lam``
  gives the lower bound ``N >= 2 D(Y)``); ``relative_gap = gap / N(X)``.

If the ratio exceeds 1 the factored problem sits at a saddle or the rank is too small: the
top singular pairs of ``Rr`` with singular values above ``lam`` are appended as new columns
(the rank grows, up to ``max_rank``) and the sweeps continue. Each rank is first solved to
coarse tolerances (``COARSE_TOL``, ``COARSE_KKT``); the configured ``tol`` and ``kkt_tol``
apply once the certificate's spectral ratio shows no clear ascent direction.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import warnings
from collections.abc import Callable
from typing import Any, ClassVar, Literal, Self

import numpy as np
import scipy.linalg
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from cfpoison.config import require, require_ranges
from cfpoison.data.ratings import Ratings
from cfpoison.errors import ConvergenceError
from cfpoison.learners.base import Factors, LearnerSettings, cap_log_level
from cfpoison.learners.factored import (
    SWEEP_BOUNDS,
    Backend,
    Engine,
    Problem,
    SweptLearner,
    Trace,
    backend_module,
    starting_factors,
    sweep_until,
)
from cfpoison.learners.hessian import SquaredLossLearner

#: Singular values below this fraction of the largest are numerically zero and dropped.
ZERO_SINGULAR = 1e-12
log = logging.getLogger(__name__)

#: Tolerances of the sweeps before a rank is settled (the configured ones apply after).
COARSE_TOL = 1e-4
COARSE_KKT = 1e-3
#: Singular triplets are accepted when their residual ``r = max_i max(||Rr v_i - s_i u_i||,
#: ||Rr^T u_i - s_i v_i||)`` is at most ``SVD_RTOL s_1``; each ``s_i`` then lies within ``r`` of a
#: singular value of ``Rr``, and the certificate uses ``s_1 + r`` as ``||Rr||_2``.
SVD_RTOL = 1e-8
#: Least Krylov subspace of ARPACK: SciPy's default (20) stalls on the cluster of singular
#: values at ``lam`` that the residual has near the optimum (one per rank of the solution).
ARPACK_NCV = 40
#: Extra block vectors of LOBPCG (oversampling past the ``q`` wanted) and its iteration cap.
LOBPCG_EXTRA = 10
LOBPCG_MAXITER = 500
#: A dense SVD is the last resort when the operator's smaller side is at most this.
DENSE_SIDE = 500
#: The first route when the smaller side is at most this: LAPACK on the dense Gram matrix of
#: that side (``O(side^3)``; at 640 it takes half of ARPACK's time on ml-latest-small's
#: clustered residuals, and never fails to converge).
GRAM_SIDE = 1200


@dataclasses.dataclass(frozen=True)
class NuclearConfig(LearnerSettings):
    """Nuclear-norm minimization of ``N`` (module docstring).

    Attributes:
        lam: the weight ``lam`` of ``2 lam ||X||_*`` (also ``lambda_u = lambda_v``); the
            default 20 gives test RMSE 0.945 at rank 23 on ml-latest-small.
        rank: initial working rank of the factors.
        max_rank: the working rank never exceeds this; a solution that needs more is an error.
        tol: inner sweeps stop when the relative objective change is at most this.
        kkt_tol: inner sweeps stop when the relative KKT residual is at most this.
        max_sweeps: cap on the total number of sweeps; a fit whose certificate fails is
            reported (``converged`` False, a logged warning with the reason).
        anderson_memory: sweeps mixed by Anderson acceleration in the inner ALS runs (0: off).
        certificate_tol: ``ok`` needs ``spectral_ratio <= 1 + certificate_tol`` and
            ``relative_gap <= certificate_tol``.
        init_scale: standard deviation of the random initial item factors.
        seed: seed of the random initialisation and of the sparse SVD's start vector.
        threads: numba threads (0 = all cores).
        backend: ``numba`` kernels, or the plain ``numpy`` reference path (tests only).
    """

    #: ``N`` is convex: every start ends at a certified minimiser, and fits from two seeds
    #: agree to the certificate's tolerance (the noise floor: 7.5e-6 stars on the full
    #: ml-latest-small), so a fit may warm-start from any factors without changing the result.
    unique_optimum: ClassVar[bool] = True
    name: Literal["nuclear"] = "nuclear"
    lam: float = 20.0
    rank: int = 16
    max_rank: int = 512
    tol: float = 1e-9
    kkt_tol: float = 1e-6
    max_sweeps: int = 2000
    anderson_memory: int = 5
    certificate_tol: float = 1e-4
    init_scale: float = 0.1
    seed: int = 0
    threads: int = 0
    backend: Backend = "numba"

    def __post_init__(self) -> None:
        require_ranges(self, "nuclear", lam="> 0", rank=">= 1")
        require(
            self.max_rank >= self.rank,
            f"nuclear: max_rank ({self.max_rank}) must be >= rank ({self.rank})",
        )
        require_ranges(self, "nuclear", certificate_tol="> 0", **SWEEP_BOUNDS)


@dataclasses.dataclass(frozen=True)
class LowRank:
    """``[X; X~] = A diag(s) B^T`` with orthonormal columns in ``A`` and ``B``, ``s`` > 0."""

    left: np.ndarray  # (m + m') x r
    s: np.ndarray  # r, decreasing
    right: np.ndarray  # n x r


def balance(f: Factors) -> LowRank:
    """Thin SVD of ``[U; U~] V^T`` through two QRs; numerically zero directions dropped."""
    stacked = np.vstack([f.user, f.fake_user])
    qu, ru = np.linalg.qr(stacked)
    qv, rv = np.linalg.qr(f.item)
    w, s, zt = np.linalg.svd(ru @ rv.T, full_matrices=False)
    keep = s > ZERO_SINGULAR * s[0] if s.size and s[0] > 0 else np.zeros(s.size, dtype=bool)
    return LowRank(qu @ w[:, keep], s[keep], qv @ zt[keep].T)


def balanced_factors(low: LowRank, n_users: int) -> Factors:
    """``U = A S^1/2`` split into real and fake rows, ``V = B S^1/2``; one zero column if X = 0."""
    root = np.sqrt(low.s)
    stacked, item = low.left * root, low.right * root
    if low.s.size == 0:
        stacked = np.zeros((low.left.shape[0], 1))
        item = np.zeros((low.right.shape[0], 1))
    return Factors(
        np.ascontiguousarray(stacked[:n_users]),
        np.ascontiguousarray(item),
        np.ascontiguousarray(stacked[n_users:]),
    )


class NuclearNormLearner(SweptLearner[tuple[Engine, Factors, LowRank]], SquaredLossLearner):
    """Nuclear-norm minimization with an optimality certificate (module docstring)."""

    config: NuclearConfig
    _penalty_fields = ("lam", "lam")

    def __init__(self, config: NuclearConfig | None = None):
        self.config = config or NuclearConfig()
        self._ops = backend_module(self.config.backend)
        self._certificate: dict[str, Any] = {}
        self._trace = Trace([], math.inf, False)
        self._rounds = 0

    # ------------------------------------------------------------------ fitting
    def fit(
        self, ratings: Ratings, init: Factors | None = None, fake: sp.csr_array | None = None
    ) -> Self:
        """Fit on ``ratings`` plus the fake rows ``fake``, warm-started from ``init``.

        ``init`` may have any rank (the balanced factors of an earlier fit, typically).
        Raises :class:`ConvergenceError` if the solution needs a rank above ``max_rank``.
        """
        c = self.config
        self._ops.set_threads(c.threads)
        problem = Problem.build(ratings, fake)
        engine = Engine(problem, c.lam, c.lam, self._ops)
        rng = np.random.default_rng(c.seed)
        f, start = starting_factors(engine, init, rng, c.rank, c.init_scale, fixed_rank=False)
        history: list[float] = []
        rounds = 0
        coarse = True
        while True:
            rounds += 1
            left = c.max_sweeps - len(history)
            tol, kkt_tol = (c.tol, c.kkt_tol)
            if coarse:
                tol, kkt_tol = max(tol, COARSE_TOL), max(kkt_tol, COARSE_KKT)
            trace: Trace = sweep_until(engine, f, left, tol, kkt_tol, start, c.anderson_memory)
            history += trace.history
            low = balance(f)
            f = balanced_factors(low, problem.n_users)
            certificate = _certificate(engine, f, low, c, rng)
            if certificate["ok"] or len(history) >= c.max_sweeps:
                break
            slack = max(c.certificate_tol, 10 * COARSE_KKT) if coarse else c.certificate_tol
            grown = None
            if certificate["spectral_ratio"] > 1 + slack:
                grown = self._grow(engine, f, low, rng)
            if grown is None:
                if not coarse:
                    break  # no ascent direction left: only tighter tol/kkt_tol would help
                coarse = False
            else:
                f, coarse = grown, True
            start = math.inf
        self._fit = engine, f, low
        self._certificate = certificate | {"sweeps": len(history), "rounds": rounds}
        self._trace = Trace(history, trace.kkt, bool(certificate["ok"]))  # converged: it holds
        if not certificate["ok"]:
            log.log(
                cap_log_level(),
                "nuclear norm: certificate not met after %d sweeps (spectral ratio %.6g, "
                "relative gap %.2e, tol %.0e)%s",
                len(history),
                certificate["spectral_ratio"],
                certificate["relative_gap"],
                c.certificate_tol,
                f": {certificate['reason']}" if certificate.get("reason") else "",
            )
        return self

    def _grow(
        self, engine: Engine, f: Factors, low: LowRank, rng: np.random.Generator
    ) -> Factors | None:
        """Append the residual's singular pairs above ``lam`` as new factor columns.

        A pair ``(a, sigma, b)`` enters as ``a sqrt(sigma - lam)``, ``b sqrt(sigma - lam)``:
        the singular-value-thresholding step along it. At most ``rank`` pairs (the working
        rank at most doubles per round); None when the sparse SVD finds none above ``lam``
        or no SVD route converges (:func:`_top_singular`).
        """
        c = self.config
        rank = low.s.size
        room = c.max_rank - rank
        if room <= 0:
            raise ConvergenceError(
                f"nuclear norm: the solution needs rank > max_rank={c.max_rank} at "
                f"lam={c.lam}; raise max_rank or lam"
            )
        top = _top_singular(_operator(engine, f), min(room, max(1, rank)), rng)
        if top.solver is None:
            return None  # no verified direction; the certificate stays unproven
        u, sigma, v = top.u, top.s, top.v
        above = sigma > c.lam
        if not np.any(above):
            return None
        scale = np.sqrt(sigma[above] - c.lam)
        grow_u, grow_v = u[:, above] * scale, v[:, above] * scale
        m = engine.problem.n_users
        return Factors(
            np.ascontiguousarray(np.hstack([f.user, grow_u[:m]])),
            np.ascontiguousarray(np.hstack([f.item, grow_v])),
            np.ascontiguousarray(np.hstack([f.fake_user, grow_u[m:]])),
        )

    def _saved_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        _, f, low = self._fitted()
        svd = {"left": low.left, "s": low.s, "right": low.right}
        return f.named() | svd, {"certificate": self._certificate}

    def _restored_state(
        self, problem: Problem, arrays: dict[str, np.ndarray], record: dict[str, Any]
    ) -> tuple[Engine, Factors, LowRank]:
        self._certificate = record["certificate"]
        low = LowRank(arrays["left"], arrays["s"], arrays["right"])
        lam = self.config.lam
        return Engine(problem, lam, lam, self._ops), Factors.of_named(arrays), low

    # ------------------------------------------------------------------ fitted state
    @property
    def factors(self) -> Factors:
        """Balanced factors ``U = A S^1/2`` (real and fake rows), ``V = B S^1/2``."""
        return self._fitted()[1]

    @property
    def rank(self) -> int:
        """Rank of the fitted ``[X; X~]``."""
        return int(self._fitted()[2].s.size)

    def low_rank(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(A, s, B)``: the thin SVD of ``[X; X~]`` (fake rows last in ``A``)."""
        low = self._fitted()[2]
        return low.left, low.s, low.right

    def certificate(self) -> dict[str, Any]:
        """Optimality certificate of the last fit (module docstring): ``spectral_norm``,
        ``spectral_ratio``, ``gap``, ``relative_gap``, ``objective``, ``rank``, ``ok``,
        ``sweeps``, ``rounds``; the sparse SVD's ``svd_solver`` (the route that converged),
        ``svd_residual`` and ``svd_failures``; ``reason`` when no SVD route converged."""
        self._fitted()
        return dict(self._certificate)

    def objective(self) -> float:
        """``N(X) = ||R_Omega(M - X)||^2 + 2 lam ||X||_*`` (fake rows included)."""
        engine, f, low = self._fitted()
        return engine.user_pass(f)[0] + 2.0 * self.config.lam * float(np.sum(low.s))

    def kkt_residual(self) -> float:
        """Relative KKT residual of the factored problem at the balanced factors."""
        engine, f, _ = self._fitted()
        return engine.evaluate(f)[1]


def _residuals(engine: Engine, f: Factors) -> tuple[sp.csr_array, sp.csr_array]:
    """The sparse residuals ``R_Omega(M - X)`` and ``R_Omega~(M~ - X~)`` as CSR arrays."""
    p, ops = engine.problem, engine.ops
    out = []
    for (indptr, indices, data), users, n_rows in (
        (p.rows, f.user, p.n_users),
        (p.fake_rows, f.fake_user, p.n_fake),
    ):
        values = data - ops.csr_dot(indptr, indices, users, f.item)
        out.append(sp.csr_array((values, indices, indptr), shape=(n_rows, p.n_items)))
    return out[0], out[1]


class ResidualOperator(spla.LinearOperator):
    """``[Rr; Rr~]`` as a linear operator (the fake rows are not stacked onto the data);
    its products take vectors and blocks alike. ``fake`` is sparse, or dense for fully dense
    fake rows (SGLD's: ``D - U~ V^T``, BLAS products on ``m' n`` floats, as their ratings)."""

    def __init__(self, real: sp.csr_array, fake: sp.csr_array | np.ndarray):
        super().__init__(np.float64, (real.shape[0] + fake.shape[0], real.shape[1]))
        self.real, self.fake = real, fake

    def _matvec(self, x: np.ndarray) -> np.ndarray:
        return np.concatenate([self.real @ x, self.fake @ x])

    def _rmatvec(self, y: np.ndarray) -> np.ndarray:
        m = self.real.shape[0]
        return self.real.T @ y[:m] + self.fake.T @ y[m:]

    _matmat, _rmatmat = _matvec, _rmatvec

    def gram(self) -> np.ndarray:
        """The dense Gram matrix of the smaller side: ``T T^T`` (rows) or ``T^T T``."""
        real, fake = self.real, self.fake
        if self.shape[0] <= self.shape[1]:
            cross = _as_array(real @ fake.T)
            own = _as_array(real @ real.T)
            return np.block([[own, cross], [cross.T, _as_array(fake @ fake.T)]])
        return _as_array(real.T @ real) + _as_array(fake.T @ fake)


def _as_array(x: sp.sparray | np.ndarray) -> np.ndarray:
    return x.toarray() if isinstance(x, sp.sparray) else np.asarray(x)


def _operator(
    engine: Engine, f: Factors, residuals: tuple[sp.csr_array, sp.csr_array] | None = None
) -> ResidualOperator:
    """The residual ``[Rr; Rr~]`` at ``f``: :class:`ResidualOperator` (from ``residuals``,
    :func:`_residuals` at ``f``, when the caller has them)."""
    real, fake = _residuals(engine, f) if residuals is None else residuals
    dense = engine.problem.fake_dense
    if dense is None:
        return ResidualOperator(real, fake)
    return ResidualOperator(real, dense.values - f.fake_user @ f.item.T)


@dataclasses.dataclass(frozen=True)
class Singular:
    """Top singular triplets ``Rr v_i = s_i u_i``, ``s`` decreasing, found by ``solver`` with
    residual ``residual`` (``SVD_RTOL``).

    ``failures`` lists the routes that failed before (``"route: why"``); ``solver`` is None
    (``s`` empty, ``residual`` NaN) when every route failed.
    """

    u: np.ndarray
    s: np.ndarray
    v: np.ndarray
    solver: str | None
    residual: float
    failures: tuple[str, ...]


def _top_singular(op: ResidualOperator, q: int, rng: np.random.Generator) -> Singular:
    """Top ``q`` singular triplets of the residual ``[Rr; Rr~]``, each verified.

    Routes in order, the first whose triplets pass the ``SVD_RTOL`` residual test wins: the
    dense Gram matrix of the smaller side when that side is at most ``GRAM_SIDE``,
    ARPACK (Lanczos on ``Rr^T Rr`` with at least ``ARPACK_NCV`` vectors), PROPACK (Lanczos
    bidiagonalization, up to the full ``min(shape)`` steps), block LOBPCG with
    ``LOBPCG_EXTRA`` extra vectors, and a dense SVD when the smaller side is at most
    ``DENSE_SIDE``. Operators too small for the sparse routes (``q >= min(shape) - 1``) go
    straight to the dense SVD.
    """
    small = min(op.shape)
    q = max(1, min(q, small))
    routes: list[tuple[str, Route]] = [("gram", _gram)] if small <= GRAM_SIDE else []
    if q < small - 1:
        routes += [("arpack", _arpack), ("propack", _propack), ("lobpcg", _lobpcg)]
    if small <= DENSE_SIDE or not routes:
        routes.append(("dense", _dense))
    failures: list[str] = []
    for name, route in routes:
        try:
            u, s, vt = route(op, q, rng)
        except (spla.ArpackError, np.linalg.LinAlgError) as err:
            failures.append(f"{name}: {err}")
            continue
        order = np.argsort(s)[::-1][:q]
        u, s, v = u[:, order], s[order], vt[order].T
        residual = max(
            float(np.max(np.linalg.norm(op.matmat(v) - u * s, axis=0))),
            float(np.max(np.linalg.norm(op.rmatmat(u) - v * s, axis=0))),
        )
        if residual <= SVD_RTOL * s[0]:
            return Singular(u, s, v, name, residual, tuple(failures))
        failures.append(f"{name}: residual {residual:.2e} > {SVD_RTOL:g} * s_1 = {s[0]:.6g}")
    if small > DENSE_SIDE:
        failures.append(f"dense: not tried, min(shape) = {small} > {DENSE_SIDE}")
    empty = np.zeros((0,))
    return Singular(empty, empty, empty, None, math.nan, tuple(failures))


Triplets = tuple[np.ndarray, np.ndarray, np.ndarray]
Route = Callable[[ResidualOperator, int, np.random.Generator], Triplets]


def _gram(op: ResidualOperator, q: int, rng: np.random.Generator) -> Triplets:
    """LAPACK's top ``q`` eigenpairs of the smaller side's Gram matrix (:meth:`ResidualOperator.
    gram`): ``T T^T u = s^2 u``, ``v = T^T u / s`` (or the transpose). Each ``s`` is exact to
    ``eps s_1^2 / s``, and ``v`` carries no error in ``T^T u = s v`` by construction; the
    residual test of :func:`_top_singular` checks the other half."""
    gram = op.gram()
    side = gram.shape[0]
    w, vectors = scipy.linalg.eigh(gram, subset_by_index=[side - q, side - 1], driver="evr")
    s = np.sqrt(np.maximum(w, 0.0))
    safe = np.where(s > 0, s, 1.0)
    if op.shape[0] <= op.shape[1]:
        return vectors, s, (op.rmatmat(vectors) / safe).T
    return op.matmat(vectors) / safe, s, vectors.T


def _arpack(op: spla.LinearOperator, q: int, rng: np.random.Generator) -> Triplets:
    """ARPACK's implicitly restarted Lanczos on the Gram matrix, ``max(2q + 1, ARPACK_NCV)``
    Lanczos vectors."""
    small = min(op.shape)
    ncv = min(small - 1, max(2 * q + 1, ARPACK_NCV))  # SciPy wants q < ncv < small
    v0 = rng.standard_normal(small)
    return spla.svds(op, k=q, ncv=ncv, v0=v0, solver="arpack")


def _propack(op: spla.LinearOperator, q: int, rng: np.random.Generator) -> Triplets:
    """PROPACK's Lanczos bidiagonalization with reorthogonalization, up to ``min(shape)``
    steps (at which point the bidiagonal is the whole operator)."""
    v0 = rng.standard_normal(op.shape[0])
    return spla.svds(op, k=q, maxiter=min(op.shape), v0=v0, solver="propack", rng=rng)


def _lobpcg(op: spla.LinearOperator, q: int, rng: np.random.Generator) -> Triplets:
    """Block LOBPCG on the Gram matrix ``G = T^T T`` of the operator ``T`` (or its transpose)
    with the smaller side, ``q + LOBPCG_EXTRA`` vectors (the extra ones speed up the wanted
    ones inside a cluster), then Rayleigh-Ritz: ``T Q = W S Z^T`` for an orthonormal basis
    ``Q`` of LOBPCG's vectors gives ``T (Q Z) = W S``.

    The tolerance is the absolute Gram residual ``SVD_RTOL rho / 10``, ``rho`` the largest
    Rayleigh quotient ``||T x||^2 / ||x||^2`` of the start block (``rho <= s_1^2``). The extra
    vectors need not converge, so LOBPCG's warnings are muted: :func:`_top_singular` tests the
    triplets it keeps.
    """
    tall = op if op.shape[0] >= op.shape[1] else op.T
    n = tall.shape[1]
    block = rng.standard_normal((n, min(q + LOBPCG_EXTRA, n - 1)))
    rho = float(np.max(np.sum(tall.matmat(block) ** 2, axis=0) / np.sum(block**2, axis=0)))
    gram = spla.LinearOperator(
        (n, n),
        matvec=lambda x: tall.rmatvec(tall.matvec(x)),
        matmat=lambda x: tall.rmatmat(tall.matmat(x)),
        dtype=np.float64,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, vectors = spla.lobpcg(
            gram, block, tol=SVD_RTOL * rho / 10, maxiter=LOBPCG_MAXITER, largest=True
        )
    basis, _ = np.linalg.qr(vectors)  # LOBPCG's vectors need not be orthonormal
    w, s, zt = np.linalg.svd(tall.matmat(basis), full_matrices=False)
    if tall is op:
        return w, s, zt @ basis.T
    return basis @ zt.T, s, w.T


def _dense(op: spla.LinearOperator, q: int, rng: np.random.Generator) -> Triplets:
    """LAPACK's SVD of the operator made dense (exact to rounding)."""
    u, s, vt = np.linalg.svd(op.matmat(np.eye(op.shape[1])), full_matrices=False)
    return u[:, :q], s[:q], vt[:q]


def _certificate(
    engine: Engine, f: Factors, low: LowRank, config: NuclearConfig, rng: np.random.Generator
) -> dict[str, Any]:
    """Spectral ratio and duality gap of the balanced solution (module docstring).

    ``||Rr||_2`` is bounded above by ``s_1 + r`` from :func:`_top_singular`, whose route and
    residual are recorded (``svd_solver``, ``svd_residual``, ``svd_failures``); if no route
    converges the spectral norm, ratio and gap are NaN, ``ok`` is False and ``reason`` says why.
    """
    lam = config.lam
    real, fake = _residuals(engine, f)
    p = engine.problem
    residual_sq = float(real.data @ real.data + fake.data @ fake.data)
    inner = float(real.data @ p.rows[2] + fake.data @ p.fake_rows[2])  # <Rr, M>
    nuclear = float(np.sum(low.s))
    objective = residual_sq + 2.0 * lam * nuclear
    top = _top_singular(_operator(engine, f, (real, fake)), 1, rng)
    common = {
        "svd_solver": top.solver,
        "svd_residual": top.residual,
        "svd_failures": list(top.failures),
        "objective": objective,
        "rank": int(low.s.size),
    }
    if top.solver is None:
        unknown = {"spectral_norm": math.nan, "spectral_ratio": math.nan, "gap": math.nan}
        reason = "no SVD route converged: " + "; ".join(top.failures)
        return common | unknown | {"relative_gap": math.nan, "ok": False, "reason": reason}
    spectral = float(top.s[0]) + top.residual  # an upper bound on ||Rr||_2 (SVD_RTOL)
    shrink = min(1.0, lam / spectral) if spectral > 0 else 1.0
    dual = shrink * inner - 0.5 * shrink**2 * residual_sq
    gap = max(objective - 2.0 * dual, 0.0)
    relative_gap = gap / objective if objective > 0 else 0.0
    ratio = spectral / lam
    return common | {
        "spectral_norm": spectral,
        "spectral_ratio": ratio,
        "gap": gap,
        "relative_gap": relative_gap,
        "ok": bool(ratio <= 1 + config.certificate_tol and relative_gap <= config.certificate_tol),
    }
