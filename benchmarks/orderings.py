"""PGA against uniform and the shilling baselines on ml-latest-small, availability and integrity.

Run::

    python benchmarks/orderings.py --iterations 10,20 --json orderings.json

alpha 3%, B 100, the attack defaults (ALS rank 10, lam 8, relative KKT 1e-5; adjoint solve
1e-4), seed 0, one shared clean model and seed-noise floor. Availability (mu = (1, 0)): the
RMSE shift on the normal users' unseen entries; integrity (mu = (0, 1), auto target): the
target's mean predicted rating, in stars, before and after. Rows: uniform, average,
bandwagon (integrity only), PGA with the exact gradient and with the paper's Eq. 12, at each
iteration count. Seconds are wall time of the attack (evaluation included).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path
from typing import Any

from cfpoison.attacks.engine import AttackConfig, run_attack
from cfpoison.attacks.threat import ThreatModel
from cfpoison.attacks.utility import UtilityConfig
from cfpoison.data.preprocess import PreprocessConfig, prepare
from cfpoison.data.registry import load_dataset
from cfpoison.models import fit_learner, noise_floor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", default="10,20")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    train, test = prepare(load_dataset("ml-latest-small"), PreprocessConfig())
    base = AttackConfig(threat=ThreatModel(alpha=0.03, items_per_user=100), seed=args.seed)
    clean = fit_learner(base.learner, train)
    floor = noise_floor(train, base.learner, clean)
    rows: list[dict[str, Any]] = []
    runs: list[tuple[str, str, dict[str, Any]]] = []
    for goal in ("availability", "integrity"):
        runs.append((goal, "uniform", {"method": "uniform"}))
        runs.append((goal, "average", {"method": "average"}))
        if goal == "integrity":
            runs.append((goal, "bandwagon", {"method": "bandwagon"}))
        for t in (int(v) for v in args.iterations.split(",")):
            runs.append((goal, f"pga exact, {t} steps", {"method": "pga", "iterations": t}))
        t = int(args.iterations.split(",")[0])
        runs.append(
            (
                goal,
                f"pga Eq. 12, {t} steps",
                {"method": "pga", "iterations": t, "gradient": "paper"},
            )
        )
    for goal, name, changes in runs:
        mu = (1.0, 0.0) if goal == "availability" else (0.0, 1.0)
        config = base.replace(utility=UtilityConfig(mu1=mu[0], mu2=mu[1]), **changes)
        result = run_attack(train, config, test=test, clean=clean, floor=floor)
        m = result.metrics
        row = {
            "goal": goal,
            "attack": name,
            "rmse_shift": m["rmse_shift"],
            "noise_floor": m["rmse_shift_noise_floor"],
            "target": result.targets[0] if result.targets else None,
            "target_push_stars": m["target_mean_after"][0] - m["target_mean_before"][0]
            if m["target_mean_before"]
            else None,
            "rmse_test": m.get("rmse_test"),
            "rmse_test_clean": m.get("rmse_test_clean"),
            "untrustworthy_gradients": result.untrustworthy_gradients,
            "seconds": result.seconds,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(f"\nmachine: {machine}\n")
    print("| goal | attack | RMSE shift (floor) | target push, stars | seconds |")
    print("|---|---|---|---|---|")
    for r in rows:
        push = "" if r["target_push_stars"] is None else f"{r['target_push_stars']:+.3f}"
        print(
            f"| {r['goal']} | {r['attack']} | {r['rmse_shift']:.4f} ({r['noise_floor']:.4f})"
            f" | {push} | {r['seconds']:.0f} |"
        )
    if args.json is not None:
        args.json.write_text(json.dumps({"machine": machine, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
