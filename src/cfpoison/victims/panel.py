"""Victim panels: a preset name or a TOML file listing victims.

A TOML panel is a list of ``[[victims]]`` tables with the fields of
:class:`cfpoison.victims.spec.VictimSpec`::

    [[victims]]
    name = "als-lam3"
    model = "als"
    params = { lambda_u = 3.0, lambda_v = 3.0 }

    [[victims]]
    name = "svd"
    model = "surprise-svd"
    optional = true          # skipped, with the reason, when Surprise is not installed

Presets (:data:`PRESETS`): ``default`` (cfpoison's ALS at its defaults, which the attacks
target unless told otherwise, on the evaluated split and on another one; ALS at lam 5 and at
rank 20; biased MF; Surprise SVD and cmfrec when installed) and ``all`` (``default`` plus the
nuclear norm, slow); ``implicit`` (:data:`_IMPLICIT`, for interaction data). Each victim is
fitted at the evaluation's victim seeds, never the
attack's own seed.
"""

from __future__ import annotations

import dataclasses
import tomllib

from cfpoison.config import JsonConfig, preset_or_file, require_unique
from cfpoison.errors import ConfigError
from cfpoison.victims.adapters import MissingExtraError
from cfpoison.victims.spec import VictimSpec


@dataclasses.dataclass(frozen=True)
class Panel(JsonConfig):
    """The victims to evaluate an attack on (names unique)."""

    victims: tuple[VictimSpec, ...]

    def __post_init__(self) -> None:
        names = [v.name for v in self.victims]
        require_unique(names, "panel: list at least one victim", "panel: duplicate victim name(s)")

    def runnable(self) -> tuple[list[VictimSpec], dict[str, str]]:
        """The victims that can run here, and the reason each optional one is skipped.

        A required victim whose library is missing raises
        :class:`cfpoison.victims.adapters.MissingExtraError` (one line naming the extra).
        """
        run, skipped = [], {}
        for spec in self.victims:
            reason = spec.missing()
            if reason is None:
                run.append(spec)
            elif spec.optional:
                skipped[spec.name] = reason
            else:
                raise MissingExtraError(reason)
        return run, skipped


_DEFAULT = (
    VictimSpec("als", "als"),
    VictimSpec("als-split", "als", split_offset=1),
    VictimSpec("als-lam5", "als", {"lambda_u": 5.0, "lambda_v": 5.0}),
    VictimSpec("als-rank20", "als", {"rank": 20}),
    VictimSpec("biased", "biased"),
    VictimSpec("surprise-svd", "surprise-svd", optional=True),
    VictimSpec("cmfrec", "cmfrec", optional=True),
)

#: Implicit-feedback victims: cfpoison's WRMF (the promotion attacks' default learner) at the
#: victim seeds and at rank 64 (fitted to KKT 1e-4: a victim is only ranked, and poisoned
#: WRMF fits can take thousands of sweeps to 1e-6), its BPR, the ``implicit`` library's ALS
#: and BPR, and cfpoison's LightGCN at lr 1e-2 for 20 epochs (recall@20 0.242 against
#: popularity's 0.173 on ml-latest-small binarised; the paper's lr 1e-3 needs about 60 epochs
#: to pass it).
_IMPLICIT = (
    VictimSpec("wrmf", "wrmf", {"kkt_tol": 1e-4}),
    VictimSpec("wrmf-rank64", "wrmf", {"rank": 64, "kkt_tol": 1e-4}),
    VictimSpec("bpr", "bpr"),
    VictimSpec("implicit-als", "implicit-als"),
    VictimSpec("implicit-bpr", "implicit-bpr"),
    VictimSpec("lightgcn", "lightgcn", {"learning_rate": 0.01, "epochs": 20}),
)

PRESETS: dict[str, Panel] = {
    "default": Panel(_DEFAULT),
    "all": Panel((*_DEFAULT, VictimSpec("nuclear", "nuclear"))),
    "implicit": Panel(_IMPLICIT),
}


def load_panel(text: str) -> Panel:
    """A preset name, else the path of a TOML panel file."""
    path = preset_or_file(text, PRESETS, "victims")
    if isinstance(path, Panel):
        return path
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: invalid TOML ({err})") from None
    try:
        return Panel.from_dict(data)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    except TypeError as err:  # a missing required field (name, model)
        raise ConfigError(f"{path}: {err}") from None
