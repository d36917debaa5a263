"""An attacker who knows the detect-and-remove defense: fake profiles projected under its threshold.

The defender flags users whose score exceeds ``tau``, the ``1 - fpr`` quantile of the scores
of the clean reference (:class:`cfpoison.defend.DetectRemoveConfig`, ``reference``
calibration); the attacker, who knows the detector, the rate and the data (Kerckhoffs), computes
the same ``tau``. Each fake user ``u`` whose score is above ``margin * tau`` has its ratings
shrunk toward the item means ``mbar_j`` of the combined matrix::

    r_uj(t_u) = mbar_j + t_u (r_uj - mbar_j),   t_u in [0, 1],

with the largest ``t_u`` (bisection, all flagged users at once, every step re-scoring the
whole combined matrix, so item statistics follow the fakes) that puts the score under
``margin * tau``, each candidate snapped to the rating grid within ``+-max_rating`` before it
is scored (snapping after the bisection re-created deviations that the detector caught).
Applied after the attack, this is a lower bound on what an adaptive attacker keeps;
:mod:`cfpoison.attacks.adaptive` applies it inside PGA's loop, after every step (continuous
ratings there: ``snap_to_grid = False``). Users that no ``t`` brings under the threshold stay
at ``t = 0`` (item means) and are counted in ``still_flagged``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from cfpoison.attacks.threat import grid_values, snap
from cfpoison.data.ratings import Ratings
from cfpoison.defend.defenses import ScoreFunction, detector_score
from cfpoison.defend.model import combined
from cfpoison.detect.features import item_stats


@dataclasses.dataclass(frozen=True)
class Evasion:
    """The projected fake rows and what the projection did.

    Attributes:
        fake: the projected ``m' x n`` fake rows (shifted scale, on the rating grid).
        shrink: ``t_u`` per fake user (1 = unchanged).
        threshold: the defender's ``tau``; still_flagged: fake users above it after snapping.
    """

    fake: sp.csr_array
    shrink: np.ndarray
    threshold: float
    still_flagged: int


def evade(
    train: Ratings,
    fake: sp.csr_array,
    score: ScoreFunction,
    fpr: float,
    max_rating: float = 2.0,
    margin: float = 0.95,
    steps: int = 20,
    snap_to_grid: bool = True,
) -> Evasion:
    """Project ``fake`` under the detector's reference threshold (module docstring);
    ``snap_to_grid = False`` leaves the ratings continuous (a projection inside PGA's loop,
    :mod:`cfpoison.attacks.adaptive`)."""
    m = train.n_users
    threshold = float(np.quantile(score(train.matrix), 1 - fpr, method="higher"))
    rows = np.repeat(np.arange(fake.shape[0]), np.diff(fake.indptr))
    means = item_stats(combined(train, fake))[1][fake.indices]

    grid = grid_values(train.scale, max_rating)

    def shrunk(t: np.ndarray) -> sp.csr_array:
        values = means + t[rows] * (fake.data - means)
        if snap_to_grid:
            values = snap(values, max_rating, grid)
        return sp.csr_array((values, fake.indices, fake.indptr), shape=fake.shape)

    def over(t: np.ndarray) -> np.ndarray:
        return score(combined(train, shrunk(t)))[m:] > margin * threshold

    low, high = np.zeros(fake.shape[0]), np.ones(fake.shape[0])
    done = ~over(high)
    low[done] = 1.0
    for _ in range(steps):
        mid = np.where(done, 1.0, (low + high) / 2)
        bad = over(mid)
        high = np.where(bad & ~done, mid, high)
        low = np.where(~bad & ~done, mid, low)
    projected = shrunk(low)
    still = int(np.sum(score(combined(train, projected))[m:] > threshold))
    return Evasion(projected, low, threshold, still)


def with_evasions(
    train: Ratings,
    attacks: Mapping[str, sp.csr_array],
    detectors: Sequence[str],
    fpr: float,
) -> tuple[dict[str, sp.csr_array], list[dict[str, Any]]]:
    """``attacks`` plus, for each attack and detector, its projection ``NAME~evade-DETECTOR``
    (:func:`evade` at rate ``fpr``); and one record per projection."""
    out = dict(attacks)
    records = []
    for name, fake in attacks.items():
        for detector in detectors:
            result = evade(train, fake, detector_score(detector), fpr)
            label = f"{name}~evade-{detector}"
            out[label] = result.fake
            records.append(
                {
                    "attack": label,
                    "detector": detector,
                    "fpr": fpr,
                    "threshold": result.threshold,
                    "shrink_mean": float(result.shrink.mean()) if len(result.shrink) else None,
                    "shrunk_users": int(np.sum(result.shrink < 1)),
                    "still_flagged": result.still_flagged,
                }
            )
    return out, records
