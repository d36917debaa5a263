"""What one cell of the paper's figures costs: CPU seconds per method, to project a full run.

Run (one numba thread, as each worker of ``--scheduler local --workers 2`` on 2 cores)::

    NUMBA_NUM_THREADS=1 python benchmarks/figure_cells.py --figure fig1 --cache /tmp/fc \\
        --json fig1-cells.json

For the chosen part of the figure (full budget): the two clean fits every seed needs (the
clean model and the noise floor's, computed once into the shared-fit cache), then one cell
per method at ``--alpha`` in the availability panel (the integrity panel (0, 1) for the
shilling attacks, whose fake users then rate the target), seed 0, each timed in CPU seconds
of this process (``time.process_time``: robust to other jobs sharing the cores) and wall
seconds. The projection is ``points x sum over methods + (seeds + 1) x clean fit``, divided
by the number of workers.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from cfpoison.attacks.engine import AttackConfig
from cfpoison.experiments.attack_runner import data_checksum, prepared
from cfpoison.experiments.paper.figures_1_2 import METHODS, SHILLING, figure_parts
from cfpoison.experiments.shared_fits import clean_and_floor
from cfpoison.experiments.sweeps.cache import Cache
from cfpoison.experiments.sweeps.execute import execute_cell
from cfpoison.experiments.sweeps.runners import RunContext, cells_of
from cfpoison.learners.base import serial_blas


def timed(fn: Any) -> tuple[Any, dict[str, float]]:
    cpu, wall = time.process_time(), time.perf_counter()
    value = fn()
    return value, {"cpu": time.process_time() - cpu, "wall": time.perf_counter() - wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--figure", default="fig1", choices=("fig1", "fig2"))
    parser.add_argument("--part", default=None, help="fig2-subset or fig2-full (fig2 only)")
    parser.add_argument("--dataset", default="ml-latest-small")
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--methods", default=",".join(METHODS + SHILLING))
    parser.add_argument("--cache", type=Path, required=True, help="shared-fit cache folder")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    parts = {p.name: p for p in figure_parts(args.figure, dataset=args.dataset)}
    part = parts[args.part or next(iter(parts))]
    cells = cells_of(part.spec)
    context = RunContext(threads=1, cache_dir=str(args.cache))

    def cell(method: str) -> Any:
        mu2 = 1.0 if method in SHILLING else 0.0
        return next(
            c
            for c in cells
            if c.config["attack"]["method"] == method
            and c.config["attack"]["utility"]["mu2"] == mu2
            and c.config["attack"]["threat"]["alpha"] == args.alpha
            and c.config["attack"]["seed"] == 0
        )

    first = cells[0].config
    train, _ = prepared(first["dataset"], first["preprocess"], None)
    learner = AttackConfig.from_dict(first["attack"]).learner.replace(threads=1)
    data = {"sha256": data_checksum(first["dataset"], None)["sha256"]}
    data["preprocess"] = first["preprocess"]
    _, clean = timed(lambda: clean_and_floor(Cache(args.cache), data, learner, train))
    result: dict[str, Any] = {
        "part": part.name,
        "cells": len(cells),
        "users x items": [train.n_users, train.n_items],
        "two clean fits": clean,
    }
    print(json.dumps(result), flush=True)
    for method in args.methods.split(","):
        outcome, seconds = timed(
            lambda m=method: execute_cell(cell(m).key, dict(cell(m).config), context)
        )
        metrics = outcome.metrics
        result[method] = {
            **seconds,
            "rmse_shift_stars": metrics["rmse_shift_stars"],
            "floor_stars": metrics["rmse_shift_noise_floor_stars"],
        }
        print(method, json.dumps(result[method]), flush=True)
    methods = args.methods.split(",")
    points = sum(c.config["attack"]["method"] == methods[0] for c in cells)  # panel x alpha x seed
    seeds = len({c.config["attack"]["seed"] for c in cells})
    total = points * sum(result[m]["cpu"] for m in methods) + (seeds + 1) * clean["cpu"] / 2
    result["projected_cpu_seconds"] = total
    result["projected_wall_minutes"] = total / args.workers / 60
    print(json.dumps({k: result[k] for k in ("projected_cpu_seconds", "projected_wall_minutes")}))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    with serial_blas():  # as the CLI and a sweep's workers run: the parallel work is numba's
        main()
