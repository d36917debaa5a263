"""The defense report: a Markdown table and a cost-benefit figure, written atomically.

Figure: one panel per attack; one marker per defense at ``x`` = the clean test RMSE increase
(%, the defense's cost on unpoisoned data) and ``y`` = the share of the attack's RMSE shift
above the seed-noise floor that the defense removes (``shift_removed`` of
:mod:`cfpoison.experiments.defense_grid`), shown where the undefended shift is at least
:data:`CLEAR` times the floor (attacks with no such row have no panel; attacks made for one
defense, the ``adaptive`` records of :func:`cfpoison.experiments.defense_grid.adaptive_rows`,
have their own table, :func:`adaptive_table`, and no panel). The dashed lines mark the goal:
``y >= 0.8`` at ``x <= 1``.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from cfpoison.io import atomic_write

CLEAR = 1.2  # a share removed is shown where the undefended shift is >= 1.2 x the floor
LOWEST = -1.0  # y-axis floor: removing "-100%" means doubling the excess shift
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p")


def _num(value: Any, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _clear(row: Mapping[str, Any]) -> bool:
    """Whether the undefended shift clears the floor by :data:`CLEAR` (else a share of its
    excess is noise: a 0.0003 excess turns any small change into thousands of percent)."""
    return bool(row["rmse_shift_undefended"] >= CLEAR * row["rmse_shift_noise_floor"])


def _removed(row: Mapping[str, Any]) -> str:
    """The share removed; a defense that moves the model further than the attack did says
    so in shifts, not as a share below -100%."""
    if row["shift_removed"] is None or not _clear(row):
        return "~floor"
    if row["shift_removed"] < 0:
        return f"none: shift {row['rmse_shift'] / row['rmse_shift_undefended']:.1f}x undefended"
    return f"{100 * row['shift_removed']:.0f}%"


def table(result: Mapping[str, Any]) -> str:
    """The defense x attack table in Markdown (shifts on the shifted scale, RMSE in stars)."""
    clean = result["clean"]
    lines = [
        "Shifts: footnote 4's RMSE on the real users' unseen entries (shifted scale) against "
        "the clean undefended model; removed: the share of the undefended shift above the "
        "floor that the defense removes (~floor: the undefended shift is under 1.2 x the "
        "floor, too close for a share); defense alone: the defended model on clean data; "
        "through defense: the defended model on poisoned against on clean data.",
        "",
        f"Clean ALS: test RMSE {clean['test_rmse']:.4f}; seed-noise floor of the RMSE shift "
        f"{clean['rmse_shift_noise_floor']:.4f}.",
        "",
        "| attack | defense | shift undefended | shift defended | removed | defense alone | "
        "through defense (its floor) | push undef. / def. (stars) | "
        "test RMSE clean: defended (change) | fakes removed | real removed | s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["defenses"]:
        flag = "" if row["converged"] else " (unconverged)"
        lines.append(
            f"| {row['attack']} | {row['name']}{flag} | {_num(row['rmse_shift_undefended'])} | "
            f"{_num(row['rmse_shift'])} | {_removed(row)} | "
            f"{_num(row['rmse_shift_defense_alone'])} | {_num(row['rmse_shift_attack'])} "
            f"({_num(row['rmse_shift_noise_floor_defended'])}) | "
            f"{row['target_push_undefended']:+.3f} / "
            f"{row['target_push']:+.3f} | {row['test_rmse_clean_defended']:.4f} "
            f"({row['test_rmse_increase_pct']:+.2f}%) | {row['removed_fake']}/{row['n_fake']} | "
            f"{row['removed_real']} ({100 * row['removed_real_fraction']:.1f}%) | "
            f"{row['seconds']:.1f} |"
        )
    if result.get("adaptive"):
        lines += ["", *adaptive_table(result["adaptive"]).splitlines()]
    return "\n".join(lines) + "\n"


def _share(value: Any) -> str:
    return "n/a" if value is None else f"{100 * value:.0f}%"


def adaptive_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The attacker who knows the defense
    (:func:`cfpoison.experiments.defense_grid.adaptive_rows`)."""
    lines = [
        "Adaptive attacker: PGA against the defended model (adaptive: through its implicit "
        "gradients; for detect-and-remove, projected under the detector's threshold after "
        "every step) and PGA projected after the attack (evade), each against its own "
        "defense only. removed: the share of PGA's undefended shift above the floor that the "
        "defense removes; surviving: adaptive removed / PGA removed (the share of the "
        "defense's benefit that survives).",
        "",
        "| defense | attacker | shift undefended: PGA / adaptive | shift defended: PGA / "
        "adaptive | floor (defended) | through defense: PGA / adaptive | removed: PGA / "
        "adaptive | surviving | fakes removed: PGA / adaptive | attack s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['defense']} | {row['kind']} | {_num(row['rmse_shift_undefended'])} / "
            f"{_num(row['rmse_shift_undefended_adaptive'])} | {_num(row['rmse_shift'])} / "
            f"{_num(row['rmse_shift_adaptive'])} | {_num(row['rmse_shift_noise_floor'])} "
            f"({_num(row['rmse_shift_noise_floor_defended'])}) | "
            f"{_num(row['rmse_shift_attack'])} / {_num(row['rmse_shift_attack_adaptive'])} | "
            f"{_share(row['shift_removed'])} / {_share(row['shift_removed_adaptive'])} | "
            f"{_share(row['benefit_surviving'])} | {row['removed_fake']} / "
            f"{row['removed_fake_adaptive']} of {row['n_fake']} | "
            f"{row['seconds_attack_adaptive']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def figure(rows: Sequence[Mapping[str, Any]]) -> Figure:
    """The cost-benefit figure of the module docstring."""
    attacks = list(dict.fromkeys(r["attack"] for r in rows))
    attacks = [a for a in attacks if any(_clear(r) for r in _of(rows, a))]
    defenses = list(dict.fromkeys(r["name"] for r in rows))
    n = max(1, len(attacks))
    fig = Figure(figsize=(4.0 * n, 3.8), layout="constrained")
    axes = fig.subplots(1, n, squeeze=False)[0]
    for ax, attack in zip(axes, attacks, strict=False):
        for row in _of(rows, attack):
            if row["shift_removed"] is None or not _clear(row):
                continue
            i = defenses.index(row["name"])
            ax.plot(
                row["test_rmse_increase_pct"],
                row["shift_removed"],
                marker=MARKERS[i % len(MARKERS)],
                color=f"C{i % 10}",
                linestyle="none",
                label=row["name"],
            )
        hidden = sum(1 for r in _of(rows, attack) if (r["shift_removed"] or 0) < LOWEST)
        if hidden:
            ax.text(0.02, 0.02, f"{hidden} below {LOWEST:.0%} not shown", transform=ax.transAxes)
        ax.set_ylim(LOWEST, 1.05)
        ax.axhline(0.8, color="black", linestyle="--", lw=1)
        ax.axvline(1.0, color="black", linestyle="--", lw=1)
        ax.set_title(attack)
        ax.set_xlabel("clean test RMSE increase (%)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("shift above the floor removed")
    handles, labels = [], []
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncol=3, fontsize="small")
    return fig


def _of(rows: Sequence[Mapping[str, Any]], attack: str) -> list[Mapping[str, Any]]:
    return [r for r in rows if r["attack"] == attack]


def write_report(result: Mapping[str, Any], directory: str | Path) -> list[Path]:
    """Write ``defenses.md`` (the table) and ``cost-benefit.png``; return the paths."""
    directory = Path(directory)
    md, png = directory / "defenses.md", directory / "cost-benefit.png"
    buffer = io.BytesIO()
    made = {row["adaptive_attack"] for row in result.get("adaptive", [])}
    rows = [row for row in result["defenses"] if row["attack"] not in made]
    figure(rows).savefig(buffer, format="png", dpi=120)
    with atomic_write(md) as handle:
        handle.write("# Defenses: cost and benefit\n\n" + table(result))
        handle.write(f"\n![cost and benefit]({png.name})\n")
    with atomic_write(png, "wb") as handle:
        handle.write(buffer.getvalue())
    return [md, png]
