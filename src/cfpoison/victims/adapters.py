"""Victims from libraries that users run: Surprise's SVD and cmfrec's CMF.

Optional: ``pip install "cfpoison[victims]"``. Both get the data as (user, item, rating)
triples on the data set's own scale: the normal users are rows ``0..m-1``, the fake users are
appended as new users ``m..m+m'-1``, items are columns ``0..n-1``. Both libraries predict

    r_ij = mu + b_i + c_j + p_i . q_j          (data set's scale)

which maps back to the shifted scale linearly, ``s(r) = a r + z`` with ``a = 4 / (high -
low)``, so the victim's factors are ``[a p_i, a (b_i + mu) + z, 1]`` and ``[q_j, 1, a c_j]``.
An item without training ratings gets zero factors and bias (Surprise predicts
``mu + b_i`` for an unknown item; cmfrec is given the full ``(m + m') x n`` shape).
"""

from __future__ import annotations

import dataclasses
import importlib
from collections import defaultdict
from types import ModuleType
from typing import Any, ClassVar, Literal

import numpy as np
import scipy.sparse as sp

from cfpoison.config import JsonConfig, require, require_ranges
from cfpoison.data.ratings import SHIFTED_HIGH, SHIFTED_LOW, Ratings
from cfpoison.errors import CfpoisonError
from cfpoison.victims.base import Data, Victim

#: The optional extra that installs every adapter's library.
EXTRA = "victims"


class MissingExtraError(CfpoisonError):
    """A victim's library is not installed."""


def import_library(victim: str, module: str, package: str) -> ModuleType:
    """``module``, or :class:`MissingExtraError` naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(
            f"victim '{victim}' needs {package}: pip install \"cfpoison[{EXTRA}]\""
        ) from None


class LibraryVictim(Victim[Data]):
    """A victim fitted by another library (``module``, installed by ``package``): ``config``
    holds its arguments, ``model`` the library's fitted model after :meth:`fit`."""

    module: ClassVar[str]
    package: ClassVar[str]

    def __init__(self, config: Any, name: str):
        super().__init__()
        self.config = config
        self.name = name
        self.model: Any = None

    def _library(self, module: str | None = None) -> ModuleType:
        """``module`` (default: the library's), or :class:`MissingExtraError`."""
        return import_library(self.name, module or self.module, self.package)


def triples(train: Ratings, fake: sp.csr_array | None) -> tuple[np.ndarray, ...]:
    """Users (fakes appended after the ``m`` normal users), items and ratings on the data
    set's own scale."""
    rows, cols, values = train.triples()
    if fake is not None and fake.shape[0]:
        fake = sp.csr_array(fake)
        fake_rows = np.repeat(np.arange(fake.shape[0]), np.diff(fake.indptr)) + train.n_users
        rows = np.concatenate([rows, fake_rows])
        cols = np.concatenate([cols, fake.indices.astype(np.int64)])
        values = np.concatenate([values, fake.data])
    return rows, cols, train.scale.to_original(values)


def user_rows(train: Ratings, fake: sp.csr_array | None) -> int:
    """``m + m'``: the rows of :func:`triples`' users, normal then fake."""
    return train.n_users + (0 if fake is None else int(fake.shape[0]))


def shifted_factors(
    train: Ratings,
    user: np.ndarray,
    item: np.ndarray,
    user_bias: np.ndarray,
    item_bias: np.ndarray,
    mu: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Augmented factors of ``mu + b_i + c_j + p_i.q_j`` (data set's scale) on the shifted
    scale (module docstring); only the ``m`` normal users' rows are kept."""
    scale = train.scale
    a = (SHIFTED_HIGH - SHIFTED_LOW) / (scale.high - scale.low)
    z = SHIFTED_LOW - a * scale.low
    m = train.n_users
    users = np.column_stack([a * user[:m], a * (user_bias[:m] + mu) + z, np.ones(m)])
    items = np.column_stack([item, np.ones(len(item)), a * item_bias])
    return np.ascontiguousarray(users), np.ascontiguousarray(items)


@dataclasses.dataclass(frozen=True)
class SurpriseSVDConfig(JsonConfig):
    """Surprise's ``SVD`` (biased SGD matrix factorization); fields are its arguments.

    Defaults: Surprise's own, except 10 factors (the paper's rank).
    """

    kind: ClassVar[str] = "victim"
    n_factors: int = 10
    n_epochs: int = 20
    lr_all: float = 0.005
    reg_all: float = 0.02
    biased: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        require_ranges(
            self, "surprise-svd", n_factors=">= 1", n_epochs=">= 1", lr_all="> 0", reg_all=">= 0"
        )


class SurpriseSVDVictim(LibraryVictim[Ratings]):
    """Surprise ``SVD(random_state=seed)`` on the triples of :func:`triples`; fixed epochs.
    ``model`` is the fitted ``surprise.SVD`` (raw ids = our row/column indices)."""

    module: ClassVar[str] = "surprise"
    package: ClassVar[str] = "scikit-surprise"

    def __init__(self, config: SurpriseSVDConfig, name: str = "surprise-svd"):
        super().__init__(config, name)

    def _fit(
        self, train: Ratings, fake: sp.csr_array | None
    ) -> tuple[np.ndarray, np.ndarray, bool | None]:
        surprise = self._library()
        users, items, values = triples(train, fake)
        ur: defaultdict[int, list[tuple[int, float]]] = defaultdict(list)
        ir: defaultdict[int, list[tuple[int, float]]] = defaultdict(list)
        for u, i, r in zip(users.tolist(), items.tolist(), values.tolist(), strict=True):
            ur[u].append((i, r))
            ir[i].append((u, r))
        n_users = user_rows(train, fake)
        trainset = surprise.Trainset(
            ur,
            ir,
            n_users,
            train.n_items,
            len(values),
            (train.scale.low, train.scale.high),
            {u: u for u in range(n_users)},
            {i: i for i in range(train.n_items)},
        )
        c = self.config
        algo = surprise.SVD(
            n_factors=c.n_factors,
            n_epochs=c.n_epochs,
            lr_all=c.lr_all,
            reg_all=c.reg_all,
            biased=c.biased,
            random_state=c.seed,
        ).fit(trainset)
        self.model = algo
        known = np.zeros(train.n_items, dtype=bool)
        known[list(ir)] = True
        item = np.where(known[:, None], algo.qi, 0.0)
        item_bias = np.where(known, algo.bi, 0.0)
        mu = trainset.global_mean if c.biased else 0.0
        user, item = shifted_factors(train, algo.pu, item, algo.bu, item_bias, mu)
        return user, item, None


@dataclasses.dataclass(frozen=True)
class CmfrecConfig(JsonConfig):
    """cmfrec's ``CMF`` (ALS with user/item biases and centering); fields are its arguments.

    Defaults: cmfrec's own; ``nthreads`` -1 uses every core.
    """

    kind: ClassVar[str] = "victim"
    k: int = 40
    lambda_: float = 10.0
    niter: int = 10
    user_bias: bool = True
    item_bias: bool = True
    center: bool = True
    method: Literal["als", "lbfgs"] = "als"
    nthreads: int = -1
    seed: int = 0

    def __post_init__(self) -> None:
        require_ranges(self, "cmfrec", k=">= 1", lambda_=">= 0", niter=">= 1")
        require(self.nthreads != 0, "cmfrec: nthreads must be positive or -1")


class CmfrecVictim(LibraryVictim[Ratings]):
    """cmfrec ``CMF(random_state=seed)`` on a sparse COO ``(m + m') x n`` matrix; fixed
    iterations."""

    module: ClassVar[str] = "cmfrec"
    package: ClassVar[str] = "cmfrec"

    def __init__(self, config: CmfrecConfig, name: str = "cmfrec"):
        super().__init__(config, name)

    def _fit(
        self, train: Ratings, fake: sp.csr_array | None
    ) -> tuple[np.ndarray, np.ndarray, bool | None]:
        cmfrec = self._library()
        users, items, values = triples(train, fake)
        n_users = user_rows(train, fake)
        matrix = sp.coo_matrix((values, (users, items)), shape=(n_users, train.n_items))
        c = self.config
        options: dict[str, Any] = dataclasses.asdict(c)
        options.pop("seed")
        model = cmfrec.CMF(**options, random_state=c.seed, use_float=False, verbose=False).fit(
            matrix
        )
        self.model = model
        user_bias = np.asarray(model.user_bias_ if c.user_bias else np.zeros(n_users))
        item_bias = np.asarray(model.item_bias_ if c.item_bias else np.zeros(train.n_items))
        user, item = shifted_factors(
            train, model.A_, model.B_, user_bias, item_bias, float(model.glob_mean_)
        )
        return user, item, None
