"""The learner interface shared by alternating minimization and nuclear-norm minimization.

One regularizer convention everywhere (``docs/math.md`` section 1)::

    L(U, U~, V) = sum_Omega (M_ij - u_i.v_j)^2 + sum_Omega~ (M~_ij - u~_i.v_j)^2
                  + lam_U (||U||_F^2 + ||U~||_F^2) + lam_V ||V||_F^2

so that the stationarity conditions read ``lam_U u_i = sum_j (M_ij - u_i.v_j) v_j``.
(The paper's Eq. 2 writes ``2 lam`` in front of the norms; our ``lam_U`` is the paper's
``2 lam_U``.) Nuclear norm: ``||R_Omega(M - X)||^2 + 2 lam ||X||_*``, whose balanced factors
``U = A S^(1/2)``, ``V = B S^(1/2)`` are a stationary point of ``L`` with
``lam_U = lam_V = lam``.

Fake users (the attacker's rows ``M~``, ``m' x n`` CSR on the shifted scale) are passed to
``fit`` separately from the data set, so that an attack loop never rebuilds the data set's
matrices; their factors are ``fake_user_factors``.
"""

from __future__ import annotations

import abc
import contextlib
import contextvars
import dataclasses
import logging
import weakref
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, Self, runtime_checkable

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from cfpoison.config import JsonConfig
from cfpoison.data.ratings import Ratings

if TYPE_CHECKING:
    from cfpoison.learners.adjoint import AdjointSystem


class LearnerSettings(JsonConfig):
    """Base of every learner's config (ALS, nuclear norm, biased MF, WRMF, BPR).

    ``unique_optimum``: whether every start reaches the same minimiser. False unless the
    objective is convex (:class:`cfpoison.learners.nuclear.NuclearConfig`): then a fit's start
    is part of the experiment.
    """

    kind: ClassVar[str] = "learner"
    unique_optimum: ClassVar[bool] = False


@dataclasses.dataclass
class Factors:
    """Low-rank factors ``(U, U~, V)``: predictions are ``U V^T`` and ``U~ V^T``."""

    user: np.ndarray  # m x k
    item: np.ndarray  # n x k
    fake_user: np.ndarray  # m' x k (m' may be 0)

    def copy(self) -> Factors:
        return Factors(self.user.copy(), self.item.copy(), self.fake_user.copy())

    def assign(self, other: Factors) -> None:
        """Overwrite these arrays, in place, with ``other``'s values."""
        self.user[:], self.item[:], self.fake_user[:] = other.user, other.item, other.fake_user

    def named(self) -> dict[str, np.ndarray]:
        """The three arrays by field name (references), as a :class:`Snapshot` keeps them."""
        return {"user": self.user, "item": self.item, "fake_user": self.fake_user}

    @classmethod
    def of_named(cls, arrays: Mapping[str, np.ndarray]) -> Factors:
        """The factors of :meth:`named`'s arrays (other names ignored), C-contiguous float64
        as the kernels take them."""
        user, item, fake_user = (
            np.ascontiguousarray(arrays[name], dtype=np.float64)
            for name in ("user", "item", "fake_user")
        )
        return cls(user, item, fake_user)


#: The arrays of a CSR matrix in a :class:`Snapshot` (:meth:`Snapshot.of_matrix`).
CSR_ARRAYS = ("indptr", "indices", "data", "shape")


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """Saved state in the form a checkpoint stores it: arrays by name and a JSON-able record.

    Parts nest (:meth:`nest`, :meth:`part`): a part's array ``a`` is kept as ``PART/a`` and
    its record as ``record[PART]``, so a panel of fits is one snapshot.
    """

    arrays: dict[str, np.ndarray]
    record: dict[str, Any]

    @classmethod
    def nest(
        cls,
        parts: Mapping[str, Snapshot],
        arrays: Mapping[str, np.ndarray | None] | None = None,
        record: Mapping[str, Any] | None = None,
    ) -> Snapshot:
        """The ``parts`` by name, with this level's own ``arrays`` (None ones left out) and
        ``record`` entries."""
        flat = {
            f"{name}/{key}": a for name, part in parts.items() for key, a in part.arrays.items()
        }
        flat.update({key: a for key, a in (arrays or {}).items() if a is not None})
        return cls(flat, {**{name: part.record for name, part in parts.items()}, **(record or {})})

    def part(self, name: str) -> Snapshot:
        """The part :meth:`nest` kept as ``name``."""
        prefix = f"{name}/"
        inner = {k.removeprefix(prefix): a for k, a in self.arrays.items() if k.startswith(prefix)}
        return Snapshot(inner, self.record[name])

    @classmethod
    def of_matrix(cls, matrix: sp.csr_array) -> Snapshot:
        """A CSR matrix as its arrays (:data:`CSR_ARRAYS`; :meth:`matrix` rebuilds it)."""
        parts = (matrix.indptr, matrix.indices, matrix.data, matrix.shape)
        return cls(dict(zip(CSR_ARRAYS, map(np.asarray, parts), strict=True)), {})

    def matrix(self) -> sp.csr_array:
        """The CSR matrix :meth:`of_matrix` kept."""
        indptr, indices, data, shape = (self.arrays[name] for name in CSR_ARRAYS)
        return sp.csr_array((data, indices, indptr), shape=tuple(int(v) for v in shape))


class FactorViews(abc.ABC):
    """``user_factors``, ``item_factors`` and ``fake_user_factors`` as views of ``factors``."""

    @property
    @abc.abstractmethod
    def factors(self) -> Factors: ...

    @property
    def user_factors(self) -> np.ndarray:
        return self.factors.user

    @property
    def item_factors(self) -> np.ndarray:
        return self.factors.item

    @property
    def fake_user_factors(self) -> np.ndarray:
        return self.factors.fake_user


@runtime_checkable
class Learner(Protocol):
    """What every learner provides (see module docstring for the objective)."""

    @property
    def lambda_u(self) -> float: ...

    @property
    def lambda_v(self) -> float: ...

    def fit(
        self, ratings: Ratings, init: Factors | None = None, fake: sp.csr_array | None = None
    ) -> Self:
        """Fit on ``ratings`` (plus optional fake rows), warm-started from ``init``."""
        ...

    @property
    def factors(self) -> Factors: ...

    @property
    def user_factors(self) -> np.ndarray: ...

    @property
    def item_factors(self) -> np.ndarray: ...

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Predictions (shifted scale) for parallel arrays of row and column indices."""
        ...

    def objective(self) -> float: ...

    def kkt_residual(self) -> float:
        """Relative KKT residual of the fitted factors (0 at a stationary point)."""
        ...

    @property
    def converged(self) -> bool:
        """Whether the last fit reached its tolerance (rather than its iteration cap)."""
        ...

    def adjoint_system(self, train: sp.csr_array, fake: sp.csr_array) -> AdjointSystem:
        """The fit's Hessian and mixed partials (:mod:`cfpoison.learners.adjoint`)."""
        ...


_CSC_CACHE: dict[int, tuple[weakref.ref[sp.csr_array], sp.csc_array]] = {}


def cached_csc(matrix: sp.csr_array) -> sp.csc_array:
    """``matrix`` in CSC form (sorted indices), computed once per matrix object.

    The data set's matrix does not change during an attack, while the learner is refitted
    hundreds of times: the item-major copy is cached, keyed by the object's identity, and
    dropped when the matrix is garbage-collected.
    """
    key = id(matrix)
    hit = _CSC_CACHE.get(key)
    if hit is not None and hit[0]() is matrix:
        return hit[1]
    csc = sp.csc_array(matrix)
    csc.sort_indices()

    def forget(_: weakref.ref[sp.csr_array]) -> None:
        _CSC_CACHE.pop(key, None)

    _CSC_CACHE[key] = (weakref.ref(matrix, forget), csc)
    return csc


_CAPS_EXPECTED = contextvars.ContextVar("cfpoison_caps_expected", default=False)


@contextlib.contextmanager
def caps_expected() -> Iterator[None]:
    """Inside the block a fit that stops at its sweep cap logs at debug level, not as a
    warning: for callers that cap fits on purpose and read ``converged`` themselves (PGA's
    backtracking candidates, whose unfinished refits are set aside)."""
    token = _CAPS_EXPECTED.set(True)
    try:
        yield
    finally:
        _CAPS_EXPECTED.reset(token)


def cap_log_level() -> int:
    """The level of a learner's "stopped at its cap" message (:func:`caps_expected`)."""
    return logging.DEBUG if _CAPS_EXPECTED.get() else logging.WARNING


@contextlib.contextmanager
def serial_blas() -> Iterator[None]:
    """One BLAS thread inside the block: the fitting and solving loops are parallel in their
    numba kernels, and their BLAS calls (dot products of Krylov vectors, Anderson's small
    Gram matrices) are too short to gain from threads; OpenBLAS's threads beside numba's
    oversubscribe the cores (measured on ml-latest-small with two busy cores: 4.2 s per PGA
    iteration with OpenBLAS threads, 1.1 s without)."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield
