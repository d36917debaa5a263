"""The rooms of the package and the direction of their imports (``docs/architecture.md``).

Each package may import only from packages at its own level or below; no two modules import
each other, directly or through a cycle. Read from the source with :mod:`ast`: imports inside
functions count (a lazy import is still a dependency); those under ``if TYPE_CHECKING:`` are
annotations only and do not.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src" / "cfpoison"

#: Lower numbers may not import higher ones. Top-level helper modules sit at the bottom.
LEVELS = {
    "errors": 0,
    "config": 0,
    "io": 0,
    "workers": 0,
    "data": 1,
    "learners": 2,
    "models": 3,
    "detect": 4,
    "defend": 5,
    "victims": 5,
    "attacks": 6,
    "experiments": 7,
    "cli": 8,
    "__main__": 9,
    "__init__": 0,
}


_TYPE_CHECKING = {"TYPE_CHECKING", "typing.TYPE_CHECKING"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The ``cfpoison`` modules ``path`` imports (``from a import b`` may name a module b)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for block in ast.walk(tree):  # drop the annotation-only imports
        if isinstance(block, ast.If) and ast.unparse(block.test) in _TYPE_CHECKING:
            block.body = []
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("cfpoison"))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("cfpoison"):
            found.add(str(node.module))
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in SOURCE.rglob("*.py")}
    return {
        name: {m for m in _imports(path) if m in files} - {name} for name, path in files.items()
    }


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_room_has_a_level() -> None:
    rooms = {_room(m) for m in _graph()} - {"__init__"}
    assert rooms <= set(LEVELS), f"rooms without a level: {rooms - set(LEVELS)}"


def test_no_room_imports_a_room_above_it() -> None:
    upward = sorted(
        f"{module} imports {target}"
        for module, targets in _graph().items()
        for target in targets
        if _room(module) != "__init__" and LEVELS[_room(target)] > LEVELS[_room(module)]
    )
    assert not upward, "\n".join(upward)


def test_no_import_cycles_between_modules() -> None:
    graph = _graph()
    # a package's __init__ re-exports its modules: an edge into a package means "some module"
    # of it, so cycles are looked for among the plain modules and the packages' own code
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycles.append([*stack[stack.index(target) :], target])
            elif target not in state:
                visit(target, [*stack, target])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    packages = {m for m in graph if (SOURCE.parent / m.replace(".", "/") / "__init__.py").exists()}
    real = [c for c in cycles if not set(c) & packages]
    assert not real, "\n".join(" -> ".join(c) for c in real)


@pytest.mark.parametrize("room", ["victims", "defend"])
def test_victims_and_defenses_do_not_import_the_attacks(room: str) -> None:
    graph = _graph()
    offending = sorted(
        f"{m} imports {t}"
        for m, targets in graph.items()
        if _room(m) == room
        for t in targets
        if _room(t) == "attacks"
    )
    assert not offending, "\n".join(offending)
