"""Promotion on implicit-feedback victims: the targets' HR and NDCG at K, lift and floor.

For each victim of a panel and each victim seed ``s_1..s_S`` (``S >= 3``), a clean fit and,
per profile matrix (``m' x n`` interaction weights), a poisoned fit at the same seed; each
measured by :func:`cfpoison.models.measures.hit_ratio` and ``ndcg`` over the users without an
interaction with the target (means over the targets). Per victim x attack x measure:

* ``before`` / ``after``: means over seeds of the clean and poisoned values;
* ``lift``: the mean over seeds of ``after - before`` (same seed), with the half-width of its
  ``confidence`` t-interval (``lift_ci``);
* ``floor``: the victim's own seed noise, the half-width of the same interval over the
  differences between the clean fits of consecutive seeds (cyclically): a lift inside it is
  no evidence;
* against a ``baseline`` attack: the ratio of the lifts, and ``above_floor`` for each.

Pure: no printing; ``progress`` is called with a line as each fit ends.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from cfpoison.config import JsonConfig, require
from cfpoison.data.interactions import Interactions
from cfpoison.models.measures import hit_ratio, ndcg
from cfpoison.victims.fitting import FitJob, family, fit_jobs, victim_seconds
from cfpoison.victims.spec import VictimSpec, check_trains_on
from cfpoison.victims.transfer import half_width

#: The measures of every row: (name, function, cut-off).
MEASURES: tuple[tuple[str, Callable[..., np.ndarray], int], ...] = (
    ("hr@10", hit_ratio, 10),
    ("hr@50", hit_ratio, 50),
    ("ndcg@50", ndcg, 50),
)


@dataclasses.dataclass(frozen=True)
class PromotionTransferConfig(JsonConfig):
    """Victim seeds and the confidence level of the intervals."""

    seeds: tuple[int, ...] = (1, 2, 3)
    confidence: float = 0.95

    def __post_init__(self) -> None:
        require(len(self.seeds) >= 3, f"give >= 3 victim seeds, got {len(self.seeds)}")
        require(len(set(self.seeds)) == len(self.seeds), "victim seeds must differ")
        require(0 < self.confidence < 1, "confidence must be in (0, 1)")


def _measure(train: Interactions, model: Any, targets: np.ndarray) -> dict[str, float]:
    return {
        name: float(np.nanmean(fn(train.matrix, model, targets, k))) for name, fn, k in MEASURES
    }


def evaluate_promotion(
    train: Interactions,
    victims: Sequence[VictimSpec],
    attacks: Mapping[str, sp.csr_array],
    targets: np.ndarray,
    config: PromotionTransferConfig,
    *,
    baseline: str | None = None,
    skipped: Mapping[str, str] | None = None,
    workers: int = 1,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Fit every victim clean and poisoned by every attack at every seed, in ``workers``
    processes (:func:`cfpoison.victims.fitting.fit_jobs`); the rows of the module docstring,
    per victim x attack x measure, and each victim's fit count and time (its fits' seconds,
    summed)."""
    check_trains_on(victims, "interactions")
    targets = np.asarray(targets, dtype=np.int64)
    rows: list[dict[str, Any]] = []
    report: list[dict[str, Any]] = []
    running = [spec for spec in victims if spec.name not in (skipped or {})]
    jobs = [FitJob(spec, s, a) for spec in running for a in (None, *attacks) for s in config.seeds]
    done = fit_jobs(
        jobs,
        {spec.split_offset: train for spec in running},
        attacks,
        workers=workers,
        progress=None if progress is None else lambda job: progress(job.label()),
    )
    for spec in victims:
        if spec.name in (skipped or {}):
            report.append({"name": spec.name, "skipped": (skipped or {})[spec.name]})
            continue
        fits = {a: family(done, spec.name, config.seeds, a) for a in (None, *attacks)}
        clean = [_measure(train, v, targets) for v in fits[None]]
        unconverged = sum(v.converged is False for group in fits.values() for v in group)
        per_attack = {name: [_measure(train, v, targets) for v in fits[name]] for name in attacks}
        for measure, _, _ in MEASURES:
            before = np.array([c[measure] for c in clean])
            noise = before - np.roll(before, 1)
            floor = half_width(noise, config.confidence)
            lifts = {n: np.array([a[measure] for a in v]) - before for n, v in per_attack.items()}
            for name, values in per_attack.items():
                lift = lifts[name]
                row: dict[str, Any] = {
                    "victim": spec.name,
                    "attack": name,
                    "measure": measure,
                    "before": float(before.mean()),
                    "after": float(np.mean([v[measure] for v in values])),
                    "lift": float(lift.mean()),
                    "lift_ci": half_width(lift, config.confidence),
                    "floor": floor,
                }
                row["above_floor"] = bool(row["lift"] - row["lift_ci"] > floor)
                if baseline is not None and name != baseline:
                    base = float(lifts[baseline].mean())
                    row["lift_vs_baseline"] = row["lift"] / base if base > 0 else math.inf
                rows.append(row)
        report.append(
            {
                "name": spec.name,
                "fits": len(config.seeds) * (1 + len(attacks)),
                "unconverged": unconverged,
                "seconds": victim_seconds(done, spec.name),
            }
        )
    return {
        "config": config.to_dict(),
        "targets": [int(i) for i in train.item_ids[targets]],
        "attacks": list(attacks),
        "baseline": baseline,
        "rows": rows,
        "victims": report,
    }
