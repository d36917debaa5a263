"""A cheap, deterministic cell runner for the experiment engine's tests, and a check that a
report's numbers are the stored ones.

Its metrics are a closed-form function of the config, so tests can check that stores, exports,
figures and reports carry exactly the numbers computed. Each computation appends the cell's
method, alpha and seed to ``$CFPOISON_FAKE_LOG`` (when set) so tests can count recomputations;
``sleep`` in the config slows a cell down for the kill test. A cell with ``hang`` set, run
while ``$CFPOISON_FAKE_HANG`` names a folder, writes its process id to ``KEY.pid`` there and
sleeps for a minute, the first time only (the folder remembers): a test kills that process.
"""

from __future__ import annotations

import base64
import html.parser
import json
import os
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cfpoison.cli import main
from cfpoison.config import digest_of
from cfpoison.errors import ConfigError
from cfpoison.experiments.attack_runner import AttackRunner
from cfpoison.experiments.presentation.report import fmt
from cfpoison.experiments.sweeps.runners import CellOutcome, RunContext
from cfpoison.experiments.sweeps.spec import Cell, PlotSpec, SweepSpec, lookup
from cfpoison.experiments.sweeps.store import ResultStore
from cfpoison.io import atomic_write

DEFAULTS: dict[str, Any] = {
    "dataset": "toy",
    "method": "pga",
    "alpha": 0.01,
    "mu1": 1.0,
    "mu2": 0.0,
    "seed": 0,
    "sleep": 0.0,
    "fail": False,
    "hang": False,
}
STRENGTH = {"pga": 3.0, "sgld": 2.0, "uniform": 1.0, "average": 1.5, "bandwagon": 1.2}


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
        "utility": strength * a * (1.0 + mu2),
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
            "hang": bool(merged["hang"]),
        }

    def run(self, config: Mapping[str, Any], context: RunContext) -> CellOutcome:
        log = os.environ.get("CFPOISON_FAKE_LOG")
        if log:
            with open(log, "a") as handle:
                handle.write(digest_of(dict(config)) + "\n")
        hang = os.environ.get("CFPOISON_FAKE_HANG")
        if hang and config.get("hang"):
            signal = Path(hang) / f"{digest_of(dict(config))}.pid"
            if not signal.exists():
                with atomic_write(signal) as handle:
                    handle.write(str(os.getpid()))
                time.sleep(60)
        time.sleep(config["sleep"])
        if config["fail"]:
            raise ConfigError("fake runner: asked to fail")
        metrics = expected_metrics(config)
        attack = config["attack"]
        # SGLD at seed 3 takes one step on a gradient outside tolerance, as a real run can
        trusted = not (attack["method"] == "sgld" and attack["seed"] == 3)
        steps = [{"gradient_trustworthy": True}, {"gradient_trustworthy": trusted}]
        return CellOutcome(metrics, {"utility": [0.0, metrics["rmse_shift"]], "steps": steps})


RUNNER = FakeRunner()

DEMO_DETECTORS = ("degsim", "fmtd", "length_var", "mean_var", "pca", "rdma", "wda", "wdma")


def demo_metrics(
    caught: Sequence[str],
    inverted: Sequence[str] = (),
    shift: float = 0.05,
    floor: float = 0.004,
    change: float = 0.02,
) -> dict[str, Any]:
    """A demo cell's metrics, made by hand: ``caught`` names the detectors whose two-sided F1
    (two-sided AUC for ``learned``) clears the bar, ``inverted`` those that score the fakes
    low; ``shift`` and ``floor`` in stars (the synthetic scale: the same on the shifted one)."""

    def scores(name: str) -> dict[str, Any]:
        hit, low = name in caught, name in inverted
        f1, auc = (0.8, 0.95) if hit else (0.2, 0.6)
        return {
            "auc": 1 - auc if low else auc,
            "auc_two_sided": auc,
            "f1": 0.0 if low else f1,
            "f1_two_sided": f1,
            "inverted": low,
            "k": 18,
        }

    learned = 0.97 if "learned" in caught else 0.7
    return {
        "rmse_shift": shift,
        "rmse_shift_stars": shift,
        "rmse_shift_noise_floor": floor,
        "rmse_shift_noise_floor_stars": floor,
        "target_mean_before": 3.5,
        "target_mean_after": 3.5 + change,
        "targets": [42],
        "utility": shift,
        "detection": {
            "detectors": {name: scores(name) for name in DEMO_DETECTORS},
            "learned": {"auc": learned, "auc_two_sided": learned, "inverted": False},
            "n_fake": 18,
            "best_detector": "rdma",
            "best_auc_two_sided": 0.95,
            "distribution": {
                t: {"pvalue": 0.01} for t in ("length", "rating_histogram", "item_popularity")
            },
            "ttest_users": {"pvalue": 0.02},
            "ttest_pvalue": 0.03,
        },
    }


class FakeDemoRunner(AttackRunner):
    """The demo's real configs (the attack runner's ``normalize``), metrics from ``results``
    (method -> :func:`demo_metrics`), no data loaded."""

    def __init__(self) -> None:
        self.results: dict[str, dict[str, Any]] = {}

    def run(self, config: Mapping[str, Any], context: RunContext) -> CellOutcome:
        return CellOutcome(self.results[config["attack"]["method"]])

    def provenance(self, cells: Sequence[Cell], context: RunContext) -> list[dict[str, Any]]:
        return []


DEMO_RUNNER = FakeDemoRunner()

#: uniform caught by 5 of the 9 detectors (the 8 unsupervised ones and the learned one).
FIVE_OF_NINE = {
    "pga": demo_metrics(("fmtd", "rdma", "wdma", "learned"), shift=0.1, change=0.06),
    "sgld": demo_metrics(("mean_var", "rdma", "learned"), ("mean_var", "rdma"), shift=0.01),
    "uniform": demo_metrics(
        ("fmtd", "mean_var", "rdma", "wdma", "learned"), ("mean_var",), shift=0.05, change=-0.01
    ),
}


def fake_demo(
    out: Path, results: Mapping[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``cfpoison demo --out OUT`` in this process, :data:`DEMO_RUNNER` serving ``results``."""
    monkeypatch.setattr(DEMO_RUNNER, "results", dict(results))
    fake = "experiments_fakes:DEMO_RUNNER"
    monkeypatch.setattr("cfpoison.experiments.paper.demo.RUNNER_NAME", fake)
    assert main(["demo", "--out", str(out), "--workers", "0"]) == 0


def check_report_against_store(out: Path) -> int:
    """Recompute every point of ``out``'s report from its store; return the points checked.

    Each point's mean, standard deviation and count must equal those of the stored cells
    with its panel, curve and x, and its rounded mean must appear in report.md and .html.
    """
    spec = SweepSpec.from_json((out / "sweep.json").read_text())
    plot = spec.plot or PlotSpec()
    summary = json.loads((out / "report.json").read_text())
    markdown = (out / "report.md").read_text()
    page = (out / "report.html").read_text()
    with ResultStore(out / "results.sqlite") as store:
        rows = [row for row in store.rows() if row.key in page]
    checked = 0
    for metric in plot.metrics:
        for point in summary["metrics"][metric]:
            values = [
                row.metrics[metric]
                for row in rows
                if [lookup(row.flat(), f) for f in plot.panel] == point["panel"]
                and lookup(row.flat(), plot.curve) == point["curve"]
                and lookup(row.flat(), plot.x) * plot.x_scale == pytest.approx(point["x"])
            ]
            assert point["n"] == len(values) > 0
            assert point["mean"] == pytest.approx(np.mean(values), rel=1e-12, abs=1e-15)
            if len(values) > 1:
                assert point["std"] == pytest.approx(np.std(values, ddof=1), rel=1e-9, abs=1e-15)
            cells = [*map(str, point["panel"]), point["curve"], f"{point['x']:g}", str(point["n"])]
            assert "| " + " | ".join([*cells, fmt(point["mean"])]) + " |" in markdown
            assert f"<td>{fmt(point['mean'])}</td>" in page
            checked += 1
    return checked


class Page(html.parser.HTMLParser):
    """The parts of a report page the structural check looks at."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.tables: list[list[list[str]]] = []  # body rows of each table
        self.headers: list[list[str]] = []  # the header cells of each table
        self.paragraphs: list[str] = []
        self._paragraph: list[str] | None = None
        self.headings: list[str] = []
        self.text: list[str] = []
        self._cell: list[str] | None = None
        self._heading = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.images.append(dict(attrs).get("src") or "")
        elif tag == "table":
            self.tables.append([])
            self.headers.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "p":
            self._paragraph = []
        self._heading = tag in ("h1", "h2", "h3")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            text = "".join(self._cell).strip()
            (self.tables[-1][-1] if tag == "td" else self.headers[-1]).append(text)
            self._cell = None
        if tag == "p" and self._paragraph is not None:
            self.paragraphs.append("".join(self._paragraph).strip())
            self._paragraph = None
        self._heading = False

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)
        if self._paragraph is not None:
            self._paragraph.append(data)
        if self._heading:
            self.headings.append(data)


def check_report_structure(out: Path) -> None:
    """The report in ``out`` is whole: every figure file is embedded in the HTML as a valid
    PNG and linked from the Markdown, every table has rows and no empty cell, the panels are
    read in prose, and no number anywhere is NaN (or ``n/a``, which is how tables print it)."""
    page = Page()
    page.feed((out / "report.html").read_text())
    pngs = sorted((out / "figures").glob("*.png"))
    assert pngs and len(page.images) == len(pngs)
    for src in page.images:
        prefix = "data:image/png;base64,"
        assert src.startswith(prefix)
        data = base64.b64decode(src[len(prefix) :], validate=True)
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    markdown = (out / "report.md").read_text()
    linked = re.findall(r"!\[[^]]*\]\(([^)]+)\)", markdown)
    assert sorted(out / link for link in linked) == pngs
    assert page.tables and all(len(table) > 1 for table in page.tables)  # header + rows
    for table in page.tables:
        assert all(row and all(cell for cell in row) for row in table[1:]), table[:3]
    assert "Reading the panels" in page.headings
    text = " ".join(page.text)
    assert not re.search(r"\bnan\b|n/a", text, re.IGNORECASE), "a NaN in the report"
    assert not re.search(r"\bnan\b", markdown, re.IGNORECASE), "a NaN in the Markdown"
