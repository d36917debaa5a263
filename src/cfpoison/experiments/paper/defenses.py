"""The defenses experiment (paper section 6, issue "Defenses"): every default defense against
PGA, SGLD, uniform and the shilling baselines, alpha 3%, B 100, availability, seed 7.

``cfpoison reproduce defenses`` runs :func:`reproduce_defenses`; it is the same grid as
``cfpoison defend --grid pga,sgld,uniform,average,bandwagon --iterations 15 --beta 0.6
--seed 7 --adaptive`` (:func:`cfpoison.experiments.defense_grid.run_defense_grid`), with the
report (table and cost-benefit figure) of :func:`cfpoison.defend.report.write_report`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cfpoison.attacks.engine import AttackConfig
from cfpoison.attacks.threat import ThreatModel
from cfpoison.attacks.utility import UtilityConfig
from cfpoison.data.preprocess import PreprocessConfig, prepare
from cfpoison.data.registry import load_dataset
from cfpoison.defend.defenses import DEFAULT_DEFENSES
from cfpoison.defend.report import write_report
from cfpoison.experiments.defense_grid import run_defense_grid

#: The attacks every defense faces.
ATTACKS = ("pga", "sgld", "uniform", "average", "bandwagon")
SEED = 7


def defense_attacks(iterations: int, seed: int = SEED) -> list[AttackConfig]:
    """The grid's attacks: availability, alpha 3%, B 100; SGLD at beta 0.6."""
    return [
        AttackConfig(
            method=method,
            threat=ThreatModel(alpha=0.03, items_per_user=100),
            utility=UtilityConfig(mu1=1.0, mu2=0.0),
            iterations=iterations,
            seed=seed,
            options={"beta": 0.6} if method == "sgld" else {},
        )
        for method in ATTACKS
    ]


def reproduce_defenses(
    dataset: str,
    data_dir: str | Path | None,
    out: Path,
    *,
    quick: bool = False,
    progress: bool = False,
    adaptive: bool = True,
) -> tuple[dict[str, Any], list[Path]]:
    """Run the grid (15 attack steps; 2 with ``quick``) and write its report into ``out``;
    ``adaptive``: with PGA against each defense that has an adaptive attacker."""
    train, test = prepare(load_dataset(dataset, data_dir), PreprocessConfig())
    attacks = defense_attacks(2 if quick else 15)
    result = run_defense_grid(
        train, test, attacks, DEFAULT_DEFENSES, SEED, progress, adaptive=adaptive
    )
    return result, write_report(result, out)
