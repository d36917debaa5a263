"""cfpoison's own learners (ALS, nuclear norm, biased MF; WRMF and BPR on interactions) as
victims.

The victim's factors are the learner's: ``U, V`` for ALS, the balanced factors for the
nuclear norm, the augmented ``[U, b + mu, 1]``, ``[V, 1, c]`` for biased MF. ``converged``
is the learner's (a tolerance met; for the nuclear norm, its certificate holds).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from cfpoison.data.interactions import Interactions
from cfpoison.data.ratings import Ratings
from cfpoison.learners import ImplicitLearnerConfig, LearnerConfig, build_learner
from cfpoison.victims.base import Victim


class LearnerVictim(Victim):
    """A cfpoison learner of ``config`` (seeded by ``config.seed``) fitted from scratch."""

    def __init__(self, config: LearnerConfig | ImplicitLearnerConfig):
        super().__init__()
        self.config = config

    def _fit(
        self, train: Ratings | Interactions, fake: sp.csr_array | None
    ) -> tuple[np.ndarray, np.ndarray, bool | None]:
        learner = build_learner(self.config).fit(train, fake=fake)  # type: ignore[arg-type]
        return learner.user_factors, learner.item_factors, learner.converged
