"""Figure 1 cells with their adjoint solves counted: CPU seconds, MINRES iterations, capped solves.

Each CELL is ``method:alpha:seed:mu2`` of the full Figure 1 grid on ml-latest-small, run as the
sweep runner runs it (one numba thread, serial BLAS). To compare two trees side by side on the
same machine state, run one per core::

    PYTHONPATH=/tmp/old/src NUMBA_NUM_THREADS=1 python benchmarks/solve_cells.py \\
        pga:0.05:0:0 sgld:0.05:0:0 > old.jsonl &
    NUMBA_NUM_THREADS=1 python benchmarks/solve_cells.py sgld:0.05:0:0 pga:0.05:0:0 > new.jsonl

(``/tmp/old`` a ``git worktree`` of the older commit). One JSON line per cell.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import cfpoison
import cfpoison.learners.hessian as hessian
from cfpoison.attacks.engine import AttackConfig, run_attack
from cfpoison.experiments.attack_runner import prepared
from cfpoison.experiments.paper.figures_1_2 import figure_parts
from cfpoison.experiments.sweeps.runners import cells_of
from cfpoison.learners.base import serial_blas

solves: list[tuple[int, bool]] = []
_solve = hessian.solve


def counted_solve(*args: Any, **kwargs: Any) -> hessian.SolveResult:
    result = _solve(*args, **kwargs)
    solves.append((result.iterations, result.converged))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cells", nargs="+", metavar="CELL", help="method:alpha:seed:mu2")
    args = parser.parse_args()
    hessian.solve = counted_solve  # FactorHessian.solve looks it up at call time
    cells = cells_of(figure_parts("fig1", dataset="ml-latest-small")[0].spec)
    for spec in args.cells:
        method, alpha, seed, mu2 = spec.split(":")
        cell = next(
            c
            for c in cells
            if c.config["attack"]["method"] == method
            and c.config["attack"]["utility"]["mu2"] == float(mu2)
            and c.config["attack"]["threat"]["alpha"] == float(alpha)
            and c.config["attack"]["seed"] == int(seed)
        )
        config = AttackConfig.from_dict(cell.config["attack"])
        config = config.replace(learner=config.learner.replace(threads=1))
        train, _ = prepared(cell.config["dataset"], cell.config["preprocess"], None)
        solves.clear()
        with serial_blas():
            start = time.process_time()
            result = run_attack(train, config)
            cpu = time.process_time() - start
        row = {
            "tree": cfpoison.__file__.split("/src/")[0],
            "cell": spec,
            "cpu": round(cpu, 1),
            "solve_iterations": sum(i for i, _ in solves),
            "solves": len(solves),
            "capped": sum(not converged for _, converged in solves),
            "rmse_shift_shifted_scale": round(result.metrics["rmse_shift"], 4),
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
