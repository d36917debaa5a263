"""Naming a victim: :class:`VictimSpec` (model kind, parameters, split) and :func:`build_victim`.

Kinds (``model``) and their parameter configs (every field optional; ``seed`` is set per fit by the
evaluation's victim seeds, never in ``params``):

* ``als`` (:class:`cfpoison.learners.ALSConfig`), ``nuclear``
  (:class:`cfpoison.learners.NuclearConfig`), ``biased``
  (:class:`cfpoison.learners.BiasedConfig`): cfpoison's learners;
* ``surprise-svd`` (:class:`SurpriseSVDConfig`), ``cmfrec`` (:class:`CmfrecConfig`):
  third-party libraries, installed by the ``victims`` extra;
* on implicit feedback (:class:`cfpoison.data.interactions.Interactions`): ``implicit-als``
  (:class:`ImplicitALSConfig`) and ``implicit-bpr`` (:class:`ImplicitBPRConfig`) from the
  ``implicit`` library (``victims`` extra), ``lightgcn`` (:class:`LightGCNConfig`), cfpoison's.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from collections.abc import Callable, Iterable
from typing import Any, Literal

from cfpoison.config import JsonConfig, require
from cfpoison.errors import ConfigError
from cfpoison.learners import ALSConfig, BiasedConfig, BPRConfig, NuclearConfig, WRMFConfig
from cfpoison.victims.adapters import (
    EXTRA,
    CmfrecConfig,
    CmfrecVictim,
    SurpriseSVDConfig,
    SurpriseSVDVictim,
)
from cfpoison.victims.base import Victim
from cfpoison.victims.implicit import (
    ImplicitALSConfig,
    ImplicitALSVictim,
    ImplicitBPRConfig,
    ImplicitBPRVictim,
)
from cfpoison.victims.learners import LearnerVictim
from cfpoison.victims.lightgcn import LightGCNConfig, LightGCNVictim

VictimKind = Literal[
    "als",
    "nuclear",
    "biased",
    "surprise-svd",
    "cmfrec",
    "implicit-als",
    "implicit-bpr",
    "lightgcn",
    "wrmf",
    "bpr",
]


@dataclasses.dataclass(frozen=True)
class KindInfo:
    """A victim kind: its parameter config, its constructor, its library (if any), and the
    data it trains on (explicit ``Ratings`` or implicit ``Interactions``)."""

    config: type[JsonConfig]
    build: Callable[[Any, str], Victim]
    module: str | None = None
    package: str | None = None
    data: Literal["ratings", "interactions"] = "ratings"


KINDS: dict[str, KindInfo] = {
    "als": KindInfo(ALSConfig, lambda c, _: LearnerVictim(c)),
    "nuclear": KindInfo(NuclearConfig, lambda c, _: LearnerVictim(c)),
    "biased": KindInfo(BiasedConfig, lambda c, _: LearnerVictim(c)),
    "surprise-svd": KindInfo(
        SurpriseSVDConfig,
        SurpriseSVDVictim,
        SurpriseSVDVictim.module,
        SurpriseSVDVictim.package,
    ),
    "cmfrec": KindInfo(CmfrecConfig, CmfrecVictim, CmfrecVictim.module, CmfrecVictim.package),
    "implicit-als": KindInfo(
        ImplicitALSConfig,
        ImplicitALSVictim,
        ImplicitALSVictim.module,
        ImplicitALSVictim.package,
        "interactions",
    ),
    "implicit-bpr": KindInfo(
        ImplicitBPRConfig,
        ImplicitBPRVictim,
        ImplicitBPRVictim.module,
        ImplicitBPRVictim.package,
        "interactions",
    ),
    "lightgcn": KindInfo(LightGCNConfig, LightGCNVictim, data="interactions"),
    "wrmf": KindInfo(WRMFConfig, lambda c, _: LearnerVictim(c), data="interactions"),
    "bpr": KindInfo(BPRConfig, lambda c, _: LearnerVictim(c), data="interactions"),
}


@dataclasses.dataclass(frozen=True)
class VictimSpec(JsonConfig):
    """One victim of a panel.

    Attributes:
        name: label in tables and reports (unique within a panel).
        model: the kind of victim, one of :data:`KINDS`.
        params: fields of the kind's config (module docstring); the rest keep its defaults.
        split_offset: the victim trains on the train/test split drawn with the evaluation's
            preprocessing seed plus this offset (0: the evaluated split, which the attack saw).
        optional: when its library is missing, skip this victim (with the reason) instead of
            failing.
    """

    name: str
    model: VictimKind
    params: dict[str, bool | int | float | str] = dataclasses.field(default_factory=dict)
    split_offset: int = 0
    optional: bool = False

    def __post_init__(self) -> None:
        require(bool(self.name.strip()), "victim: name must not be empty")
        require(
            "seed" not in self.params,
            f"victim '{self.name}': params may not set seed (the victim seeds set it)",
        )
        self.config(0)  # validates params against the kind's config

    def config(self, seed: int) -> Any:
        """The kind's config with ``params`` and ``seed``."""
        info = KINDS[self.model]
        try:
            return info.config.from_dict({**self.params, "seed": seed})
        except ConfigError as err:
            raise ConfigError(f"victim '{self.name}': {err}") from None

    def missing(self) -> str | None:
        """Why this victim cannot run here (its library is not installed), or None."""
        info = KINDS[self.model]
        if info.module is None or importlib.util.find_spec(info.module) is not None:
            return None
        return f"victim '{self.name}' needs {info.package}: pip install \"cfpoison[{EXTRA}]\""


def check_trains_on(
    victims: Iterable[VictimSpec], data: Literal["ratings", "interactions"]
) -> None:
    """:class:`ConfigError` naming the first victim that trains on the other kind of data
    than ``data`` (an ALS victim cannot judge interaction profiles, nor WRMF star ratings)."""
    for spec in victims:
        if KINDS[spec.model].data != data:
            fitting = ", ".join(sorted(k for k, info in KINDS.items() if info.data == data))
            raise ConfigError(
                f"victim '{spec.name}' ({spec.model}) trains on {KINDS[spec.model].data}, "
                f"these profiles are {data}: a panel here lists {fitting}"
            )


def build_victim(spec: VictimSpec, seed: int) -> Victim:
    """An unfitted victim of ``spec`` seeded with ``seed``."""
    return KINDS[spec.model].build(spec.config(seed), spec.name)
