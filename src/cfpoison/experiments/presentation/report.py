"""The report of a sweep: one document rendered as Markdown and as a self-contained HTML page.

It holds the figures (the HTML embeds them as base64 PNG), a table per metric of mean, sample
standard deviation (``one seed`` where there is none), min and max over seeds, the seed-noise
floor (a value's ratio to it, or :data:`UNRESOLVED` below
:data:`~cfpoison.models.measures.FLOOR_RESOLUTION`), the data checksums, the exact sweep and
cell configs, package versions and run times. Every number comes from the stored cells passed
in; ``report.json`` beside the pages holds the same aggregates unrounded.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import html
import json
import math
import os
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cfpoison import __version__
from cfpoison.attacks.engine import count_untrustworthy
from cfpoison.experiments.presentation.figures import METRIC_LABELS
from cfpoison.experiments.presentation.tables import (
    Point,
    aggregate,
    panel_rows,
    panel_title,
    shown_curves,
    summary_of,
)
from cfpoison.experiments.sweeps.spec import (
    Cell,
    PlotSpec,
    SweepSpec,
    flatten,
    lookup,
    varying_fields,
)
from cfpoison.experiments.sweeps.store import StoredCell
from cfpoison.io import atomic_write, write_json
from cfpoison.models.measures import FLOOR_RESOLUTION, floor_ratio


def _short_sci(value: float) -> str:
    """``1e-3`` for 0.001."""
    mantissa, exponent = f"{value:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


#: How a report says that a noise floor is below :data:`FLOOR_RESOLUTION` (no ratio to it).
UNRESOLVED = f"floor unresolved (< {_short_sci(FLOOR_RESOLUTION)})"


@dataclasses.dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclasses.dataclass(frozen=True)
class Para:
    text: str


@dataclasses.dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclasses.dataclass(frozen=True)
class Image:
    png: Path
    svg: Path
    alt: str


@dataclasses.dataclass(frozen=True)
class Code:
    text: str
    summary: str = ""  # non-empty: folded under this summary


Block = Heading | Para | Table | Image | Code


def fmt(value: float | None) -> str:
    """Numbers in tables: four significant digits (``n/a`` for a missing or NaN value)."""
    return "n/a" if value is None or value != value else f"{value:.4g}"


def floor_note(value: float, floor: float) -> str:
    """``value`` in units of its noise ``floor`` (``2.50x the floor``), or :data:`UNRESOLVED`."""
    ratio = floor_ratio(value, floor)
    return f"{ratio:.2f}x the floor" if math.isfinite(ratio) else UNRESOLVED


def resolved(floor: float) -> bool:
    """Whether a noise floor is resolved (a ratio to it is defined)."""
    return math.isfinite(floor_ratio(1.0, floor))


@dataclasses.dataclass(frozen=True)
class ReportInput:
    """Everything a report is made of (see :func:`build`)."""

    title: str
    spec: SweepSpec
    plot: PlotSpec
    cells: Sequence[Cell]
    rows: Sequence[StoredCell]
    figures: Sequence[tuple[Path, Path]]
    provenance: Sequence[dict[str, Any]] = ()
    wall_seconds: float | None = None
    notes: Sequence[str] = ()
    failures: Mapping[str, str] = dataclasses.field(default_factory=dict)  # key -> error
    extra: Sequence[Block] = ()  # placed after the figures
    executed_on: str | None = None  # where the last run computed its cells (None: none)


def build(inp: ReportInput) -> tuple[list[Block], dict[str, Any]]:
    """The report's blocks and its machine-readable aggregates."""
    stored = {row.key for row in inp.rows}
    missing = [cell for cell in inp.cells if cell.key not in stored]
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    blocks: list[Block] = [
        Heading(inp.title, 1),
        Para(
            f"cfpoison {__version__}, generated {now}. {len(inp.rows)} of {len(inp.cells)} cells "
            f"stored" + (f"; {len(missing)} missing (failed or not yet run)." if missing else ".")
        ),
        *(Para(note) for note in inp.notes),
    ]
    summary: dict[str, Any] = {"cells": len(inp.cells), "stored": len(inp.rows), "metrics": {}}
    blocks += _untrustworthy_blocks(inp.rows, summary)
    for png, svg in inp.figures:
        blocks.append(Image(png, svg, inp.title))
    readings = panel_readings(inp.rows, inp.plot)
    if readings:
        summary["readings"] = readings
        blocks += [
            Heading("Reading the panels"),
            Para(
                "Written from the stored numbers below (not by hand): each metric at the "
                "largest x, mean and standard deviation over seeds."
            ),
            *(Para(text) for text in readings),
        ]
    blocks += inp.extra
    for metric in inp.plot.metrics:
        table, points = _metric_table(inp.rows, inp.plot, metric)
        blocks += [Heading(f"{metric}: mean over seeds"), table]
        summary["metrics"][metric] = points
    blocks += _floor_blocks(inp.rows, inp.plot, summary)
    if missing:
        blocks += [
            Heading("Missing cells"),
            Para("Not in the store: they failed in the last run (error below) or never ran."),
            _missing_table(inp.cells, missing, inp.failures),
        ]
    blocks += _provenance_blocks(inp.provenance)
    blocks += _time_blocks(inp.rows, inp.plot, inp.wall_seconds, inp.executed_on, summary)
    blocks += _version_blocks(inp.rows)
    blocks += [
        Heading("Configs"),
        Para(
            "The sweep as run (file and flags merged); a cell's key is the SHA-256 of its config."
        ),
        Code(inp.spec.to_json(), "sweep"),
        Code(
            json.dumps({c.key: c.config for c in inp.cells}, indent=2, sort_keys=True),
            f"all {len(inp.cells)} cell configs",
        ),
    ]
    return blocks, summary


def panel_readings(rows: Sequence[StoredCell], plot: PlotSpec) -> list[str]:
    """One paragraph per panel: for each metric, the curves drawn (:func:`shown_curves`) at
    the largest x, against the noise floor (ratio, and at how many x each clears it) or the
    clean model (change), strongest first, with a warning when the first two are closer than
    their spread over seeds."""
    series = {metric: aggregate(rows, plot, metric) for metric in plot.metrics}
    panels = list(dict.fromkeys(p for by_panel in series.values() for p in by_panel))
    readings = []
    for panel in panels:
        cells = panel_rows(rows, plot, panel)
        sentences = [
            _reading(cells, plot, metric, shown_curves(cells, plot, series[metric][panel]))
            for metric in plot.metrics
            if series[metric].get(panel)
        ]
        head = f"Panel {panel_title(plot, panel)}." if plot.panel else ""
        readings.append(" ".join([head, *sentences]).strip())
    return readings


def _reading(
    cells: Sequence[StoredCell], plot: PlotSpec, metric: str, curves: dict[Any, list[Point]]
) -> str:
    x = max(p.x for points in curves.values() for p in points)
    at = {c: p for c, points in curves.items() for p in points if p.x == x}
    floor = summary_of(cells, plot.floors.get(metric))
    reference = summary_of(cells, plot.references.get(metric))
    label = METRIC_LABELS.get(metric, metric)
    where = f"{label[0].upper()}{label[1:]} at x = {x:g} ({plot.x_label})"

    def shown(curve: Any) -> str:
        p = at[curve]
        spread = f" ± {fmt(p.std)}" if p.n > 1 else " (one seed)"
        text = f"{curve} {fmt(p.mean)}{spread}"
        if floor is not None and resolved(floor.mean):
            text += f" ({floor_note(p.mean, floor.mean)})"
        elif reference is not None:
            text += f" ({p.mean - reference.mean:+.3g} from the clean model)"
        return text

    if floor is not None:
        order = sorted(at, key=lambda c: -at[c].mean)
        context = f"noise floor {fmt(floor.mean)}"
        if not resolved(floor.mean):
            context += f", {UNRESOLVED}: no ratio to it"
    elif reference is not None:
        order = sorted(at, key=lambda c: -abs(at[c].mean - reference.mean))
        context = f"clean model {fmt(reference.mean)}"
    else:
        order, context = sorted(at, key=lambda c: -at[c].mean), ""
    text = f"{where}: {context}{'; ' if context else ''}{', '.join(map(shown, order))}."
    if floor is not None and resolved(floor.mean):
        clears = [
            f"{c} at {sum(p.mean > floor.mean for p in curves[c])} of {len(curves[c])}"
            for c in order
        ]
        text += f" Above the floor: {', '.join(clears)} x values."
    if len(order) > 1:
        first, second = at[order[0]], at[order[1]]
        verb = "largest" if floor is not None or reference is None else "moved most"
        text += f" {order[0]} {verb}"
        gap = abs(first.mean - second.mean)
        if gap <= max(first.std, second.std):
            text += f", but within one standard deviation of {order[1]}"
        text += "."
    return text


def _metric_table(
    rows: Sequence[StoredCell], plot: PlotSpec, metric: str
) -> tuple[Table, list[dict[str, Any]]]:
    headers = (
        *(name.split(".")[-1] for name in plot.panel),
        plot.curve.split(".")[-1],
        plot.x_label,
        "n",
        "mean",
        "std",
        "min",
        "max",
    )
    lines: list[tuple[str, ...]] = []
    points: list[dict[str, Any]] = []
    for panel, curves in aggregate(rows, plot, metric).items():
        for curve, series in curves.items():
            for p in series:
                lines.append(
                    (
                        *(str(v) for v in panel),
                        str(curve),
                        f"{p.x:g}",
                        str(p.n),
                        fmt(p.mean),
                        fmt(p.std) if p.n > 1 else "one seed",
                        fmt(p.low),
                        fmt(p.high),
                    )
                )
                points.append({"panel": list(panel), "curve": curve, **dataclasses.asdict(p)})
    return Table(headers, tuple(lines)), points


def _untrustworthy_blocks(rows: Sequence[StoredCell], summary: dict[str, Any]) -> list[Block]:
    """A paragraph counting the steps that followed a gradient outside tolerance (an
    unconverged fit or adjoint solve, flagged ``gradient_trustworthy`` False in a cell's
    history), per method; ``summary["untrustworthy_gradients"]`` holds the counts."""
    steps: dict[str, int] = {}
    cells: dict[str, int] = {}
    for row in rows:
        count = count_untrustworthy(row.history)
        if count:
            method = str(row.config.get("attack", {}).get("method", "cell"))
            steps[method] = steps.get(method, 0) + count
            cells[method] = cells.get(method, 0) + 1
    summary["untrustworthy_gradients"] = {
        m: {"steps": steps[m], "cells": cells[m]} for m in sorted(steps)
    }
    if not steps:
        return []
    parts = ", ".join(f"{m} {steps[m]} in {cells[m]}" for m in sorted(steps))
    return [
        Para(
            f"{sum(steps.values())} steps in {sum(cells.values())} of {len(rows)} cells followed "
            f"a gradient outside tolerance (an unconverged fit or adjoint solve; {parts} cells). "
            "Each is flagged in its cell's history (gradient_trustworthy false) and counted in "
            "the attack's untrustworthy_gradients; its step is taken, so read those cells "
            "with that in mind."
        )
    ]


def _floor_blocks(
    rows: Sequence[StoredCell], plot: PlotSpec, summary: dict[str, Any]
) -> list[Block]:
    if not plot.floors:
        return []
    blocks: list[Block] = [
        Heading("Seed-noise floor"),
        Para(
            "The same metric between two clean models fitted from different seeds. A shift "
            "below this floor is no evidence of an attack."
        ),
    ]
    unresolved = []
    lines = []
    summary["floors"] = {}
    for metric, floor in plot.floors.items():
        point = summary_of(rows, floor)
        if point is None:
            continue
        lines.append(
            (
                metric,
                floor,
                str(point.n),
                *(fmt(v) for v in (point.mean, point.std, point.low, point.high)),
            )
        )
        summary["floors"][floor] = dataclasses.asdict(point)
        if not resolved(point.mean):
            unresolved.append(f"{metric} ({fmt(point.mean)})")
    blocks.append(Table(("metric", "floor", "cells", "mean", "std", "min", "max"), tuple(lines)))
    if unresolved:
        blocks.append(
            Para(
                f"Noise {UNRESOLVED} for {', '.join(unresolved)}: the two clean fits agree to the "
                "solver's tolerance, which says nothing about how far an attack must move the "
                "model to be evidence, so no ratio to the floor is given."
            )
        )
    return blocks


def _missing_table(
    cells: Sequence[Cell], missing: Sequence[Cell], failures: Mapping[str, str]
) -> Table:
    """The missing cells by the config fields that vary across the sweep, and their error."""
    varying = varying_fields([c.config for c in cells])
    rows = tuple(
        (
            c.key[:12],
            *(str(flatten(c.config).get(k)) for k in varying),
            failures.get(c.key, "not run"),
        )
        for c in missing
    )
    return Table(("key", *varying, "error"), rows)


def _provenance_blocks(provenance: Sequence[dict[str, Any]]) -> list[Block]:
    if not provenance:
        return []
    headers = tuple(dict.fromkeys(k for item in provenance for k in item))
    rows = tuple(tuple(str(item.get(h, "")) for h in headers) for item in provenance)
    return [Heading("Data"), Table(headers, rows)]


def _time_blocks(
    rows: Sequence[StoredCell],
    plot: PlotSpec,
    wall: float | None,
    executed_on: str | None,
    summary: dict[str, Any],
) -> list[Block]:
    """Each cell's own time (a cell runs in one worker: its wall seconds there), summed, in
    hours too, and the last run's wall time with where it ran."""
    by_curve: dict[str, list[float]] = {}
    for row in rows:
        by_curve.setdefault(str(lookup(row.flat(), plot.curve)), []).append(row.seconds)
    total = sum(row.seconds for row in rows)
    summary["seconds"] = {"cells_total": total, "wall": wall, "executed_on": executed_on}
    text = f"Compute time of the stored cells: {total:.1f} s ({total / 3600:.2f} cell-hours) in all"
    if wall is not None:
        text += f"; wall time of the last run: {wall:.1f} s"
        if executed_on is not None:
            text += f", its cells computed on {executed_on}"
    lines = tuple(
        (curve, str(len(s)), f"{sum(s) / len(s):.2f}", f"{max(s):.2f}", f"{sum(s):.1f}")
        for curve, s in sorted(by_curve.items())
    )
    return [
        Heading("Run times"),
        Para(text + "."),
        Table((plot.curve.split(".")[-1], "cells", "mean s", "max s", "total s"), lines),
    ]


def _version_blocks(rows: Sequence[StoredCell]) -> list[Block]:
    distinct = {json.dumps(row.versions, sort_keys=True) for row in rows}
    machine = (
        f"Report written on {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}."
    )
    blocks: list[Block] = [Heading("Versions"), Para(machine)]
    for text in sorted(distinct):
        versions = json.loads(text)
        blocks.append(Table(("package", "version"), tuple(sorted(versions.items()))))
    if len(distinct) > 1:
        blocks.append(Para("Warning: the cells were computed with different package versions."))
    return blocks


# ---------------------------------------------------------------------- rendering
def to_markdown(blocks: Sequence[Block], base: Path) -> str:
    """Markdown; figures link to their files relative to ``base`` (the report's folder)."""
    out: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            out.append(f"{'#' * block.level} {block.text}")
        elif isinstance(block, Para):
            out.append(block.text)
        elif isinstance(block, Table):
            out.append(_md_table(block))
        elif isinstance(block, Image):
            png, svg = (os.path.relpath(p, base) for p in (block.png, block.svg))
            out.append(f"![{block.alt}]({png})\n\n([SVG]({svg}))")
        else:
            fence = f"```json\n{block.text}\n```"
            out.append(
                f"<details><summary>{block.summary}</summary>\n\n{fence}\n\n</details>"
                if block.summary
                else fence
            )
    return "\n\n".join(out) + "\n"


def _md_table(table: Table) -> str:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    rule = "|" + "|".join("---" for _ in table.headers) + "|"
    return "\n".join([line(table.headers), rule, *(line(r) for r in table.rows)])


_CSS = (
    "body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
    "table{border-collapse:collapse;margin:1em 0;display:block;overflow-x:auto}"
    "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}th{background:#eee}"
    "img{max-width:100%}pre{background:#f6f6f6;"
    "padding:1em;overflow:auto;max-height:40em}"
)


def to_html(blocks: Sequence[Block]) -> str:
    """A self-contained page: figures embedded as base64 PNG, no external resources."""
    esc = html.escape
    title = next((b.text for b in blocks if isinstance(b, Heading)), "cfpoison report")
    out = [
        "<!DOCTYPE html>",
        f'<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>',
        f"<style>{_CSS}</style></head><body>",
    ]
    for block in blocks:
        if isinstance(block, Heading):
            out.append(f"<h{block.level}>{esc(block.text)}</h{block.level}>")
        elif isinstance(block, Para):
            out.append(f"<p>{esc(block.text)}</p>")
        elif isinstance(block, Table):
            head = "".join(f"<th>{esc(h)}</th>" for h in block.headers)
            body = "".join(
                "<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in block.rows
            )
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif isinstance(block, Image):
            data = base64.b64encode(block.png.read_bytes()).decode("ascii")
            out.append(
                f'<figure><img alt="{esc(block.alt)}" src="data:image/png;base64,{data}"></figure>'
            )
        else:
            pre = f"<pre>{esc(block.text)}</pre>"
            out.append(
                f"<details><summary>{esc(block.summary)}</summary>{pre}</details>"
                if block.summary
                else pre
            )
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def write(inp: ReportInput, out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Write ``report.md``, ``report.html`` and ``report.json`` into ``out_dir``."""
    out_dir = Path(out_dir)
    blocks, summary = build(inp)
    paths = {
        "markdown": out_dir / "report.md",
        "html": out_dir / "report.html",
        "json": out_dir / "report.json",
    }
    with atomic_write(paths["markdown"]) as handle:
        handle.write(to_markdown(blocks, out_dir))
    with atomic_write(paths["html"]) as handle:
        handle.write(to_html(blocks))
    write_json(paths["json"], {"title": inp.title, **summary, "provenance": list(inp.provenance)})
    return paths
