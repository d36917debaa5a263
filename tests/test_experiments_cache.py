"""The shared-fit cache: entries round-trip, bad entries are recomputed, and cells computed
with the cache have exactly the metrics of cells computed without it."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from cfpoison.data.preprocess import PreprocessConfig, prepare
from cfpoison.data.registry import load_dataset
from cfpoison.experiments import shared_fits
from cfpoison.experiments.attack_runner import RUNNER
from cfpoison.experiments.sweeps.cache import Cache
from cfpoison.experiments.sweeps.runners import RunContext
from cfpoison.learners import ALSConfig
from cfpoison.models import fit_learner, noise_floor

KEY = {"entry": "test", "n": 1}


def test_an_entry_round_trips_and_leaves_no_temporary_file(tmp_path) -> None:
    cache = Cache(tmp_path / "c")
    assert cache.get(KEY) is None
    calls = []

    def compute():
        calls.append(1)
        return {"a": np.arange(6.0).reshape(2, 3), "x": 0.5, "ok": True}

    first = cache.get_or_compute(KEY, compute)
    second = cache.get_or_compute(KEY, compute)
    assert len(calls) == 1
    for entry in (first, second):
        np.testing.assert_array_equal(entry["a"], np.arange(6.0).reshape(2, 3))
        assert float(entry["x"]) == 0.5 and bool(entry["ok"])
    assert [p.name for p in (tmp_path / "c").iterdir()] == [cache.path(KEY).name]
    assert cache.get({**KEY, "n": 2}) is None


@pytest.mark.parametrize("damage", ["truncate", "garbage", "other key"])
def test_a_bad_entry_is_recomputed_not_trusted(tmp_path, caplog, damage) -> None:
    cache = Cache(tmp_path)
    cache.put(KEY, {"a": np.ones(3)})
    path = cache.path(KEY)
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:50])
    elif damage == "garbage":
        path.write_bytes(b"not an npz file")
    else:  # a valid entry of another key under this key's name
        other = Cache(tmp_path / "o")
        other.put({"entry": "other"}, {"a": np.zeros(3)})
        path.write_bytes(other.path({"entry": "other"}).read_bytes())
    with caplog.at_level(logging.WARNING):
        assert cache.get(KEY) is None
    assert "recomputing" in caplog.text
    entry = cache.get_or_compute(KEY, lambda: {"a": np.full(3, 7.0)})
    np.testing.assert_array_equal(entry["a"], np.full(3, 7.0))
    np.testing.assert_array_equal(cache.get(KEY)["a"], np.full(3, 7.0))  # rewritten


@pytest.fixture(scope="module")
def small():
    return prepare(load_dataset("synthetic:small"), PreprocessConfig())[0]


def test_clean_fit_and_floor_are_the_uncached_ones_and_fit_once(
    tmp_path, small, monkeypatch
) -> None:
    config = ALSConfig(rank=4, seed=3, threads=1)
    cache, data = Cache(tmp_path), {"sha256": "x", "preprocess": {}}
    clean, floor = shared_fits.clean_and_floor(cache, data, config, small)
    direct = fit_learner(config, small)
    np.testing.assert_array_equal(clean.user_factors, direct.user_factors)
    np.testing.assert_array_equal(clean.item_factors, direct.item_factors)
    assert floor == noise_floor(small, config, direct)
    assert (clean.objective(), clean.kkt_residual()) == (direct.objective(), direct.kkt_residual())
    assert clean.converged == direct.converged
    rows, cols = np.array([0, 5, 9]), np.array([1, 2, 700])
    np.testing.assert_array_equal(clean.predict(rows, cols), direct.predict(rows, cols))

    def no_fit(*args, **kwargs):
        raise AssertionError("fitted again")

    monkeypatch.setattr(shared_fits, "fit_learner", no_fit)
    # read back (threads are not in the key)
    again, floor_again = shared_fits.clean_and_floor(cache, data, config.replace(threads=2), small)
    np.testing.assert_array_equal(again.user_factors, direct.user_factors)
    assert floor_again == floor
    # seed 4's clean fit is seed 3's floor fit, cached; its own floor needs seed 5
    assert shared_fits.clean_fit(cache, data, config.replace(seed=4), small) is not None
    with pytest.raises(AssertionError, match="fitted again"):
        shared_fits.clean_and_floor(cache, data, config.replace(seed=4), small)
    assert len(list(tmp_path.iterdir())) == 2


@pytest.mark.parametrize(
    ("method", "learner"), [("uniform", "als"), ("pga", "als"), ("uniform", "nuclear")]
)
def test_a_cell_has_the_same_metrics_with_and_without_the_cache(tmp_path, method, learner) -> None:
    settings = {
        "dataset": "synthetic:small",
        "method": method,
        "alpha": 0.03,
        "iterations": 1,
        "mu1": 1.0,
        "mu2": 1.0,
        "learner": learner,
        "learner.rank": 4,
        "seed": 1,
    }
    config = RUNNER.normalize(settings)
    without = RUNNER.run(config, RunContext(threads=1)).metrics
    cached = [RUNNER.run(config, RunContext(threads=1, cache_dir=str(tmp_path))) for _ in "ab"]
    assert len(list(tmp_path.iterdir())) == 2  # the clean fit and the floor's
    without.pop("seconds")
    for outcome in cached:
        metrics = dict(outcome.metrics)
        metrics.pop("seconds")
        assert metrics == without
