"""Attack benchmark: what one PGA iteration costs, in seconds and in ALS sweeps of the same problem.

Run (on a quiet machine; nothing else running)::

    python benchmarks/attack.py --datasets ml-latest-small,synthetic:ml-1m,synthetic:ml-20m \
        --iterations 10 --gradcheck ml-latest-small,synthetic:ml-1m --json attack.json

For each data set, side by side in one process: the training split (default preprocessing),
the clean ALS fit with the attack defaults (relative KKT residual 1e-5, Anderson-accelerated
sweeps), Algorithm 1's uniform start (``m' = ceil(alpha m)`` fake users, B = 100 random
items; alpha 3% below 10,000 users, 1% above), then ``--iterations`` PGA steps of an
availability attack with a constant step (exactly one warm refit per step), each timed as
refit + gradient (the adjoint MINRES solve of the Schur complement on numba products, to a
true residual of 1e-4), median and mean (the mean carries the rare refits that cross a
plateau), with each refit's sweeps and each solve's iterations. Beside them, the seconds of
one plain ALS sweep of the same poisoned problem (median of 5, same kernels and threads): an
iteration's cost in sweeps is the ratio.
``--gradcheck`` also compares the gradient at PGA's first iteration with the true one
(``cfpoison gradcheck``: refit to KKT 1e-10, adjoint to 1e-8, finite differences) and reports
the cosine. The peak resident memory of the process (Linux ``ru_maxrss``) covers every data set
run before it.
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

from cfpoison.attacks.engine import AttackConfig, attack_context
from cfpoison.attacks.gradcheck import check_gradient
from cfpoison.attacks.pga import run_pga
from cfpoison.attacks.threat import ThreatModel
from cfpoison.attacks.utility import UtilityConfig
from cfpoison.data.preprocess import PreprocessConfig, prepare
from cfpoison.data.registry import load_dataset
from cfpoison.learners import ALSConfig
from cfpoison.learners.base import Factors, serial_blas
from cfpoison.learners.factored import Engine, Problem, backend_module

#: Plain sweeps timed for the per-sweep cost.
SWEEPS_TIMED = 5


def peak_rss_gb() -> float:
    """Peak resident set size of this process in GB (``ru_maxrss`` is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def sweep_seconds(train: Any, fake: Any, clean: Any, threads: int) -> float:
    """Median seconds of one plain ALS sweep (users, then items) of ``train`` plus ``fake``,
    from the clean factors (a sweep's cost does not depend on the values)."""
    ops = backend_module("numba")
    ops.set_threads(threads)
    engine = Engine(Problem.build(train, fake), clean.lambda_u, clean.lambda_v, ops)
    item = clean.item_factors
    factors = Factors(
        clean.user_factors.copy(), item.copy(), np.zeros((fake.shape[0], item.shape[1]))
    )
    times = []
    for _ in range(SWEEPS_TIMED):
        tick = time.perf_counter()
        engine.update_users(factors)
        engine.update_items(factors)
        times.append(time.perf_counter() - tick)
    return statistics.median(times)


def run_one(dataset: str, args: argparse.Namespace) -> dict[str, Any]:
    data_dir = Path(os.environ["CFPOISON_DATA_DIR"]) if "CFPOISON_DATA_DIR" in os.environ else None
    tick = time.perf_counter()
    train, _ = prepare(load_dataset(dataset, data_dir), PreprocessConfig())
    load_seconds = time.perf_counter() - tick
    alpha = 0.03 if train.n_users < 10_000 else 0.01
    config = AttackConfig(
        learner=ALSConfig(threads=args.threads),
        threat=ThreatModel(alpha=alpha, items_per_user=100),
        utility=UtilityConfig(mu1=1.0, mu2=0.0),
        iterations=args.iterations,
        step_schedule="constant",
        seed=0,
    )
    tick = time.perf_counter()
    ctx = attack_context(train, config)
    clean_seconds = time.perf_counter() - tick
    output = run_pga(ctx)
    steps = output.history[1:]
    sweep = sweep_seconds(train, output.fake, ctx.clean, args.threads)
    iteration = statistics.median(h["seconds"] for h in steps)
    mean_iteration = statistics.fmean(h["seconds"] for h in steps)
    row: dict[str, Any] = {
        "dataset": dataset,
        "users": train.n_users,
        "items": train.n_items,
        "ratings": train.nnz,
        "alpha": alpha,
        "n_fake": ctx.n_fake,
        "load_seconds": load_seconds,
        "clean_fit_seconds": clean_seconds,
        "clean_fit_sweeps": getattr(ctx.clean, "n_sweeps", None),
        "sweep_seconds": sweep,
        "first_poisoned_fit_seconds": output.history[0]["retrain_seconds"],
        "iterations": len(steps),
        "iteration_seconds": iteration,
        "retrain_seconds": statistics.median(h["retrain_seconds"] for h in steps),
        "gradient_seconds": statistics.median(h["gradient_seconds"] for h in steps),
        "iteration_in_sweeps": iteration / sweep,
        "mean_iteration_seconds": mean_iteration,
        "mean_iteration_in_sweeps": mean_iteration / sweep,
        "fit_sweeps": [h.get("fit_sweeps") for h in steps],
        "solve_iterations": [h["solve_iterations"] for h in steps],
        "solve_residuals": [h["solve_residual"] for h in steps],
        "kkt_residuals": [h["kkt_residual"] for h in steps],
        "trustworthy": all(h["gradient_trustworthy"] for h in steps),
    }
    if dataset in args.gradcheck:
        check = check_gradient(train, config.replace(step_schedule="backtracking"), clean=ctx.clean)
        row["gradcheck_cos"] = check.cos
        row["gradcheck_fd_relative_error"] = check.fd_relative_error
    row["peak_rss_gb"] = peak_rss_gb()
    return row


def table(rows: list[dict[str, Any]]) -> str:
    """The Markdown table of RESULTS.md."""
    lines = [
        "| data set | users x items, ratings | m' | sweep s | PGA iteration s, median (refit +"
        " gradient) | in sweeps: median, mean | refit sweeps | MINRES its | cos (iteration 1)"
        " | peak RSS GB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cos = f"{r['gradcheck_cos']:.5f}" if "gradcheck_cos" in r else "-"
        lines.append(
            f"| {r['dataset']} | {r['users']:,} x {r['items']:,}, {r['ratings']:,} | {r['n_fake']}"
            f" | {r['sweep_seconds']:.4f} | {r['iteration_seconds']:.2f}"
            f" ({r['retrain_seconds']:.2f}"
            f" + {r['gradient_seconds']:.2f}) | {r['iteration_in_sweeps']:.0f},"
            f" {r['mean_iteration_in_sweeps']:.0f}"
            f" | {', '.join(str(i) for i in r['fit_sweeps'])}"
            f" | {', '.join(str(i) for i in r['solve_iterations'])} | {cos}"
            f" | {r['peak_rss_gb']:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="ml-latest-small,synthetic:ml-1m")
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--gradcheck", default="", help="data sets to run the gradient check on")
    parser.add_argument("--threads", type=int, default=0, help="numba threads (0 = all)")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    args.gradcheck = [d for d in args.gradcheck.split(",") if d]
    rows = []
    for dataset in args.datasets.split(","):
        with serial_blas():  # as the CLI runs: parallel work is numba's
            rows.append(run_one(dataset, args))
        print(json.dumps(rows[-1], indent=2), flush=True)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(f"\nmachine: {machine}\n\n{table(rows)}")
    if args.json is not None:
        args.json.write_text(json.dumps({"machine": machine, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
