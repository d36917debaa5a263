"""The beta sweep: SGLD against beta, and PGA / SGLD / uniform side by side, end to end."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from cfpoison.errors import ConfigError
from cfpoison.experiments.paper.beta_tradeoff import RUNNER_NAME, beta_parts
from cfpoison.experiments.pipeline import run_sweep
from cfpoison.experiments.sweeps.runners import RunContext, cells_of


def test_parts_cover_the_betas_and_the_comparison() -> None:
    beta, compare = beta_parts(quick=True, betas=(0.0, 0.6, 1.5), seeds=2)
    assert beta.spec.runner == compare.spec.runner == RUNNER_NAME
    configs = [cell.config for cell in cells_of(beta.spec)]
    assert sorted({c["attack"]["options"]["beta"] for c in configs}) == [0.0, 0.6, 1.5]
    assert len(configs) == 6 and all(c["detect"] for c in configs)
    methods = sorted(
        c["attack"]["method"] for c in (cell.config for cell in cells_of(compare.spec))
    )
    assert methods == ["pga", "pga", "sgld", "sgld", "uniform", "uniform"]
    with pytest.raises(ConfigError):
        beta_parts(betas=(-1.0,))
    with pytest.raises(ConfigError):
        beta_parts(seeds=0)


@pytest.mark.slow
def test_quick_sweep_writes_table_figure_and_lifted_metrics(tmp_path: Path) -> None:
    parts = beta_parts(
        dataset="synthetic:small", alpha=0.05, items_per_user=20, quick=True, betas=(0.0, 0.6)
    )
    for part in parts:
        run = run_sweep(part.spec, tmp_path / part.name, RunContext(), workers=1, name=part.name)
        assert run.error is None
        assert {"csv", "png", "svg"} <= set(run.files)
        with open(run.files["csv"], newline="") as handle:
            rows = list(csv.DictReader(handle))
        for row in rows:
            assert 0.0 <= float(row["ttest_pvalue"]) <= 1.0
            assert 0.0 <= float(row["ttest_users_pvalue"]) <= 1.0
            assert 0.0 <= float(row["auc_rdma"]) <= 1.0
            assert float(row["ttest_log10_pvalue"]) <= 0.0
    compare = {row["attack.method"]: row for row in rows}
    assert set(compare) == {"pga", "sgld", "uniform"}
