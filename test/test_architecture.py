"""The package's layering, read from the source with ``ast`` (nothing is imported).

docs/ARCHITECTURE.md draws it: ``common`` at the bottom; each feature folder imports only the
folders below it; command-line modules are end points that nothing imports; no import cycles;
``pointmoe_core`` never touches ROS. Imports inside functions count as much as those at the top.
"""
from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("pointmoe_core", "pointmoe_ros")

# layer -> the layers it may import (besides itself)
ALLOWED: dict[str, set[str]] = {
    "common": set(),
    "io": {"common"},
    "viz": {"common", "io"},
    "data": {"common", "io"},
    "seg": {"common", "io", "viz", "data"},
    "sim": {"common", "io", "viz"},
    "plan": {"common", "io", "viz", "data", "seg", "sim"},
    "train": {"common", "io", "viz", "data", "seg", "sim", "plan"},
}
# what no feature folder may import: the product pipeline composing them, and the package roots
ALLOWED["app"] = set(ALLOWED)
ALLOWED["cli"] = ALLOWED["app"] | {"app"}
ALLOWED["ros"] = ALLOWED["cli"]


def is_cli(module: str) -> bool:
    """Command-line modules: ``cli``, ``*_cli`` and the ``demo`` command."""
    name = module.rsplit(".", 1)[-1]
    return name in ("cli", "demo") or name.endswith("_cli")


def layer(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "pointmoe_ros":
        return "ros"
    if is_cli(module):
        return "cli"
    if len(parts) > 2 or (len(parts) == 2 and parts[1] in ALLOWED):
        return parts[1]
    return "app"  # pointmoe_core itself and its top-level library modules (demo_pipeline)


@cache
def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _absolute(module: str, path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


@cache
def imports(module: str) -> frozenset[str]:
    """Every module ``module`` imports, anywhere in the file; ``from pkg import sub`` names the submodule."""
    path = modules()[module]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(module, path, node)
            for alias in node.names:
                found.add(f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules() else source)
    return frozenset(found)


def project_imports(module: str) -> set[str]:
    return {name for name in imports(module) if name.split(".")[0] in PACKAGES}


def test_the_layers_are_known_and_every_module_has_one():
    folders = {path.parent.name for path in (REPO / "pointmoe_core").glob("*/__init__.py")}
    assert folders <= set(ALLOWED), f"folders without a layer: {sorted(folders - set(ALLOWED))}"


def test_no_upward_or_sideways_imports():
    wrong = [f"{module} ({layer(module)}) imports {target} ({layer(target)})"
             for module in modules() for target in project_imports(module)
             if layer(target) != layer(module) and layer(target) not in ALLOWED[layer(module)]]
    assert not wrong, "\n".join(wrong)


def test_nothing_imports_a_command_line_module():
    wrong = [f"{module} imports {target}" for module in modules() for target in project_imports(module)
             if is_cli(target)]
    assert not wrong, "\n".join(wrong)


def test_every_subcommand_is_a_command_line_module():
    tree = ast.parse(modules()["pointmoe_core.cli"].read_text())
    table = next(node.value for node in tree.body if isinstance(node, ast.AnnAssign)
                 and getattr(node.target, "id", "") == "SUBCOMMANDS")
    targets = [value.elts[0].value for value in table.values]
    assert targets and all(is_cli(target) and target in modules() for target in targets), targets


@pytest.mark.parametrize("forbidden", ["rclpy", "pointmoe_ros"])
def test_pointmoe_core_never_imports_ros(forbidden):
    wrong = [module for module in modules() if module.startswith("pointmoe_core")
             and any(name == forbidden or name.startswith(forbidden + ".") for name in imports(module))]
    assert not wrong, f"{forbidden} imported by {wrong}"


def test_no_import_cycles():
    graph = {module: project_imports(module) & set(modules()) for module in modules()}
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    cycles = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycles.append(" -> ".join(path[path.index(target):] + [module, target]) if target in path
                              else f"{module} -> {target}")
            elif target not in state:
                visit(target, path + [module])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [])
    assert not cycles, "\n".join(cycles)
