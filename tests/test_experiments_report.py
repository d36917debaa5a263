"""Figures and reports: every number shown is the stored one; the page is self-contained."""

from __future__ import annotations

import json
import os
import re
import shutil

import numpy as np
import pytest

from cfpoison.cli import main
from cfpoison.experiments.pipeline import run_sweep
from cfpoison.experiments.presentation import figures
from cfpoison.experiments.presentation.report import fmt
from cfpoison.experiments.sweeps.execute import describe_execution
from cfpoison.experiments.sweeps.spec import PlotSpec, SweepSpec
from cfpoison.experiments.sweeps.store import ResultStore
from experiments_fakes import (
    check_report_against_store,
    check_report_structure,
    expected_metrics,
)

FAKE = "experiments_fakes:RUNNER"
GRID = {
    "method": ("pga", "sgld", "uniform"),
    "alpha": (0.01, 0.03),
    "seed": (0, 1, 3),
    "mu1": (1.0, 0.0),
    "mu2": (0.0, 1.0),
}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    spec = SweepSpec(runner=FAKE, grid=(GRID,))
    return run_sweep(spec, out, workers=0, title="Fake sweep", notes=("a note",)), out


def test_report_numbers_are_the_stored_ones(sweep) -> None:
    run, out = sweep
    assert run.error is None and run.outcome is not None and run.outcome.computed == 72
    assert check_report_against_store(out) == 2 * 4 * 3 * 2  # metrics x panels x methods x x
    with ResultStore(out / "results.sqlite") as store:
        rows = store.rows()
    summary = json.loads((out / "report.json").read_text())
    markdown = (out / "report.md").read_text()
    floors = [expected_metrics(r.config)["rmse_shift_noise_floor"] for r in rows]
    assert summary["floors"]["rmse_shift_noise_floor"]["mean"] == pytest.approx(np.mean(floors))
    assert summary["seconds"]["cells_total"] == pytest.approx(sum(r.seconds for r in rows))
    assert summary["seconds"]["executed_on"] == "one process, cell after cell"
    hours = summary["seconds"]["cells_total"] / 3600
    assert f"({hours:.2f} cell-hours) in all" in markdown
    assert "its cells computed on one process, cell after cell." in markdown
    assert "a note" in markdown and "Seed-noise floor" in markdown


def test_a_rerun_that_computes_nothing_names_no_executor(sweep, tmp_path) -> None:
    """A store already complete: the last run computed no cell, so it ran nowhere."""
    _, out = sweep
    shutil.copy(out / "results.sqlite", tmp_path / "results.sqlite")  # the fixture's own stays
    spec = SweepSpec(runner=FAKE, grid=(GRID,))
    rerun = run_sweep(spec, tmp_path, workers=3, title="Fake sweep")
    assert rerun.outcome is not None and rerun.outcome.computed == 0
    summary = json.loads((tmp_path / "report.json").read_text())
    assert summary["seconds"]["executed_on"] is None


@pytest.mark.parametrize(
    ("workers", "scheduler", "words"),
    [
        (0, None, "one process, cell after cell"),
        (1, None, "a local pool of 1 worker process"),
        (2, None, "a local pool of 2 worker processes"),
        (2, "local", "a Dask LocalCluster of 2 worker processes"),
        (2, "tcp://127.0.0.1:8786", "the Dask distributed scheduler at tcp://127.0.0.1:8786"),
    ],
)
def test_where_a_run_computed_its_cells_in_words(workers, scheduler, words) -> None:
    assert describe_execution(workers, scheduler) == words


def test_report_files_honour_the_umask(sweep) -> None:
    """Readable as any file the user writes (0644 under umask 022), not 0600 temp files."""
    _, out = sweep
    mask = os.umask(0o022)
    os.umask(mask)
    for name in ("report.md", "report.html", "report.json", "figures/sweep.png", "results.csv"):
        assert (out / name).stat().st_mode & 0o777 == 0o666 & ~mask, name


def test_figures_show_every_method_and_the_floor(sweep) -> None:
    run, out = sweep
    assert run.files["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert run.files["svg"].read_text().lstrip().startswith("<?xml")
    with ResultStore(out / "results.sqlite") as store:
        fig = figures.draw(store.rows(), PlotSpec(), "t")
    labels = {text.get_text() for legend in fig.legends for text in legend.get_texts()}
    assert labels == {
        "pga",
        "sgld",
        "uniform",
        "within the noise floor",
        "noise floor",
        "clean model",
    }
    assert len(fig.axes) == 2 * 4


def test_steps_on_untrustworthy_gradients_are_counted_in_the_report(sweep) -> None:
    """Never silent: the 8 SGLD cells at seed 3 (2 alphas x 4 goals) each took one step on a
    gradient outside tolerance; the report says so up front and report.json counts them."""
    _, out = sweep
    summary = json.loads((out / "report.json").read_text())
    assert summary["untrustworthy_gradients"] == {"sgld": {"steps": 8, "cells": 8}}
    markdown = (out / "report.md").read_text()
    assert "8 steps in 8 of 72 cells followed a gradient outside tolerance" in markdown
    assert "(an unconverged fit or adjoint solve; sgld 8 in 8 cells)" in markdown


def test_report_structure_and_panel_readings(sweep) -> None:
    _, out = sweep
    check_report_structure(out)
    readings = json.loads((out / "report.json").read_text())["readings"]
    assert len(readings) == 4  # one per panel
    # panel mu1=1, mu2=0 at x = 3 (%): pga 3 * 0.03 * 1 + jitter over seeds 0, 1, 3
    mean = np.mean([0.09 + 0.001 * s for s in (0, 1, 3)])
    floor = np.mean([0.004 + 0.001 * s for s in (0, 1, 3)])
    first = next(r for r in readings if r.startswith("Panel mu1=1, mu2=0."))
    assert "at x = 3 (malicious users (%)): noise floor" in first
    assert f"pga {fmt(mean)} ± " in first and f"({mean / floor:.2f}x the floor)" in first
    assert "noise floor " + fmt(floor) in first and "pga largest" in first
    assert "Above the floor: pga at 2 of 2, sgld at 2 of 2, uniform at 2 of 2" in first
    # the integrity panel (mu1=0, mu2=1) reads the target against the clean model: 3.0
    integrity = next(r for r in readings if r.startswith("Panel mu1=0, mu2=1."))
    change = 3 * 0.03 * 10
    assert f"clean model 3; pga {fmt(3.0 + change + 0.004 / 3)} ± " in integrity
    assert f"({change + 0.004 / 3:+.3g} from the clean model)" in integrity


def test_the_strongest_baseline_is_the_reference_curve(tmp_path) -> None:
    grid = {**GRID, "method": ("pga", "average", "bandwagon"), "seed": (0, 1)}
    plot = PlotSpec(baselines=("average", "bandwagon"))
    run = run_sweep(SweepSpec(runner=FAKE, grid=(grid,), plot=plot), tmp_path, workers=0)
    with ResultStore(tmp_path / "results.sqlite") as store:
        fig = figures.draw(store.rows(), plot, "t")
    labels = {text.get_text() for legend in fig.legends for text in legend.get_texts()}
    assert "average (strongest shilling)" in labels  # utility 1.5 a against bandwagon's 1.2 a
    assert not any(label.startswith("bandwagon") for label in labels)
    assert check_report_against_store(tmp_path) == 2 * 4 * 3 * 2  # tables keep both
    readings = json.loads(run.files["json"].read_text())["readings"]
    assert all("average" in r and "bandwagon" not in r for r in readings)


def test_html_page_is_self_contained(sweep) -> None:
    _, out = sweep
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 1
    assert not re.search(r"(src|href)=\"https?:", page)
    for key in json.loads((out / "sweep.json").read_text())["grid"][0]:
        assert key in page
    with ResultStore(out / "results.sqlite") as store:
        assert all(row.key in page for row in store.rows())  # every cell's config is listed


def test_failed_cells_are_listed_as_missing(tmp_path) -> None:
    spec = SweepSpec(runner=FAKE, grid=({"seed": (0, 1), "fail": (False, True)},))
    run = run_sweep(spec, tmp_path, workers=0)
    assert run.error is not None and "2 of 4 cells failed" in run.error
    markdown = (tmp_path / "report.md").read_text()
    assert "2 of 4 cells stored; 2 missing" in markdown and "## Missing cells" in markdown
    assert markdown.count("fake runner: asked to fail") == 2


def test_cli_sweep_run_dry_run_and_export(tmp_path, capsys) -> None:
    out = tmp_path / "cli"
    flags = ["--runner", FAKE, "--grid", "method=pga,uniform", "--grid", "seed=0,1"]
    dry = tmp_path / "dry.json"
    assert main(["sweep", "run", "--out", str(out), *flags, "--dry-run", "--json", str(dry)]) == 0
    assert json.loads(dry.read_text())["stored"] == 0
    assert main(["--quiet", "sweep", "run", "--out", str(out), *flags, "--workers", "0"]) == 0
    assert main(["sweep", "run", "--out", str(out), *flags, "--dry-run", "--json", str(dry)]) == 0
    assert json.loads(dry.read_text()) | {"keys": None} == {"cells": 4, "stored": 4, "keys": None}
    csv_path, parquet_path = tmp_path / "x.csv", tmp_path / "x.parquet"
    assert (
        main(["sweep", "export", str(out), "--csv", str(csv_path), "--parquet", str(parquet_path)])
        == 0
    )
    assert len(csv_path.read_text().splitlines()) == 5 and parquet_path.stat().st_size > 0
    capsys.readouterr()
    assert main(["sweep", "export", str(tmp_path / "none")]) == 1
    assert "no such result store" in capsys.readouterr().err
    bad = ["sweep", "run", "--out", str(out), "--runner", FAKE, "--grid", "method=nope"]
    assert main(bad) == 2
    assert "unknown method" in capsys.readouterr().err


def test_one_seed_shows_no_spread(tmp_path) -> None:
    """With one seed per point there is no spread to show: no "± 0", the reading says so."""
    grid = {**GRID, "seed": (0,), "alpha": (0.03,), "method": ("pga",)}
    run_sweep(SweepSpec(runner=FAKE, grid=(grid,)), tmp_path, workers=0, title="One seed")
    readings = json.loads((tmp_path / "report.json").read_text())["readings"]
    first = next(r for r in readings if r.startswith("Panel mu1=1, mu2=0."))
    assert "(one seed)" in first and "± " not in first and "x the floor)" in first
    markdown = (tmp_path / "report.md").read_text()
    assert "| 1.0 | 0.0 | pga | 3 | 1 | 0.09 | one seed | 0.09 | 0.09 |" in markdown
