"""The learned detector of :mod:`cfpoison.detect.learned` as a detect-and-remove score.

The defender holds a labelled sample of attacks seen before (fake rows ``L``, for example
profiles of the same methods drawn with another seed) and its own users' ratings
``reference`` (``m x n``). A ``HistGradientBoostingClassifier(class_weight="balanced")`` on
:func:`cfpoison.detect.learned.user_features` learns reference users (label 0) against ``L``
(label 1); the score of a row is its predicted probability of being fake, with the features
recomputed on the matrix being scored (item statistics as the defender sees them).

Cross-fitting keeps the calibration honest: the reference users are split into ``folds``
groups, model ``k`` is trained without group ``k``, and row ``i < m`` of any scored matrix
(the reference users come first, in order, in every matrix the defense scores) is scored by
the model that did not see it; other rows get the mean of the ``folds`` models.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from cfpoison.data.ratings import Ratings
from cfpoison.defend.defenses import ScoreFunction
from cfpoison.defend.model import combined
from cfpoison.detect.learned import user_features
from cfpoison.errors import DataError


def learned_score(
    reference: Ratings, labelled: sp.csr_array, rng: np.random.Generator, folds: int = 5
) -> ScoreFunction:
    """A cross-fitted learned score (module docstring) trained on ``reference`` vs ``labelled``."""
    # scikit-learn is imported here: it takes a second, and only this score needs it
    from sklearn.ensemble import HistGradientBoostingClassifier

    m, n_labelled = reference.n_users, labelled.shape[0]
    if n_labelled < 2 or m < folds or folds < 2:
        raise DataError(
            f"the learned score needs >= 2 labelled fakes and >= {max(folds, 2)} reference "
            f"users, got {n_labelled} and {m}"
        )
    features = user_features(combined(reference, labelled), reference.scale)[0]
    labels = np.r_[np.zeros(m, dtype=bool), np.ones(n_labelled, dtype=bool)]
    fold_of = rng.permutation(m) % folds
    state = int(rng.integers(2**31))
    models = []
    for k in range(folds):
        keep = np.r_[fold_of != k, np.ones(n_labelled, dtype=bool)]
        model = HistGradientBoostingClassifier(class_weight="balanced", random_state=state)
        models.append(model.fit(features[keep], labels[keep]))

    def score(matrix: sp.csr_array) -> np.ndarray:
        x = user_features(matrix, reference.scale)[0]
        probability = np.mean([model.predict_proba(x)[:, 1] for model in models], axis=0)
        own = fold_of[: min(m, matrix.shape[0])]
        for k, model in enumerate(models):
            rows = np.flatnonzero(own == k)
            if len(rows):
                probability[rows] = model.predict_proba(x[rows])[:, 1]
        return probability

    return score
