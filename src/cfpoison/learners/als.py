"""Alternating minimization (the paper's Eq. 2 and Eq. 4), with appended fake users.

Objective (the convention of :mod:`cfpoison.learners.base`; our ``lam_U`` is the paper's
``2 lam_U``)::

    L(U, U~, V) = sum_Omega (M_ij - u_i.v_j)^2 + sum_Omega~ (M~_ij - u~_i.v_j)^2
                  + lam_U (||U||^2 + ||U~||^2) + lam_V ||V||^2

One sweep solves every user row exactly with ``V`` fixed (``u_i = (V_i^T V_i + lam_U I)^-1
V_i^T m_i``, the same for the fake rows), then every item row with ``U, U~`` fixed; the item
half sums over the data set's CSC and the fake matrix's CSC separately, so fake rows never
require rebuilding the data set's matrices. The real CSC is cached per matrix object.

Stopping: after each sweep, the relative objective change ``|L_prev - L| / L <= tol`` or the
relative KKT residual ``<= kkt_tol`` (see :meth:`Engine.evaluate`), at most ``max_sweeps``
sweeps. A warm start from a solution therefore stops after one sweep.
"""

from __future__ import annotations

import dataclasses
import math
from types import ModuleType
from typing import ClassVar, Literal, Self

import numpy as np
import scipy.sparse as sp

from cfpoison.config import JsonConfig, require
from cfpoison.data.ratings import Ratings
from cfpoison.errors import DataError
from cfpoison.learners import kernels, reference
from cfpoison.learners.base import Factors, FactorViews, cached_csc

Backend = Literal["numba", "numpy"]
Structure = tuple[np.ndarray, np.ndarray, np.ndarray]


def backend_module(backend: Backend) -> ModuleType:
    """The kernel module of a backend: numba kernels or the NumPy reference path."""
    return kernels if backend == "numba" else reference


@dataclasses.dataclass(frozen=True)
class ALSConfig(JsonConfig):
    """Alternating minimization of ``L`` (module docstring).

    Attributes:
        rank: number of latent factors k.
        lambda_u, lambda_v: regularization of user (and fake user) and item factors; the
            defaults (8) give test RMSE 0.900 at rank 10 on ml-latest-small.
        max_sweeps: cap on the number of sweeps (one sweep = users, then items).
        tol: stop when the relative objective change of a sweep is at most this (0: off).
        kkt_tol: stop when the relative KKT residual is at most this (0: off).
        init_scale: standard deviation of the random initial item factors.
        seed: seed of the random initialisation (``np.random.default_rng(seed)``).
        threads: numba threads (0 = all cores).
        backend: ``numba`` kernels, or the plain ``numpy`` reference path (tests only).
    """

    kind: ClassVar[str] = "learner"
    name: Literal["als"] = "als"
    rank: int = 10
    lambda_u: float = 8.0
    lambda_v: float = 8.0
    max_sweeps: int = 200
    tol: float = 1e-6
    kkt_tol: float = 1e-6
    init_scale: float = 0.1
    seed: int = 0
    threads: int = 0
    backend: Backend = "numba"

    def __post_init__(self) -> None:
        require(self.rank >= 1, f"als: rank must be >= 1, got {self.rank}")
        require(self.lambda_u > 0, f"als: lambda_u must be > 0, got {self.lambda_u}")
        require(self.lambda_v > 0, f"als: lambda_v must be > 0, got {self.lambda_v}")
        require(self.max_sweeps >= 1, f"als: max_sweeps must be >= 1, got {self.max_sweeps}")
        require(self.tol >= 0, f"als: tol must be >= 0, got {self.tol}")
        require(self.kkt_tol >= 0, f"als: kkt_tol must be >= 0, got {self.kkt_tol}")
        require(self.init_scale > 0, f"als: init_scale must be > 0, got {self.init_scale}")
        require(self.threads >= 0, f"als: threads must be >= 0, got {self.threads}")


@dataclasses.dataclass(frozen=True)
class Problem:
    """The observed data of one fit: the real ratings and the fake rows, both orientations.

    ``rows``/``cols`` are the real matrix as CSR/CSC structures ``(indptr, indices, data)``,
    ``fake_rows``/``fake_cols`` the fake matrix (``m' x n``, possibly ``m' = 0``).
    """

    rows: Structure
    cols: Structure
    fake_rows: Structure
    fake_cols: Structure
    n_users: int
    n_fake: int
    n_items: int

    @classmethod
    def build(cls, ratings: Ratings, fake: sp.csr_array | None) -> Problem:
        m, n = ratings.matrix.shape
        if fake is None:
            fake = sp.csr_array((0, n), dtype=np.float64)
        if fake.ndim != 2 or fake.shape[1] != n:
            raise DataError(f"fake ratings have shape {fake.shape}, expected (m', {n})")
        fake = sp.csr_array(fake, dtype=np.float64)
        if not np.all(np.isfinite(fake.data)):
            raise DataError("fake ratings contain NaN or infinity")
        if not fake.has_canonical_format:  # never modify the caller's matrix
            fake = fake.copy()
            fake.sum_duplicates()
        return cls(
            rows=_structure(ratings.matrix),
            cols=_structure(cached_csc(ratings.matrix)),
            fake_rows=_structure(fake),
            fake_cols=_structure(fake.tocsc()),
            n_users=m,
            n_fake=int(fake.shape[0]),
            n_items=n,
        )


def _structure(matrix: sp.csr_array | sp.csc_array) -> Structure:
    """``(indptr int64, indices int32, data float64)`` of a compressed matrix, sorted."""
    if not matrix.has_sorted_indices:
        matrix = matrix.copy()
        matrix.sort_indices()
    return (
        np.ascontiguousarray(matrix.indptr, dtype=np.int64),
        np.ascontiguousarray(matrix.indices, dtype=np.int32),
        np.ascontiguousarray(matrix.data, dtype=np.float64),
    )


@dataclasses.dataclass
class Trace:
    """What one run of :meth:`Engine.run` did."""

    history: list[float]
    kkt: float
    converged: bool


class Engine:
    """Half-steps, objective and KKT residual of ``L`` on one :class:`Problem`.

    Shared by ALS and by the factored form of nuclear-norm minimization (``lam_U = lam_V``).
    """

    def __init__(self, problem: Problem, lambda_u: float, lambda_v: float, ops: ModuleType):
        self.problem = problem
        self.lambda_u = lambda_u
        self.lambda_v = lambda_v
        self.ops = ops

    # ------------------------------------------------------------------ half-steps
    def update_users(self, f: Factors) -> None:
        """``U`` and ``U~`` exactly minimise ``L`` for fixed ``V`` (in place)."""
        p, k = self.problem, f.item.shape[1]
        self.ops.solve_rows(
            *p.rows, f.item, *kernels.empty_source(p.n_users, k), self.lambda_u, f.user
        )
        if p.n_fake:
            self.ops.solve_rows(
                *p.fake_rows, f.item, *kernels.empty_source(p.n_fake, k), self.lambda_u, f.fake_user
            )

    def update_items(self, f: Factors) -> float:
        """``V`` exactly minimises ``L`` for fixed ``U, U~`` (in place); returns the data
        term ``sum_Omega (M - UV^T)^2 + sum_Omega~ (M~ - U~V^T)^2`` at the new ``V``."""
        p = self.problem
        fit = self.ops.solve_rows(*p.cols, f.user, *p.fake_cols, f.fake_user, self.lambda_v, f.item)
        return float(np.sum(fit))

    # ------------------------------------------------------------------ measurements
    def user_pass(self, f: Factors) -> tuple[float, np.ndarray, np.ndarray]:
        """Squared residual over Omega and Omega~, and ``R V``, ``R~ V`` (residuals R)."""
        p, k = self.problem, f.item.shape[1]
        g_user = np.empty_like(f.user)
        g_fake = np.empty_like(f.fake_user)
        sq = self.ops.residual_rows(
            *p.rows, f.item, *kernels.empty_source(p.n_users, k), f.user, g_user
        )
        total = float(np.sum(sq))
        if p.n_fake:
            sq = self.ops.residual_rows(
                *p.fake_rows, f.item, *kernels.empty_source(p.n_fake, k), f.fake_user, g_fake
            )
            total += float(np.sum(sq))
        return total, g_user, g_fake

    def item_pass(self, f: Factors) -> np.ndarray:
        """``R^T U + R~^T U~``."""
        p = self.problem
        g_item = np.empty_like(f.item)
        self.ops.residual_rows(*p.cols, f.user, *p.fake_cols, f.fake_user, f.item, g_item)
        return g_item

    def penalty(self, f: Factors) -> float:
        """``lam_U (||U||^2 + ||U~||^2) + lam_V ||V||^2``."""
        users = float(np.sum(f.user**2) + np.sum(f.fake_user**2))
        return self.lambda_u * users + self.lambda_v * float(np.sum(f.item**2))

    def _reg_grad_norm(self, f: Factors) -> float:
        users = float(np.sum(f.user**2) + np.sum(f.fake_user**2))
        items = float(np.sum(f.item**2))
        return 2.0 * math.sqrt(self.lambda_u**2 * users + self.lambda_v**2 * items)

    def objective(self, f: Factors) -> float:
        return self.user_pass(f)[0] + self.penalty(f)

    def evaluate(self, f: Factors, item_block: bool = True) -> tuple[float, float]:
        """Objective and relative KKT residual ``||grad L||_F / ||grad P||_F``.

        P is the penalty term. At a stationary point the data term's gradient cancels the
        penalty's, so the ratio is 0 there, scale-free, and 1 when the factors ignore the
        data. ``item_block=False`` skips the item block of the gradient, which is zero to
        rounding right after :meth:`update_items` (V is then the exact minimiser).
        """
        total, g_user, g_fake = self.user_pass(f)
        sq = float(
            np.sum((self.lambda_u * f.user - g_user) ** 2)
            + np.sum((self.lambda_u * f.fake_user - g_fake) ** 2)
        )
        if item_block:
            sq += float(np.sum((self.lambda_v * f.item - self.item_pass(f)) ** 2))
        kkt = _ratio(2.0 * math.sqrt(sq), self._reg_grad_norm(f))
        return total + self.penalty(f), kkt

    # ------------------------------------------------------------------ the loop
    def run(
        self, f: Factors, max_sweeps: int, tol: float, kkt_tol: float, start: float = math.inf
    ) -> Trace:
        """Sweep (users, then items) until a tolerance or ``max_sweeps``; ``f`` in place.

        ``start`` is the objective before the first sweep (``inf`` when unknown). The
        objective comes free with the item half-step; the KKT residual costs one pass over
        the ratings and is computed only when ``kkt_tol > 0`` (``nan`` otherwise).
        """
        history: list[float] = []
        previous, kkt = start, math.nan
        for _ in range(max_sweeps):
            self.update_users(f)
            value = self.update_items(f) + self.penalty(f)
            if kkt_tol > 0:
                kkt = self.evaluate(f, item_block=False)[1]
            history.append(value)
            change = abs(previous - value) / max(abs(value), np.finfo(float).tiny)
            previous = value
            if (kkt_tol > 0 and kkt <= kkt_tol) or (tol > 0 and change <= tol):
                return Trace(history, kkt, True)
        return Trace(history, kkt, False)


def _ratio(numerator: float, denominator: float) -> float:
    if numerator == 0.0:
        return 0.0
    return numerator / denominator if denominator > 0 else math.inf


def random_factors(
    rng: np.random.Generator, m: int, m_fake: int, n: int, k: int, scale: float
) -> Factors:
    """Gaussian item factors (scale ``scale``); user factors zero (solved first anyway)."""
    item = scale * rng.standard_normal((n, k))
    return Factors(np.zeros((m, k)), item, np.zeros((m_fake, k)))


def checked_init(init: Factors, problem: Problem) -> tuple[Factors, bool]:
    """A contiguous float64 copy of ``init``; whether its fake rows match the problem.

    The user half-step comes first, so only the item factors shape the result; fake user
    factors of another count (an attack that changed m') are replaced by zeros.
    """
    k = init.item.shape[1] if init.item.ndim == 2 else -1
    if init.item.shape != (problem.n_items, k) or init.user.shape != (problem.n_users, k):
        raise DataError(
            f"initial factors of shapes {init.user.shape} and {init.item.shape} do not fit "
            f"{problem.n_users} users and {problem.n_items} items"
        )
    matched = init.fake_user.shape == (problem.n_fake, k)
    fake = init.fake_user if matched else np.zeros((problem.n_fake, k))
    f = Factors(
        np.array(init.user, dtype=np.float64, order="C"),
        np.array(init.item, dtype=np.float64, order="C"),
        np.array(fake, dtype=np.float64, order="C"),
    )
    return f, matched


def check_indices(users: np.ndarray, items: np.ndarray, m: int, n: int) -> tuple[np.ndarray, ...]:
    """Parallel int64 index arrays inside ``[0, m) x [0, n)``, or :class:`DataError`."""
    users = np.ascontiguousarray(users, dtype=np.int64).ravel()
    items = np.ascontiguousarray(items, dtype=np.int64).ravel()
    if users.shape != items.shape:
        raise DataError(f"predict: {len(users)} users but {len(items)} items")
    if len(users) and (users.min() < 0 or users.max() >= m or items.min() < 0 or items.max() >= n):
        raise DataError(f"predict: indices outside the {m} x {n} matrix")
    return users, items


class ALSLearner(FactorViews):
    """Alternating minimization; see the module docstring for objective and stopping."""

    def __init__(self, config: ALSConfig | None = None):
        self.config = config or ALSConfig()
        self._ops = backend_module(self.config.backend)
        self._engine: Engine | None = None
        self._factors: Factors | None = None
        self._trace = Trace([], math.inf, False)

    # ------------------------------------------------------------------ fitting
    def fit(
        self, ratings: Ratings, init: Factors | None = None, fake: sp.csr_array | None = None
    ) -> Self:
        """Fit on ``ratings`` plus the fake rows ``fake`` (``m' x n`` CSR, shifted scale).

        ``init`` warm-starts from given factors; otherwise the item factors are drawn from
        ``np.random.default_rng(config.seed)``.
        """
        c = self.config
        self._ops.set_threads(c.threads)
        problem = Problem.build(ratings, fake)
        engine = Engine(problem, c.lambda_u, c.lambda_v, self._ops)
        start = math.inf
        if init is None:
            rng = np.random.default_rng(c.seed)
            f = random_factors(
                rng, problem.n_users, problem.n_fake, problem.n_items, c.rank, c.init_scale
            )
        else:
            f, matched = checked_init(init, problem)
            if f.item.shape[1] != c.rank:
                raise DataError(f"initial factors have rank {f.item.shape[1]}, not {c.rank}")
            if matched:
                start = engine.objective(f)
        self._trace = engine.run(f, c.max_sweeps, c.tol, c.kkt_tol, start)
        self._engine, self._factors = engine, f
        return self

    # ------------------------------------------------------------------ fitted state
    def _fitted(self) -> tuple[Engine, Factors]:
        if self._engine is None or self._factors is None:
            raise RuntimeError(f"{type(self).__name__}: call fit() first")
        return self._engine, self._factors

    @property
    def factors(self) -> Factors:
        """The fitted ``(U, V, U~)`` (a reference; copy before modifying)."""
        return self._fitted()[1]

    @property
    def lambda_u(self) -> float:
        return self.config.lambda_u

    @property
    def lambda_v(self) -> float:
        return self.config.lambda_v

    @property
    def history(self) -> list[float]:
        """Objective ``L`` after each sweep of the last fit."""
        return list(self._trace.history)

    @property
    def n_sweeps(self) -> int:
        return len(self._trace.history)

    @property
    def converged(self) -> bool:
        """Whether the last fit stopped on a tolerance rather than on ``max_sweeps``."""
        return self._trace.converged

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """``u_i . v_j`` (shifted scale) for parallel arrays of real-user and item indices."""
        _, f = self._fitted()
        users, items = check_indices(users, items, f.user.shape[0], f.item.shape[0])
        return np.asarray(self._ops.dot_rows(f.user, f.item, users, items))

    def objective(self) -> float:
        """``L`` at the fitted factors."""
        engine, f = self._fitted()
        return engine.objective(f)

    def kkt_residual(self) -> float:
        """Relative KKT residual ``||grad L||_F / ||grad P||_F`` (both blocks, recomputed)."""
        engine, f = self._fitted()
        return engine.evaluate(f)[1]
