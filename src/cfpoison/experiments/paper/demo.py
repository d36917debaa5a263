"""The demo: PGA, SGLD and uniform attacks at 3 % on the built-in synthetic data, and the
detectors' verdicts on each, as a three-cell sweep with its own figure and tables.

A detector *catches* an attack when its F1 among the ``m'`` most suspect users (``m'`` = the
number of fakes) is at least 0.5: more than half of the users it would flag are fake. It is
judged two-sided (``f1_two_sided``): fakes that score *lower* than every normal user are
caught all the same, marked ``(inverted)``. The learned detector catches an attack when its
out-of-fold two-sided AUC is at least ``CATCH_AUC``. The figure, the tables and the text use
this one definition; every sentence about the run is written from its stored numbers
(:class:`Verdict`), the settings from its cells' configs.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from cfpoison.experiments.presentation.figures import CURVE_COLORS
from cfpoison.experiments.presentation.report import (
    UNRESOLVED,
    Block,
    Heading,
    Para,
    Table,
    floor_note,
    fmt,
    resolved,
)
from cfpoison.experiments.sweeps.spec import Cell, PlotSpec, SweepSpec
from cfpoison.experiments.sweeps.store import StoredCell

METHODS = ("pga", "sgld", "uniform")
DISTRIBUTION_TESTS = ("length", "rating_histogram", "item_popularity")
CATCH_F1 = 0.5
CATCH_AUC = 0.9
#: The target panel's least half-height (stars), so that a small change looks small.
TARGET_SPAN = 0.25
RUNNER_NAME = "attack"  # the built-in name (sweeps.runners.BUILTIN_RUNNERS)


def demo_spec(iterations: int = 10, dataset: str = "synthetic") -> SweepSpec:
    """The demo's three cells (detectors on), plotted in stars."""
    base = {
        "dataset": dataset,
        "alpha": 0.03,
        "mu1": 1.0,
        "mu2": 1.0,
        "iterations": iterations,
        "detect": True,
    }
    grid = (
        {"method": ("pga", "uniform")},
        {"method": ("sgld",), "beta": (0.6,), "sgld.chains": (1,), "sgld.samples": (2,)},
    )
    plot = PlotSpec(
        panel=(),
        metrics=("rmse_shift_stars", "target_mean_after"),
        floors={"rmse_shift_stars": "rmse_shift_noise_floor_stars"},
    )
    return SweepSpec(runner=RUNNER_NAME, base=base, grid=grid, plot=plot)


def demo_notes(cells: Sequence[Cell]) -> tuple[str, ...]:
    """The settings, written from the cells' configs (the report's opening paragraph)."""
    attacks = {c.config["attack"]["method"]: c.config for c in cells}
    if not attacks:
        return ()
    first = next(iter(attacks.values()))
    attack = first["attack"]
    threat, utility, learner = attack["threat"], attack["utility"], attack["learner"]
    steps = sorted({c["attack"]["iterations"] for m, c in attacks.items() if m != "uniform"})
    targets = utility["targets"]
    target = (
        "one item drawn with the attack's seed (auto)"
        if targets == "auto"
        else f"items {', '.join(map(str, targets))}"
    )
    text = (
        f"Settings, from the cells' configs: the {first['dataset']} data set; "
        f"{100 * threat['alpha']:g} % fake users, each rating up to B = "
        f"{threat['items_per_user']} items ({threat['item_selection']} items); the utility "
        f"mu1 = {utility['mu1']:g} (availability: move every prediction) plus "
        f"mu2 = {utility['mu2']:g} (integrity: raise the target's mean predicted rating), "
        f"target: {target}; the model {learner['name'].upper()} of rank "
        f"{learner['rank']} (lambda_u = {learner['lambda_u']:g}, "
        f"lambda_v = {learner['lambda_v']:g}); attacks: {', '.join(attacks)}"
    )
    if steps:
        text += f", {' or '.join(map(str, steps))} steps (cfpoison demo --iterations T)"
    if "sgld" in attacks:
        options = attacks["sgld"]["attack"]["options"]
        text += (
            f"; SGLD in {options['mode']} mode, beta = {options['beta']:g}, "
            f"{options['chains']} chain(s), {options['samples']} sample(s)"
        )
    seeds = sorted({c.config["attack"]["seed"] for c in cells})
    text += f"; seed {', '.join(map(str, seeds))}. Ratings and RMSE are in stars."
    return (text,)


@dataclasses.dataclass(frozen=True)
class Verdict:
    """What one stored cell says about its attack, as every part of the report shows it.

    ``caught``: the detectors that catch it (``(inverted)`` marked, the learned one last),
    out of ``judged``; ``shift``, ``floor``: RMSE shift on unseen entries and its noise floor;
    ``before``, ``after``: the target's mean predicted rating (all in stars).
    """

    method: str
    caught: tuple[str, ...]
    judged: int
    shift: float
    floor: float
    before: float
    after: float
    targets: tuple[int, ...]
    n_fake: int
    seconds: float

    @property
    def count(self) -> str:
        """``5 of 9``."""
        return f"{len(self.caught)} of {self.judged}"


def caught_f1(scores: Mapping[str, Any]) -> bool:
    """Whether an unsupervised detector catches the attack (two-sided F1 >= CATCH_F1)."""
    return bool(scores["f1_two_sided"] >= CATCH_F1)


def caught_auc(learned: Mapping[str, Any] | None) -> bool:
    """Whether the learned detector catches it (two-sided AUC >= CATCH_AUC)."""
    return learned is not None and bool(learned["auc_two_sided"] >= CATCH_AUC)


def _marked(name: str, scores: Mapping[str, Any]) -> str:
    return f"{name} (inverted)" if scores.get("inverted") else name


def verdict_of(row: StoredCell) -> Verdict:
    """The :class:`Verdict` of one stored cell."""
    metrics = row.metrics
    detection: dict[str, Any] = metrics["detection"]
    detectors: dict[str, Any] = detection["detectors"]
    learned = detection.get("learned")
    caught = [_marked(d, s) for d, s in detectors.items() if caught_f1(s)]
    if caught_auc(learned):
        caught.append("learned")
    return Verdict(
        method=row.config["attack"]["method"],
        caught=tuple(caught),
        judged=len(detectors) + (learned is not None),
        shift=metrics["rmse_shift_stars"],
        floor=metrics["rmse_shift_noise_floor_stars"],
        before=metrics["target_mean_before"],
        after=metrics["target_mean_after"],
        targets=tuple(metrics["targets"]),
        n_fake=detection["n_fake"],
        seconds=row.seconds,
    )


def _by_method(rows: Sequence[StoredCell]) -> dict[str, StoredCell]:
    found = {row.config["attack"]["method"]: row for row in rows}
    return {m: found[m] for m in METHODS if m in found}


def draw_demo(rows: Sequence[StoredCell], title: str = "") -> Figure:
    """Four panels, each the report's own numbers: RMSE shift in stars (with the noise floor,
    or a note that it is unresolved), the change of the target's mean predicted rating in stars
    (at least +-TARGET_SPAN tall), each unsupervised detector's two-sided F1 (hatched where
    inverted; caught at CATCH_F1) and the learned detector's two-sided AUC (caught at
    CATCH_AUC). The legend says how many detectors catch each attack."""
    cells = _by_method(rows)
    verdicts = [verdict_of(row) for row in cells.values()]
    colors = [CURVE_COLORS.get(v.method, "tab:green") for v in verdicts]
    x = np.arange(len(verdicts))
    names = [v.method for v in verdicts]
    fig = Figure(figsize=(15, 4.2), layout="constrained")
    shift_ax, target_ax, f1_ax, learned_ax = fig.subplots(1, 4, width_ratios=(1, 1, 2.4, 1))
    shift_ax.bar(x, [v.shift for v in verdicts], color=colors)
    shift_ax.set_ylim(0, 1.25 * max([v.shift for v in verdicts] + [1e-3]))
    floor = float(np.mean([v.floor for v in verdicts])) if verdicts else math.nan
    if resolved(floor):
        shift_ax.axhline(floor, color="black", linestyle="--", lw=1, label="noise floor")
        shift_ax.legend(loc="upper right", fontsize="small")
    else:
        shift_ax.text(
            0.5,
            0.97,
            f"noise {UNRESOLVED}",
            transform=shift_ax.transAxes,
            ha="center",
            va="top",
            fontsize="small",
        )
    shift_ax.set(xticks=x, xticklabels=names, ylabel="stars", title="RMSE shift, unseen entries")
    changes = [v.after - v.before for v in verdicts]
    target_ax.bar(x, changes, color=colors)
    target_ax.axhline(0.0, color="black", lw=1)
    for i, change in enumerate(changes):
        target_ax.annotate(
            f"{change:+.3g}",
            (i, change),
            ha="center",
            va="bottom" if change >= 0 else "top",
            fontsize="small",
        )
    half = max([TARGET_SPAN, *(1.2 * abs(c) for c in changes)])
    target_ax.set_ylim(-half, half)
    before = float(np.mean([v.before for v in verdicts])) if verdicts else math.nan
    target_ax.set(
        xticks=x,
        xticklabels=names,
        ylabel="stars",
        title=f"target {_targets(verdicts)}: change of its mean\npredicted rating "
        f"(clean model {fmt(before)} stars)",
    )
    detectors = list(cells[names[0]].metrics["detection"]["detectors"]) if names else []
    width = 0.8 / max(1, len(verdicts))
    for i, row in enumerate(cells.values()):
        scores = row.metrics["detection"]["detectors"]
        positions = np.arange(len(detectors)) + (i - (len(verdicts) - 1) / 2) * width
        bars = f1_ax.bar(
            positions,
            [scores[d]["f1_two_sided"] for d in detectors],
            width,
            color=colors[i],
        )
        for bar, d in zip(bars, detectors, strict=True):
            if scores[d].get("inverted"):
                bar.set_hatch("//")
        learned = row.metrics["detection"].get("learned")
        auc = math.nan if learned is None else learned["auc_two_sided"]
        learned_ax.bar(i, auc, color=colors[i])
    f1_ax.axhline(CATCH_F1, color="black", linestyle="--", lw=1)
    f1_ax.set(ylim=(0, 1.45), title=f"two-sided F1 at k = m' (caught >= {CATCH_F1:g}; // inverted)")
    f1_ax.set_xticks(np.arange(len(detectors)), detectors, rotation=25)
    handles = [
        Patch(color=color, label=f"{v.method}: caught by {v.count}")
        for v, color in zip(verdicts, colors, strict=True)
    ]
    handles.append(Patch(facecolor="white", edgecolor="black", hatch="//", label="inverted"))
    f1_ax.legend(handles=handles, loc="upper center", fontsize="small", ncol=2)
    learned_ax.axhline(CATCH_AUC, color="black", linestyle="--", lw=1)
    learned_ax.set(
        xticks=x,
        xticklabels=names,
        ylim=(0, 1.05),
        title=f"learned detector:\n2-sided AUC (caught >= {CATCH_AUC:g})",
    )
    if title:
        fig.suptitle(title)
    return fig


def _targets(verdicts: Sequence[Verdict]) -> str:
    """``item 1107`` (``items 3, 7`` for several; the cells' own when they differ)."""
    found = sorted({t for v in verdicts for t in v.targets})
    return f"item{'s' if len(found) > 1 else ''} {', '.join(map(str, found))}"


def summary_blocks(rows: Sequence[StoredCell]) -> list[Block]:
    """What this run measured, in sentences written from its stored numbers."""
    cells = _by_method(rows)
    verdicts = sorted((verdict_of(r) for r in cells.values()), key=lambda v: -v.shift)
    if not verdicts:
        return []
    dataset = next(iter(cells.values())).config["dataset"]
    before = verdicts[0].before
    lines = [
        f"The target: {_targets(verdicts)} of the {dataset} data set (cfpoison reads ratings "
        f"only, so items have ids, no titles); the clean model's mean predicted rating of it "
        f"over the normal users is {fmt(before)} stars."
    ]
    for v in verdicts:
        names = ", ".join(v.caught) if v.caught else "none"
        lines.append(
            f"{v.method}: RMSE shift {fmt(v.shift)} stars on unseen entries "
            f"({floor_note(v.shift, v.floor)}); the target's mean predicted rating "
            f"{fmt(v.before)} -> {fmt(v.after)} stars ({v.after - v.before:+.3g}); "
            f"caught by {v.count} detectors ({names}); {v.n_fake} fake users; "
            f"the cell took {v.seconds:.1f} s."
        )
    strongest = verdicts[0]
    order = " > ".join(f"{v.method} {fmt(v.shift)}" for v in verdicts)
    text = f"By RMSE shift (stars): {order}"
    if strongest.shift > 0 and len(verdicts) > 1:
        parts = [f"{v.method} {v.shift / strongest.shift:.2f}x" for v in verdicts[1:]]
        text += f" ({', '.join(parts)} {strongest.method}'s)"
    by_change = sorted(verdicts, key=lambda v: v.before - v.after)
    changes = ", ".join(f"{v.method} {v.after - v.before:+.3g}" for v in by_change)
    lines.append(f"{text}. By the change of the target's rating (stars): {changes}.")
    per_detector = _catches_per_detector(cells.values())
    every = [d for d, n in per_detector.items() if n == len(verdicts)]
    never = [d for d, n in per_detector.items() if n == 0]
    lines.append(
        f"Detectors that catch all {len(verdicts)} attacks (either way round): "
        f"{', '.join(every) or 'none'}; that catch none: {', '.join(never) or 'none'}."
    )
    seeds = sorted({r.config["attack"]["seed"] for r in cells.values()})
    if len(rows) == len(cells):
        lines.append(
            f"One seed per attack (seed {', '.join(map(str, seeds))}): no spread over seeds "
            "is shown."
        )
    total = sum(v.seconds for v in verdicts)
    lines.append(
        f"The {len(verdicts)} cells took {total:.1f} s in all, summed over cells that may run "
        "side by side (the wall time of the last run is under Run times)."
    )
    return [Heading("What this run measured"), *(Para(line) for line in lines)]


def _catches_per_detector(rows: Iterable[StoredCell]) -> dict[str, int]:
    """Detector (the learned one included) -> how many of ``rows``' attacks it catches."""
    counts: dict[str, int] = {}
    for row in rows:
        detection = row.metrics["detection"]
        for name, scores in detection["detectors"].items():
            counts[name] = counts.get(name, 0) + caught_f1(scores)
        if detection.get("learned") is not None:
            counts["learned"] = counts.get("learned", 0) + caught_auc(detection["learned"])
    return counts


def verdict_table(rows: Sequence[StoredCell]) -> Table:
    """One line per attack: its measures, the tests' p-values and who catches it."""
    lines = []
    for row in _by_method(rows).values():
        v = verdict_of(row)
        detection: dict[str, Any] = row.metrics["detection"]
        learned = detection.get("learned") or {}
        tests = detection.get("distribution", {})
        lines.append(
            (
                v.method,
                str(v.n_fake),
                fmt(v.shift),
                fmt(v.floor),
                floor_note(v.shift, v.floor),
                fmt(v.before),
                fmt(v.after),
                f"{v.after - v.before:+.3g}",
                fmt(learned.get("auc_two_sided")),
                f"{detection.get('best_detector', '')} {fmt(detection.get('best_auc_two_sided'))}",
                *(fmt(tests.get(t, {}).get("pvalue")) for t in DISTRIBUTION_TESTS),
                fmt(detection["ttest_users"]["pvalue"]),
                fmt(detection["ttest_pvalue"]),
                v.count,
                ", ".join(v.caught) if v.caught else "none",
            )
        )
    headers = (
        "attack",
        "fakes",
        "RMSE shift (stars)",
        "noise floor (stars)",
        "shift / floor",
        "target before (stars)",
        "target after (stars)",
        "target change (stars)",
        "learned 2-sided AUC",
        "best (2-sided AUC)",
        "length p",
        "histogram p",
        "popularity p",
        "activity-matched p",
        "paper t-test p",
        "caught",
        "caught by",
    )
    return Table(headers, tuple(lines))


def detection_blocks(rows: Sequence[StoredCell]) -> list[Block]:
    """The run's summary, the verdicts table, and each detector's two-sided F1 and AUC."""
    cells = _by_method(rows)
    blocks: list[Block] = [
        *summary_blocks(rows),
        Heading("Verdicts"),
        Para(
            f"A detector catches an attack when its F1 among the m' most suspect users is at "
            f"least {CATCH_F1} (m' = the number of fakes), judged two-sided: fakes that score "
            "lower than the normal users are caught too, marked (inverted). The learned "
            "detector (gradient boosting on per-user features, trained on the real users "
            "against the labelled fakes, 5-fold out-of-fold AUC) catches at a two-sided AUC "
            f">= {CATCH_AUC}; 'caught' counts the detectors that catch an attack out of all "
            "judged (the unsupervised ones and the learned one); 'best' is the detector with "
            "the highest two-sided AUC. The length, histogram and popularity p-values compare "
            "the fakes with the real users (KS on profile lengths, chi-square on the rating "
            "histogram with a user-permutation p, KS on the mean log popularity of the rated "
            "items); the activity-matched t-test pairs each fake with real users of its "
            "activity; the paper's t-test (paired over items) measures profile length. A "
            "small p-value separates the fakes from the normal users."
        ),
        verdict_table(rows),
    ]
    if not cells:
        return blocks
    detectors = list(next(iter(cells.values())).metrics["detection"]["detectors"])
    f1_lines = tuple(
        (
            method,
            *(_shown(row.metrics["detection"]["detectors"][d], "f1_two_sided") for d in detectors),
        )
        for method, row in cells.items()
    )
    auc_lines = tuple(
        (
            method,
            *(_shown(row.metrics["detection"]["detectors"][d], "auc_two_sided") for d in detectors),
            _shown(row.metrics["detection"].get("learned") or {}, "auc_two_sided"),
        )
        for method, row in cells.items()
    )
    return [
        *blocks,
        Heading(f"Detectors: two-sided F1 at k = m' (caught at >= {CATCH_F1})", 3),
        Table(("attack", *detectors), f1_lines),
        Heading(
            f"Detectors: two-sided ROC AUC, max(AUC, 1 - AUC) (learned: caught at >= {CATCH_AUC})",
            3,
        ),
        Table(("attack", *detectors, "learned"), auc_lines),
    ]


def _shown(scores: Mapping[str, Any], measure: str) -> str:
    """A detector's measure, ``(inverted)`` marked."""
    return _marked(fmt(scores.get(measure)), scores)
