"""The factored objective shared by ALS and nuclear-norm minimization: data, half-steps, KKT.

    L(U, U~, V) = sum_Omega (M_ij - u_i.v_j)^2 + sum_Omega~ (M~_ij - u~_i.v_j)^2
                  + lam_U (||U||^2 + ||U~||^2) + lam_V ||V||^2

(the convention of :mod:`cfpoison.learners.base`). :class:`Problem` holds the observed data of
one fit in both orientations; :class:`Engine` does exact half-steps (every user row, then every
item row, by the kernels of :mod:`cfpoison.learners.kernels`), the objective and the relative
KKT residual. :class:`cfpoison.learners.als.ALSLearner` sweeps it at rank k;
:class:`cfpoison.learners.nuclear.NuclearNormLearner` sweeps it at a working rank with
``lam_U = lam_V``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from types import ModuleType
from typing import Any, ClassVar, Generic, Literal, Protocol, Self, TypeVar

import numpy as np
import scipy.sparse as sp

from cfpoison.data.ratings import Ratings
from cfpoison.errors import DataError
from cfpoison.learners import kernels, reference
from cfpoison.learners.base import (
    Factors,
    FactorViews,
    Snapshot,
    cached_csc,
    cap_log_level,
    serial_blas,
)

Backend = Literal["numba", "numpy"]
Structure = tuple[np.ndarray, np.ndarray, np.ndarray]


#: The bounds of the sweep settings every swept learner's config shares (``require_ranges``).
SWEEP_BOUNDS = {
    "max_sweeps": ">= 1",
    "tol": ">= 0",
    "kkt_tol": ">= 0",
    "anderson_memory": ">= 0",
    "init_scale": "> 0",
    "threads": ">= 0",
}


def backend_module(backend: Backend) -> ModuleType:
    """The kernel module of a backend: numba kernels or the NumPy reference path."""
    return kernels if backend == "numba" else reference


@dataclasses.dataclass(frozen=True)
class DenseBlock:
    """Fake rows that rate every item: ``D`` (``m' x n``), ``D^T`` stored contiguous, and
    ``sum_i D_ij^2`` per item. The residual ``E~ = D - U~ V^T`` is never formed: its products
    come from ``D V``, ``D^T U~`` and the k x k Grams (BLAS, ``O(m' n k)``)."""

    values: np.ndarray
    transposed: np.ndarray
    column_sq: np.ndarray

    @classmethod
    def of(cls, values: np.ndarray) -> DenseBlock:
        return cls(values, np.ascontiguousarray(values.T), np.einsum("ij,ij->j", values, values))

    def user_pass(self, f: Factors) -> tuple[float, np.ndarray]:
        """``||E~||^2`` and ``E~ V = D V - U~ (V^T V)``."""
        dv = self.values @ f.item
        gram = f.item.T @ f.item
        sq = float(
            self.column_sq.sum()
            - 2.0 * np.einsum("ik,ik->", f.fake_user, dv)
            + np.einsum("ab,ab->", f.fake_user.T @ f.fake_user, gram)
        )
        return max(sq, 0.0), dv - f.fake_user @ gram

    def item_pass(self, f: Factors) -> np.ndarray:
        """``E~^T U~ = D^T U~ - V (U~^T U~)``."""
        return self.transposed @ f.fake_user - f.item @ (f.fake_user.T @ f.fake_user)


@dataclasses.dataclass(frozen=True)
class Problem:
    """The observed data of one fit: the real ratings and the fake rows, both orientations.

    ``rows``/``cols`` are the real matrix as CSR/CSC structures ``(indptr, indices, data)``,
    ``fake_rows``/``fake_cols`` the fake matrix (``m' x n``, possibly ``m' = 0``).
    ``fake_dense`` is the fake matrix again, dense, when every fake row rates every item
    (SGLD's chains): the half-steps then treat it as one block through BLAS
    (:meth:`Engine.update_users`), the same minimisers at a fraction of the cost.
    """

    rows: Structure
    cols: Structure
    fake_rows: Structure
    fake_cols: Structure
    n_users: int
    n_fake: int
    n_items: int
    fake_dense: DenseBlock | None = None

    @classmethod
    def build(
        cls, ratings: Ratings, fake: sp.csr_array | None, dense_block: bool = True
    ) -> Problem:
        """The structures of ``ratings`` and ``fake``; ``dense_block=False`` keeps fully
        dense fake rows on the sparse path (for cross-checking the two)."""
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
        fake_rows = _structure(fake)
        dense = None
        if dense_block and fake.shape[0] and fake.nnz == fake.shape[0] * n:
            values = fake_rows[2].reshape(fake.shape[0], n)  # sorted: row-major dense
            dense = DenseBlock.of(values)
        return cls(
            rows=_structure(ratings.matrix),
            cols=_structure(cached_csc(ratings.matrix)),
            fake_rows=fake_rows,
            fake_cols=_structure(fake.tocsc()),
            n_users=m,
            n_fake=int(fake.shape[0]),
            n_items=n,
            fake_dense=dense,
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
    """What one run of :func:`sweep_until` did."""

    history: list[float]
    kkt: float
    converged: bool
    rejected: int = 0  # extrapolated sweeps discarded (work done, not in the history)

    @property
    def sweeps(self) -> int:
        """Sweeps computed, accepted or not."""
        return len(self.history) + self.rejected


class Stopped(Protocol):
    """How a fit ended: on its tolerance (``converged``) or on its cap."""

    @property
    def converged(self) -> bool: ...


S = TypeVar("S", bound=tuple[Any, ...])


class FittedLearner(FactorViews, Generic[S]):
    """The fitted-state accessors the learners share. ``fit`` leaves ``_fit`` (what the
    objective and the KKT residual are computed from, the factors second; ``_fitted()``
    raises before a fit) and ``_trace`` (how it stopped). ``lambda_u`` and ``lambda_v`` are
    the config fields named by ``_penalty_fields`` (``lam`` twice where one weight serves
    both); ``predict`` is ``u_i . v_j`` by ``_ops``'s kernel."""

    config: Any
    _fit: S | None = None
    _trace: Stopped
    _ops: ModuleType = kernels
    _penalty_fields: ClassVar[tuple[str, str]] = ("lambda_u", "lambda_v")

    def _fitted(self) -> S:
        if self._fit is None:
            raise RuntimeError(f"{type(self).__name__}: call fit() first")
        return self._fit

    @property
    def factors(self) -> Factors:
        """The fitted ``(U, V, U~)`` (a reference; copy before modifying)."""
        return self._fitted()[1]

    @property
    def lambda_u(self) -> float:
        return float(getattr(self.config, self._penalty_fields[0]))

    @property
    def lambda_v(self) -> float:
        return float(getattr(self.config, self._penalty_fields[1]))

    @property
    def converged(self) -> bool:
        """Whether the last fit stopped on its tolerance rather than on its cap."""
        return self._trace.converged

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """``u_i . v_j`` (shifted scale; scores for interactions) for parallel arrays of
        real-user and item indices."""
        f = self.factors
        users, items = check_indices(users, items, f.user.shape[0], f.item.shape[0])
        return np.asarray(self._ops.dot_rows(f.user, f.item, users, items))


class SweptLearner(FittedLearner[S]):
    """A :class:`FittedLearner` fitted by sweeps, whose ``_trace`` is a :class:`Trace`.

    :meth:`snapshot` and :meth:`restore` save a fit and set it back without a sweep (a
    refit, even warm from the solution, sweeps once and moves the last bits): a learner
    keeps its fitted state through the hooks ``_saved_state`` and ``_restored_state``.
    """

    _trace: Trace

    @property
    def history(self) -> list[float]:
        """The objective after each (accepted) sweep of the last fit."""
        return list(self._trace.history)

    @property
    def n_sweeps(self) -> int:
        """Sweeps the last fit computed (with Anderson, also those it discarded)."""
        return self._trace.sweeps

    def _log_if_capped(self, log: logging.Logger) -> None:
        """Tell ``log`` (the learner module's), at :func:`cap_log_level`, that the last fit
        stopped on ``max_sweeps`` before ``kkt_tol``, if it did."""
        if not self._trace.converged:
            c = self.config
            log.log(
                cap_log_level(),
                f"{c.name}: stopped at max_sweeps=%d with relative KKT residual %.2e "
                "(kkt_tol %.0e)",
                c.max_sweeps,
                self._trace.kkt,
                c.kkt_tol,
            )

    def snapshot(self) -> Snapshot:
        """The fitted state, for :meth:`restore`: its arrays, its trace and what else the
        fit recorded."""
        arrays, record = self._saved_state()
        return Snapshot(arrays, {"trace": dataclasses.asdict(self._trace), **record})

    def restore(
        self, ratings: Ratings, snapshot: Snapshot, fake: sp.csr_array | None = None
    ) -> Self:
        """This learner as ``fit(ratings, fake=fake)`` left it when :meth:`snapshot` saved
        ``snapshot``, bit for bit and without a sweep: the same factors, trace (``converged``,
        ``n_sweeps``), KKT residual and adjoint system."""
        if type(self)._restored_state is SweptLearner._restored_state:
            raise NotImplementedError(f"{type(self).__name__}: a fit that cannot be restored")
        record = dict(snapshot.record)
        trace = Trace(**record.pop("trace"))
        self._fit = self._restored_state(Problem.build(ratings, fake), snapshot.arrays, record)
        self._ops.set_threads(self.config.threads)
        self._trace = trace
        return self

    def _saved_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """The fitted state beyond the trace: arrays and a JSON-able record."""
        raise NotImplementedError(f"{type(self).__name__}: a fit that cannot be restored")

    def _restored_state(
        self, problem: Problem, arrays: dict[str, np.ndarray], record: dict[str, Any]
    ) -> S:
        """``_fit`` on ``problem`` from what ``_saved_state`` gave (other fitted state set)."""
        raise NotImplementedError(f"{type(self).__name__}: a fit that cannot be restored")


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
        if p.fake_dense is not None:  # one k x k system shared by every fake row
            gram = f.item.T @ f.item + self.lambda_u * np.eye(k)
            f.fake_user[:] = np.linalg.solve(gram, (p.fake_dense.values @ f.item).T).T
        elif p.n_fake:
            self.ops.solve_rows(
                *p.fake_rows, f.item, *kernels.empty_source(p.n_fake, k), self.lambda_u, f.fake_user
            )

    def update_items(self, f: Factors) -> float:
        """``V`` exactly minimises ``L`` for fixed ``U, U~`` (in place); returns the data
        term ``sum_Omega (M - UV^T)^2 + sum_Omega~ (M~ - U~V^T)^2`` at the new ``V``."""
        p = self.problem
        if p.fake_dense is not None:
            fit = self.ops.solve_rows_shared(
                *p.cols,
                f.user,
                f.fake_user.T @ f.fake_user,
                p.fake_dense.transposed @ f.fake_user,
                p.fake_dense.column_sq,
                self.lambda_v,
                f.item,
            )
        else:
            fit = self.ops.solve_rows(
                *p.cols, f.user, *p.fake_cols, f.fake_user, self.lambda_v, f.item
            )
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
        if p.fake_dense is not None:
            sq_fake, g_fake = p.fake_dense.user_pass(f)
            total += sq_fake
        elif p.n_fake:
            sq = self.ops.residual_rows(
                *p.fake_rows, f.item, *kernels.empty_source(p.n_fake, k), f.fake_user, g_fake
            )
            total += float(np.sum(sq))
        return total, g_user, g_fake

    def item_pass(self, f: Factors) -> np.ndarray:
        """``R^T U + R~^T U~``."""
        p = self.problem
        g_item = np.empty_like(f.item)
        if p.fake_dense is not None:
            k = f.item.shape[1]
            self.ops.residual_rows(
                *p.cols, f.user, *kernels.empty_source(p.n_items, k), f.item, g_item
            )
            g_item += p.fake_dense.item_pass(f)
        else:
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

    def kkt_after_items(self, f: Factors) -> float:
        """The relative KKT residual right after :meth:`update_items` (user blocks only)."""
        return self.evaluate(f, item_block=False)[1]


class HalfSteps(Protocol):
    """What :func:`sweep_until` alternates: exact user and item half-steps of an objective
    ``L = data term + penalty``, and its relative KKT residual after an item half-step."""

    def update_users(self, f: Factors) -> None: ...

    def update_items(self, f: Factors) -> float:
        """The item half-step (in place); returns the data term at the new items."""
        ...

    def penalty(self, f: Factors) -> float: ...

    def kkt_after_items(self, f: Factors) -> float: ...


def sweep_until(
    steps: HalfSteps,
    f: Factors,
    max_sweeps: int,
    tol: float,
    kkt_tol: float,
    start: float = math.inf,
    memory: int = 0,
) -> Trace:
    """Sweep (users, then items) until a tolerance or ``max_sweeps``; ``f`` in place.

    ``start`` is the objective before the first sweep (``inf`` when unknown). The
    objective comes free with the item half-step; the KKT residual is computed only when
    ``kkt_tol > 0`` (``nan`` otherwise). Stops when the relative objective change of a sweep
    is ``<= tol`` or the KKT residual ``<= kkt_tol`` (either 0: off).

    ``memory > 0`` accelerates the sweeps. A sweep is the fixed-point map ``V -> G(V)``
    (users solved for ``V``, then items for those users), and the next sweep starts from the
    Anderson mix (:class:`Anderson`) of the last ``memory`` pairs ``(V, G(V))``. Where that
    start fails (its sweep ends above the last accepted objective, or at NaN), the sweep is
    discarded, the last plain output restored and the memory cleared, and the sweeps go on
    in pairs: a plain sweep ``V -> G(V)``, then one from ``V + s (G(V) - V)``, ``s = 2, 4,
    8, ...`` doubled while the over-relaxed sweeps descend; the first that does not is
    discarded and Anderson starts afresh. Anderson solves ``G(V) = V``, which a saddle also
    satisfies, so it fails near one, while the sweeps crawling away from it move the same
    way for hundreds of sweeps (``docs/math.md`` 3.5). Every returned point is a sweep's
    output (users and items exact for each other), the accepted objectives descend, and the
    objective and KKT residual reported are those of real ALS iterates. A discarded sweep
    counts toward ``max_sweeps`` and in :attr:`Trace.rejected`, not in the history. BLAS
    runs single-threaded (the kernels are parallel over rows).
    """
    with serial_blas():
        return _sweeps(steps, f, max_sweeps, tol, kkt_tol, start, memory)


def _sweeps(
    steps: HalfSteps,
    f: Factors,
    max_sweeps: int,
    tol: float,
    kkt_tol: float,
    start: float,
    memory: int,
) -> Trace:
    history: list[float] = []
    previous, kkt = start, math.nan

    def stationary(value: float) -> bool:
        """Record an accepted sweep's objective; whether a tolerance is met."""
        nonlocal previous, kkt
        if kkt_tol > 0:
            kkt = steps.kkt_after_items(f)
        history.append(value)
        change = abs(previous - value) / max(abs(value), np.finfo(float).tiny)
        previous = value
        return (kkt_tol > 0 and kkt <= kkt_tol) or (tol > 0 and change <= tol)

    mixer = Anderson(memory) if memory > 0 else None
    safe: Factors | None = None  # the last plain sweep's output, while Anderson mixes
    stretch = 1.0  # > 1: pairs of a plain sweep and its step over-relaxed by this factor
    rejected = done = 0
    while done < max_sweeps:
        before = f.item.copy() if mixer is not None else None
        done += 1
        value = _sweep(steps, f)
        if safe is not None and not value <= previous:  # Anderson's start failed (or NaN)
            f.assign(safe)
            safe, stretch, rejected = None, 2.0, rejected + 1
            if mixer is not None:
                mixer.reset()
            continue
        safe = None
        if stationary(value):
            return Trace(history, kkt, True, rejected)
        if mixer is None or before is None or done == max_sweeps:
            continue
        if stretch == 1.0:
            safe = f.copy()
            f.item[:] = mixer.mix(before.ravel(), f.item.ravel()).reshape(f.item.shape)
            continue
        plain = f.copy()  # the half-steps may view f's arrays: extrapolate in place
        f.item -= before
        f.item *= stretch
        f.item += before
        done += 1
        value = _sweep(steps, f)
        if not value <= previous:  # back to the plain output, and to Anderson, afresh
            f.assign(plain)
            stretch, rejected = 1.0, rejected + 1
            mixer.reset()
            continue
        stretch *= 2.0
        if stationary(value):
            return Trace(history, kkt, True, rejected)
    # never an extrapolated point: the last sweep is not mixed, a rejected one is undone
    return Trace(history, kkt, False, rejected)


def _sweep(steps: HalfSteps, f: Factors) -> float:
    """One sweep (users, then items) in place; the objective after it."""
    steps.update_users(f)
    return steps.update_items(f) + steps.penalty(f)


class Anderson:
    """Anderson mixing (type II) of a fixed-point iteration ``x -> G(x)``.

    With ``r = G(x) - x`` and the differences ``dG``, ``dR`` of the last ``memory`` images and
    residuals, the next point is ``G(x) - dG gamma``, ``gamma = argmin ||r - dR gamma||``
    (Walker and Ni 2011), solved through the ``memory x memory`` Gram matrix of ``dR``. Plain
    iteration is ``memory = 0``, or the first step after :meth:`reset`.

    The differences live in preallocated ring buffers and the Gram matrix is updated by one
    row per step (``memory`` dot products), so a step costs ``O(memory n)`` with no copies
    of the history.
    """

    def __init__(self, memory: int):
        self.memory = memory
        self._last: tuple[np.ndarray, np.ndarray] | None = None
        self._d_images = np.empty((0, 0))
        self._d_residuals = np.empty((0, 0))
        self._gram = np.zeros((memory, memory))
        self._count = 0  # differences stored (at most memory)
        self._next = 0  # ring slot of the next difference

    def reset(self) -> None:
        self._last = None
        self._count = 0
        self._next = 0

    def mix(self, x: np.ndarray, image: np.ndarray) -> np.ndarray:
        """The next point after ``x`` whose image is ``G(x) = image``."""
        residual = image - x
        if self._d_images.shape != (self.memory, x.size):
            self._d_images = np.empty((self.memory, x.size))
            self._d_residuals = np.empty((self.memory, x.size))
        if self._last is not None:
            slot = self._next
            np.subtract(image, self._last[0], out=self._d_images[slot])
            np.subtract(residual, self._last[1], out=self._d_residuals[slot])
            self._count = min(self._count + 1, self.memory)
            self._next = (slot + 1) % self.memory
            row = self._d_residuals[: self._count] @ self._d_residuals[slot]
            self._gram[slot, : self._count] = row
            self._gram[: self._count, slot] = row
        self._last = (image.copy(), residual)
        if self._count == 0:
            return image
        used = self._count
        gamma, *_ = np.linalg.lstsq(
            self._gram[:used, :used], self._d_residuals[:used] @ residual, 1e-12
        )
        return image - gamma @ self._d_images[:used]


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


def starting_factors(
    engine: Engine,
    init: Factors | None,
    rng: np.random.Generator,
    rank: int,
    init_scale: float,
    *,
    fixed_rank: bool = True,
) -> tuple[Factors, float]:
    """Where the sweeps of ``engine`` start, and the objective there.

    Without ``init``: :func:`random_factors` of ``rank`` drawn from ``rng``, objective ``inf``
    (unknown). With it: :func:`checked_init` (of rank ``rank`` when ``fixed_rank``, else any),
    its objective computed only when its fake rows match the problem (else ``inf``).
    """
    p = engine.problem
    if init is None:
        return random_factors(rng, p.n_users, p.n_fake, p.n_items, rank, init_scale), math.inf
    f, matched = checked_init(init, p)
    if fixed_rank and f.item.shape[1] != rank:
        raise DataError(f"initial factors have rank {f.item.shape[1]}, not {rank}")
    return f, engine.objective(f) if matched else math.inf


def check_indices(users: np.ndarray, items: np.ndarray, m: int, n: int) -> tuple[np.ndarray, ...]:
    """Parallel int64 index arrays inside ``[0, m) x [0, n)``, or :class:`DataError`."""
    users = np.ascontiguousarray(users, dtype=np.int64).ravel()
    items = np.ascontiguousarray(items, dtype=np.int64).ravel()
    if users.shape != items.shape:
        raise DataError(f"predict: {len(users)} users but {len(items)} items")
    if len(users) and (users.min() < 0 or users.max() >= m or items.min() < 0 or items.max() >= n):
        raise DataError(f"predict: indices outside the {m} x {n} matrix")
    return users, items
