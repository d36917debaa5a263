"""The built-in ``attack`` cell runner: flat settings to full configs, one real cell, checksums."""

from __future__ import annotations

import pytest

from cfpoison.attacks.engine import AttackConfig
from cfpoison.config import digest_of
from cfpoison.data.synthetic import PRESETS
from cfpoison.errors import ConfigError
from cfpoison.experiments.attack_runner import RUNNER, data_checksum
from cfpoison.experiments.sweeps.runners import RunContext, cells_of
from cfpoison.experiments.sweeps.spec import Cell, SweepSpec

ML_SMALL_SHA256 = "aa289ca83157595d0df6aea1be6a4ded676ddc4385472e8313a8ed9805352646"
FAST_ALS = {"learner.rank": 4, "learner.max_sweeps": 15, "learner.tol": 1e-4}


def test_flat_settings_land_in_the_right_sections() -> None:
    config = RUNNER.normalize(
        {
            "dataset": "synthetic:small",
            "alpha": 0.05,
            "items_per_user": 7,
            "mu1": 0.0,
            "mu2": 1.0,
            "method": "uniform",
            "seed": 4,
            "learner": "nuclear",
            "learner.lam": 3.0,
            "preprocess.top_users": 100,
        }
    )
    attack = AttackConfig.from_dict(config["attack"])
    assert config["dataset"] == "synthetic:small" and config["detect"] is False
    assert (attack.threat.alpha, attack.threat.items_per_user) == (0.05, 7)
    assert (attack.utility.mu1, attack.utility.mu2) == (0.0, 1.0)
    assert attack.learner.name == "nuclear" and attack.learner.lam == 3.0
    assert attack.seed == 4 and attack.learner.seed == 4  # seed varies the learner too
    assert config["preprocess"]["top_users"] == 100
    assert config["preprocess"]["min_user_ratings"] == 20  # defaults filled in
    explicit = RUNNER.normalize({"seed": 4, "learner.seed": 0})
    assert AttackConfig.from_dict(explicit["attack"]).learner.seed == 0


def test_defaults_and_explicit_values_give_the_same_key() -> None:
    implicit = RUNNER.normalize({})
    explicit = RUNNER.normalize({"dataset": "ml-latest-small", "alpha": 0.03, "learner": "als"})
    assert digest_of(implicit) == digest_of(explicit)


def test_sgld_options_are_filled_in_and_refused_elsewhere() -> None:
    config = RUNNER.normalize({"method": "sgld", "beta": 0.3, "sgld.chains": 1})
    options = config["attack"]["options"]
    assert options["beta"] == 0.3 and options["chains"] == 1 and "prior" in options
    assert "iterations" not in options  # SGLD's T is the attack's iterations
    with pytest.raises(ConfigError, match="PGAOptions: unknown field"):
        RUNNER.normalize({"method": "pga", "beta": 0.6})
    with pytest.raises(ConfigError, match="iterations"):
        RUNNER.normalize({"method": "sgld", "sgld.iterations": 3})
    robust = RUNNER.normalize({"method": "robust", "attack.options.start": "average"})
    assert robust["attack"]["options"] == {"start": "average"}  # other methods' options too


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"colour": 1}, "unknown setting 'colour'"),
        ({"alpha": 2.0}, "alpha must be in"),
        ({"method": "nope"}, "nope"),
        ({"detect": "yes"}, "detect"),
    ],
)
def test_bad_settings_are_config_errors(settings, message) -> None:
    with pytest.raises(ConfigError, match=message):
        RUNNER.normalize(settings)


def test_one_cell_runs_with_detection() -> None:
    config = RUNNER.normalize(
        {"dataset": "synthetic:small", "method": "uniform", "mu2": 1.0, "detect": True, **FAST_ALS}
    )
    outcome = RUNNER.run({**config, "runner": "attack"}, RunContext(threads=1))
    metrics = outcome.metrics
    assert metrics["n_fake"] == 6  # ceil(0.03 * 200 users)
    assert metrics["rmse_shift"] > 0 and metrics["rmse_shift_noise_floor"] >= 0
    assert len(metrics["target_means_after"]) == len(metrics["targets"]) == 1
    assert metrics["target_mean_after"] == metrics["target_means_after"][0]
    assert metrics["untrustworthy_gradients"] == 0  # a one-shot method takes no gradient
    assert set(metrics["detection"]["detectors"]) >= {"rdma", "degsim", "pca"}
    assert 0 <= metrics["detection"]["ttest_pvalue"] <= 1
    assert outcome.history["iterations"] == []  # uniform is one-shot


def test_provenance_has_the_source_checksums(movielens_dir) -> None:
    context = RunContext(data_dir=str(movielens_dir))
    cells = cells_of(SweepSpec(grid=({"dataset": ("ml-latest-small",), "seed": (0, 1)},)))
    (entry,) = RUNNER.provenance(cells, context)
    assert entry["sha256"] == ML_SMALL_SHA256
    assert (entry["users"], entry["items"]) == (610, 9724)
    assert entry["train ratings"] + entry["test ratings"] == 100836
    synthetic = data_checksum("synthetic:small", None)
    assert synthetic["sha256"] == PRESETS["small"].digest()
    assert Cell.of(cells[0].config).key == cells[0].key
