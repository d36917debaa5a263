"""The victim interface: a recommender trained on real + fake ratings that predicts and ranks.

Every victim exposes, after :meth:`Victim.fit`, factors of the real (normal) users and of the
items whose product is its prediction on the shifted scale [-2, 2]::

    P = user_factors @ item_factors.T        (m x n; biases ride along as extra columns)

so that predictions, the mean predicted rating of an item over the normal users
(``mean_i(p_i) . q_j``), RMSE shifts over all unseen entries (in low-rank form) and top-k
lists (computed in blocks of users, never a dense ``m x n`` array) are the same code for
cfpoison's learners and for third-party libraries. Fake users take part in the fit only.
"""

from __future__ import annotations

import abc
import math
from typing import Self

import numpy as np
import scipy.sparse as sp

from cfpoison.data.ratings import SHIFTED_HIGH, SHIFTED_LOW, Ratings
from cfpoison.learners.factored import check_indices
from cfpoison.ranking import top_unrated


class Victim(abc.ABC):
    """A fitted recommender seen through low-rank factors (module docstring).

    Subclasses implement :meth:`_fit`; :meth:`fit` records the training ratings (whose
    stored entries are the items each normal user rated, excluded from the top-k lists).
    """

    def __init__(self) -> None:
        self._train: Ratings | None = None
        self._user: np.ndarray | None = None
        self._item: np.ndarray | None = None
        self._converged: bool | None = None

    @abc.abstractmethod
    def _fit(
        self, train: Ratings, fake: sp.csr_array | None
    ) -> tuple[np.ndarray, np.ndarray, bool | None]:
        """Fit; return ``(user_factors, item_factors, converged)`` (``None``: no criterion)."""

    def fit(self, train: Ratings, fake: sp.csr_array | None = None) -> Self:
        """Fit on ``train`` plus the fake rows ``fake`` (``m' x n`` CSR, shifted scale)."""
        user, item, converged = self._fit(train, fake)
        if user.shape[0] != train.n_users or item.shape[0] != train.n_items:
            raise RuntimeError(f"{type(self).__name__}: factors do not match the data")
        self._train, self._user, self._item = train, user, item
        self._converged = converged
        return self

    def _fitted(self) -> tuple[Ratings, np.ndarray, np.ndarray]:
        if self._train is None or self._user is None or self._item is None:
            raise RuntimeError(f"{type(self).__name__}: call fit() first")
        return self._train, self._user, self._item

    @property
    def user_factors(self) -> np.ndarray:
        """``m x r`` factors of the normal users (shifted-scale predictions ``U V^T``)."""
        return self._fitted()[1]

    @property
    def item_factors(self) -> np.ndarray:
        """``n x r`` item factors."""
        return self._fitted()[2]

    @property
    def converged(self) -> bool | None:
        """Whether the last fit met its tolerance; ``None`` for a fixed number of epochs."""
        self._fitted()
        return self._converged

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Predictions (shifted scale, unclipped) for parallel arrays of user/item indices."""
        _, user, item = self._fitted()
        users, items = check_indices(users, items, len(user), len(item))
        return np.einsum("ij,ij->i", user[users], item[items])

    def item_means(self, items: np.ndarray) -> np.ndarray:
        """Mean predicted rating (shifted scale) of each item over the normal users."""
        _, user, item = self._fitted()
        return item[np.asarray(items, dtype=np.int64)] @ user.mean(axis=0)

    def top_k(self, k: int, users: np.ndarray | None = None) -> np.ndarray:
        """Each user's ``k`` highest-scored items among those not rated in training.

        ``len(users) x k`` column indices, best first; ``-1`` pads a user with fewer than
        ``k`` unrated items. Scores are computed for blocks of users at a time.
        """
        train, user, item = self._fitted()
        return top_unrated(train.matrix, user, item, k, users)

    def rmse(self, ratings: Ratings) -> float:
        """RMSE of the unclipped predictions on the stored entries of ``ratings``, on the
        data set's own scale (NaN without entries)."""
        if ratings.nnz == 0:
            return math.nan
        rows, cols, values = ratings.triples()
        span = (ratings.scale.high - ratings.scale.low) / (SHIFTED_HIGH - SHIFTED_LOW)
        return float(np.sqrt(np.mean((self.predict(rows, cols) - values) ** 2)) * span)
