"""The transfer table as text (CLI) and Markdown, a heat map (attack x victim, shift / floor),
and :func:`write_report`, which writes them (and the JSON) atomically under a directory."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from cfpoison.io import write_figure_report
from cfpoison.victims.transfer import TransferResult

_HEADER = (
    "victim",
    "attack",
    "shift (95% CI)",
    "floor",
    "shift/floor",
    "target before -> after",
    "push (stars)",
    "hit@{k} before -> after",
    "test RMSE change",
    "shift / {baseline}'s",
    "p vs {baseline}",
)


def _num(value: float, digits: int = 4) -> str:
    return "nan" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _p(value: float | None) -> str:
    return "" if value is None else ("nan" if math.isnan(value) else f"{value:.2g}")


def _cells(row: dict[str, Any]) -> list[str]:
    p = versus = ""
    if "p_shift" in row:
        p = f"shift {_p(row['p_shift'])}, push {_p(row['p_push'])}"
        versus = f"{row['shift_vs_baseline']:.2f}"
    return [
        row["victim"],
        row["attack"],
        f"{_num(row['shift'])} +- {_num(row['shift_ci'])}",
        _num(row["floor"]),
        "undefined" if math.isnan(row["ratio"]) else f"{row['ratio']:.2f}",
        f"{_num(row['target_before'], 3)} -> {_num(row['target_after'], 3)}",
        f"{row['push']:+.3f} +- {_num(row['push_ci'], 3)}",
        f"{_num(row['hit_before'], 3)} -> {_num(row['hit_after'], 3)}",
        f"{row['rmse_test_change']:+.4f}",
        versus,
        p,
    ]


def _header(result: TransferResult) -> list[str]:
    k, baseline = result.config.top_k, result.baseline or "baseline"
    return [h.format(k=k, baseline=baseline) for h in _HEADER]


def notes(result: TransferResult) -> list[str]:
    """Seeds, the shift's method, skipped victims and unconverged fits, one line each."""
    seeds = ", ".join(str(s) for s in result.config.seeds)
    lines = [
        f"victim seeds {seeds}; RMSE shift (shifted scale) {result.shift_method}; "
        f"{int(100 * result.config.confidence)}% t-intervals over seeds; targets "
        + ", ".join(str(t) for t in result.targets),
    ]
    for v in result.victims:
        if v.skipped is not None:
            lines.append(f"skipped {v.spec.name}: {v.skipped}")
        elif v.unconverged:
            lines.append(
                f"NOT CONVERGED {v.spec.name}: {v.unconverged} of {v.fits} fits stopped at "
                "their iteration cap"
            )
        elif v.no_criterion:
            lines.append(f"{v.spec.name}: fixed number of epochs (no convergence test)")
    return lines


def text_table(result: TransferResult) -> str:
    """Aligned columns for the terminal, followed by the notes."""
    header = _header(result)
    if result.baseline is None:
        header = header[:-2]
    body = [_cells(r)[: len(header)] for r in result.rows()]
    widths = [max(len(x) for x in col) for col in zip(header, *body, strict=True)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in body]
    head = "  ".join(c.ljust(w) for c, w in zip(header, widths, strict=True))
    return "\n".join([head, *lines, "", *notes(result)])


def markdown(result: TransferResult) -> str:
    """A Markdown table and the notes."""
    header = _header(result)
    if result.baseline is None:
        header = header[:-2]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in result.rows():
        lines.append("| " + " | ".join(_cells(row)[: len(header)]) + " |")
    return "\n".join([*lines, "", *(f"* {n}" for n in notes(result))]) + "\n"


def heatmap(result: TransferResult) -> Figure:
    """Shift / floor for every attack (rows) on every victim that ran (columns)."""
    victims = [v.spec.name for v in result.victims if v.skipped is None]
    grid = np.full((len(result.attacks), len(victims)), np.nan)
    for row in result.rows():
        grid[result.attacks.index(row["attack"]), victims.index(row["victim"])] = row["ratio"]
    fig = Figure(figsize=(1.2 * len(victims) + 2.5, 0.6 * len(result.attacks) + 1.8))
    ax = fig.add_subplot()
    image = ax.imshow(grid, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(victims)), victims, rotation=30, ha="right")
    ax.set_yticks(range(len(result.attacks)), result.attacks)
    middle = np.nanmean([np.nanmin(grid), np.nanmax(grid)]) if np.isfinite(grid).any() else 0
    for (i, j), value in np.ndenumerate(grid):
        color = "k" if value > middle else "w"  # dark text on the bright end of viridis
        ax.text(j, i, f"{value:.2f}", ha="center", va="center", color=color, fontsize=8)
    fig.colorbar(image, ax=ax, label="RMSE shift / seed-noise floor")
    ax.set_title("Transfer: RMSE shift over the victim's own noise floor")
    fig.tight_layout()
    return fig


def write_report(result: TransferResult, directory: str | Path) -> list[Path]:
    """``transfer.md`` (table, notes, heat map), ``transfer.png`` and ``transfer.json``."""
    return write_figure_report(
        directory,
        "transfer",
        "Transfer to other victims",
        markdown(result),
        heatmap(result),
        result.to_dict(),
    )
