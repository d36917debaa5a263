"""Victim specs and panels: JSON round trip, validation, presets, TOML files and their errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from cfpoison.cli import main
from cfpoison.errors import ConfigError
from cfpoison.victims import PRESETS, Panel, VictimSpec, load_panel


def test_spec_round_trips_and_validates_params_against_the_kind() -> None:
    spec = VictimSpec("lam3", "als", {"lambda_u": 3.0, "rank": 4}, split_offset=2)
    assert VictimSpec.from_json(spec.to_json()) == spec
    assert spec.config(7).seed == 7 and spec.config(7).lambda_u == 3.0
    with pytest.raises(ConfigError, match=r"victim 'x'.*unknown field.*ranks"):
        VictimSpec("x", "als", {"ranks": 4})
    with pytest.raises(ConfigError, match=r"victim 'x'.*rank must be >= 1"):
        VictimSpec("x", "biased", {"rank": 0})
    with pytest.raises(ConfigError, match="seed"):
        VictimSpec("x", "cmfrec", {"seed": 1})
    with pytest.raises(ConfigError, match="is not one of"):
        VictimSpec.from_dict({"name": "x", "model": "svd++"})


def test_presets() -> None:
    default = {v.name: v for v in PRESETS["default"].victims}
    assert set(default) == {
        "als",
        "als-split",
        "als-lam5",
        "als-rank20",
        "biased",
        "surprise-svd",
        "cmfrec",
    }
    assert default["als-split"].split_offset != 0
    assert default["surprise-svd"].optional and default["cmfrec"].optional
    assert not any(v.model == "nuclear" for v in default.values())
    assert any(v.model == "nuclear" for v in PRESETS["all"].victims)
    assert load_panel("default") is PRESETS["default"]
    assert Panel.from_json(PRESETS["all"].to_json()) == PRESETS["all"]


def test_toml_panel(tmp_path: Path) -> None:
    path = tmp_path / "panel.toml"
    path.write_text(
        '[[victims]]\nname = "a"\nmodel = "als"\nparams = { lambda_u = 3.0 }\n\n'
        '[[victims]]\nname = "b"\nmodel = "biased"\nsplit_offset = 1\n'
    )
    panel = load_panel(str(path))
    assert [v.name for v in panel.victims] == ["a", "b"]
    assert panel.victims[0].params == {"lambda_u": 3.0} and panel.victims[1].split_offset == 1


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('[[victims]]\nname = "a"\nmodel = "als"\nparams = { rank = "ten" }\n', "rank"),
        ('[[victims]]\nname = "a"\nmodel = "lightfm"\n', "lightfm"),
        (
            '[[victims]]\nname = "a"\nmodel = "als"\n[[victims]]\nname = "a"\nmodel = "als"\n',
            "duplicate",
        ),
        ('[[victims]]\nmodel = "als"\n', "name"),
        ("victims = []\n", "at least one"),
        ('[[victims]]\nname = "a"\nmodel = "als"\ncolor = 1\n', "unknown field"),
        ("victims = [[[", "invalid TOML"),
    ],
)
def test_bad_toml_is_one_line_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, match: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match) as err:
        load_panel(str(path))
    assert "\n" not in str(err.value) and str(path) in str(err.value)
    profiles = tmp_path / "p.csv"
    profiles.write_text("userId,movieId,rating\n")
    argv = ["evaluate", "--dataset", "synthetic:small", "--profiles", str(profiles)]
    assert main([*argv, "--victims", str(path)]) == 2  # a bad setting: ConfigError
    first, hint = capsys.readouterr().err.strip().split("\n")
    assert first.startswith("cfpoison evaluate: error:") and hint.startswith("Try ")


def test_unknown_panel_name() -> None:
    with pytest.raises(ConfigError, match="neither a preset"):
        load_panel("no-such-panel")
