"""The package's import graph, read from its source: every ``import`` of a ``vdm`` module, at the
top of a file or inside a function. No circles, and imports point one way between the
subpackages: core <- model <- training <- evaluation <- reporting and bench <- pipeline."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "vdm"
#: Each subpackage's floor: a module imports only from its own subpackage or lower floors
#: (reporting and bench share a floor and do not import each other).
FLOORS = {"core": 0, "model": 1, "training": 2, "evaluation": 3, "reporting": 4, "bench": 4,
          "pipeline": 5}


def module_names() -> dict[str, Path]:
    """``{dotted module name: file}`` of every module of the package."""
    names = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def imported_modules(path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that ``path`` imports anywhere in the file (``from vdm.x import y``
    counts as importing ``vdm.x.y`` where that is a module, else ``vdm.x``)."""
    imported = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names if alias.name in modules}
        elif isinstance(node, ast.ImportFrom) and node.module in modules and not node.level:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                imported.add(submodule if submodule in modules else node.module)
    return imported


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    """``{module: the package's modules it imports}``."""
    modules = module_names()
    return {name: imported_modules(path, modules) - {name} for name, path in modules.items()}


def test_the_graph_is_read(graph: dict[str, set[str]]) -> None:
    assert "vdm.core.digits_gmm" in graph["vdm.core.data"]  # inside load_dataset
    assert "vdm.pipeline.evaluation_commands" in graph["vdm.pipeline.cli"]  # from vdm.pipeline import


def test_no_import_circles(graph: dict[str, set[str]]) -> None:
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as error:
        pytest.fail(f"import circle: {' -> '.join(error.args[1])}")


def test_imports_point_down_the_floors(graph: dict[str, set[str]]) -> None:
    def subpackage(module: str) -> str | None:
        parts = module.split(".")
        return parts[1] if len(parts) > 2 and parts[1] in FLOORS else None

    upward = [f"{module} -> {target}" for module, targets in graph.items() for target in targets
              if (a := subpackage(module)) and (b := subpackage(target)) and a != b
              and FLOORS[b] >= FLOORS[a]]
    assert upward == []
