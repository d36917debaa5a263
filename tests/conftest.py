"""Shared fixtures: the MovieLens data directory, ml-latest-small, and a seeded generator.

Tests on real MovieLens read ``$CFPOISON_DATA_DIR/ml-latest-small/`` (CI sets it to
``../shared/data``); without it they fall back to the user cache. In CI (``$CI`` set) a
missing data set fails the run: those tests are never skipped there.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from cfpoison.data.ratings import Ratings
from cfpoison.data.registry import DATASETS, cache_dir, find_local, load_dataset


@pytest.fixture(scope="session")
def movielens_dir() -> Path:
    """The directory holding ``ml-latest-small/`` (``$CFPOISON_DATA_DIR``, else the cache)."""
    env = os.environ.get("CFPOISON_DATA_DIR")
    base = Path(env) if env else cache_dir()
    if find_local(DATASETS["ml-latest-small"], base) is None:
        message = f"ml-latest-small not found under {base}; set CFPOISON_DATA_DIR"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return base


@pytest.fixture(scope="session")
def ml_small(movielens_dir: Path) -> Ratings:
    """ml-latest-small, raw (shifted scale, no preprocessing); shared, do not mutate."""
    return load_dataset("ml-latest-small", movielens_dir, download=False)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
