"""WRMF benchmark: our implicit ALS sweep against ``implicit``'s CPU ALS, and the attack step.

Run (``implicit`` is an optional extra)::

    python benchmarks/wrmf.py --threads 2 --rank 32 [--sweeps-only] [--json out.json]

Side by side in one process, on ml-latest-small binarised at ratings >= 4 and on the
synthetic ML-1M shape (``synthetic:ml-1m``, binarised the same way), same rank and threads:

* **seconds per sweep** (users then items), medians of ``--sweeps`` sweeps:

  - ours: the bare sweep (``kkt_tol = 0``, no Anderson: nothing measured), by differencing
    fits of 1 and ``1 + sweeps`` sweeps (setup excluded), and the sweep with the KKT pass a
    default fit makes after every sweep;
  - ``implicit.cpu.als.AlternatingLeastSquares`` with ``use_cg=False`` (exact Cholesky
    solves, what our sweep computes) and with its default ``use_cg=True`` (3 conjugate-
    gradient steps per row from the previous factors: cheaper, not exact), timed per
    iteration through its ``callback``, with one BLAS thread (as it asks; ours too). It works
    in float32 by default (``--implicit-dtype``); ours is float64. Its confidence is
    ``c = alpha' r`` where ours is ``1 + alpha r``, so it gets ``alpha' = 1 + alpha`` (the
    same objective on binary data; timing does not depend on it).

* **attack iteration**: ``--fake-share`` of the users as fake rows of ``--filler`` random
  items each at weight 1, fitted to the default ``kkt_tol``; one projected step on the
  integrity gradient of a random target (every fake weight moved by at most ``--step``,
  clipped to ``[0, 1]``); then the warm refit and one adjoint solve (tolerance
  ``--solve-tol``, Schur complement; the same solve by MINRES on the whole H for
  comparison), expressed in seconds and in bare sweeps of the same problem.

* **promotion iteration** (``--promotion-steps N``, 0 to skip): the promote command's own
  white-box attack (``method pga``: 1% fake users, B the median profile, 5 unpopular targets,
  covisitation start, vertex swaps with backtracking) for N steps against the clean fit; per
  step its seconds (gradient, swaps and every backtracking refit) and refit sweeps, and the
  seconds in bare sweeps of the same problem (the ``ours_sweep_seconds`` above). The robust
  default ascends on three surrogates: about three times this.

Prints one JSON object (and writes it with ``--json``); timings depend on the machine's load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from typing import Any

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from cfpoison.attacks.promotion import PromotionConfig, fit_implicit, promotion_profiles
from cfpoison.attacks.utility import Utility
from cfpoison.data.interactions import Interactions
from cfpoison.data.registry import load_dataset
from cfpoison.learners.adjoint import minres_solve
from cfpoison.learners.base import caps_expected
from cfpoison.learners.wrmf import WRMFConfig, WRMFLearner


def our_sweep(data: Interactions, config: WRMFConfig, sweeps: int, kkt: bool) -> float:
    """Seconds per sweep of ours: fits of 1 and ``1 + sweeps`` sweeps differenced."""
    measured = config.replace(anderson_memory=0, kkt_tol=1e-300 if kkt else 0.0)
    seconds = []
    with caps_expected():
        for count in (1, 1 + sweeps):
            start = time.perf_counter()
            WRMFLearner(measured.replace(max_sweeps=count)).fit(data)
            seconds.append(time.perf_counter() - start)
    return (seconds[1] - seconds[0]) / sweeps


def implicit_sweep(
    data: Interactions, config: WRMFConfig, sweeps: int, cg: bool, dtype: str
) -> float:
    """Median seconds per iteration of ``implicit``'s CPU ALS (its own per-epoch timing)."""
    from implicit.cpu.als import AlternatingLeastSquares

    times: list[float] = []
    with threadpool_limits(limits=1, user_api="blas"):  # as implicit asks
        model = AlternatingLeastSquares(
            factors=config.rank,
            regularization=config.lam,
            alpha=1.0 + config.alpha,
            dtype=np.dtype(dtype),
            use_cg=cg,
            iterations=sweeps,
            calculate_training_loss=False,
            num_threads=config.threads,
            random_state=config.seed,
        )
        model.fit(
            sp.csr_matrix(data.matrix),
            show_progress=False,
            callback=lambda _iteration, elapsed, _loss: times.append(elapsed),
        )
    return statistics.median(times)


def attack_iteration(
    data: Interactions, config: WRMFConfig, args: argparse.Namespace, sweep: float
) -> dict[str, Any]:
    """Warm refit after one projected gradient step on the fake rows, and one solve."""
    rng = np.random.default_rng(args.seed)
    m, n = data.matrix.shape
    m_fake = max(1, round(args.fake_share * m))
    cols = np.concatenate([rng.choice(n, args.filler, replace=False) for _ in range(m_fake)])
    indptr = np.arange(0, m_fake * args.filler + 1, args.filler)
    fake = sp.csr_array((np.ones(len(cols)), cols, indptr), shape=(m_fake, n))
    fake.sort_indices()
    start = time.perf_counter()
    fitted = WRMFLearner(config).fit(data, fake=fake)
    first_fit = time.perf_counter() - start
    clean_user, clean_item = fitted.user_factors.copy(), fitted.item_factors.copy()
    target = int(rng.integers(n))
    utility = Utility(0.0, 1.0, data.matrix, clean_user, clean_item, np.array([target]), np.ones(1))

    def gradient(learner: WRMFLearner, weights: sp.csr_array) -> dict[str, Any]:
        start = time.perf_counter()
        system = learner.adjoint_system(data.matrix, weights)
        built = time.perf_counter() - start
        _, grad_user, grad_item = utility.gradient(system.user, system.item)
        rhs = system.rhs(grad_user, grad_item)
        start = time.perf_counter()
        schur = system.solve(rhs, args.solve_tol, 5000)
        solve_seconds = time.perf_counter() - start
        start = time.perf_counter()
        whole = minres_solve(system.matvec, system.precondition, rhs, args.solve_tol, 5000)
        whole_seconds = time.perf_counter() - start
        return {
            "system": system,
            "z": schur.x,
            "build_seconds": built,
            "schur_iterations": schur.iterations,
            "schur_seconds": solve_seconds,
            "schur_residual": schur.relative_residual,
            "whole_iterations": whole.iterations,
            "whole_seconds": whole_seconds,
        }

    first = gradient(fitted, fake)
    step = first["system"].fake_gradient(first["z"], fake)
    moved = fake.copy()
    moved.data = np.clip(fake.data + args.step * step / np.abs(step).max(), 0.0, 1.0)
    start = time.perf_counter()
    refit = WRMFLearner(config).fit(data, init=fitted.factors, fake=moved)
    refit_seconds = time.perf_counter() - start
    second = gradient(refit, moved)
    cost = refit_seconds + second["build_seconds"] + second["schur_seconds"]
    return {
        "fake_rows": m_fake,
        "first_fit_sweeps": fitted.n_sweeps,
        "first_fit_seconds": first_fit,
        "refit_sweeps": refit.n_sweeps,
        "refit_seconds": refit_seconds,
        "refit_kkt": refit.kkt_residual(),
        **{key: value for key, value in second.items() if key not in ("system", "z")},
        "iteration_seconds": cost,
        "iteration_in_sweeps": cost / sweep,
        "first_step_schur_iterations": first["schur_iterations"],
        "first_step_whole_iterations": first["whole_iterations"],
    }


def promotion_iterations(
    data: Interactions, config: WRMFConfig, steps: int, seed: int, sweep: float
) -> dict[str, Any]:
    """``steps`` steps of the white-box promotion attack (module docstring), each in seconds,
    refit sweeps and bare sweeps of the same problem."""
    start = time.perf_counter()
    clean = fit_implicit(config, data)
    clean_seconds = time.perf_counter() - start
    attack = PromotionConfig(method="pga", learner=config, iterations=steps, seed=seed)
    _, _, history, _ = promotion_profiles(data, attack, clean)
    made = [
        {
            "accepted": h["accepted"],
            "swaps": h["swaps"],
            "seconds": h["seconds"],
            "refit_sweeps": h["sweeps"],
            "adjoint_iterations": [g["solve_iterations"] for g in h["gradients"]],
            "gradients_trustworthy": all(g["gradient_trustworthy"] for g in h["gradients"]),
            "in_sweeps": h["seconds"] / sweep,
        }
        for h in history[1:]
    ]
    return {
        "clean_fit_seconds": clean_seconds,
        "clean_fit_sweeps": clean.n_sweeps,
        "clean_fit_kkt": clean.kkt_residual(),
        "start_refit_sweeps": history[0]["sweeps"],
        "steps": made,
        "median_in_sweeps": statistics.median(m["in_sweeps"] for m in made) if made else None,
        "median_refit_sweeps": (
            statistics.median(m["refit_sweeps"] for m in made) if made else None
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rank", type=int, default=WRMFConfig.rank)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--sweeps", type=int, default=10)
    parser.add_argument("--implicit-dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--fake-share", type=float, default=0.01)
    parser.add_argument("--filler", type=int, default=30)
    parser.add_argument("--step", type=float, default=0.2)
    parser.add_argument("--solve-tol", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--promotion-steps", type=int, default=3)
    parser.add_argument(
        "--sweeps-only", action="store_true", help="time the sweeps only (no attack steps)"
    )
    parser.add_argument("--data", nargs="+", default=["ml-latest-small", "synthetic:ml-1m"])
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    config = WRMFConfig(rank=args.rank, threads=args.threads)
    report: dict[str, Any] = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average": os.getloadavg(),
        },
        "config": config.to_dict(),
        "implicit_dtype": args.implicit_dtype,
        "data": {},
    }
    with caps_expected():  # compile the kernels
        WRMFLearner(config.replace(max_sweeps=1, kkt_tol=0)).fit(
            Interactions(sp.csr_array(np.eye(3)), np.arange(3), np.arange(3))
        )
    for name in args.data:
        data = Interactions.from_ratings(load_dataset(name))
        ours = our_sweep(data, config, args.sweeps, kkt=False)
        ours_kkt = our_sweep(data, config, args.sweeps, kkt=True)
        exact = implicit_sweep(data, config, args.sweeps, False, args.implicit_dtype)
        cg = implicit_sweep(data, config, args.sweeps, True, args.implicit_dtype)
        sweeps = {
            "shape": list(data.matrix.shape),
            "nnz": data.nnz,
            "ours_sweep_seconds": ours,
            "ours_sweep_with_kkt_seconds": ours_kkt,
            "implicit_exact_sweep_seconds": exact,
            "implicit_cg_sweep_seconds": cg,
            "ratio_ours_to_implicit_exact": ours / exact,
            "ratio_ours_to_implicit_cg": ours / cg,
        }
        print(json.dumps({name: sweeps}, indent=1), flush=True)
        report["data"][name] = sweeps
        if args.sweeps_only:
            continue
        attack = attack_iteration(data, config, args, ours)
        print(json.dumps({name: {"attack": attack}}, indent=1), flush=True)
        report["data"][name] = {**sweeps, "attack": attack}
        if args.promotion_steps:
            promotion = promotion_iterations(data, config, args.promotion_steps, args.seed, ours)
            print(json.dumps({name: {"promotion": promotion}}, indent=1), flush=True)
            report["data"][name]["promotion"] = promotion
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=1)


if __name__ == "__main__":
    main()
