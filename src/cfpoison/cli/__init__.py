"""The ``cfpoison`` command line.

Each sub-command lives in its own module of this package and exposes
``register(subparsers) -> None``, which adds its parser and sets ``func`` (a callable taking
the parsed ``argparse.Namespace`` and returning an exit code). Modules are discovered
automatically, so adding a command means adding a module.

Exit codes: 0 success; 2 a usage error (argparse) or a bad setting (a :class:`ConfigError`:
a flag's value, an option, a config file), reported as ``cfpoison CMD: error: ...`` and
``Try 'cfpoison CMD --help'.``; 1 any other error (``exit_code`` of the error's class), one
line ``cfpoison: error: ...``; a traceback only with ``--debug``; 130 on Ctrl-C and 143 on
SIGTERM (both unwind as :class:`KeyboardInterrupt`, so a command can say what it saved).

The common options ``-v/--verbose``, ``-q/--quiet`` and ``--debug`` go before the sub-command
or after it (``cfpoison attack ... --quiet``): every sub-command's parser, nested ones included,
gets them from one parent parser (:func:`common_options`).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import pkgutil
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import Any, NoReturn

from cfpoison import __version__
from cfpoison.errors import CfpoisonError
from cfpoison.learners.base import serial_blas

log = logging.getLogger("cfpoison")


def common_options(after_command: bool) -> argparse.ArgumentParser:
    """The parent parser of the options every command accepts.

    After a sub-command their defaults are ``SUPPRESS``, so that an option given only before
    it is not overwritten (argparse copies a sub-command's defaults over the main parser's).
    """

    def default(value: object) -> object:
        return argparse.SUPPRESS if after_command else value

    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("common options")
    group.add_argument(
        "-v", "--verbose", action="count", default=default(0), help="more log output"
    )
    group.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=default(False),
        help="no progress, no logs (the result is still printed)",
    )
    group.add_argument(
        "--debug", action="store_true", default=default(False), help="tracebacks on errors"
    )
    return parent


class _SubParsers(argparse._SubParsersAction):
    """Sub-command parsers that accept the common options after the command."""

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        kwargs["parents"] = [*kwargs.get("parents", ()), common_options(after_command=True)]
        parser = super().add_parser(name, **kwargs)
        parser.set_defaults(command_prog=parser.prog)  # the innermost command's wins
        return parser


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose sub-command parsers (at any depth) are made by _SubParsers and
    whose usage errors are one line and a pointer to ``--help`` (exit 2)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.register("action", "parsers", _SubParsers)

    def error(self, message: str) -> NoReturn:
        self.exit(2, usage_error(self.prog, message))


def usage_error(prog: str, message: str) -> str:
    """``PROG: error: MESSAGE`` on one line, then ``Try 'PROG --help'.``"""
    return f"{prog}: error: {_one_line(message)}\nTry '{prog} --help'.\n"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="cfpoison",
        description=(
            "Data poisoning attacks on factorization-based collaborative filtering "
            "(Li, Wang, Singh, Vorobeychik, NIPS 2016), and the detectors that try to catch them."
        ),
        parents=[common_options(after_command=False)],
    )
    parser.add_argument("--version", action="version", version=f"cfpoison {__version__}")
    parser.set_defaults(command_prog=parser.prog)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if module.name.startswith("_"):
            continue
        importlib.import_module(f"{__name__}.{module.name}").register(subparsers)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process was, so that it unwinds like Ctrl-C."""


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """SIGTERM raises :class:`Terminated` while the command runs (main thread only)."""

    def terminate(signum: int, frame: object) -> None:
        raise Terminated

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _configure_logging(verbose: int, quiet: bool) -> None:
    level = logging.ERROR if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    if not quiet and verbose == 0:
        level = logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", force=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    if extras:  # argparse would blame the main parser; name the command that was given
        parser.exit(
            2, usage_error(args.command_prog, f"unrecognized arguments: {' '.join(extras)}")
        )
    _configure_logging(args.verbose, args.quiet)
    try:
        with serial_blas(), _sigterm_unwinds():  # BLAS threads would oversubscribe numba's
            return int(args.func(args) or 0)
    except Terminated:
        print("cfpoison: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print("cfpoison: interrupted", file=sys.stderr)
        return 130
    except CfpoisonError as err:
        if args.debug:
            raise
        if err.exit_code == 2:
            print(usage_error(args.command_prog, str(err)), end="", file=sys.stderr)
        else:
            print(f"cfpoison: error: {_one_line(str(err))}", file=sys.stderr)
        return err.exit_code
    except Exception as err:  # a bug, or an error of a library we call: still one line
        if args.debug:
            raise
        message = _one_line(f"{type(err).__name__}: {err}")
        print(f"cfpoison: error: {message} (run with --debug for details)", file=sys.stderr)
        return 1


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "unknown error"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
