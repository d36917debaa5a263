"""Atomic outputs: a failed write leaves neither a partial file nor a temporary one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure

from cfpoison.io import atomic_write, to_jsonable, write_figure_report, write_json


def test_atomic_write_replaces_only_on_success(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(target) as handle:
        handle.write("half of the new content")
        raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]
    with atomic_write(target) as handle:
        handle.write("new")
    assert target.read_text() == "new"
    assert list(tmp_path.iterdir()) == [target]


def test_atomic_write_creates_parent_directories(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "c.json"
    write_json(target, {"x": 1})
    assert json.loads(target.read_text()) == {"x": 1}


def test_jsonable_converts_numpy_and_non_finite() -> None:
    payload = {
        "a": np.float64(1.5),
        "b": np.arange(3),
        "c": (np.int32(2), np.bool_(True)),
        "d": float("nan"),
        "e": np.inf,
        "f": Path("x/y"),
    }
    assert to_jsonable(payload) == {
        "a": 1.5,
        "b": [0, 1, 2],
        "c": [2, True],
        "d": None,
        "e": None,
        "f": "x/y",
    }


def test_figure_report_writes_the_page_last(tmp_path: Path) -> None:
    figure = Figure()
    figure.add_subplot().plot([0, 1], [1, 0])
    written = write_figure_report(tmp_path / "out", "r", "A title", "body\n", figure, {"x": 1})
    assert [p.name for p in written] == ["r.md", "r.png", "r.json"]
    assert (tmp_path / "out" / "r.md").read_text() == "# A title\n\nbody\n\n![A title](r.png)\n"
    assert (tmp_path / "out" / "r.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "out" / "r.json").read_text()) == {"x": 1}
    # a payload that cannot be written leaves no page pointing at it
    fresh = tmp_path / "fresh"
    with pytest.raises(TypeError):
        write_figure_report(fresh, "r", "t", "b", figure, {"y": object()})
    assert not (fresh / "r.md").exists() and not (fresh / "r.json").exists()
