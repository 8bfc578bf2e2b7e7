"""The package's layout: stages import only from the stages before them, without cycles.

The import graph is read from the source (``ast``), so these tests need no import of
the package and name the offending file and line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pianoacc_utils"

STAGES = (
    ("common", "defaults"),
    ("backends",),  # backend and speed code, which models, training and generation use
    ("data",),
    ("tokenizer",),
    ("harmony",),
    ("prepare",),
    ("models",),
    ("training",),
    ("generation",),
    ("evaluation",),
    ("audio",),
    ("course",),
    ("cli",),
)
"""The pipeline in order; a module may import from its own stage and the stages above it."""

RANK = {name: rank for rank, names in enumerate(STAGES) for name in names}

MAX_LINES = 500
"""Longest module of the package (lines); a longer one holds more than one idea."""


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {
    module_name(path): path for path in sorted(PACKAGE.rglob("*.py")) if "__pycache__" not in path.parts
}


def imported_modules(node: ast.AST, importer: str) -> list[str]:
    """The package modules an ``import`` statement loads (``from X import Y`` loads X.Y
    when Y is a module, else X)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == "pianoacc_utils"]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:  # relative import
        parent = importer.split(".")
        if MODULES[importer].name != "__init__.py":
            parent = parent[:-1]
        parent = parent[: len(parent) - node.level + 1]
        base = ".".join(parent + ([node.module] if node.module else []))
    if base.split(".")[0] != "pianoacc_utils":
        return []
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]


def top_level_imports(module: str) -> list[tuple[int, str]]:
    """(line, imported module) of the imports a module runs when it is loaded."""
    tree = ast.parse(MODULES[module].read_text())
    found = []
    for statement in module_level(tree):
        found += [(statement.lineno, name) for name in imported_modules(statement, module)]
    return found


def module_level(tree: ast.Module) -> list[ast.stmt]:
    """The statements a module runs when it loads: its body, and the bodies of its
    module-level ``if`` (``if TYPE_CHECKING:``), ``with`` and ``try`` blocks."""
    statements, todo = [], list(tree.body)
    while todo:
        node = todo.pop(0)
        statements.append(node)
        if isinstance(node, (ast.If, ast.With, ast.Try)):
            todo += node.body + getattr(node, "orelse", []) + getattr(node, "finalbody", [])
    return statements


def stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def graph() -> dict[str, set[str]]:
    edges = {module: {name for _, name in top_level_imports(module)} for module in MODULES}
    # The package's own __init__ only registers the model's Keras classes; every module
    # loads it first, so it is no stage and no edge of the graph.
    edges.pop("pianoacc_utils")
    return {module: targets - {"pianoacc_utils"} for module, targets in edges.items()}


def test_every_module_belongs_to_a_stage_and_is_short():
    for module, path in MODULES.items():
        if module != "pianoacc_utils":
            assert stage(module) in RANK, f"{path}: add its stage to STAGES"
        lines = len(path.read_text().splitlines())
        assert lines <= MAX_LINES, f"{path}: {lines} lines (at most {MAX_LINES})"


def test_no_import_of_the_package_inside_a_function():
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text())
        top = {id(node) for node in module_level(tree)}
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in top:
                assert not imported_modules(node, module), (
                    f"{path}:{node.lineno}: import of the package inside a function"
                )


def test_stages_import_only_from_earlier_stages():
    for module in MODULES:
        if module == "pianoacc_utils":
            continue
        for line, target in top_level_imports(module):
            if target == "pianoacc_utils":
                continue
            assert RANK[stage(target)] <= RANK[stage(module)], (
                f"{MODULES[module]}:{line}: {stage(module)} imports {target}, a later stage"
            )


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycle():
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def reachable(edges: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for target in edges.get(todo.pop(), ()):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


@pytest.mark.parametrize("module", [m for m in MODULES if stage(m) == "generation"])
def test_generation_never_trains(module):
    assert not {m for m in reachable(graph(), module) if stage(m) == "training"}


def test_key_estimation_sits_with_harmony():
    defined = {
        node.name: module
        for module, path in MODULES.items()
        for node in ast.parse(path.read_text()).body
        if isinstance(node, ast.FunctionDef)
    }
    assert stage(defined["estimate_key"]) == "harmony"
    assert stage(defined["estimate_chords"]) == "harmony"


PROJECT_TESTS = {"test_project.py", "test_layout.py", "test_readme.py", "test_pins.py",
                 "test_benchmarks.py", "test_results.py"}
"""Test files of the project as a whole (dependencies, layout, README, pins, benchmarks, the
rules by which the scripts of ``results/`` choose)."""


def test_tests_are_laid_out_as_the_package():
    """A folder of tests per stage that is a subpackage, a file per stage that is a module."""
    tests = Path(__file__).resolve().parent
    for folder in sorted(p for p in tests.iterdir() if p.is_dir()):
        if folder.name in ("fixtures", "__pycache__"):
            continue
        assert (PACKAGE / folder.name / "__init__.py").is_file(), (
            f"{folder}: no stage pianoacc_utils/{folder.name}/ to mirror"
        )
        assert list(folder.glob("test_*.py")), f"{folder}: no tests"
    for path in sorted(tests.glob("test_*.py")):
        module = path.name.removeprefix("test_")
        assert path.name in PROJECT_TESTS or (PACKAGE / module).is_file(), (
            f"{path}: neither a module stage (pianoacc_utils/{module}) nor a project-wide check"
        )
