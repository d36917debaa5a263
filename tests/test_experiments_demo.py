"""``cfpoison demo``: three attacks on the built-in synthetic data, the detectors' verdicts,
a report with a figure; offline. Every sentence of its report is the run's own numbers."""

from __future__ import annotations

import json
import re

import pytest

from cfpoison.cli import main
from cfpoison.experiments.paper.demo import (
    CATCH_AUC,
    CATCH_F1,
    TARGET_SPAN,
    draw_demo,
    verdict_of,
)
from cfpoison.experiments.presentation.report import UNRESOLVED
from cfpoison.experiments.sweeps.store import ResultStore, StoredCell
from experiments_fakes import (
    DEMO_DETECTORS,
    FIVE_OF_NINE,
    check_report_structure,
    demo_metrics,
    fake_demo,
)


@pytest.fixture
def five_of_nine(tmp_path, monkeypatch, capsys):
    """The demo run on hand-made results where uniform is caught by 5 of 9 detectors."""
    out = tmp_path / "demo"
    fake_demo(out, FIVE_OF_NINE, monkeypatch)
    return out, capsys.readouterr().out


def test_the_text_counts_what_the_verdicts_count(five_of_nine) -> None:
    out, printed = five_of_nine
    markdown = (out / "report.md").read_text()
    uniform = "caught by 5 of 9 detectors (fmtd, mean_var (inverted), rdma, wdma, learned)"
    assert "uniform: RMSE shift 0.05 stars on unseen entries (12.50x the floor)" in markdown
    assert uniform in markdown and uniform in printed
    assert (
        "pga: " in markdown and "caught by 4 of 9 detectors (fmtd, rdma, wdma, learned)" in markdown
    )
    assert "caught by 3 of 9 detectors (mean_var (inverted), rdma (inverted), learned)" in markdown
    row = next(line for line in markdown.splitlines() if line.startswith("| uniform | 18 |"))
    assert row.endswith("| 5 of 9 | fmtd, mean_var (inverted), rdma, wdma, learned |")
    assert row in printed  # the printed verdicts are the report's
    assert "By RMSE shift (stars): pga 0.1 > uniform 0.05 > sgld 0.01" in markdown
    assert (
        "that catch all 3 attacks (either way round): rdma, learned; that catch none: "
        "degsim, length_var, pca, wda." in markdown
    )
    assert "The target: item 42 of the synthetic data set" in markdown
    assert "One seed per attack (seed 0)" in markdown and "± 0" not in markdown
    assert re.search(r"^took \d+\.\d s; report: ", printed, re.MULTILINE)
    # no fixed verdict prose, and one unit
    for stale in ("every detector", "about a minute", "shifted scale", "mimic", "0.76"):
        assert stale not in markdown, stale
    settings = markdown.split("\n\n")[2]
    assert settings.startswith("Settings, from the cells' configs: the synthetic data set; 3 %")
    assert "B = 100 items" in settings and "10 steps" in settings and "beta = 0.6" in settings
    check_report_structure(out)


def test_unresolved_floors_give_no_ratio(tmp_path, monkeypatch, capsys) -> None:
    results = {m: {**r, "rmse_shift_noise_floor": 7.5e-6} for m, r in FIVE_OF_NINE.items()}
    for r in results.values():
        r["rmse_shift_noise_floor_stars"] = 7.5e-6
    out = tmp_path / "demo"
    fake_demo(out, results, monkeypatch)
    markdown = (out / "report.md").read_text()
    assert UNRESOLVED == "floor unresolved (< 1e-3)"
    assert (
        "uniform: RMSE shift 0.05 stars on unseen entries (floor unresolved (< 1e-3))" in markdown
    )
    assert "noise floor 7.5e-06, floor unresolved (< 1e-3): no ratio to it" in markdown
    assert "x the floor" not in markdown and "Above the floor" not in markdown
    assert "| uniform | 18 | 0.05 | 7.5e-06 | floor unresolved (< 1e-3) |" in markdown
    assert "floor unresolved (< 1e-3) for rmse_shift_stars (7.5e-06)" in markdown
    capsys.readouterr()


def test_the_figure_shows_the_verdicts_numbers(five_of_nine) -> None:
    out, _ = five_of_nine
    with ResultStore(out / "results.sqlite") as store:
        rows = store.rows()
    fig = draw_demo(rows, "t")
    shift_ax, target_ax, f1_ax, learned_ax = fig.axes
    methods = [t.get_text() for t in shift_ax.get_xticklabels()]
    assert methods == ["pga", "sgld", "uniform"]
    legend = [t.get_text() for t in f1_ax.get_legend().get_texts()]
    assert legend == [
        "pga: caught by 4 of 9",
        "sgld: caught by 3 of 9",
        "uniform: caught by 5 of 9",
        "inverted",
    ]
    bars = [p for p in f1_ax.patches if p.get_height() > 0 or p.get_width() > 0]
    for i, method in enumerate(methods):
        scores = FIVE_OF_NINE[method]["detection"]["detectors"]
        mine = bars[i * len(DEMO_DETECTORS) : (i + 1) * len(DEMO_DETECTORS)]
        assert [b.get_height() for b in mine] == [scores[d]["f1_two_sided"] for d in DEMO_DETECTORS]
        assert [bool(b.get_hatch()) for b in mine] == [
            scores[d]["inverted"] for d in DEMO_DETECTORS
        ]
    assert f1_ax.lines[0].get_ydata()[0] == CATCH_F1
    assert learned_ax.lines[0].get_ydata()[0] == CATCH_AUC
    low, high = target_ax.get_ylim()
    assert low <= -TARGET_SPAN and high >= TARGET_SPAN  # +0.06 stars looks small
    assert "item 42" in target_ax.get_title() and "stars" in target_ax.get_title()
    assert [p.get_height() for p in shift_ax.patches] == [0.1, 0.01, 0.05]


def test_a_detector_is_counted_once_either_way_round() -> None:
    metrics = demo_metrics(("rdma",), ("rdma",))
    assert metrics["detection"]["detectors"]["rdma"]["f1"] == 0.0  # one-sided: missed
    cell = StoredCell("k", {"attack": {"method": "sgld"}}, metrics, None, 1.0, {}, "")
    verdict = verdict_of(cell)
    assert verdict.caught == ("rdma (inverted)",) and verdict.count == "1 of 9"


@pytest.mark.slow
def test_demo_attacks_detects_and_reports(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("CFPOISON_DATA_DIR", str(tmp_path / "no-data-here"))  # built-in only
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--json", str(tmp_path / "d.json")]) == 0
    printed = capsys.readouterr().out
    assert f"report: {out / 'report.html'}" in printed
    with ResultStore(out / "results.sqlite") as store:
        rows = {row.config["attack"]["method"]: row for row in store.rows()}
    assert set(rows) == {"pga", "sgld", "uniform"}
    markdown = (out / "report.md").read_text()
    for method, row in rows.items():
        assert row.config["dataset"] == "synthetic"
        assert row.config["attack"]["threat"]["alpha"] == 0.03
        detection = row.metrics["detection"]
        assert set(detection["detectors"]) >= {"rdma", "wdma", "degsim", "fmtd", "pca"}
        caught = [
            f"{d} (inverted)" if m["inverted"] else d
            for d, m in detection["detectors"].items()
            if m["f1_two_sided"] >= CATCH_F1
        ]
        caught += ["learned"] if detection["learned"]["auc_two_sided"] >= CATCH_AUC else []
        count = f"{len(caught)} of {len(detection['detectors']) + 1}"
        names = ", ".join(caught) if caught else "none"
        line = next(line for line in printed.splitlines() if line.startswith(f"| {method} |"))
        assert line.endswith(f"| {count} | {names} |")
        assert line in markdown  # the printed verdicts are the report's
        assert f"{method}: RMSE shift " in markdown
        assert f"caught by {count} detectors ({names})" in markdown
    # the ordering the demo is there to show
    assert rows["pga"].metrics["rmse_shift_stars"] > rows["uniform"].metrics["rmse_shift_stars"]
    assert rows["pga"].metrics["target_mean_after"] > rows["pga"].metrics["target_mean_before"]
    page = (out / "report.html").read_text()
    assert "data:image/png;base64," in page and "Verdicts" in page
    summary = json.loads((tmp_path / "d.json").read_text())
    assert summary["outcome"]["computed"] == 3 and summary["seconds"] > 0
