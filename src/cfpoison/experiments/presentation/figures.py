"""Figures of a sweep (matplotlib, no pyplot state): PNG and SVG, written atomically.

One row of panels per metric, one column per panel value (the paper's mu settings); in each
panel one curve per method, the mean over seeds with error bars of one sample standard
deviation; the strongest baseline (:class:`PlotSpec` ``baselines``) as a dashed reference
curve; the metric's noise floor as a dashed line over a grey band from zero (where a value is
no evidence of an attack) and its clean-model value as a dotted line, each the mean over the
panel's cells.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib
from matplotlib.artist import Artist
from matplotlib.figure import Figure

from cfpoison.experiments.presentation.tables import (
    aggregate,
    panel_rows,
    panel_title,
    shown_curves,
    summary_of,
)
from cfpoison.experiments.sweeps.spec import PlotSpec
from cfpoison.experiments.sweeps.store import StoredCell
from cfpoison.io import atomic_write

METRIC_LABELS = {
    "rmse_shift": "RMSE shift, unseen entries (shifted scale)",
    "rmse_shift_stars": "RMSE shift, unseen entries (stars)",
    "target_mean_after": "target's mean predicted rating (stars)",
    "utility": "attacker's utility R",
    "ttest_log10_pvalue": "log10 p, paper's t-test",
    "ttest_users_log10_pvalue": "log10 p, user-paired t-test",
}
MARKERS = ("o", "s", "^", "D", "v", "P")
CURVE_COLORS = {
    "pga": "tab:red",
    "sgld": "tab:blue",
    "uniform": "tab:gray",
    "average": "tab:green",
    "bandwagon": "tab:olive",
}


def draw(rows: Sequence[StoredCell], plot: PlotSpec, title: str = "") -> Figure:
    """The figure of ``rows`` under ``plot`` (see the module docstring)."""
    series = {metric: aggregate(rows, plot, metric) for metric in plot.metrics}
    panels = list(dict.fromkeys(p for by_panel in series.values() for p in by_panel))
    n_cols = max(1, len(panels))
    fig = Figure(figsize=(3.6 * n_cols, 3.0 * len(plot.metrics) + 0.6), layout="constrained")
    axes = fig.subplots(len(plot.metrics), n_cols, squeeze=False)
    palette = iter(matplotlib.colormaps["tab10"].colors)  # type: ignore[attr-defined]
    colors = dict(CURVE_COLORS)
    for r, metric in enumerate(plot.metrics):
        for c, panel in enumerate(panels):
            ax = axes[r][c]
            cells = panel_rows(rows, plot, panel)
            floor = summary_of(cells, plot.floors.get(metric))
            if floor is not None:
                ax.axhspan(0, floor.mean, color="0.88", lw=0, label="within the noise floor")
                ax.axhline(floor.mean, color="black", linestyle="--", lw=1, label="noise floor")
            reference = summary_of(cells, plot.references.get(metric))
            if reference is not None:
                ax.axhline(
                    reference.mean, color="black", linestyle=":", lw=1.2, label="clean model"
                )
            curves = shown_curves(cells, plot, series[metric].get(panel, {}))
            for curve, points in curves.items():
                name = str(curve)
                color = colors.get(name) or colors.setdefault(name, next(palette))
                baseline = curve in plot.baselines
                ax.errorbar(
                    [p.x for p in points],
                    [p.mean for p in points],
                    yerr=[p.std for p in points],
                    marker=MARKERS[list(curves).index(curve) % len(MARKERS)],
                    markersize=4 if baseline else 5,
                    capsize=3,
                    color=color,
                    linestyle="--" if baseline else "-",
                    lw=1 if baseline else 1.6,
                    label=f"{name} (strongest shilling)" if baseline else name,
                )
            low, high = ax.get_ylim()
            span = plot.y_spans.get(metric, 0.0)
            if high - low < span:
                middle = (low + high) / 2
                ax.set_ylim(middle - span / 2, middle + span / 2)
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
            list(handles.values()),
            list(handles),
            loc="outside lower center",
            ncol=min(len(handles), 5),
        )
    if title:
        fig.suptitle(title)
    return fig


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
