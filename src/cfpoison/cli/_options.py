"""Command-line flags derived from the config dataclasses (:func:`cfpoison.config.settings_of`).

A setting named ``NAME`` (the name a sweep accepts: ``alpha``, ``learner.lambda_u``) is the
flag ``--NAME`` with ``_`` written ``-`` (``--alpha``, ``--learner.lambda-u``), typed, with
choices, default and help taken from its field. This module's tables are the one place that
says where the command line differs: the short flags kept from before the derivation
(``ALIASES``), the flags renamed to avoid a clash (``RENAMED``), the stricter argument types
(``TYPES``) and what a flag's help adds to its field's (``NOTES``).

Derived options default to None (not given): the config's own default applies, so a flag
that is not given never changes a config.
"""

from __future__ import annotations

import argparse
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal, get_args, get_origin

import numpy as np

from cfpoison.config import Setting, set_path
from cfpoison.data.interactions import DEFAULT_THRESHOLD

#: Short flags kept from before the flags were derived (the canonical ``--NAME`` works too).
ALIASES: dict[str, str] = {
    "learner.rank": "--rank",
    "learner.lambda_u": "--lambda-u",
    "learner.lambda_v": "--lambda-v",
    "learner.lam": "--lambda",
    "learner.max_sweeps": "--max-sweeps",
    "learner.tol": "--tol",
    "learner.threads": "--threads",
    "preprocess.min_user_ratings": "--min-user-ratings",
    "preprocess.test_fraction": "--test-fraction",
    "item_selection": "--items",
    "targets": "--target",
}
#: Flags not spelled ``--NAME``: the attack's step tolerance (``--tol`` is the learner's).
RENAMED: dict[str, str] = {"tol": "--step-tol"}
_TARGETED = (
    "Read only when --mu2 or --mu3 is nonzero (an integrity attack: --mu1 0 --mu2 1); "
    "refused otherwise."
)
#: What a flag's help adds to its field's docstring.
NOTES: dict[str, str] = {"targets": _TARGETED, "weights": _TARGETED}


def _number(kind: type, test: Callable[[float], bool], what: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not (np.isfinite(value) and test(value)):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


positive_float = _number(float, lambda v: v > 0, "a positive number")
fraction = _number(float, lambda v: 0 < v <= 1, "a fraction in (0, 1]")
positive_int = _number(int, lambda v: v >= 1, "an integer >= 1")
count = _number(int, lambda v: v >= 0, "an integer >= 0")
#: Argument types stricter than the field's (bad values are usage errors, exit 2).
TYPES: dict[str, Callable[[str], Any]] = {
    "learner.lambda_u": positive_float,
    "learner.lambda_v": positive_float,
    "learner.lam": positive_float,
    "alpha": fraction,
}


def flags_of(setting: Setting) -> list[str]:
    """The option strings of ``setting``: ``--NAME`` (or its ``RENAMED`` flag), then any alias."""
    canonical = RENAMED.get(setting.name, "--" + setting.name.replace("_", "-"))
    return [canonical, *([ALIASES[setting.name]] if setting.name in ALIASES else [])]


def add_options(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    settings: Iterable[Setting],
    choices: Mapping[str, Iterable[str]] | None = None,
) -> None:
    """One option per setting (dest: the setting's name; default None: not given).

    ``choices`` overrides a setting's choices (the attack methods come from the registry).
    """
    for setting in settings:
        kwargs: dict[str, Any] = {"dest": setting.name, "default": None, "help": _help(setting)}
        if setting.hint is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = TYPES.get(setting.name) or value_parser(setting.hint)
            kwargs["metavar"] = _metavar(setting.hint)
            options = (choices or {}).get(setting.name) or _literal(setting.hint)
            if options:
                kwargs["choices"], kwargs["metavar"] = tuple(options), None
        parser.add_argument(*flags_of(setting), **kwargs)


def given(args: argparse.Namespace, settings: Iterable[Setting]) -> dict[str, Any]:
    """``{name: value}`` of the settings whose flags were given."""
    values = {s.name: getattr(args, s.name, None) for s in settings}
    return {name: value for name, value in values.items() if value is not None}


def nested(values: Mapping[str, Any], settings: Mapping[str, Setting], root: str = "") -> dict:
    """Given values as the nested dict of their paths (below ``root.``, if given)."""
    tree: dict[str, Any] = {}
    for name, value in values.items():
        path = settings[name].path
        set_path(tree, path.removeprefix(f"{root}.") if root else path, value)
    return tree


def _help(setting: Setting) -> str:
    text = re.sub(r":\w+:`~?([^`]+)`|``([^`]+)``", lambda m: m[1] or m[2], setting.help)
    if setting.name in NOTES:
        text = f"{text} {NOTES[setting.name]}"
    text = text.replace("%", "%%")
    if setting.variants:
        default = ", ".join(f"{name} {value!r}" for name, value in setting.variants.items())
        return f"{text} (default: {default})"
    return f"{text} (default {setting.default!r})"


def _literal(hint: Any) -> tuple[Any, ...]:
    return get_args(hint) if get_origin(hint) is Literal else ()


def _members(hint: Any) -> tuple[Any, ...]:
    """The members of a union other than None; the hint alone otherwise."""
    if get_origin(hint) in (typing.Union, types.UnionType):
        return tuple(a for a in get_args(hint) if a is not type(None))
    return (hint,)


def value_parser(hint: Any) -> Callable[[str], Any]:
    """Text to a value of ``hint`` (else ``argparse.ArgumentTypeError``): a scalar, a literal,
    a comma-separated tuple, or the first member of a union that accepts it."""
    members = _members(hint)
    if len(members) > 1:
        parsers = [value_parser(member) for member in members]

        def parse_union(text: str) -> Any:
            for parse in parsers:
                try:
                    return parse(text)
                except argparse.ArgumentTypeError:
                    continue
            raise argparse.ArgumentTypeError(f"expected {_metavar(hint)}, got {text!r}")

        return parse_union
    (hint,) = members
    if get_origin(hint) is tuple:
        item = value_parser(get_args(hint)[0])
        return lambda text: tuple(item(part) for part in text.split(",") if part.strip())
    if get_origin(hint) is Literal:

        def parse_literal(text: str) -> Any:
            if text not in get_args(hint):
                raise argparse.ArgumentTypeError(f"expected one of {get_args(hint)}")
            return text

        return parse_literal
    if hint in (int, float):
        return _number(hint, lambda v: True, "an integer" if hint is int else "a number")
    return str


def _metavar(hint: Any) -> str:
    parts = []
    for member in _members(hint):
        if get_origin(member) is tuple:
            parts.append("V[,V...]")
        elif get_origin(member) is Literal:
            parts.extend(str(a) for a in get_args(member))
        else:
            parts.append({int: "N", float: "X"}.get(member, "TEXT"))
    return "|".join(parts)


def parse_feedback(text: str) -> float:
    """``implicit`` or ``implicit:THRESHOLD`` -> the threshold (default 4)."""
    kind, _, threshold = text.partition(":")
    if kind != "implicit":
        raise argparse.ArgumentTypeError(f"expected implicit[:THRESHOLD], got {text!r}")
    try:
        return float(threshold) if threshold else DEFAULT_THRESHOLD
    except ValueError:
        raise argparse.ArgumentTypeError(f"threshold must be a number, got {threshold!r}") from None
