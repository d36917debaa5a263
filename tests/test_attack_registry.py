"""The method registry is the one list of attack methods: configs and the CLI read it."""

from __future__ import annotations

import pytest
import scipy.sparse as sp

from cfpoison.attacks import engine
from cfpoison.attacks.engine import AttackConfig, MethodOutput, available_methods
from cfpoison.cli import build_parser
from cfpoison.errors import ConfigError


def test_builtin_and_lazy_methods_are_available() -> None:
    assert {"pga", "uniform", "random", "average", "bandwagon", "sgld"} <= set(available_methods())
    assert AttackConfig(method="sgld").method == "sgld"


def test_a_registered_plugin_is_a_valid_method() -> None:
    with pytest.raises(ConfigError, match="not available"):
        AttackConfig(method="plugin_attack")

    @engine.register_method("plugin_attack")
    def plugin(ctx: engine.AttackContext) -> MethodOutput:
        return MethodOutput(sp.csr_array((ctx.n_fake, ctx.train.n_items)))

    try:
        config = AttackConfig(method="plugin_attack")
        assert AttackConfig.from_json(config.to_json()) == config
        assert "plugin_attack" in available_methods()
    finally:
        engine._METHODS.pop("plugin_attack")


def test_unknown_method_is_one_line_naming_the_available_ones() -> None:
    with pytest.raises(ConfigError) as err:
        AttackConfig.from_dict({"method": "no-such-attack"})
    message = str(err.value)
    assert "\n" not in message
    assert all(name in message for name in available_methods())


def test_cli_method_choices_come_from_the_registry(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["attack", "--dataset", "x", "--method", "nope"])
    assert exit_info.value.code == 2
    assert ", ".join(repr(m) for m in available_methods()) in capsys.readouterr().err
