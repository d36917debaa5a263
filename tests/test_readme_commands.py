"""Every command the README shows parses with today's flags (benchmarks/typical_session.py runs
and times them, and checks the README numbers they produce; this catches a renamed or removed
flag in CI, where the session itself, 16 minutes, does not run)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from cfpoison.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]


def _session() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "typical_session", ROOT / "benchmarks" / "typical_session.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


SESSION = _session()
COMMANDS = SESSION.readme_commands((ROOT / "README.md").read_text(encoding="utf-8"))


def test_the_readme_shows_the_session_the_script_times() -> None:
    assert list(COMMANDS) == [
        "demo", "pga", "gradcheck", "detect", "uniform", "robust", "evaluate", "defend",
        "reproduce", "promote",
    ]  # fmt: skip
    sources = {_command_of(source) for claim in SESSION.CLAIMS for source in claim.sources}
    # every checked number comes from a README command (its JSON, or a file in its --out
    # folder), one of the extra commands the README names beside its numbers, or the
    # installed versions
    assert sources <= {*COMMANDS, *SESSION.EXTRA_COMMANDS, "versions"}
    assert "reproduce" in sources  # the quick Figure 1's paragraph


def _command_of(source: str) -> str:
    """The command that writes a claim's source: ``NAME`` (its JSON) or ``FOLDER/FILE`` (a
    file in the ``--out`` folder of one README command)."""
    if "/" not in source:
        return source
    folder = source.split("/")[0]
    (name,) = [
        name
        for name, words in COMMANDS.items()
        if "--out" in words and words[words.index("--out") + 1] == folder
    ]
    return name


def test_the_readme_names_each_extra_command_beside_its_numbers() -> None:
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    orderings = SESSION.EXTRA_COMMANDS["orderings"]
    assert f"`python benchmarks/orderings.py {' '.join(orderings[2:4])}`" in readme
    assert "for integrity (`--mu1 0 --mu2 1`)" in readme
    assert f"`{' '.join(SESSION.EXTRA_COMMANDS['gradcheck-promote'])}`" in readme


@pytest.mark.parametrize(
    "name", [*COMMANDS, *(n for n, c in SESSION.EXTRA_COMMANDS.items() if c[0] == "cfpoison")]
)
def test_each_readme_command_parses(name: str) -> None:
    argv = SESSION.with_outputs(name, {**COMMANDS, **SESSION.EXTRA_COMMANDS}[name])
    assert argv[0] == "cfpoison"
    args = build_parser().parse_args(argv[1:])
    assert args.quiet and args.json_path is not None
