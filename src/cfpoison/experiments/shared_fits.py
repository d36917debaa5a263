"""What the cells of a sweep share: the clean fit and its seed-noise floor, computed once per
(data, preprocessing, learner config) and kept in the sweep's content-addressed cache.

Every cell of an attack sweep fits the clean model and, for the floor, a second clean model
with the learner's seed + 1 (:func:`cfpoison.models.noise_floor`). Both depend only
on the data, its preprocessing and the learner's config (``threads`` aside), so they are
cached (:class:`~cfpoison.experiments.sweeps.cache.Cache`); the floor's second fit *is* the
clean fit of the next seed, so a sweep over seeds ``0..S-1`` fits ``S + 1`` clean models in
all. A fit restored from the cache is a :class:`StoredFit`: the factors and the fit's
diagnostics, bit for bit those of the fit that was stored, so a cell's metrics are the same
with the cache as without. The auto target needs no entry of its own: it is drawn from these
factors with the attack's seed (one product over the items, well under a millisecond on
ml-latest-small), exactly as without the cache.
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
import scipy.sparse as sp

from cfpoison.data.ratings import Ratings
from cfpoison.experiments.sweeps.cache import Cache
from cfpoison.experiments.sweeps.execute import package_versions
from cfpoison.learners import LearnerConfig
from cfpoison.learners.adjoint import AdjointSystem
from cfpoison.learners.base import Factors, FactorViews
from cfpoison.learners.factored import backend_module, check_indices
from cfpoison.models import fit_learner
from cfpoison.models.measures import rmse_shift

#: Bump when what a clean-fit entry holds changes.
ENTRY_VERSION = 1


class StoredFit(FactorViews):
    """A fitted model restored from the cache: its factors and its fit's diagnostics.

    It answers every question a fitted :class:`~cfpoison.learners.base.Learner` does;
    ``fit`` fits a learner of the same config afresh (and returns it stored).
    """

    def __init__(self, config: LearnerConfig, entry: dict[str, np.ndarray]) -> None:
        self.config = config
        self._factors = Factors(entry["user"], entry["item"], entry["fake_user"])
        self._lambdas = (float(entry["lambda_u"]), float(entry["lambda_v"]))
        self._objective = float(entry["objective"])
        self._kkt = float(entry["kkt_residual"])
        self._converged = bool(entry["converged"])

    @staticmethod
    def entry_of(learner: Any) -> dict[str, Any]:
        """What the cache keeps of a fitted learner."""
        f = learner.factors
        return {
            "user": f.user,
            "item": f.item,
            "fake_user": f.fake_user,
            "lambda_u": learner.lambda_u,
            "lambda_v": learner.lambda_v,
            "objective": learner.objective(),
            "kkt_residual": learner.kkt_residual(),
            "converged": learner.converged,
        }

    @property
    def factors(self) -> Factors:
        return self._factors

    @property
    def lambda_u(self) -> float:
        return self._lambdas[0]

    @property
    def lambda_v(self) -> float:
        return self._lambdas[1]

    def fit(
        self, ratings: Ratings, init: Factors | None = None, fake: sp.csr_array | None = None
    ) -> Self:
        learner = fit_learner(self.config, ratings, fake, init)
        return type(self)(self.config, _arrays(self.entry_of(learner)))

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """``u_i . v_j`` with the learner's own kernel (the same bits as the fitted model)."""
        f = self._factors
        users, items = check_indices(users, items, f.user.shape[0], f.item.shape[0])
        return np.asarray(
            backend_module(self.config.backend).dot_rows(f.user, f.item, users, items)
        )

    def objective(self) -> float:
        return self._objective

    def kkt_residual(self) -> float:
        return self._kkt

    @property
    def converged(self) -> bool:
        return self._converged

    def adjoint_system(self, train: sp.csr_array, fake: sp.csr_array) -> AdjointSystem:
        """Refused: a restored fit keeps its factors, not the data to differentiate."""
        raise TypeError("a fit restored from the cache cannot be differentiated; refit it")


def _arrays(entry: dict[str, Any]) -> dict[str, np.ndarray]:
    return {name: np.asarray(value) for name, value in entry.items()}


def clean_fit(
    cache: Cache, data: dict[str, Any], config: LearnerConfig, train: Ratings
) -> StoredFit:
    """``config`` fitted on ``train``, from the cache when there; ``data`` identifies ``train``
    (source checksum and preprocessing) in the key."""
    key = {
        "entry": "clean fit",
        "version": ENTRY_VERSION,
        "data": data,
        "learner": config.replace(threads=0).to_dict(),
        "versions": package_versions(),
    }
    entry = cache.get_or_compute(key, lambda: StoredFit.entry_of(fit_learner(config, train)))
    return StoredFit(config, entry)


def clean_and_floor(
    cache: Cache, data: dict[str, Any], config: LearnerConfig, train: Ratings
) -> tuple[StoredFit, float]:
    """The clean fit and its seed-noise floor (``rmse_shift`` to the fit with seed + 1), both
    from cached fits; the same numbers as :func:`cfpoison.models.noise_floor`."""
    clean = clean_fit(cache, data, config, train)
    other = clean_fit(cache, data, config.replace(seed=config.seed + 1), train)
    return clean, rmse_shift(train.matrix, clean, other)
