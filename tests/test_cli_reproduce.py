"""``cfpoison reproduce fig1 --quick`` on ml-latest-small, end to end (run in CI).

It produces the store, the exports, the figure with all three methods and the noise floor,
and a report whose every number is the stored one; rerun, it computes nothing.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from cfpoison.cli import main
from cfpoison.experiments.paper.figures_1_2 import figure_parts
from cfpoison.experiments.sweeps.runners import cells_of
from cfpoison.experiments.sweeps.store import ResultStore
from experiments_fakes import check_report_against_store, check_report_structure


@pytest.fixture(scope="module")
def quick_fig1(movielens_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("fig1")
    args = ["--quiet", "reproduce", "fig1", "--quick", "--out", str(out)]
    summary = out / "run.json"
    code = main([*args, "--data-dir", str(movielens_dir), "--json", str(summary)])
    return code, out, json.loads(summary.read_text()) if summary.exists() else None


def test_quick_fig1_produces_figures_and_report(quick_fig1) -> None:
    code, out, summary = quick_fig1
    assert code == 0, summary
    cells = cells_of(figure_parts("fig1", quick=True)[0].spec)
    assert len(cells) == 4 * 5 * 2 * 2  # panels x methods (3 + 2 shilling) x alphas x seeds
    assert summary["fig1"]["outcome"]["computed"] == len(cells)
    with ResultStore(out / "results.sqlite") as store:
        rows = store.rows()
    assert sorted(r.key for r in rows) == sorted(c.key for c in cells)
    for name in ("report.md", "report.html", "results.parquet", "figures/fig1.png"):
        assert (out / name).stat().st_size > 0
    svg = (out / "figures" / "fig1.svg").read_text()
    for label in ("pga", "sgld", "uniform", "noise floor", "clean model"):
        assert f"<!-- {label} -->" in svg  # legend entries
    assert "(strongest shilling) -->" in svg
    with open(out / "results.csv", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == len(cells)
    # every cell shared the clean fits: seeds 0 and 1, and seed 2 for seed 1's noise floor
    assert len(list((out / "cache").glob("*.npz"))) == 3


def test_quick_fig1_report_numbers_are_the_stored_ones(quick_fig1) -> None:
    _, out, _ = quick_fig1
    assert check_report_against_store(out) == 2 * 4 * 5 * 2
    check_report_structure(out)
    markdown = (out / "report.md").read_text()
    assert "# Figure 1: alternating minimization on ml-latest-small: 610 users x 9,724" in markdown
    assert "aa289ca83157595d0df6aea1be6a4ded676ddc4385472e8313a8ed9805352646" in markdown
    assert "QUICK RUN" in markdown and "Seed-noise floor" in markdown
    page = (out / "report.html").read_text()
    assert "data:image/png;base64," in page and "Versions" in page


def test_rerun_resumes_without_recomputing(quick_fig1, movielens_dir) -> None:
    _, out, _ = quick_fig1
    again = out / "again.json"
    args = ["--quiet", "reproduce", "fig1", "--quick", "--out", str(out), "--json", str(again)]
    assert main([*args, "--data-dir", str(movielens_dir)]) == 0
    outcome = json.loads(again.read_text())["fig1"]["outcome"]
    assert (outcome["computed"], outcome["already_done"]) == (0, 80)


def test_bad_requests_are_one_line_errors(capsys, tmp_path) -> None:
    assert (
        main(["reproduce", "fig1", "--quick", "--methods", "pga,nope", "--out", str(tmp_path)]) == 2
    )
    assert "unknown method(s) nope" in capsys.readouterr().err
    assert main(["reproduce", "fig1", "--seeds", "0", "--out", str(tmp_path)]) == 2
    assert "seeds must be >= 1" in capsys.readouterr().err


def test_fig2_has_the_paper_subset_and_the_full_set() -> None:
    subset, full = figure_parts("fig2", quick=True)
    subset_cells, full_cells = cells_of(subset.spec), cells_of(full.spec)
    preprocess = subset_cells[0].config["preprocess"]
    assert (preprocess["top_users"], preprocess["top_items"]) == (1000, 1700)
    assert full_cells[0].config["preprocess"]["top_users"] is None
    assert {c.config["attack"]["learner"]["name"] for c in subset_cells + full_cells} == {"nuclear"}
    methods = {c.config["attack"]["method"] for c in subset_cells}
    assert methods == {"pga", "sgld", "uniform", "average", "bandwagon"}
    assert "610 users" not in subset.title  # the real size is added from the data
    sgld = next(c for c in subset_cells if c.config["attack"]["method"] == "sgld")
    assert sgld.config["attack"]["options"]["beta"] == 0.6


@pytest.mark.slow
def test_reproduce_defenses_quick(tmp_path: Path) -> None:
    out = tmp_path / "defenses"
    args = ["reproduce", "defenses", "--quick", "--dataset", "synthetic:small"]
    code = main([*args, "--out", str(out), "--json", str(tmp_path / "d.json"), "--quiet"])
    assert code == 0
    payload = json.loads((tmp_path / "d.json").read_text())
    attacks = {row["attack"] for row in payload["defenses"]}
    made = {row["adaptive_attack"] for row in payload["adaptive"]}
    assert attacks == {"pga", "sgld", "uniform", "average", "bandwagon"} | made
    # PGA against each of the 10 default defenses (4 detectors, bagging, 2 trimmed, Huber,
    # influence cap, ALS-WR), and PGA projected after the attack for each detector
    kinds = [row["kind"] for row in payload["adaptive"]]
    assert kinds.count("adaptive") == 10 and kinds.count("evade") == 4
    for row in payload["adaptive"]:
        made_rows = [r for r in payload["defenses"] if r["attack"] == row["adaptive_attack"]]
        assert [r["name"] for r in made_rows] == [row["defense"]]
        assert row["rmse_shift_adaptive"] == made_rows[0]["rmse_shift"]
    for row in payload["defenses"]:
        for key in ("name", "rmse_shift", "rmse_shift_undefended", "rmse_shift_noise_floor"):
            assert key in row
        assert row["test_rmse_clean"] > 0 and row["test_rmse_clean_defended"] > 0
    assert (out / "defenses.md").exists() and (out / "cost-benefit.png").exists()
    assert "Adaptive attacker" in (out / "defenses.md").read_text()
