"""The issue's orderings on ml-latest-small at alpha = 3%, B = 100 (few iterations, fast).

* availability (mu = (1, 0)): PGA's RMSE shift is clearly above the uniform attack's and above
  the seed-noise floor;
* integrity (mu = (0, 1), auto target): PGA (whose profiles all rate the target) raises the
  target's mean predicted rating by more than the uniform attack and the ``average`` shilling
  baseline do.

The clean model and its noise floor are fitted once and shared (``run_attack(clean=, floor=)``).
The numbers of longer runs, and those of the paper's gradient, are in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import pytest

from cfpoison.attacks.engine import AttackConfig, run_attack
from cfpoison.attacks.threat import ThreatModel
from cfpoison.attacks.utility import UtilityConfig
from cfpoison.data.preprocess import PreprocessConfig, prepare
from cfpoison.data.ratings import Ratings
from cfpoison.learners import ALSConfig
from cfpoison.models import fit_learner, noise_floor

LEARNER = ALSConfig(threads=1)
BASE = AttackConfig(learner=LEARNER, threat=ThreatModel(alpha=0.03, items_per_user=100), seed=0)


@pytest.fixture(scope="module")
def setting(ml_small: Ratings) -> tuple[Ratings, object, float]:
    train, _ = prepare(ml_small, PreprocessConfig())
    clean = fit_learner(LEARNER, train)
    return train, clean, noise_floor(train, LEARNER, clean)


def _metrics(setting, **changes: object) -> dict[str, object]:  # type: ignore[no-untyped-def]
    train, clean, floor = setting
    return run_attack(train, BASE.replace(**changes), clean=clean, floor=floor).metrics


def test_pga_availability_beats_uniform_and_the_noise_floor(setting) -> None:  # type: ignore[no-untyped-def]
    utility = UtilityConfig(mu1=1.0, mu2=0.0)
    uniform = _metrics(setting, method="uniform", utility=utility)
    pga = _metrics(setting, method="pga", utility=utility, iterations=5)
    print(
        f"availability rmse_shift: pga {pga['rmse_shift']:.4f} uniform {uniform['rmse_shift']:.4f}"
        f" floor {pga['rmse_shift_noise_floor']:.4f}"
    )
    assert pga["rmse_shift"] > 1.2 * uniform["rmse_shift"]
    assert pga["rmse_shift"] > 1.2 * pga["rmse_shift_noise_floor"]


def test_pga_integrity_moves_the_target_more_than_uniform(setting) -> None:  # type: ignore[no-untyped-def]
    utility = UtilityConfig(mu1=0.0, mu2=1.0)
    uniform = _metrics(setting, method="uniform", utility=utility)
    average = _metrics(setting, method="average", utility=utility)
    pga = _metrics(setting, method="pga", utility=utility, iterations=3)
    gains = {
        name: m["target_mean_after"][0] - m["target_mean_before"][0]  # type: ignore[index]
        for name, m in (("pga", pga), ("uniform", uniform), ("average", average))
    }
    print(f"integrity target gain: {gains}")
    assert gains["pga"] > 0.2  # stars (measured: +0.48)
    assert gains["pga"] > gains["uniform"] + 0.1
    assert gains["pga"] > gains["average"]
