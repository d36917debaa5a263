"""``cfpoison demo``: three attacks on the built-in synthetic data, the detectors' verdicts,
a report with a figure; offline."""

from __future__ import annotations

import json

import pytest

from cfpoison.cli import main
from cfpoison.experiments.paper.demo import CATCH_AUC, CATCH_F1
from cfpoison.experiments.sweeps.store import ResultStore


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
        line = next(line for line in printed.splitlines() if line.startswith(f"| {method} |"))
        assert line.endswith(f"| {', '.join(caught) if caught else 'none'} |")
        assert line in markdown  # the printed verdicts are the report's
    assert rows["pga"].metrics["rmse_shift"] > rows["pga"].metrics["rmse_shift_noise_floor"]
    page = (out / "report.html").read_text()
    assert "data:image/png;base64," in page and "Verdicts" in page
    summary = json.loads((tmp_path / "d.json").read_text())
    assert summary["outcome"]["computed"] == 3
