"""The import graph of the pack's packages, read from the source (``ast``), for the structure tests.

Every ``from . import`` / ``from .x import`` / ``import gpen_core.x`` is an edge, including imports
inside functions (the usual way to hide a cycle or a layer break); only imports under
``if TYPE_CHECKING:`` (type hints, never run) are not.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "gpen_core"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def runtime_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement of the module, at any depth, except under ``if TYPE_CHECKING:``."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
            return
        if isinstance(node, ast.If) and is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph(root: Path, packages: tuple[str, ...] = (PACKAGE,)) -> dict[str, set[str]]:
    """``module -> modules of the packages it imports``, for every module of ``packages`` under ``root``."""
    return _graph(root, packages)[0]


def external_imports(root: Path, packages: tuple[str, ...] = (PACKAGE,)) -> dict[str, set[str]]:
    """``module -> top-level names it imports from outside ``packages``` (``torch``, ``comfy`` ...)."""
    return _graph(root, packages)[1]


def _graph(root: Path, packages: tuple[str, ...]) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    files = {module_name(p, root): p for package in packages for p in sorted((root / package).rglob("*.py"))}
    graph: dict[str, set[str]] = {name: set() for name in files}
    external: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in runtime_imports(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                # `from pkg import mod` imports the submodule when there is one
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in files else base for alias in node.names]
            for target in targets:
                if not node_is_relative(node) and target.split(".")[0] not in packages:
                    external[name].add(target.split(".")[0])
                    continue
                while target and target not in files:  # `a.b.c` where c is an attribute
                    target = target.rpartition(".")[0]
                if target in files and target != name:
                    graph[name].add(target)
                    # importing a.b.c runs a/__init__ and a/b/__init__ first
                    parent = target.rpartition(".")[0]
                    while parent:
                        if parent in files and parent != name and not name.startswith(parent + "."):
                            graph[name].add(parent)
                        parent = parent.rpartition(".")[0]
    return graph, external


def node_is_relative(node: ast.Import | ast.ImportFrom) -> bool:
    return isinstance(node, ast.ImportFrom) and node.level > 0
