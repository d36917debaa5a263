"""The victim interface: a recommender trained on real + fake ratings that predicts and ranks.

Every victim exposes, after :meth:`Victim.fit`, factors of the real (normal) users and of the
items whose product is its prediction on the shifted scale [-2, 2]::

    P = user_factors @ item_factors.T        (m x n; biases ride along as extra columns)

so that a victim is a :class:`cfpoison.models.FittedModel`: its predictions, target means,
RMSE, shifts over all unseen entries and top-k lists are the measures of
:mod:`cfpoison.models.measures`, the same code for cfpoison's learners, third-party libraries
and defended models. Fake users take part in the fit only.
"""

from __future__ import annotations

import abc
from typing import Generic, Self, TypeVar

import numpy as np
import scipy.sparse as sp

from cfpoison.data.interactions import Interactions
from cfpoison.data.ratings import Ratings
from cfpoison.learners.factored import check_indices
from cfpoison.models.measures import predict
from cfpoison.models.ranking import top_unrated

#: The training data a victim takes: explicit ratings or implicit interactions.
Data = TypeVar("Data", bound=Ratings | Interactions)


class Victim(abc.ABC, Generic[Data]):
    """A fitted recommender seen through low-rank factors (module docstring).

    Subclasses implement :meth:`_fit`; :meth:`fit` records the training ratings (whose
    stored entries are the items each normal user rated, excluded from the top-k lists).
    """

    def __init__(self) -> None:
        self._train: Data | None = None
        self._user: np.ndarray | None = None
        self._item: np.ndarray | None = None
        self._converged: bool | None = None

    @abc.abstractmethod
    def _fit(
        self, train: Data, fake: sp.csr_array | None
    ) -> tuple[np.ndarray, np.ndarray, bool | None]:
        """Fit; return ``(user_factors, item_factors, converged)`` (``None``: no criterion)."""

    def fit(self, train: Data, fake: sp.csr_array | None = None) -> Self:
        """Fit on ``train`` plus the fake rows ``fake`` (``m' x n`` CSR, shifted scale)."""
        return self.adopt(train, *self._fit(train, fake))

    def adopt(
        self, train: Data, user: np.ndarray, item: np.ndarray, converged: bool | None
    ) -> Self:
        """Take the factors of a fit on ``train`` made elsewhere (another process)."""
        if user.shape[0] != train.n_users or item.shape[0] != train.n_items:
            raise RuntimeError(f"{type(self).__name__}: factors do not match the data")
        self._train, self._user, self._item = train, user, item
        self._converged = converged
        return self

    def _fitted(self) -> tuple[Data, np.ndarray, np.ndarray]:
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
        return predict(self, *check_indices(users, items, len(user), len(item)))

    def top_k(self, k: int, users: np.ndarray | None = None) -> np.ndarray:
        """Each user's ``k`` highest-scored items among those not rated in training.

        ``len(users) x k`` column indices, best first; ``-1`` pads a user with fewer than
        ``k`` unrated items. Scores are computed for blocks of users at a time.
        """
        train, user, item = self._fitted()
        return top_unrated(train.matrix, user, item, k, users)
