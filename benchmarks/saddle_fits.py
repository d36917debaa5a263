"""Fits that cross a saddle: sweeps and seconds of ALS fits to KKT 1e-5 on ml-latest-small.

Run (after ``python benchmarks/typical_session.py --out DIR``, whose profiles it adds)::

    python benchmarks/saddle_fits.py --profiles DIR [--json out.json]

Split seed 0, the ALS defaults but the rank. Cold fits: ranks 10 and 20 at initial seeds
8-10 clean (rank 20) and 1-3 (rank 10 clean, with ``robust.csv`` and ``uniform.csv``; rank
20 with ``robust.csv`` and ``pga.csv``), 18 in all. Warm refits: from the clean fit at the
same rank and seed, with ``robust.csv``, ``pga.csv`` or ``uniform.csv`` added, ranks 10 and
20, seeds 1-2, 12 in all. Reports each fit's sweeps (discarded extrapolations included),
seconds, objective and whether it converged, and the totals; ``--memory 0`` gives plain ALS
for comparison. The loop before the over-relaxed pairs (8fc62c6) measured 15,345 and 6,261
sweeps here (``benchmarks/RESULTS.md``, "Fits that cross a saddle").
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

from cfpoison.data.preprocess import PreprocessConfig, prepare
from cfpoison.data.profiles import read_profiles
from cfpoison.data.registry import load_dataset
from cfpoison.learners.als import ALSConfig, ALSLearner
from cfpoison.learners.base import caps_expected

COLD = (
    [(20, "none", s) for s in (8, 9, 10)]
    + [(10, p, s) for p in ("none", "robust", "uniform") for s in (1, 2, 3)]
    + [(20, p, s) for p in ("robust", "pga") for s in (1, 2, 3)]
)
WARM = [(r, p, s) for r in (10, 20) for p in ("robust", "pga", "uniform") for s in (1, 2)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=Path, required=True, help="typical session's --out")
    parser.add_argument("--memory", type=int, default=ALSConfig.anderson_memory)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    train, _ = prepare(load_dataset("ml-latest-small"), PreprocessConfig(seed=0))
    fakes = {"none": None}
    for name in ("robust", "pga", "uniform"):
        fakes[name] = read_profiles(args.profiles / f"{name}.csv", train)[1]
    report: dict[str, Any] = {"machine": platform.platform(), "memory": args.memory}
    for kind, cases in (("cold", COLD), ("warm", WARM)):
        fits = []
        for rank, profiles, seed in cases:
            config = ALSConfig(rank=rank, seed=seed, anderson_memory=args.memory)
            init = ALSLearner(config).fit(train).factors if kind == "warm" else None
            start = time.perf_counter()
            with caps_expected():  # a capped fit is reported below, not logged
                fit = ALSLearner(config).fit(train, init=init, fake=fakes[profiles])
            fits.append(
                {
                    "rank": rank,
                    "profiles": profiles,
                    "seed": seed,
                    "sweeps": fit.n_sweeps,
                    "seconds": time.perf_counter() - start,
                    "objective": fit.history[-1],
                    "converged": fit.converged,
                }
            )
        report[kind] = {
            "sweeps": sum(f["sweeps"] for f in fits),
            "seconds": sum(f["seconds"] for f in fits),
            "capped": sum(not f["converged"] for f in fits),
            "fits": fits,
        }
        print(
            f"{kind}: {len(fits)} fits, {report[kind]['sweeps']} sweeps, "
            f"{report[kind]['seconds']:.1f} s, {report[kind]['capped']} capped"
        )
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
