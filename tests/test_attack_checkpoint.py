"""Checkpoints of gradient attacks: saved after every step, resumed with ``--resume``.

* a checkpoint round-trips, and one of another attack or a damaged one is refused;
* an attack interrupted after step k and resumed ends where the uninterrupted run ends, to
  the fits' tolerance (the learner is refitted at the saved iterate);
* ``cfpoison attack --method robust`` killed with SIGTERM exits 143, says the step it saved,
  and the same command with ``--resume`` continues from it to the uninterrupted result.
"""

from __future__ import annotations

import json
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

from cfpoison.attacks.checkpoint import Checkpoint, StepState, checkpoint_key
from cfpoison.attacks.engine import AttackConfig, run_attack
from cfpoison.attacks.robust import load_surrogates
from cfpoison.attacks.threat import ThreatModel
from cfpoison.attacks.utility import UtilityConfig
from cfpoison.data.preprocess import PreprocessConfig, prepare
from cfpoison.data.registry import load_dataset
from cfpoison.errors import ConfigError, DataError
from cfpoison.learners import ALSConfig


def _state(rng: np.random.Generator) -> StepState:
    fake = sp.random_array((3, 7), density=0.5, format="csr", rng=rng)
    history = [{"iteration": 0, "utility": 1.5}, {"iteration": 1, "utility": 2.5, "step": 0.5}]
    return StepState(1, fake, fake * 2, 2.5, 2.5, 0.5, False, history)


def test_a_checkpoint_round_trips_and_refuses_another_attack(tmp_path: Path) -> None:
    state = _state(np.random.default_rng(0))
    Checkpoint(tmp_path, "a").save(state)
    loaded = Checkpoint(tmp_path, "a").load()
    assert loaded is not None
    assert (loaded.fake != state.fake).nnz == 0 and (loaded.best_fake != state.best_fake).nnz == 0
    assert (loaded.iteration, loaded.value, loaded.grow) == (1, 2.5, False)
    assert loaded.history == state.history
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


class _KilledAfter(Checkpoint):
    """A checkpoint whose process is 'killed' right after it saves step ``k``."""

    def __init__(self, directory: Path, key: str, k: int):
        super().__init__(directory, key)
        self.k = k

    def save(self, state: StepState) -> None:
        super().save(state)
        if state.iteration == self.k:
            raise KeyboardInterrupt


@pytest.mark.parametrize("method", ["pga", "robust"])
def test_an_interrupted_attack_resumes_to_the_uninterrupted_result(
    train: Any, tmp_path: Path, method: str
) -> None:
    config = CONFIG.replace(method=method)
    if method == "robust":
        panel = load_surrogates(_two_surrogates(tmp_path))
        config = config.replace(options={"surrogates": panel.to_dict()})
    whole = run_attack(train, config, floor=1.0)
    key = checkpoint_key(config.to_dict(), train)
    with pytest.raises(KeyboardInterrupt):
        run_attack(train, config, floor=1.0, checkpoint=_KilledAfter(tmp_path, key, 2))
    saved = Checkpoint(tmp_path, key).load()
    assert saved is not None and saved.iteration == 2
    resumed = run_attack(train, config, floor=1.0, checkpoint=Checkpoint(tmp_path, key))
    assert resumed.info["resumed_after_step"] == 2 and "resumed_after_step" not in whole.info
    _same_run(resumed.history, whole.history)
    changed = np.abs(resumed.fake.toarray() - whole.fake.toarray()) > 1e-6
    assert changed.mean() < 0.02  # snapped onto the rating grid: a rare entry may round apart


def _same_run(
    resumed: list[dict[str, Any]], whole: list[dict[str, Any]], rtol: float = 1e-4
) -> None:
    """The same steps, utilities equal to the fits' tolerance."""
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
    ("steps", "rtol"),
    [
        (["--step-direction", "gradient", "--items", "random"], 1e-4),
        # robust's own default (vertex steps on rare items): a vertex is the sign of each
        # gradient entry, so the cold adjoint solves of a resumed run (equal to 1e-4) can
        # flip a near-zero entry and take another vertex; measured 1.8e-3 after 8 steps
        ([], 1e-2),
    ],
    ids=["gradient-steps", "default-vertex-steps"],
)
def test_sigterm_then_resume_of_a_robust_attack(
    tmp_path: Path, steps: list[str], rtol: float
) -> None:
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
    _same_run(b["history"], a["history"], rtol)
    k = b["info"]["resumed_after_step"]
    assert k >= 1
    saved = [(h["utility"], h["surrogate_utility"]) for h in b["history"][:k]]
    assert saved == [(h["utility"], h["surrogate_utility"]) for h in a["history"][:k]]


def test_resume_is_refused_for_a_method_without_checkpoints(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from cfpoison.cli import main

    argv = ["attack", "--dataset", "synthetic:small", "--method", "uniform", "--resume"]
    assert main(argv) == 2
    assert "keeps no checkpoint" in capsys.readouterr().err
