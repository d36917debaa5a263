"""Figures of a sweep (matplotlib, no pyplot state): PNG and SVG, written atomically.

One row of panels per metric, one column per panel value (the paper's mu settings); in each
panel one curve per method, the mean over seeds with a min-max band; the metric's noise floor
(dashed) and clean-model value (dotted), each the mean over the panel's cells.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib
from matplotlib.artist import Artist
from matplotlib.figure import Figure

from cfpoison.experiments.presentation.tables import aggregate, panel_title, summary_of
from cfpoison.experiments.sweeps.spec import PlotSpec, lookup
from cfpoison.experiments.sweeps.store import StoredCell
from cfpoison.io import atomic_write

METRIC_LABELS = {
    "rmse_shift": "RMSE shift (unseen entries)",
    "target_mean_after": "target's mean predicted rating",
    "utility": "attacker's utility R",
    "ttest_log10_pvalue": "log10 p, paper's t-test",
    "ttest_users_log10_pvalue": "log10 p, user-paired t-test",
}
MARKERS = ("o", "s", "^", "D", "v", "P")
CURVE_COLORS = {"pga": "tab:red", "sgld": "tab:blue", "uniform": "tab:gray"}


def draw(rows: Sequence[StoredCell], plot: PlotSpec, title: str = "") -> Figure:
    """The figure of ``rows`` under ``plot`` (see the module docstring)."""
    series = {metric: aggregate(rows, plot, metric) for metric in plot.metrics}
    panels = list(dict.fromkeys(p for by_panel in series.values() for p in by_panel))
    n_cols = max(1, len(panels))
    fig = Figure(figsize=(3.6 * n_cols, 3.0 * len(plot.metrics)), layout="constrained")
    axes = fig.subplots(len(plot.metrics), n_cols, squeeze=False)
    palette = iter(matplotlib.colormaps["tab10"].colors)  # type: ignore[attr-defined]
    colors = dict(CURVE_COLORS)
    for r, metric in enumerate(plot.metrics):
        for c, panel in enumerate(panels):
            ax = axes[r][c]
            curves = series[metric].get(panel, {})
            for curve, points in curves.items():
                color = colors.get(str(curve)) or colors.setdefault(str(curve), next(palette))
                xs = [p.x for p in points]
                ax.fill_between(
                    xs,
                    [p.low for p in points],
                    [p.high for p in points],
                    color=color,
                    alpha=0.2,
                    linewidth=0,
                )
                marker = MARKERS[list(curves).index(curve) % len(MARKERS)]
                ax.plot(xs, [p.mean for p in points], marker=marker, color=color, label=str(curve))
            for lines, style, label in (
                (plot.floors, "--", "noise floor"),
                (plot.references, ":", "clean model"),
            ):
                summary = summary_of(_in_panel(rows, plot, panel), lines.get(metric))
                if summary is not None:
                    ax.axhline(summary.mean, color="black", linestyle=style, lw=1, label=label)
            if r == 0:
                ax.set_title(panel_title(plot, panel) if plot.panel else "")
            if c == 0:
                ax.set_ylabel(METRIC_LABELS.get(metric, metric))
            if r == len(plot.metrics) - 1:
                ax.set_xlabel(plot.x_label)
            ax.grid(alpha=0.3)
    handles: dict[str, Artist] = {}
    for ax in fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    if handles:
        fig.legend(
            list(handles.values()), list(handles), loc="outside lower center", ncol=len(handles)
        )
    if title:
        fig.suptitle(title)
    return fig


def _in_panel(
    rows: Sequence[StoredCell], plot: PlotSpec, panel: tuple[object, ...]
) -> list[StoredCell]:
    return [r for r in rows if tuple(lookup(r.flat(), f) for f in plot.panel) == panel]


def save(fig: Figure, stem: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write ``stem.png`` (150 dpi) and ``stem.svg`` atomically."""
    stem = Path(stem)
    paths = (stem.with_suffix(".png"), stem.with_suffix(".svg"))
    for path in paths:
        buffer = io.BytesIO()
        fig.savefig(buffer, format=path.suffix[1:], dpi=150, metadata=_metadata(path.suffix))
        with atomic_write(path, "wb") as handle:
            handle.write(buffer.getvalue())
    return paths


def _metadata(suffix: str) -> dict[str, str | None]:
    """No timestamps in the files, so the same results give the same bytes."""
    return {"Date": None} if suffix == ".svg" else {"Software": "cfpoison"}
