"""The gradient PGA follows is the true one where PGA takes it (issue: trustworthy gradients).

On a subset of ml-latest-small (the 300 most active users x their 1,500 most rated items, 3%
fake users, B = 50) with the attack's default learner and solve settings:

* at PGA's iterations 1 and 10, for availability and integrity, the engine's gradient has
  cos >= 0.99 with the reference (fit to KKT 1e-10, adjoint to 1e-8), and the reference agrees
  with a directional finite difference of re-solved models;
* a gradient taken at a fit that stopped on its sweep cap is flagged, in the gradient and in
  PGA's history, and logged as a warning;
* ``cfpoison gradcheck`` prints and writes the same check;
* the promotion attack's gradient on WRMF and BPR (``cfpoison gradcheck promote``) is the true
  one at its own binary profiles, on every fake user x item entry.

The full-size figures (all of ml-latest-small) are in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from cfpoison.attacks.engine import AttackConfig, run_attack
from cfpoison.attacks.gradcheck import check_gradient, check_promotion_gradient
from cfpoison.attacks.promotion import PromotionConfig
from cfpoison.attacks.threat import ThreatModel
from cfpoison.attacks.utility import UtilityConfig
from cfpoison.cli import main
from cfpoison.data.interactions import Interactions
from cfpoison.data.preprocess import PreprocessConfig, prepare
from cfpoison.data.ratings import Ratings
from cfpoison.errors import ConfigError
from cfpoison.learners import ALSConfig, BPRConfig, WRMFConfig
from cfpoison.models import fit_learner

LEARNER = ALSConfig(threads=1)
THREAT = ThreatModel(alpha=0.03, items_per_user=50)


@pytest.fixture(scope="module")
def subset(ml_small: Ratings) -> tuple[Ratings, object]:
    train, _ = prepare(ml_small, PreprocessConfig(top_users=300, top_items=1500))
    return train, fit_learner(LEARNER, train)


@pytest.mark.slow
@pytest.mark.parametrize("iteration", [1, 10])
@pytest.mark.parametrize("mu", [(1.0, 0.0), (0.0, 1.0)], ids=["availability", "integrity"])
def test_pga_gradient_is_the_true_one(subset, mu: tuple[float, float], iteration: int) -> None:  # type: ignore[no-untyped-def]
    train, clean = subset
    config = AttackConfig(
        learner=LEARNER, threat=THREAT, utility=UtilityConfig(mu1=mu[0], mu2=mu[1]), seed=3
    )
    check = check_gradient(train, config, iteration=iteration, clean=clean)
    print(check.to_dict())
    assert check.fit_converged and check.kkt_residual <= LEARNER.kkt_tol
    assert check.solve_converged and check.solve_residual <= config.solve_tol
    assert check.cos >= 0.99
    assert check.fd_relative_error <= 1e-3  # the reference is confirmed by re-solved models
    assert check.reference_kkt_residual <= 1e-10


def test_a_capped_fit_gives_a_flagged_gradient(subset, caplog) -> None:  # type: ignore[no-untyped-def]
    train, clean = subset
    capped = LEARNER.replace(max_sweeps=2)
    # two steps: a last step is never a set-aside candidate's finish, and with 2 sweeps every
    # candidate is one, so the first step is the one that records its gradient
    config = AttackConfig(
        learner=capped, threat=THREAT, utility=UtilityConfig(mu1=1.0, mu2=0.0), iterations=2
    )
    with caplog.at_level(logging.WARNING):
        result = run_attack(train, config, clean=clean, floor=0.0)
    step = result.history[1]
    assert result.untrustworthy_gradients == 1
    assert result.to_dict()["untrustworthy_gradients"] == 1
    assert step["fit_converged"] is False and step["gradient_trustworthy"] is False
    assert step["kkt_residual"] > capped.kkt_tol
    assert any("gradient outside tolerance" in r.getMessage() for r in caplog.records)
    assert any("max_sweeps=2" in r.getMessage() for r in caplog.records)


def test_gradcheck_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "check.json"
    code = main(
        [
            "gradcheck",
            "--dataset",
            "synthetic:small",
            "--alpha",
            "0.03",
            "--items-per-user",
            "30",
            "--at",
            "1,2",
            "--threads",
            "1",
            "--json",
            str(out),
            "--quiet",
        ]
    )
    payload = json.loads(out.read_text())
    assert code == 0 and payload["passed"]
    assert [c["iteration"] for c in payload["checks"]] == [1, 2]
    for check in payload["checks"]:
        assert check["cos"] >= 0.99 and check["solve_converged"] and check["fit_converged"]


def test_gradcheck_rejects_bad_iterations(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["gradcheck", "--dataset", "synthetic:small", "--at", "0"])
    assert exit_info.value.code == 2
    assert "iterations must be >= 1" in capsys.readouterr().err


def _tiny_interactions() -> Interactions:
    """80 users x 50 items with a popularity tail: low-rank preferences, thresholded."""
    rng = np.random.default_rng(4)
    scores = rng.normal(size=(80, 3)) @ rng.normal(size=(3, 50)) - np.linspace(0, 3, 50)
    users, items = np.nonzero(scores > 0.5)
    return Interactions.from_triples(users + 1, items + 1, name="tiny")


@pytest.mark.parametrize(
    "learner",
    [WRMFConfig(rank=4, threads=1, kkt_tol=1e-8), BPRConfig(rank=4, negatives=3, threads=1)],
    ids=["wrmf", "bpr"],
)
@pytest.mark.parametrize(("method", "iteration"), [("pga", 1), ("pga", 3), ("robust", 2)])
def test_promotion_gradient_is_the_true_one(
    learner: WRMFConfig | BPRConfig, method: str, iteration: int
) -> None:
    """At the promotion attack's own point (binary profiles after ``iteration - 1`` steps),
    its gradient on every fake user x item entry matches the tight reference, and a central
    difference of re-solved fits (profile weights 1 +- h) confirms the reference."""
    config = PromotionConfig(
        method=method,  # type: ignore[arg-type]
        learner=learner,
        alpha=0.05,
        n_targets=2,
        top_k=10,
        iterations=5,
    )
    check = check_promotion_gradient(_tiny_interactions(), config, iteration=iteration)
    assert check.cos >= 0.999, check
    assert check.fd_relative_error < 1e-3, check
    assert abs(check.directional_engine / check.directional_reference - 1) < 1e-2, check
    assert check.fit_converged and check.solve_converged


def test_a_baseline_has_no_gradient_to_check() -> None:
    with pytest.raises(ConfigError, match="takes none"):
        check_promotion_gradient(_tiny_interactions(), PromotionConfig(method="random"))


def test_gradcheck_promote_cli(tmp_path: Path) -> None:
    out = tmp_path / "check.json"
    argv = ["--quiet", "gradcheck", "promote", "--dataset", "synthetic:small", "--rank", "4"]
    argv += ["--method", "pga", "--threads", "1", "--at", "1,2", "--json", str(out)]
    assert main(argv) == 0
    payload = json.loads(out.read_text())
    assert payload["passed"] and payload["config"]["learner"]["name"] == "wrmf"
    assert [c["iteration"] for c in payload["checks"]] == [1, 2]
    assert all(c["cos"] >= 0.99 for c in payload["checks"])


def test_gradcheck_promote_refuses_explicit_attack_options(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["gradcheck", "--mu2", "1", "promote", "--dataset", "synthetic:small"])
    assert exit_info.value.code == 2
    assert "after `promote`" in capsys.readouterr().err
