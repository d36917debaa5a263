"""Victims the attacker does not control: recommenders trained on real + fake ratings.

* :class:`Victim` (:mod:`.base`): fit, predict (shifted scale), mean predicted rating of an
  item over the normal users, top-k unrated items, through low-rank factors;
* :class:`VictimSpec`, :func:`build_victim` (:mod:`.spec`): cfpoison's learners (``als``,
  ``nuclear``, ``biased``) and adapters to Surprise (``surprise-svd``) and cmfrec
  (``cmfrec``), the latter from the optional extra ``pip install "cfpoison[victims]"``;
* :class:`Panel`, :func:`load_panel` (:mod:`.panel`): presets and TOML panels;
* :func:`evaluate_transfer` (:mod:`.transfer`) and :mod:`.report`: the transfer table.
"""

from __future__ import annotations

from cfpoison.victims.adapters import MissingExtraError
from cfpoison.victims.base import Victim
from cfpoison.victims.panel import PRESETS, Panel, load_panel
from cfpoison.victims.spec import KINDS, VictimSpec, build_victim
from cfpoison.victims.transfer import TransferConfig, TransferResult, evaluate_transfer

__all__ = [
    "KINDS",
    "PRESETS",
    "MissingExtraError",
    "Panel",
    "TransferConfig",
    "TransferResult",
    "Victim",
    "VictimSpec",
    "build_victim",
    "evaluate_transfer",
    "load_panel",
]
