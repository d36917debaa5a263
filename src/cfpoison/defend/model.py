"""A defended model: low-rank predictions for the real users, and what the defense did.

Every defense returns ``P = U V^T`` (shifted scale) for the ``m`` real users: a
:class:`cfpoison.models.FittedModel`, measured by :mod:`cfpoison.models.measures`. An
ensemble of ``B`` models ``U_b V_b^T`` is the rank-``B k`` model
``[U_1 .. U_B] / B  [V_1 .. V_B]^T``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import scipy.sparse as sp

from cfpoison.data.ratings import Ratings
from cfpoison.errors import DataError
from cfpoison.learners import ALSLearner


@dataclasses.dataclass
class DefendedModel:
    """``P = user @ item.T`` for the real users; which users' ratings were set aside.

    Attributes:
        user: ``m x K`` real-user factors; item: ``n x K`` item factors.
        removed_real, removed_fake: masks of the real (``m``) and fake (``m'``) users whose
            ratings the defense excluded from the item factors (their own factors, for the
            real ones, are folded in against the final items).
        converged: whether every fit inside the defense reached its tolerance.
        info: defense-specific numbers (thresholds, sweeps, dropped ratings, ...).
    """

    user: np.ndarray
    item: np.ndarray
    removed_real: np.ndarray
    removed_fake: np.ndarray
    converged: bool
    info: dict[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def undefended(cls, fitted: ALSLearner) -> DefendedModel:
        """A plain ALS fit (real and fake users) as a model that removed nobody."""
        return cls(
            fitted.user_factors,
            fitted.item_factors,
            np.zeros(fitted.user_factors.shape[0], dtype=bool),
            np.zeros(fitted.fake_user_factors.shape[0], dtype=bool),
            fitted.converged,
        )

    @classmethod
    def average(cls, models: list[DefendedModel], info: dict[str, Any]) -> DefendedModel:
        """The mean prediction of ``models`` as one low-rank model; removal masks OR-ed."""
        if not models:
            raise DataError("an ensemble needs at least one model")
        return cls(
            user=np.hstack([d.user for d in models]) / len(models),
            item=np.hstack([d.item for d in models]),
            removed_real=np.logical_or.reduce([d.removed_real for d in models]),
            removed_fake=np.logical_or.reduce([d.removed_fake for d in models]),
            converged=all(d.converged for d in models),
            info=info,
        )

    @property
    def user_factors(self) -> np.ndarray:
        """``user``: the real users' factors (the :class:`cfpoison.models.FittedModel` view)."""
        return self.user

    @property
    def item_factors(self) -> np.ndarray:
        """``item``: the item factors."""
        return self.item


def combined(train: Ratings, fake: sp.csr_array) -> sp.csr_array:
    """The ``(m + m') x n`` poisoned matrix: real rows, then fake rows (sorted CSR)."""
    if fake.ndim != 2 or fake.shape[1] != train.n_items:
        raise DataError(f"fake profiles have shape {fake.shape}, expected (m', {train.n_items})")
    matrix = sp.csr_array(sp.vstack([train.matrix, sp.csr_array(fake)], format="csr"))
    matrix.sort_indices()
    return matrix
