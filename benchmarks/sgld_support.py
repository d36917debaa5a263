"""SGLD with dense fake rows against SGLD on each row's top B: Figure 1's own cells, side by side.

Run (one numba thread, as each worker of ``reproduce fig1 --scheduler local --workers 2``)::

    NUMBA_NUM_THREADS=1 python benchmarks/sgld_support.py --alphas 0.05,0.03,0.01 \\
        --seeds 0,1 --panels 1:0,1:-1,0:1,-1:1 --cache /tmp/sgld-cache

For each (panel, alpha, seed) of the chosen figure's grid, the stored SGLD cell runs twice, with
``sgld.support = dense`` (Algorithm 2 as printed) and ``top-b`` (the default), in this process,
timed in CPU seconds (``time.process_time``). Printed per cell: CPU seconds, the RMSE shift on
unseen entries and the target's mean shift (stars), and the ratios top-b / dense. Clean fits
come from the shared-fit cache (the first cell of a cold cache also pays for them).
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path
from typing import Any

from cfpoison.experiments.paper.figures_1_2 import figure_parts
from cfpoison.experiments.sweeps.execute import execute_cell
from cfpoison.experiments.sweeps.runners import RunContext, cells_of
from cfpoison.learners.base import serial_blas

SUPPORTS = ("dense", "top-b")


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--figure", default="fig1", choices=("fig1", "fig2"))
    parser.add_argument("--part", default=None, help="fig2-subset or fig2-full (fig2 only)")
    parser.add_argument("--dataset", default="ml-latest-small")
    parser.add_argument("--alphas", type=floats, default=[0.05, 0.03, 0.01])
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--panels", default="1:0", help="mu1:mu2 pairs, comma-separated")
    parser.add_argument("--cache", type=Path, required=True, help="shared-fit cache folder")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    parts = {p.name: p for p in figure_parts(args.figure, dataset=args.dataset)}
    cells = cells_of(parts[args.part or next(iter(parts))].spec)
    context = RunContext(threads=1, cache_dir=str(args.cache))
    panels = [tuple(float(x) for x in pair.split(":")) for pair in args.panels.split(",")]
    rows: list[dict[str, Any]] = []
    for mu in panels:
        for alpha in args.alphas:
            for seed in (int(s) for s in args.seeds.split(",")):
                cell = next(
                    c
                    for c in cells
                    if c.config["attack"]["method"] == "sgld"
                    and c.config["attack"]["threat"]["alpha"] == alpha
                    and c.config["attack"]["seed"] == seed
                    and (c.config["attack"]["utility"]["mu1"], c.config["attack"]["utility"]["mu2"])
                    == mu
                )
                row: dict[str, Any] = {"panel": mu, "alpha": alpha, "seed": seed}
                for support in SUPPORTS:
                    config = copy.deepcopy(dict(cell.config))
                    config["attack"]["options"] = {
                        **config["attack"]["options"],
                        "support": support,
                    }
                    start = time.process_time()
                    metrics = execute_cell(f"{cell.key}-{support}", config, context).metrics
                    row[support] = {
                        "cpu": time.process_time() - start,
                        "rmse_shift_stars": metrics["rmse_shift_stars"],
                        "target_shift_stars": metrics["target_mean_after"]
                        - metrics["target_mean_before"],
                        "floor_stars": metrics["rmse_shift_noise_floor_stars"],
                    }
                dense, top = row["dense"], row["top-b"]
                row["ratios top-b / dense"] = {
                    "cpu": top["cpu"] / dense["cpu"],
                    "rmse_shift": top["rmse_shift_stars"] / dense["rmse_shift_stars"],
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
    total = {s: sum(r[s]["cpu"] for r in rows) for s in SUPPORTS}
    print(
        json.dumps({"cpu seconds": total, "ratio top-b / dense": total["top-b"] / total["dense"]})
    )
    if args.json:
        args.json.write_text(json.dumps({"cells": rows, "cpu seconds": total}, indent=1))


if __name__ == "__main__":
    with serial_blas():  # as the CLI and a sweep's workers run: the parallel work is numba's
        main()
