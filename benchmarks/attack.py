"""Attack benchmark: seconds per PGA iteration, split into retraining and gradient.

Run::

    python benchmarks/attack.py --dataset synthetic:ml-20m \
        --alpha 0.01 --iterations 2 --json out.json

For one data set: generate or load it, fit the clean ALS model, draw Algorithm 1's uniform
start (``m' = ceil(alpha m)`` fake users, B random items each), fit the poisoned model warm
from the clean one, then run ``--iterations`` PGA steps of an availability attack
(``mu1 = 1``) through :func:`cfpoison.attacks.pga.run_pga`, which times each step's gradient
(the adjoint MINRES solve on Hessian-vector products plus the utility's low-rank gradient)
and its warm-started refits. The peak resident memory of the process is reported (Linux
``ru_maxrss``), which covers the data set, its CSC copy and every temporary.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from cfpoison.attacks.engine import AttackConfig, AttackContext
from cfpoison.attacks.metrics import fit_learner
from cfpoison.attacks.pga import run_pga
from cfpoison.attacks.threat import ThreatModel, grid_values
from cfpoison.attacks.utility import UtilityConfig, build_utility
from cfpoison.data.registry import load_dataset
from cfpoison.learners import ALSConfig


def peak_rss_gb() -> float:
    """Peak resident set size of this process in GB (``ru_maxrss`` is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def run(args: argparse.Namespace) -> dict[str, Any]:
    data_dir = Path(os.environ["CFPOISON_DATA_DIR"]) if "CFPOISON_DATA_DIR" in os.environ else None
    tick = time.perf_counter()
    train = load_dataset(args.dataset, data_dir, download=False)
    load_seconds = time.perf_counter() - tick
    config = AttackConfig(
        learner=ALSConfig(rank=args.rank, threads=args.threads),
        threat=ThreatModel(alpha=args.alpha, items_per_user=args.items_per_user),
        utility=UtilityConfig(mu1=1.0, mu2=0.0),
        gradient=args.gradient,
        iterations=args.iterations,
        step_schedule="constant",
        seed=0,
    )
    tick = time.perf_counter()
    clean = fit_learner(config.learner, train)
    clean_seconds = time.perf_counter() - tick
    rng = np.random.default_rng(config.seed)
    utility = build_utility(config.utility, train, clean.user_factors, clean.item_factors, rng)
    n_fake = config.threat.n_fake(train.n_users)
    grid = grid_values(train.scale, config.threat.max_rating)
    ctx = AttackContext(train, config, clean, utility, n_fake, grid, rng, progress=False)
    output = run_pga(ctx)
    steps = output.history[1:]
    return {
        "dataset": args.dataset,
        "users": train.n_users,
        "items": train.n_items,
        "ratings": train.nnz,
        "n_fake": n_fake,
        "items_per_user": args.items_per_user,
        "rank": args.rank,
        "gradient": args.gradient,
        "threads": args.threads,
        "load_seconds": load_seconds,
        "clean_fit_seconds": clean_seconds,
        "clean_fit_sweeps": getattr(clean, "n_sweeps", None),
        "first_poisoned_fit_seconds": output.history[0]["retrain_seconds"],
        "iterations": len(steps),
        "iteration_seconds": statistics.median(h["seconds"] for h in steps),
        "retrain_seconds": statistics.median(h["retrain_seconds"] for h in steps),
        "gradient_seconds": statistics.median(h["gradient_seconds"] for h in steps),
        "solver_iterations": [h["solver_iterations"] for h in steps],
        "solver_residuals": [h["solver_residual"] for h in steps],
        "utility_history": [h["utility"] for h in output.history],
        "peak_rss_gb": peak_rss_gb(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="synthetic:ml-20m")
    parser.add_argument("--alpha", type=float, default=0.01)
    parser.add_argument("--items-per-user", type=int, default=100)
    parser.add_argument("--rank", type=int, default=10)
    parser.add_argument("--gradient", choices=("exact", "paper"), default="exact")
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="numba threads (0 = all)")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    text = json.dumps(run(args), indent=2)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
