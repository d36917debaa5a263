"""Sweep specs: TOML and flags, unions of blocks, normalized cells and stable keys."""

from __future__ import annotations

import pytest

from cfpoison.config import digest_of
from cfpoison.errors import ConfigError
from cfpoison.experiments.sweeps.runners import cells_of, resolve_runner
from cfpoison.experiments.sweeps.spec import (
    PlotSpec,
    SweepSpec,
    expand,
    flatten,
    load_spec,
    lookup,
    parse_assignments,
    parse_value,
)

FAKE = "experiments_fakes:RUNNER"

TOML = f"""
runner = "{FAKE}"
[base]
dataset = "toy"
mu1 = 1.0
[[grid]]
method = ["pga", "uniform"]
alpha = [0.01, 0.02]
seed = [0, 1]
[[grid]]
method = "sgld"
alpha = [0.01]
seed = [0, 1]
[plot]
x = "alpha"
metrics = ["rmse_shift"]
"""


def test_toml_blocks_expand_to_their_union(tmp_path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(TOML)
    spec = load_spec(path)
    assert spec.runner == FAKE
    assert spec.plot == PlotSpec(x="alpha", metrics=("rmse_shift",))
    settings = expand(spec)
    assert len(settings) == 2 * 2 * 2 + 2
    assert settings[0] == {"dataset": "toy", "mu1": 1.0, "method": "pga", "alpha": 0.01, "seed": 0}
    assert {s["method"] for s in settings[-2:]} == {"sgld"}
    cells = cells_of(spec)
    assert len(cells) == 10
    assert all(c.key == digest_of(dict(c.config)) for c in cells)
    assert all(c.config["runner"] == FAKE for c in cells)


def test_spec_round_trips_through_json(tmp_path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(TOML)
    spec = load_spec(path)
    assert SweepSpec.from_json(spec.to_json()) == spec


def test_key_is_the_same_whether_set_by_default_flag_or_file() -> None:
    runner = resolve_runner(FAKE)
    explicit = runner.normalize({"dataset": "toy", "method": "pga", "alpha": 0.01, "seed": 0})
    defaulted = runner.normalize({})
    assert digest_of(explicit) == digest_of(defaulted)
    from_flags = SweepSpec(runner=FAKE).with_flags(
        parse_assignments(["dataset=toy"], axes=False),
        parse_assignments(["alpha=0.01,0.03", "seed=0"], axes=True),
    )
    keys = [c.key for c in cells_of(from_flags)]
    assert keys[0] == cells_of(SweepSpec(runner=FAKE))[0].key
    assert len(set(keys)) == 2


def test_duplicate_cells_are_merged() -> None:
    spec = SweepSpec(runner=FAKE, grid=({"seed": (0, 0, 1)}, {"seed": (1,)}))
    assert len(expand(spec)) == 4
    assert len(cells_of(spec)) == 2


def test_flag_values_are_toml_scalars() -> None:
    assert parse_value("0.03") == 0.03
    assert parse_value("3") == 3
    assert parse_value("true") is True
    assert parse_value("pga") == "pga"
    assert parse_value('"3"') == "3"
    assert parse_assignments(["method=pga, sgld"], axes=True) == {"method": ["pga", "sgld"]}
    with pytest.raises(ConfigError, match="NAME=VALUE"):
        parse_assignments(["alpha"], axes=False)


def test_nested_tables_become_dotted_names_and_lookup_by_suffix() -> None:
    flat = flatten({"attack": {"alpha": 0.1, "learner": {"rank": 5}}, "dataset": "x"})
    assert flat == {"attack.alpha": 0.1, "attack.learner.rank": 5, "dataset": "x"}
    assert lookup(flat, "alpha") == 0.1
    assert lookup(flat, "learner.rank") == 5
    with pytest.raises(ConfigError, match="no field"):
        lookup(flat, "beta")
    with pytest.raises(ConfigError, match="ambiguous"):
        lookup({"a.seed": 1, "b.seed": 2}, "seed")


def test_bad_specs_are_one_line_errors(tmp_path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[base\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_spec(bad)
    with pytest.raises(ConfigError, match="no such sweep file"):
        load_spec(tmp_path / "missing.toml")
    bad.write_text("colour = 1\n")
    with pytest.raises(ConfigError, match="unknown key"):
        load_spec(bad)
    bad.write_text("[[grid]]\nalpha = []\n")
    with pytest.raises(ConfigError, match="no values"):
        load_spec(bad)
    with pytest.raises(ConfigError, match="unknown runner"):
        resolve_runner("nope")
    with pytest.raises(ConfigError, match="cannot load runner"):
        resolve_runner("no_such_module_xyz:RUNNER")
    with pytest.raises(ConfigError, match="unknown setting"):
        cells_of(SweepSpec(runner=FAKE, base={"colour": 1}))
