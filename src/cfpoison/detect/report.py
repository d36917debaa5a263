"""The leave-one-family-out tables (detector x held-out family) as text (CLI) and Markdown, a
heat map of the two-sided AUC, and :func:`write_report`, which writes them (and the JSON)
atomically under a directory.

The text and the Markdown print the same :class:`Grid` list, and the figure reads the same
results: two-sided AUC (``*``: inverted, fakes score lower, caught all the
same), the learned detector's within-family AUC beside its held-out one, and precision and
recall at the report's false-positive rate in the direction the AUC favours.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from cfpoison.detect.cross_family import LEARNED, CrossFamilyReport, FamilyResult
from cfpoison.io import write_figure_report

#: The row name of the learned detector's within-family AUC (trained on the family's own labels).
WITHIN = "learned, within"


@dataclasses.dataclass(frozen=True)
class Grid:
    """A titled detector x family table of formatted cells."""

    title: str
    families: tuple[str, ...]
    rows: tuple[tuple[str, tuple[str, ...]], ...]


def _grid(
    report: CrossFamilyReport, cell: Callable[[FamilyResult], str]
) -> tuple[tuple[str, ...], dict[str, tuple[str, ...]]]:
    """The families in order, and per detector its cells in that order."""
    families = tuple(report.n_fake)
    by_detector: dict[str, dict[str, FamilyResult]] = {}
    for result in report.results:
        by_detector.setdefault(result.detector, {})[result.family] = result
    return families, {d: tuple(cell(r[f]) for f in families) for d, r in by_detector.items()}


def auc_cell(result: FamilyResult) -> str:
    """``0.812*`` (inverted) or ``0.812``."""
    return f"{result.auc.auc_two_sided:.3f}{'*' if result.auc.inverted else ''}"


def _within_cell(result: FamilyResult) -> str:
    return "n/a" if result.within is None else f"{result.within.auc_two_sided:.3f}"


def _precision_cell(result: FamilyResult) -> str:
    value = result.at_fpr_two_sided.precision
    return "n/a" if np.isnan(value) else f"{value:.3f}"


def grids(report: CrossFamilyReport) -> list[Grid]:
    """The AUC table (with the learned detector's within-family row), precision and recall."""
    fpr = f"{100 * report.fpr:g}%"
    families, auc = _grid(report, auc_cell)
    learned = {r.family: r for r in report.results if r.detector == LEARNED}
    auc[WITHIN] = tuple(_within_cell(learned[f]) for f in families)
    _, precision = _grid(report, _precision_cell)
    _, recall = _grid(report, lambda r: f"{r.at_fpr_two_sided.recall:.3f}")
    return [
        Grid(
            "two-sided AUC, family held out (* inverted: fakes score lower); "
            f"'{WITHIN}': the learned detector trained on the family's own labels, "
            f"{report.folds}-fold out-of-fold, as --protocol within",
            families,
            tuple(auc.items()),
        ),
        Grid(
            f"precision at {fpr} FPR (threshold: the {100 * (1 - report.fpr):g}th percentile "
            "of the test fold's real users' scores; two-sided direction; n/a: no user "
            "scored above it)",
            families,
            tuple(precision.items()),
        ),
        Grid(f"recall at {fpr} FPR (two-sided direction)", families, tuple(recall.items())),
    ]


def _intro(report: CrossFamilyReport, name: str) -> list[str]:
    sizes = ", ".join(f"{f} {n}" for f, n in report.n_fake.items())
    return [
        f"{name}: {report.n_real} real users; fake profiles per family: {sizes}",
        f"leave-one-family-out: the learned detector trains on the other families' fakes and "
        f"the real users outside the test fold ({report.folds} folds, seed {report.seed})",
    ]


def text(report: CrossFamilyReport, name: str) -> str:
    """The tables, aligned, for people."""
    lines = _intro(report, name)
    for grid in grids(report):
        width = max(12, *(len(f) + 2 for f in grid.families))
        label = max(12, *(len(d) + 2 for d, _ in grid.rows))
        lines += [
            "",
            grid.title,
            "detector".ljust(label) + "".join(f.rjust(width) for f in grid.families),
        ]
        lines += [d.ljust(label) + "".join(c.rjust(width) for c in cells) for d, cells in grid.rows]
    return "\n".join(lines)


def markdown(report: CrossFamilyReport, name: str) -> str:
    """The same tables in Markdown."""
    lines = [*_intro(report, name)]
    for grid in grids(report):
        lines += ["", f"**{grid.title}**", ""]
        lines.append("| detector | " + " | ".join(grid.families) + " |")
        lines.append("|---|" + "---|" * len(grid.families))
        lines += [f"| {d} | " + " | ".join(cells) + " |" for d, cells in grid.rows]
    return "\n".join(lines) + "\n"


def heatmap(report: CrossFamilyReport) -> Figure:
    """Two-sided AUC, detector (rows, the learned detector's within-family row last) x
    held-out family (columns); ``*`` marks an inverted separation."""
    families = list(report.n_fake)
    detectors = list(dict.fromkeys(r.detector for r in report.results))
    grid = np.full((len(detectors) + 1, len(families)), np.nan)
    marks = np.full(grid.shape, "", dtype=object)
    for r in report.results:
        i, j = detectors.index(r.detector), families.index(r.family)
        grid[i, j] = r.auc.auc_two_sided
        marks[i, j] = "*" if r.auc.inverted else ""
        if r.detector == LEARNED and r.within is not None:
            grid[-1, j] = r.within.auc_two_sided
    fig = Figure(figsize=(1.0 * len(families) + 2.8, 0.45 * grid.shape[0] + 1.8))
    ax = fig.add_subplot()
    image = ax.imshow(grid, cmap="viridis", vmin=0.5, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(families)), families, rotation=30, ha="right")
    ax.set_yticks(range(grid.shape[0]), [*detectors, WITHIN])
    for (i, j), value in np.ndenumerate(grid):
        if np.isfinite(value):
            color = "k" if value > 0.75 else "w"  # dark text on the bright end of viridis
            label = f"{value:.2f}{marks[i, j]}"
            ax.text(j, i, label, ha="center", va="center", color=color, fontsize=7)
    ax.axhline(len(detectors) - 0.5, color="white", lw=2)
    fig.colorbar(image, ax=ax, label="two-sided AUC (0.5: chance)")
    ax.set_title("Detectors judged on a family they never saw (* inverted)")
    fig.tight_layout()
    return fig


def write_report(
    report: CrossFamilyReport, name: str, payload: Mapping[str, Any], directory: str | Path
) -> list[Path]:
    """``cross-family.md`` (tables and heat map), ``cross-family.png`` and
    ``cross-family.json`` (``payload``, the command's JSON)."""
    return write_figure_report(
        directory,
        "cross-family",
        "Detectors judged leave-one-family-out",
        markdown(report, name),
        heatmap(report),
        dict(payload),
    )
