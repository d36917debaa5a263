"""The command line's contract: exit codes and one-line errors."""

from __future__ import annotations

import argparse

import pytest

from cfpoison import cli
from cfpoison.errors import DataError


def _with_command(monkeypatch: pytest.MonkeyPatch, func) -> None:
    original = cli.build_parser

    def build() -> argparse.ArgumentParser:
        parser = original()
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        sub.add_parser("boom").set_defaults(func=func)
        return parser

    monkeypatch.setattr(cli, "build_parser", build)


def test_user_error_is_one_line_and_exit_1(monkeypatch, capsys) -> None:
    def fail(args):
        raise DataError("ratings.csv line 7: rating 'nan' is not a number")

    _with_command(monkeypatch, fail)
    assert cli.main(["boom"]) == 1
    err = capsys.readouterr().err
    assert err == "cfpoison: error: ratings.csv line 7: rating 'nan' is not a number\n"


def test_unexpected_error_has_no_traceback_unless_debug(monkeypatch, capsys) -> None:
    def fail(args):
        raise ZeroDivisionError("division\nby zero")

    _with_command(monkeypatch, fail)
    assert cli.main(["boom"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "ZeroDivisionError" in err
    with pytest.raises(ZeroDivisionError):
        cli.main(["--debug", "boom"])


def test_usage_error_exits_2(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["no-such-command"])
    assert exc.value.code == 2


def test_help_exits_0(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    assert "COMMAND" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "quiet", "verbose", "debug"),
    [
        (["attack", "--dataset", "x"], False, 0, False),
        (["--quiet", "attack", "--dataset", "x"], True, 0, False),
        (["attack", "--dataset", "x", "--quiet"], True, 0, False),
        (["-vv", "attack", "--dataset", "x", "--debug"], False, 2, True),
        (["attack", "-q", "--dataset", "x", "-v"], True, 1, False),
        (["--debug", "sweep", "run", "--out", "o", "-q"], True, 0, True),
        (["data", "info", "x", "-v"], False, 1, False),
    ],
)
def test_common_options_go_before_or_after_the_command(argv, quiet, verbose, debug) -> None:
    args = cli.build_parser().parse_args(argv)
    assert (args.quiet, args.verbose, args.debug) == (quiet, verbose, debug)


def test_common_options_after_the_command_reach_main(monkeypatch, capsys) -> None:
    def fail(args):
        raise ZeroDivisionError("boom")

    _with_command(monkeypatch, fail)
    with pytest.raises(ZeroDivisionError):
        cli.main(["boom", "--debug"])
