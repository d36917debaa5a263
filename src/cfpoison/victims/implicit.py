"""Victims from the ``implicit`` library (benfred/implicit, CPU): WRMF and BPR-MF.

Optional: ``pip install "cfpoison[victims]"``. Both train on an :class:`Interactions` set:
the normal users are rows ``0..m-1``, the fake users are appended as rows ``m..m+m'-1``
(fake entries of weight 0 are dropped: no interaction), items are columns ``0..n-1``.

* ``implicit-als`` (``implicit.cpu.als.AlternatingLeastSquares``, Hu, Koren and Volinsky's
  WRMF) takes the weights as confidences ``c_ij = alpha w_ij`` of a preference 1 and
  minimises ``sum_stored c_ij (1 - u_i.v_j)^2 + sum_unstored (u_i.v_j)^2 + reg (|U|^2 +
  |V|^2)``; a fake weight in ``(0, 1]`` is a confidence below a real interaction's;
* ``implicit-bpr`` (``implicit.cpu.bpr.BayesianPersonalizedRanking``, Rendle et al.'s BPR-MF)
  treats every stored entry as a positive and ignores its value: fake rows are binarised at
  ``> 0``. It appends an item bias column ``b_j`` to the item factors and a column of ones to
  the user factors, so ``[u_i, 1] . [v_j, b_j]`` is the score.

Either way the victim's factors are the library's ``user_factors`` (normal users' rows) and
``item_factors``: their product is the score ``model.recommend`` ranks by, computed here in
float64 (the library is run with ``dtype=float64``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from cfpoison.config import JsonConfig, require_ranges
from cfpoison.data.interactions import Interactions
from cfpoison.errors import DataError
from cfpoison.victims.adapters import LibraryVictim


def implicit_matrix(
    name: str, train: Interactions, fake: sp.csr_array | None, binary: bool
) -> sp.csr_matrix:
    """``(m + m') x n`` CSR: ``train``'s weights, then the fake rows without their zero
    entries; ``binary``: every stored entry 1. Fake weights must lie in ``[0, 1]``."""
    if not isinstance(train, Interactions):
        raise DataError(
            f"victim '{name}' trains on implicit feedback: give Interactions "
            "(Interactions.from_ratings binarises explicit ratings)"
        )
    blocks = [sp.csr_array(train.matrix, dtype=np.float64)]
    if fake is not None and fake.shape[0]:
        fake = sp.csr_array(fake, dtype=np.float64, copy=True)
        if fake.shape[1] != train.n_items:
            raise DataError(
                f"victim '{name}': fake rows have {fake.shape[1]} items, not {train.n_items}"
            )
        if fake.nnz and not (fake.data.min() >= 0 and fake.data.max() <= 1):
            raise DataError(f"victim '{name}': fake interaction weights must lie in [0, 1]")
        fake.eliminate_zeros()
        blocks.append(fake)
    matrix = sp.csr_matrix(sp.vstack(blocks, format="csr"))
    matrix.sort_indices()
    if binary:
        matrix.data[:] = 1.0
    return matrix


@dataclasses.dataclass(frozen=True)
class ImplicitALSConfig(JsonConfig):
    """implicit's ``AlternatingLeastSquares`` (WRMF, conjugate-gradient solves); fields are
    its arguments (``threads`` is ``num_threads``: 0 uses every core).

    Defaults: implicit's own.
    """

    kind: ClassVar[str] = "victim"
    factors: int = 100
    regularization: float = 0.01
    alpha: float = 1.0
    iterations: int = 15
    threads: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        require_ranges(
            self,
            "implicit-als",
            factors=">= 1",
            regularization=">= 0",
            alpha="> 0",
            iterations=">= 1",
            threads=">= 0",
        )


@dataclasses.dataclass(frozen=True)
class ImplicitBPRConfig(JsonConfig):
    """implicit's ``BayesianPersonalizedRanking`` (SGD on sampled triples); fields are its
    arguments (``factors`` latent factors; the library adds the item bias column).

    Defaults: implicit's own, except one thread: its SGD is Hogwild, so more threads do not
    reproduce a fit.
    """

    kind: ClassVar[str] = "victim"
    factors: int = 100
    learning_rate: float = 0.01
    regularization: float = 0.01
    iterations: int = 100
    threads: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        require_ranges(
            self,
            "implicit-bpr",
            factors=">= 1",
            learning_rate="> 0",
            regularization=">= 0",
            iterations=">= 1",
            threads=">= 0",
        )


class ImplicitVictim(LibraryVictim[Interactions]):
    """An implicit model of ``config`` (``random_state=seed``) fitted from scratch on
    :func:`implicit_matrix`; a fixed number of iterations. ``model`` is the fitted implicit
    model (users: rows of implicit_matrix)."""

    module: ClassVar[str] = "implicit"
    package: ClassVar[str] = "implicit"
    library: ClassVar[str]  # the submodule holding the model
    model_class: ClassVar[str]  # the model's class in it
    binary: ClassVar[bool]

    def _model(self, library: Any) -> Any:
        """The unfitted ``model_class`` of ``self.config``: its fields are the arguments
        (``threads`` as ``num_threads``, ``seed`` as ``random_state``), in float64."""
        arguments = dataclasses.asdict(self.config)
        arguments["num_threads"] = arguments.pop("threads")
        arguments["random_state"] = arguments.pop("seed")
        return getattr(library, self.model_class)(**arguments, dtype=np.float64)

    def _fit(
        self, train: Interactions, fake: sp.csr_array | None
    ) -> tuple[np.ndarray, np.ndarray, bool | None]:
        library = self._library(self.library)
        matrix = implicit_matrix(self.name, train, fake, self.binary)
        with threadpool_limits(limits=1, user_api="blas"):  # implicit asks for one BLAS thread
            model = self._model(library)
            model.fit(matrix, show_progress=False)
        self.model = model
        user = np.ascontiguousarray(model.user_factors[: train.n_users], dtype=np.float64)
        return user, np.ascontiguousarray(model.item_factors, dtype=np.float64), None


class ImplicitALSVictim(ImplicitVictim):
    """implicit's WRMF (module docstring): confidences ``alpha w_ij``."""

    library: ClassVar[str] = "implicit.cpu.als"
    model_class: ClassVar[str] = "AlternatingLeastSquares"
    binary: ClassVar[bool] = False

    def __init__(self, config: ImplicitALSConfig, name: str = "implicit-als"):
        super().__init__(config, name)


class ImplicitBPRVictim(ImplicitVictim):
    """implicit's BPR-MF (module docstring): fake rows binarised at ``> 0``."""

    library: ClassVar[str] = "implicit.cpu.bpr"
    model_class: ClassVar[str] = "BayesianPersonalizedRanking"
    binary: ClassVar[bool] = True

    def __init__(self, config: ImplicitBPRConfig, name: str = "implicit-bpr"):
        super().__init__(config, name)
