"""Shared fixtures: the MovieLens data directory, ml-latest-small, and a seeded generator.

Tests on real MovieLens (marked ``realdata`` here, automatically) read ml-latest-small from
``$CFPOISON_DATA_DIR/ml-latest-small/`` when that holds it, else from the copy bundled with the
package: they never skip, with or without a data directory or a cache.
"""

from __future__ import annotations

import http.server
import io
import os
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

# Each of pytest-xdist's `-n N` worker processes shares the cores with the others: one numba
# and one OpenMP thread each, as every figure worker runs (both are read once, at import, so
# this precedes the imports below). With two threads per worker beside a busy second worker
# the thread pools spin: in the suite the quick defenses grid took 342 s (45 s with one numba
# thread) and the learned detector's test on ml-latest-small 129 s (4 s alone; scikit-learn's
# OpenMP). Threads > 1 are tested in a fresh process (tests/test_learners_kernels.py).
if os.environ.get("PYTEST_XDIST_WORKER"):
    for variable in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS"):
        os.environ.setdefault(variable, "1")

import numpy as np
import pytest

from cfpoison.data.ratings import Ratings
from cfpoison.data.registry import (
    DATASETS,
    bundled_ratings,
    find_local,
    load_dataset,
)
from cfpoison.learners.base import serial_blas

#: Fixtures that read real MovieLens; a test using one is marked ``realdata``.
REALDATA_FIXTURES = frozenset({"movielens_dir", "ml_small", "ml_small_zip"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if REALDATA_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.realdata)


@pytest.fixture(scope="session", autouse=True)
def _serial_blas() -> Iterator[None]:
    """One BLAS thread per test process, as the CLI runs (``learners.base.serial_blas``):
    with two xdist workers, BLAS threads beside numba's oversubscribe the cores."""
    with serial_blas():
        yield


@pytest.fixture(scope="session")
def movielens_dir() -> Path:
    """A directory holding ``ml-latest-small/``: ``$CFPOISON_DATA_DIR`` when it has the set,
    else the folder the bundled copy is unpacked into (``registry.bundled_ratings``)."""
    env = os.environ.get("CFPOISON_DATA_DIR")
    info = DATASETS["ml-latest-small"]
    if env and find_local(info, Path(env)) is not None:
        return Path(env)
    return bundled_ratings(info).parent.parent


@pytest.fixture(scope="session")
def ml_small(movielens_dir: Path) -> Ratings:
    """ml-latest-small, raw (shifted scale, no preprocessing); shared, do not mutate."""
    return load_dataset("ml-latest-small", movielens_dir, download=False)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.files[path]``; ``server.truncate`` announces more bytes than it sends."""

    server: LoopbackServer

    def do_GET(self) -> None:
        body = self.server.files.get(self.path.lstrip("/"))
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/zip")
        self.send_header("Content-Length", str(len(body) + (1000 if self.server.truncate else 0)))
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:
        pass


class LoopbackServer(http.server.ThreadingHTTPServer):
    """An HTTP server on 127.0.0.1 in a thread, serving in-memory files."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files: dict[str, bytes] = {}
        self.truncate = False
        self.thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/"


@pytest.fixture
def loopback_server() -> Iterator[LoopbackServer]:
    """A running loopback HTTP server; put archives in ``.files``."""
    server = LoopbackServer()
    server.thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def ml_small_zip() -> bytes:
    """A zip like GroupLens's, built from the bundled copy: ``ml-latest-small/ratings.csv`` and
    its README.txt (the license asks for it to travel with the data)."""
    folder = bundled_ratings(DATASETS["ml-latest-small"]).parent
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in ("ratings.csv", "README.txt"):
            archive.write(folder / name, f"ml-latest-small/{name}")
    return buffer.getvalue()
