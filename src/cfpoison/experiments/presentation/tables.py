"""Aggregating stored cells for figures and reports: mean and spread over repeated cells.

Cells that agree on the panel fields, the curve field and x (typically differing only in
their seed) form one point: its mean, sample standard deviation, min and max.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from cfpoison.errors import ConfigError
from cfpoison.experiments.sweeps.spec import PlotSpec, lookup
from cfpoison.experiments.sweeps.store import StoredCell


@dataclasses.dataclass(frozen=True)
class Point:
    """One x of one curve: the metric over its ``n`` repeated cells."""

    x: float
    n: int
    mean: float
    std: float
    low: float
    high: float


Panel = tuple[Any, ...]
Curves = dict[Any, list[Point]]


def panel_title(plot: PlotSpec, panel: Panel) -> str:
    """``mu1=1, mu2=-1`` from the panel fields' short names and values."""
    return ", ".join(
        f"{name.split('.')[-1]}={_fmt(v)}" for name, v in zip(plot.panel, panel, strict=True)
    )


def _fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def metric_value(row: StoredCell, metric: str) -> float | None:
    """A scalar metric of a stored cell, or None if it is absent or not finite."""
    value = row.metrics.get(metric)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def aggregate(rows: Sequence[StoredCell], plot: PlotSpec, metric: str) -> dict[Panel, Curves]:
    """Panel -> curve value -> points sorted by x, for ``metric`` (cells without it skipped)."""
    groups: dict[Panel, dict[Any, dict[float, list[float]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list))
    )
    for row in rows:
        value = metric_value(row, metric)
        if value is None:
            continue
        flat = row.flat()
        panel = tuple(lookup(flat, name) for name in plot.panel)
        curve = lookup(flat, plot.curve)
        x = lookup(flat, plot.x)
        if isinstance(x, bool) or not isinstance(x, int | float):
            raise ConfigError(f"plot: x field {plot.x!r} is not a number ({x!r})")
        groups[panel][curve][float(x) * plot.x_scale].append(value)
    return {
        panel: {
            curve: [_point(x, values) for x, values in sorted(by_x.items())]
            for curve, by_x in sorted(curves.items(), key=lambda kv: str(kv[0]))
        }
        for panel, curves in sorted(groups.items(), key=lambda kv: _sort_key(kv[0]))
    }


def _sort_key(panel: Panel) -> tuple[Any, ...]:
    """Paper order for mu panels: (1, 0), (1, -1), (0, 1), (-1, 1): descending."""
    return tuple(-v if isinstance(v, int | float) else str(v) for v in panel)


def _point(x: float, values: list[float]) -> Point:
    arr = np.asarray(values)
    std = float(arr.std(ddof=1)) if len(arr) > 1 else 0.0
    return Point(x, len(arr), float(arr.mean()), std, float(arr.min()), float(arr.max()))


def summary_of(rows: Sequence[StoredCell], metric: str | None) -> Point | None:
    """Mean, spread and count of a metric over all cells that report it (None: no metric)."""
    if metric is None:
        return None
    values = [v for v in (metric_value(row, metric) for row in rows) if v is not None]
    return _point(0.0, values) if values else None


def panel_rows(rows: Sequence[StoredCell], plot: PlotSpec, panel: Panel) -> list[StoredCell]:
    """The cells of one panel (all of them when the plot has no panel fields)."""
    return [r for r in rows if tuple(lookup(r.flat(), f) for f in plot.panel) == panel]


def strongest_baseline(rows: Sequence[StoredCell], plot: PlotSpec) -> Any:
    """Of ``plot.baselines``, the curve value whose cells among ``rows`` have the highest mean
    ``plot.strength`` metric (None: no baseline there reports it)."""
    best, best_mean = None, -math.inf
    for baseline in plot.baselines:
        cells = [r for r in rows if lookup(r.flat(), plot.curve) == baseline]
        point = summary_of(cells, plot.strength)
        if point is not None and point.mean > best_mean:
            best, best_mean = baseline, point.mean
    return best


def shown_curves(rows: Sequence[StoredCell], plot: PlotSpec, curves: Curves) -> Curves:
    """``curves`` without the baselines other than the strongest (see :class:`PlotSpec`)."""
    best = strongest_baseline(rows, plot)
    return {c: p for c, p in curves.items() if c not in plot.baselines or c == best}
