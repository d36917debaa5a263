"""ARLib's protocol over several attack seeds: one table from the JSON of `promote --victims`.

Run, once per seed S (each seed draws its own split, targets and attack)::

    cfpoison promote --dataset ml-latest-small --seed S --victims benchmarks/implicit_panel.toml \
        --compare all --json promoteS.json
    python benchmarks/arlib_table.py promote0.json promote1.json promote2.json [--measure hr@50]

Prints, per victim (rows) and attack (columns), the lift of ``--measure`` as the mean over the
seeds with the half-width of its 95% t-interval over them, then each seed's robust / best
baseline ratio and the count of seeds where the lift clears the victim's floor (the lift's own
interval over victim seeds above the floor, as ``promote`` reports it).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats


def _half_width(values: list[float]) -> float:
    if len(values) < 2:
        return math.nan
    sem = float(np.std(values, ddof=1)) / math.sqrt(len(values))
    return float(stats.t.ppf(0.975, len(values) - 1)) * sem


def table(runs: list[dict[str, Any]], measure: str) -> str:
    rows = [
        {(r["victim"], r["attack"]): r for r in run["victims"]["rows"] if r["measure"] == measure}
        for run in runs
    ]
    victims = list(dict.fromkeys(v for v, _ in rows[0]))
    attacks = list(dict.fromkeys(a for _, a in rows[0]))
    seeds = [run["config"]["seed"] for run in runs]
    per_seed = ", ".join(map(str, seeds))
    head = f"| victim | {' | '.join(attacks)} | robust / best baseline per seed ({per_seed}) |"
    lines = [head, "|" + "---|" * (len(attacks) + 2)]
    for victim in victims:
        cells = []
        for attack in attacks:
            lifts = [r[victim, attack]["lift"] for r in rows]
            above = sum(r[victim, attack]["above_floor"] for r in rows)
            cells.append(f"{np.mean(lifts):+.4f} +- {_half_width(lifts):.4f} ({above}/{len(rows)})")
        ratios = []
        for r in rows:
            best = max(r[victim, a]["lift"] for a in attacks if a != "robust")
            robust = r[victim, "robust"]["lift"]
            ratios.append(f"{robust / best:.2f}" if best > 0 else "n/a")
        lines.append(f"| {victim} | {' | '.join(cells)} | {', '.join(ratios)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="promote --victims JSON files")
    parser.add_argument("--measure", default="hr@50", choices=("hr@10", "hr@50", "ndcg@50"))
    args = parser.parse_args()
    runs = [json.loads(path.read_text()) for path in args.runs]
    print(table(runs, args.measure))


if __name__ == "__main__":
    main()
