"""Checkpoints of gradient attacks: saved after every step, resumed with ``--resume``.

* a checkpoint round-trips (the objective's snapshot too), and one of another attack or a
  damaged one is refused;
* a fitted learner restored from its snapshot is the fit, bit for bit, without a sweep;
* an attack interrupted after step k and resumed is the uninterrupted run bit for bit (the
  fits and adjoints are restored): pga, robust and adaptive, gradient and vertex steps;
* a checkpoint without the snapshot (written before it was kept) still resumes, by a refit,
  to the fits' tolerance;
* ``cfpoison attack --method robust`` killed with SIGTERM exits 143, says the step it saved,
  and the same command with ``--resume`` continues from it to the uninterrupted result.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

from cfpoison.attacks.checkpoint import OBJECTIVE, Checkpoint, StepState, checkpoint_key
from cfpoison.attacks.engine import AttackConfig, AttackResult, run_attack
from cfpoison.attacks.robust import load_surrogates
from cfpoison.attacks.threat import ThreatModel
from cfpoison.attacks.utility import UtilityConfig
from cfpoison.data.preprocess import PreprocessConfig, prepare
from cfpoison.data.registry import load_dataset
from cfpoison.errors import ConfigError, DataError
from cfpoison.learners import (
    ALSConfig,
    BiasedConfig,
    LearnerConfig,
    NuclearConfig,
    NuclearNormLearner,
    build_learner,
)
from cfpoison.learners.base import Snapshot
from cfpoison.learners.wrmf import WRMFLearner


def _state(rng: np.random.Generator) -> StepState:
    fake = sp.random_array((3, 7), density=0.5, format="csr", rng=rng)
    history = [{"iteration": 0, "utility": 1.5}, {"iteration": 1, "utility": 2.5, "step": 0.5}]
    fit = Snapshot({"item": rng.standard_normal((7, 2))}, {"trace": {"kkt": math.inf}})
    objective = Snapshot.nest(
        {"0": fit, "real": Snapshot.of_matrix(fake)},
        {"adjoint": rng.standard_normal(5), "mask": np.array([True, False])},
        {"info": {"n": 1}},
    )
    return StepState(1, fake, fake * 2, 2.5, 2.5, 0.5, False, history, objective)


def test_a_checkpoint_round_trips_and_refuses_another_attack(tmp_path: Path) -> None:
    state = _state(np.random.default_rng(0))
    Checkpoint(tmp_path, "a").save(state)
    loaded = Checkpoint(tmp_path, "a").load()
    assert loaded is not None
    assert (loaded.fake != state.fake).nnz == 0 and (loaded.best_fake != state.best_fake).nnz == 0
    assert (loaded.iteration, loaded.value, loaded.grow) == (1, 2.5, False)
    assert loaded.history == state.history
    assert loaded.objective is not None and state.objective is not None
    assert loaded.objective.record == state.objective.record
    assert loaded.objective.arrays.keys() == state.objective.arrays.keys()
    for name, array in state.objective.arrays.items():
        assert np.array_equal(loaded.objective.arrays[name], array)
        assert loaded.objective.arrays[name].dtype == array.dtype
    item = state.objective.part("0").arrays["item"]
    assert np.array_equal(loaded.objective.part("0").arrays["item"], item)
    assert (loaded.objective.part("real").matrix() != state.fake).nnz == 0
    Checkpoint(tmp_path, "old").save(dataclasses.replace(state, objective=None))
    old = Checkpoint(tmp_path, "old").load()
    assert old is not None and old.objective is None
    assert Checkpoint(tmp_path, "b").load() is None
    (tmp_path / "a.npz").rename(tmp_path / "b.npz")
    with pytest.raises(DataError, match="another attack"):
        Checkpoint(tmp_path, "b").load()
    (tmp_path / "c.npz").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="unreadable"):
        Checkpoint(tmp_path, "c").load()
    assert not list(tmp_path.glob("*.part"))


@pytest.fixture(scope="module")
def train() -> Any:
    data, _ = prepare(
        load_dataset("synthetic:small"), PreprocessConfig(top_users=150, top_items=200)
    )
    return data


CONFIG = AttackConfig(
    learner=ALSConfig(threads=1),
    threat=ThreatModel(alpha=0.03, items_per_user=30),
    utility=UtilityConfig(mu1=0.0, mu2=1.0, targets=(2,)),
    iterations=5,
)


@pytest.mark.parametrize(
    "learner",
    [ALSConfig(threads=1), NuclearConfig(threads=1), BiasedConfig(threads=1)],
    ids=["als", "nuclear", "biased"],
)
def test_a_restored_learner_is_the_fit_bit_for_bit(train: Any, learner: LearnerConfig) -> None:
    """Factors, trace, KKT residual, adjoint system, and the warm refit that follows."""
    rng = np.random.default_rng(1)
    fake = sp.random_array((4, train.n_items), density=0.1, format="csr", rng=rng)
    fitted = build_learner(learner).fit(train, fake=fake)
    saved = fitted.snapshot()
    record = json.loads(json.dumps(saved.record))  # as a checkpoint keeps it
    restored = build_learner(learner).restore(train, Snapshot(saved.arrays, record), fake)
    for name in ("user", "item", "fake_user"):
        assert np.array_equal(getattr(restored.factors, name), getattr(fitted.factors, name))
    assert (restored.converged, restored.n_sweeps) == (fitted.converged, fitted.n_sweeps)
    assert restored.history == fitted.history
    assert restored.kkt_residual() == fitted.kkt_residual()
    assert restored.objective() == fitted.objective()
    if isinstance(fitted, NuclearNormLearner):
        assert restored.certificate() == fitted.certificate()
    # the factors stand in for a utility's gradient: any right-hand side of the right shape
    solves = [
        system.solve(system.rhs(fitted.user_factors, fitted.item_factors), 1e-8, 50)
        for system in (f.adjoint_system(train.matrix, fake) for f in (restored, fitted))
    ]
    assert np.array_equal(solves[0].x, solves[1].x)
    moved = fake.copy()
    moved.data = moved.data + 0.5
    refits = [
        build_learner(learner).fit(train, init=f.factors, fake=moved) for f in (restored, fitted)
    ]
    assert np.array_equal(refits[0].item_factors, refits[1].item_factors)


def test_a_learner_without_the_restore_hooks_says_so(train: Any) -> None:
    """WRMF keeps no restorable state (no checkpointed method fits it): restore refuses."""
    saved = Snapshot({}, {"trace": {}})
    with pytest.raises(NotImplementedError, match="WRMFLearner: a fit that cannot be restored"):
        WRMFLearner().restore(train, saved)


class _KilledAfter(Checkpoint):
    """A checkpoint whose process is 'killed' right after it saves step ``k``."""

    def __init__(self, directory: Path, key: str, k: int):
        super().__init__(directory, key)
        self.k = k

    def save(self, state: StepState) -> None:
        super().save(state)
        if state.iteration == self.k:
            raise KeyboardInterrupt


#: Vertex steps on rare items (robust's own default): a vertex is the sign of each gradient
#: entry, so a resume that only approximates the fits and solves can flip a near-zero entry.
VERTEX = {"step_direction": "vertex", "threat": CONFIG.threat.replace(item_selection="rare")}
#: Each resumable method, with the steps and defenses whose state a resume must restore.
RESUMED = {
    "pga-gradient": {"method": "pga"},
    "pga-vertex": {"method": "pga", **VERTEX},
    "robust-vertex": {"method": "robust", **VERTEX},
    "adaptive-bagging": {"method": "adaptive", "options": {"defense": "bagging"}},
    "adaptive-trimmed": {"method": "adaptive", "options": {"defense": "trimmed"}},
    "adaptive-huber": {"method": "adaptive", "options": {"defense": "huber"}},
}


def _interrupted(train: Any, tmp_path: Path, case: str) -> tuple[AttackConfig, str, AttackResult]:
    """The case's config, its checkpoint key after a run 'killed' after step 2, and the
    uninterrupted run."""
    config = CONFIG.replace(**RESUMED[case])
    if config.method == "robust":
        panel = load_surrogates(_two_surrogates(tmp_path))
        config = config.replace(options={"surrogates": panel.to_dict()})
    whole = run_attack(train, config, floor=1.0)
    key = checkpoint_key(config.to_dict(), train)
    with pytest.raises(KeyboardInterrupt):
        run_attack(train, config, floor=1.0, checkpoint=_KilledAfter(tmp_path, key, 2))
    saved = Checkpoint(tmp_path, key).load()
    assert saved is not None and saved.iteration == 2 and saved.objective is not None
    return config, key, whole


@pytest.mark.parametrize("case", RESUMED)
def test_an_interrupted_attack_resumes_to_the_uninterrupted_result_bit_for_bit(
    train: Any, tmp_path: Path, case: str
) -> None:
    config, key, whole = _interrupted(train, tmp_path, case)
    resumed = run_attack(train, config, floor=1.0, checkpoint=Checkpoint(tmp_path, key))
    assert resumed.info["resumed_after_step"] == 2 and "resumed_after_step" not in whole.info
    assert len(whole.history) == config.iterations + 1  # every step taken, none resumed past
    assert resumed.utility_history == whole.utility_history
    assert _timeless(resumed.history) == _timeless(whole.history)
    assert np.array_equal(resumed.fake.toarray(), whole.fake.toarray())
    assert resumed.metrics == whole.metrics


def test_a_checkpoint_without_the_snapshot_resumes_by_a_refit(train: Any, tmp_path: Path) -> None:
    """A checkpoint written before the objective's snapshot was kept (the file rewritten
    without it) resumes by refitting at its iterate: the same run to the fits' tolerance."""
    config, key, whole = _interrupted(train, tmp_path, "pga-gradient")
    path = Checkpoint(tmp_path, key).path
    with np.load(path) as saved:
        arrays = {name: saved[name] for name in saved.files if not name.startswith(OBJECTIVE)}
    meta = json.loads(str(arrays["meta"]))
    del meta["objective"]
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(path, **arrays)
    resumed = run_attack(train, config, floor=1.0, checkpoint=Checkpoint(tmp_path, key))
    assert resumed.info["resumed_after_step"] == 2
    assert resumed.utility_history[:3] == whole.utility_history[:3]
    _same_run(resumed.history, whole.history, rtol=1e-4)


def _timeless(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records without their timing fields (``seconds``, ``retrain_seconds``, ...)."""
    return [{k: v for k, v in h.items() if not k.endswith("seconds")} for h in history]


def _same_run(resumed: list[dict[str, Any]], whole: list[dict[str, Any]], rtol: float) -> None:
    """The same steps, utilities equal to ``rtol``."""
    assert len(resumed) == len(whole)
    np.testing.assert_allclose(
        [h["utility"] for h in resumed], [h["utility"] for h in whole], rtol=rtol
    )


def test_a_one_shot_method_refuses_a_checkpoint(train: Any, tmp_path: Path) -> None:
    config = CONFIG.replace(method="uniform", iterations=20)
    with pytest.raises(ConfigError, match="keeps no checkpoint"):
        run_attack(train, config, checkpoint=Checkpoint(tmp_path, "k"))


def _two_surrogates(directory: Path) -> str:
    panel = directory / "panel.toml"
    panel.write_text(
        '[[surrogates]]\nname = "self"\nmodel = "als"\n\n'
        '[[surrogates]]\nname = "lam12"\nmodel = "als"\nseed = 3\n'
        "params = { lambda_u = 12.0, lambda_v = 12.0 }\n"
    )
    return str(panel)


@pytest.mark.parametrize(
    "steps",
    [["--step-direction", "gradient", "--items", "random"], []],
    ids=["gradient-steps", "default-vertex-steps"],
)
def test_sigterm_then_resume_of_a_robust_attack(tmp_path: Path, steps: list[str]) -> None:
    panel = _two_surrogates(tmp_path)
    command = [
        sys.executable,
        "-c",
        "from cfpoison.cli import main; raise SystemExit(main())",
        "attack",
        "--dataset",
        "synthetic:small",
        "--preprocess.top-users",
        "150",
        "--preprocess.top-items",
        "200",
        "--method",
        "robust",
        "--surrogates",
        panel,
        "--mu1",
        "0",
        "--mu2",
        "1",
        "--targets",
        "2",
        "--alpha",
        "0.03",
        "--items-per-user",
        "30",
        "--iterations",
        "8",
        "--threads",
        "1",
        *steps,
    ]

    def env(name: str) -> dict[str, str]:
        return {**os.environ, "XDG_CACHE_HOME": str(tmp_path / name)}

    whole = subprocess.run(
        [*command, "--json", str(tmp_path / "whole.json")], env=env("a"), capture_output=True
    )
    assert whole.returncode == 0, whole.stderr
    checkpoints = tmp_path / "b" / "cfpoison" / "checkpoints"
    run = [*command, "--json", str(tmp_path / "resumed.json")]
    killed = subprocess.Popen(run, env=env("b"), stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(checkpoints.glob("*.npz")) and time.monotonic() < deadline:
        time.sleep(0.05)
    killed.send_signal(signal.SIGTERM)
    _, stderr = killed.communicate(timeout=60)
    assert killed.returncode == 128 + signal.SIGTERM, stderr
    assert "is saved; the same command with --resume continues from it" in stderr
    assert not (tmp_path / "resumed.json").exists()
    resumed = subprocess.run([*run, "--resume"], env=env("b"), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "--resume: continuing after step" in resumed.stderr
    assert not list(checkpoints.glob("*.npz"))  # finished: the checkpoint is gone
    a = json.loads((tmp_path / "whole.json").read_text())
    b = json.loads((tmp_path / "resumed.json").read_text())
    assert b["info"].pop("resumed_after_step") >= 1
    assert _timeless(b["history"]) == _timeless(a["history"])
    assert b["utility_history"] == a["utility_history"] and b["info"] == a["info"]


def test_resume_is_refused_for_a_method_without_checkpoints(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from cfpoison.cli import main

    argv = ["attack", "--dataset", "synthetic:small", "--method", "uniform", "--resume"]
    assert main(argv) == 2
    assert "keeps no checkpoint" in capsys.readouterr().err
