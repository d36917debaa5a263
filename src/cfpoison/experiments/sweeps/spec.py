"""Sweep grids: base settings plus axes, expanded to fully specified cells.

A sweep is the union of one or more *blocks*; each block is the cartesian product of its axes
(lists of values) over the sweep's base settings, so that, for example, ``beta`` can vary for
SGLD only. Settings use flat dotted names (``alpha``, ``preprocess.min_user_ratings``); the
cell runner named by ``runner`` turns them into a fully specified config (every default filled
in) whose canonical-JSON SHA-256 is the cell's key, so the same experiment always has the same
key whichever file, flag or default it came from.

TOML form (``tomllib``)::

    runner = "attack"                # optional, the default
    [base]
    dataset = "ml-latest-small"
    learner = "als"
    [[grid]]                         # one block; repeat [[grid]] for a union
    method = ["pga", "uniform"]
    alpha = [0.01, 0.03]
    seed = [0, 1]
    [plot]                           # optional: the report's figure (see ``PlotSpec``)
    x = "alpha"
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from cfpoison.config import JsonConfig, digest_of, require
from cfpoison.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Cell:
    """One fully specified experiment: a JSON-able config and its key (SHA-256 of it)."""

    config: Mapping[str, Any]
    key: str

    @classmethod
    def of(cls, config: Mapping[str, Any]) -> Cell:
        return cls(dict(config), digest_of(config))


@dataclasses.dataclass(frozen=True)
class PlotSpec(JsonConfig):
    """How a sweep is drawn: ``metrics`` (one figure row each) against ``x``.

    One curve per value of ``curve``, one panel column per combination of ``panel`` fields,
    mean over the remaining fields (seeds) with error bars of one standard deviation.
    ``floors`` maps a metric to the metric holding its noise floor (dashed line over a shaded
    band from zero), ``references`` to the metric holding its clean-model value (dotted line).
    ``baselines``: curve values of which each panel draws only the strongest, the one with the
    highest mean ``strength`` metric over the panel's cells, as a reference curve (the tables
    list them all). ``x_scale`` multiplies x (100: fraction to percent). ``y_spans``: the
    least y range of a metric's panels, so that a small effect looks small.
    """

    x: str = "alpha"
    x_label: str = "malicious users (%)"
    x_scale: float = 100.0
    curve: str = "method"
    panel: tuple[str, ...] = ("mu1", "mu2")
    metrics: tuple[str, ...] = ("rmse_shift", "target_mean_after")
    floors: dict[str, str] = dataclasses.field(
        default_factory=lambda: {"rmse_shift": "rmse_shift_noise_floor"}
    )
    references: dict[str, str] = dataclasses.field(
        default_factory=lambda: {"target_mean_after": "target_mean_before"}
    )
    baselines: tuple[str, ...] = ()
    strength: str = "utility"
    y_spans: dict[str, float] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        require(bool(self.metrics), "plot: at least one metric is needed")
        require(self.x_scale > 0, f"plot: x_scale must be > 0, got {self.x_scale}")


@dataclasses.dataclass(frozen=True)
class SweepSpec(JsonConfig):
    """A sweep: the runner's name, base settings and the blocks of axes (values as lists)."""

    runner: str = "attack"
    base: dict[str, Any] = dataclasses.field(default_factory=dict)
    grid: tuple[dict[str, tuple[Any, ...]], ...] = ({},)
    plot: PlotSpec | None = None

    def __post_init__(self) -> None:
        require(bool(self.runner), "sweep: runner must not be empty")
        require(len(self.grid) > 0, "sweep: at least one grid block is needed")
        for block in self.grid:
            for name, values in block.items():
                require(len(values) > 0, f"sweep: axis {name!r} has no values")

    def with_flags(
        self, settings: Mapping[str, Any], axes: Mapping[str, Sequence[Any]]
    ) -> SweepSpec:
        """A copy with ``settings`` added to the base and ``axes`` added to every block."""
        base = {**self.base, **settings}
        extra = {name: tuple(values) for name, values in axes.items()}
        grid = tuple({**block, **extra} for block in self.grid)
        return self.replace(base=base, grid=grid)


def require_cells(spec: SweepSpec, where: str = "the sweep") -> None:
    """Raise :class:`ConfigError` when ``spec`` sets nothing (no base setting, no axis): its
    one cell would be the runner's defaults, which a sweep file or flags did not ask for (a
    caller may still ask for that cell in code)."""
    if not spec.base and not any(spec.grid):
        raise ConfigError(
            f"no cells: {where} defines no grid (no [base] settings, no [[grid]] axes)"
        )


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings to one level of dotted names: ``{"a": {"b": 1}} -> {"a.b": 1}``."""
    flat: dict[str, Any] = {}
    for name, value in data.items():
        dotted = f"{prefix}{name}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


def varying_fields(configs: Sequence[Mapping[str, Any]]) -> list[str]:
    """The dotted fields whose values differ between ``configs`` (in first-seen order)."""
    flats = [flatten(c) for c in configs]
    names = list(dict.fromkeys(k for f in flats for k in f))
    return [k for k in names if len({json.dumps(f.get(k), sort_keys=True) for f in flats}) > 1]


def lookup(flat: Mapping[str, Any], name: str) -> Any:
    """The value of ``name`` in a flattened config: an exact key or a unique dotted suffix."""
    if name in flat:
        return flat[name]
    matches = [key for key in flat if key.endswith(f".{name}")]
    if len(matches) == 1:
        return flat[matches[0]]
    if not matches:
        raise ConfigError(f"no field {name!r} in the cell config")
    raise ConfigError(f"field {name!r} is ambiguous: {', '.join(sorted(matches))}")


def load_spec(path: str | Path) -> SweepSpec:
    """Read a sweep from a TOML file (see the module docstring for its form)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such sweep file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder, not a sweep file") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: invalid TOML ({err})") from None
    return spec_from_mapping(data, str(path))


def spec_from_mapping(data: Mapping[str, Any], where: str = "sweep") -> SweepSpec:
    """Build a :class:`SweepSpec` from parsed TOML: nested tables become dotted names."""
    unknown = sorted(set(data) - {"runner", "base", "grid", "plot"})
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")
    blocks = data.get("grid", [{}])
    if isinstance(blocks, Mapping):
        blocks = [blocks]
    grid = tuple(
        {name: _as_values(value) for name, value in flatten(block).items()} for block in blocks
    )
    plot = data.get("plot")
    return SweepSpec(
        runner=str(data.get("runner", "attack")),
        base=flatten(data.get("base", {})),
        grid=grid,
        plot=PlotSpec.from_dict(dict(plot)) if plot is not None else None,
    )


def _as_values(value: Any) -> tuple[Any, ...]:
    return tuple(value) if isinstance(value, list | tuple) else (value,)


def parse_value(text: str) -> Any:
    """A flag value as a TOML scalar (``0.03``, ``true``, ``"x"``), else the plain string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_assignments(items: Iterable[str], axes: bool) -> dict[str, Any]:
    """``NAME=VALUE`` flags (``NAME=V1,V2,...`` when ``axes``) as a dict of parsed values."""
    parsed: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"expected NAME=VALUE, got {item!r}")
        if axes:
            parsed[name.strip()] = [parse_value(part.strip()) for part in text.split(",")]
        else:
            parsed[name.strip()] = parse_value(text.strip())
    return parsed


def expand(spec: SweepSpec) -> list[dict[str, Any]]:
    """Every block's cartesian product over the base, as flat settings, in order."""
    settings: list[dict[str, Any]] = []
    for block in spec.grid:
        names = list(block)
        for values in itertools.product(*(block[name] for name in names)):
            settings.append({**spec.base, **dict(zip(names, values, strict=True))})
    return settings
