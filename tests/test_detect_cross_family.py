"""Leave-one-family-out detection: leak-free splits, the table end to end, the CLI protocol."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from cfpoison.attacks.baselines import average_attack, bandwagon_attack, uniform_attack
from cfpoison.attacks.engine import available_methods
from cfpoison.attacks.threat import ThreatModel, grid_values
from cfpoison.cli import main
from cfpoison.cli.detect import attack_families
from cfpoison.data.ratings import Ratings
from cfpoison.data.registry import load_dataset
from cfpoison.detect import DETECTORS, DetectConfig
from cfpoison.detect import cross_family as cf
from cfpoison.detect.report import WITHIN, heatmap, text
from cfpoison.errors import ConfigError


@given(
    n_real=st.integers(2, 40),
    n_fake=st.lists(st.integers(1, 12), min_size=2, max_size=4),
    folds=st.integers(2, 6),
    seed=st.integers(0, 2**32 - 1),
)
@settings(max_examples=60, deadline=None)
def test_splits_never_train_on_a_test_user(
    n_real: int, n_fake: list[int], folds: int, seed: int
) -> None:
    folds = min(folds, n_real)
    sizes = {f"f{i}": n for i, n in enumerate(n_fake)}
    splits = cf.family_splits(n_real, sizes, folds, np.random.default_rng(seed))
    again = cf.family_splits(n_real, sizes, folds, np.random.default_rng(seed))  # deterministic
    assert all(np.array_equal(a.test_real, b.test_real) for a, b in zip(splits, again, strict=True))
    assert [(s.held_out, s.fold) for s in splits] == [(f, k) for f in sizes for k in range(folds)]
    # features that name their row: (family index, row), real rows first in every world
    features = {
        f: np.column_stack([np.full(n_real + n, i), np.arange(n_real + n)])
        for i, (f, n) in enumerate(sizes.items())
    }
    for name in sizes:
        own = [s for s in splits if s.held_out == name]
        tested_real = np.concatenate([s.test_real for s in own])
        tested_fake = np.concatenate([s.test_fake for s in own])
        assert np.array_equal(np.sort(tested_real), np.arange(n_real))  # each once
        assert np.array_equal(np.sort(tested_fake), np.arange(sizes[name]))
        for split in own:
            assert name not in split.train_families
            assert set(split.train_families) == set(sizes) - {name}
            assert not np.intersect1d(split.train_real, split.test_real).size
            assert len(split.train_real) + len(split.test_real) == n_real
            x, y = cf.training_set(split, features, n_real)
            family_of = np.array(list(sizes))[x[:, 0]]
            assert name not in family_of  # no row of the held-out world, real or fake
            assert not np.isin(x[~y, 1], split.test_real).any()  # no test fold's real user
            assert np.array_equal(y, x[:, 1] >= n_real)  # labels: the fake rows, all of them
            assert int(y.sum()) == sum(sizes[g] for g in split.train_families)


def test_split_errors() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ConfigError, match="2 families"):
        cf.family_splits(10, {"a": 3}, 2, rng)
    with pytest.raises(ConfigError, match="real users"):
        cf.family_splits(3, {"a": 3, "b": 3}, 5, rng)
    with pytest.raises(ConfigError, match="no fake profiles"):
        cf.family_splits(10, {"a": 3, "b": 0}, 2, rng)


def test_at_fpr_by_hand() -> None:
    # fold 0: reals 0..4 (threshold: the higher 0.8 quantile = 4), fakes 5 and 3.5
    # fold 1: reals 0, 1 (threshold 1), fake 7
    scores = np.array([0, 1, 2, 3, 4, 5, 3.5, 0, 1, 7], dtype=float)
    is_fake = np.array([0, 0, 0, 0, 0, 1, 1, 0, 0, 1], dtype=bool)
    fold = np.array([0, 0, 0, 0, 0, 0, 0, 1, 1, 1])
    result = cf.at_fpr(scores, is_fake, fold, 0.2)
    assert result == cf.AtFPR(precision=1.0, recall=2 / 3, fpr=0.0, flagged=2)
    none = cf.at_fpr(-scores, is_fake, fold, 0.2)
    assert np.isnan(none.precision) and none.recall == 0 and none.flagged == 0


@functools.cache
def families() -> tuple[Ratings, dict[str, sp.csr_array]]:
    """``synthetic:small`` and four baseline families (10 fakes of 30 items each)."""
    ratings = load_dataset("synthetic:small")
    threat = ThreatModel(alpha=0.05, items_per_user=30)
    grid = grid_values(ratings.scale, threat.max_rating)
    n, rng = threat.n_fake(ratings.n_users), np.random.default_rng(0)
    none = np.array([], np.int64), np.array([])
    fakes = {
        "uniform": uniform_attack(ratings.matrix, threat, n, grid, rng),
        "average": average_attack(ratings.matrix, threat, n, grid, rng, *none),
        "bandwagon": bandwagon_attack(ratings.matrix, threat, n, grid, rng, *none),
        "push": average_attack(ratings.matrix, threat, n, grid, rng, np.array([0]), [2.0]),
    }
    return ratings, fakes


def test_table_end_to_end(monkeypatch: pytest.MonkeyPatch) -> None:
    ratings, fakes = families()
    config = DetectConfig(folds=3)
    trained: list[int] = []
    fit = cf.fit_classifier

    def spy(x: np.ndarray, y: np.ndarray, seed: int) -> object:
        trained.append(len(y))
        return fit(x, y, seed)

    monkeypatch.setattr(cf, "fit_classifier", spy)
    report = cf.cross_family(ratings, fakes, np.random.default_rng(1), config)
    m, n_fake = ratings.n_users, fakes["uniform"].shape[0]
    # every model: 3 other families, each its real users outside one fold and all its fakes
    assert len(trained) == 4 * 3
    assert all(
        3 * n_fake + 3 * (m - m // 3 - 1) <= t <= 3 * n_fake + 3 * (m - m // 3) for t in trained
    )
    table = {(r.detector, r.family): r for r in report.results}
    assert set(table) == {(d, f) for d in [*DETECTORS, cf.LEARNED] for f in fakes}
    for result in report.results:
        assert 0.5 <= result.auc.auc_two_sided <= 1
        assert result.at_fpr_two_sided.fpr <= 0.02 + 1e-12  # <= 1 real user per fold of ~67
        assert (result.within is not None) == (result.detector == cf.LEARNED)
    assert table["rdma", "uniform"].auc.auc > 0.9  # random items, far from their means
    assert table[cf.LEARNED, "uniform"].auc.auc > 0.8  # learned on the shilling families
    dumped = json.loads(json.dumps(report.to_dict()))
    assert dumped["n_fake"] == dict.fromkeys(fakes, n_fake) and len(dumped["results"]) == 36
    # the heat map shows the same AUCs: detectors in order, the within row last
    shown = np.asarray(heatmap(report).axes[0].images[0].get_array())
    detectors = [*DETECTORS, cf.LEARNED]
    for (d, f), result in table.items():
        assert shown[detectors.index(d), list(fakes).index(f)] == result.auc.auc_two_sided
    within = [table[cf.LEARNED, f].within for f in fakes]
    assert list(shown[-1]) == [w.auc_two_sided for w in within if w is not None]
    assert text(report, "synthetic").count(WITHIN) == 2  # the AUC table's row and its title


def test_every_registered_method_is_a_family() -> None:
    known = attack_families()
    assert {method for method, _ in known.values()} == set(available_methods())
    assert known["sgld"] == ("sgld", {}) and known["sgld-mimic"] == ("sgld", {"mode": "mimic"})
    assert list(known)[:4] == ["uniform", "random", "average", "bandwagon"]


def test_cli_cross_family(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cross.json"
    args = ["detect", "--dataset", "synthetic:small", "--protocol", "cross-family"]
    budget = ["--alpha", "0.05", "--items-per-user", "30", "--folds", "3", "--iterations", "1"]
    report_dir = tmp_path / "report"
    families = ["--families", "uniform,bandwagon,pga", "--report", str(report_dir)]
    code = main([*args, *families, *budget, "--json", str(out)])
    assert code == 0
    captured = capsys.readouterr()
    assert "two-sided AUC, family held out" in captured.out and "within" in captured.out
    assert "pga (3/3): the pga attack" in captured.err  # progress per family
    report = json.loads(out.read_text())
    assert report["protocol"] == "cross-family" and report["iterations"] == 1
    assert report["n_fake"] == {"uniform": 10, "bandwagon": 10, "pga": 10}
    assert len(report["results"]) == 3 * (len(DETECTORS) + 1)
    assert set(report["attacks"]) == {"uniform", "bandwagon", "pga"}
    written = {p.name for p in report_dir.iterdir()}
    assert written == {"cross-family.md", "cross-family.png", "cross-family.json"}
    assert json.loads((report_dir / "cross-family.json").read_text()) == report
    assert (report_dir / "cross-family.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # every AUC cell of the Markdown is the JSON's, rounded as printed (* when inverted)
    rows = _markdown_rows((report_dir / "cross-family.md").read_text())
    for r in report["results"]:
        cell = f"{r['auc_two_sided']:.3f}" + ("*" if r["inverted"] else "")
        assert rows[r["detector"]][r["family"]] == cell
        if r["within"] is not None:
            assert rows[WITHIN][r["family"]] == f"{r['within']['auc_two_sided']:.3f}"


def _markdown_rows(text: str) -> dict[str, dict[str, str]]:
    """The first Markdown table of ``text``: detector -> family -> cell."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    families = [c.strip() for c in lines[0].strip("|").split("|")][1:]
    rows: dict[str, dict[str, str]] = {}
    for line in lines[2:]:
        if line.startswith("| detector"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = dict(zip(families, cells[1:], strict=True))
    return rows


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--protocol", "cross-family", "--profiles", "p.csv"], "--profiles does not apply"),
        (["--protocol", "cross-family", "--permutations", "9"], "--permutations does not apply"),
        (["--protocol", "cross-family", "--families", "uniform,nope"], "unknown family 'nope'"),
        (["--protocol", "cross-family", "--families", "uniform,uniform"], "at least two"),
        (["--families", "uniform,pga"], "--families does not apply to --protocol within"),
        (["--iterations", "2", "--profiles", "p.csv"], "--iterations does not apply"),
        (["--report", "out", "--profiles", "p.csv"], "--report does not apply"),
        (["--alpha", "0.1", "--profiles", "p.csv"], "--alpha does not apply"),
        ([], "needs --profiles"),
    ],
)
def test_cli_refuses_flags_of_the_other_protocol(
    extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["detect", "--dataset", "synthetic:small", *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) <= 2
