"""The model layer: one view of every fitted model and one definition of each measure.

* :class:`FittedModel`: normal users' and items' factors whose product is the score;
  cfpoison's learners, the victims from other libraries and the defended models all are one;
* :mod:`cfpoison.models.measures`: RMSE, the shift on unseen entries, target means, hit
  ratio and NDCG at k, the ratio to a noise floor;
* :mod:`cfpoison.models.ranking`: top-k unrated lists, computed in blocks of users;
* :func:`fit_learner`, :func:`victim_start`, :func:`noise_floor`: a fresh fit of a learner
  config, where a refit on poisoned data starts, and the seed-noise floor.
"""

from __future__ import annotations

from cfpoison.models.fitting import fit_learner, noise_floor, victim_start
from cfpoison.models.measures import FittedModel

__all__ = ["FittedModel", "fit_learner", "noise_floor", "victim_start"]
