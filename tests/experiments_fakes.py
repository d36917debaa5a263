"""A cheap, deterministic cell runner for the experiment engine's tests.

Its metrics are a closed-form function of the config, so tests can check that stores, exports,
figures and reports carry exactly the numbers computed. Each computation appends the cell's
method, alpha and seed to ``$CFPOISON_FAKE_LOG`` (when set) so tests can count recomputations;
``sleep`` in the config slows a cell down for the kill test.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

from cfpoison.config import digest_of
from cfpoison.errors import ConfigError
from cfpoison.experiments.runners import CellOutcome, RunContext

DEFAULTS: dict[str, Any] = {
    "dataset": "toy",
    "method": "pga",
    "alpha": 0.01,
    "mu1": 1.0,
    "mu2": 0.0,
    "seed": 0,
    "sleep": 0.0,
    "fail": False,
}
STRENGTH = {"pga": 3.0, "sgld": 2.0, "uniform": 1.0}


def expected_metrics(config: Mapping[str, Any]) -> dict[str, float]:
    """The metrics the fake runner reports for ``config``."""
    a, seed = float(config["attack"]["alpha"]), int(config["attack"]["seed"])
    strength = STRENGTH[config["attack"]["method"]]
    jitter = 0.001 * (seed % 7)
    mu1, mu2 = float(config["attack"]["mu1"]), float(config["attack"]["mu2"])
    return {
        "rmse_shift": strength * a * max(mu1, 0.2) + jitter,
        "rmse_shift_noise_floor": 0.004 + jitter,
        "target_mean_before": 3.0,
        "target_mean_after": 3.0 + strength * a * mu2 * 10 + jitter,
    }


class FakeRunner:
    def normalize(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(settings) - set(DEFAULTS))
        if unknown:
            raise ConfigError(f"fake runner: unknown setting(s) {', '.join(unknown)}")
        merged = {**DEFAULTS, **settings}
        if merged["method"] not in STRENGTH:
            raise ConfigError(f"fake runner: unknown method {merged['method']!r}")
        attack = {k: merged[k] for k in ("method", "alpha", "mu1", "mu2", "seed")}
        return {
            "dataset": merged["dataset"],
            "attack": attack,
            "sleep": float(merged["sleep"]),
            "fail": bool(merged["fail"]),
        }

    def run(self, config: Mapping[str, Any], context: RunContext) -> CellOutcome:
        log = os.environ.get("CFPOISON_FAKE_LOG")
        if log:
            with open(log, "a") as handle:
                handle.write(digest_of(dict(config)) + "\n")
        time.sleep(config["sleep"])
        if config["fail"]:
            raise ConfigError("fake runner: asked to fail")
        metrics = expected_metrics(config)
        return CellOutcome(metrics, {"utility": [0.0, metrics["rmse_shift"]]})


RUNNER = FakeRunner()
