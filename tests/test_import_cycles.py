"""gpen_core has no import cycles: its internal import graph is acyclic.

Every ``from . import`` / ``from .x import`` / ``import gpen_core.x`` is an edge, including
imports inside functions (the usual way to hide a cycle); only imports under
``if TYPE_CHECKING:`` (type hints, never run) are not.
"""
from __future__ import annotations

from import_graph import PACKAGE, import_graph

from helpers import REPO_ROOT


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as ``[m0, m1, ..., m0]``, or None."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_gpen_core_has_no_import_cycles():
    graph = import_graph(REPO_ROOT)
    assert "gpen_core.arch.generator" in graph and graph["gpen_core.arch.generator"]
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_a_cycle_is_found(tmp_path):
    """The checker itself: a two-module cycle, and the imports that do not count."""
    pkg = tmp_path / PACKAGE
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .b import f\n")
    (pkg / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import f\n")
    assert find_cycle(import_graph(tmp_path)) is None
    (pkg / "b.py").write_text("def g():\n    from .a import f\n")  # hidden in a function: still a cycle
    assert find_cycle(import_graph(tmp_path)) == [f"{PACKAGE}.a", f"{PACKAGE}.b", f"{PACKAGE}.a"]
    (pkg / "b.py").write_text("from . import a\n")
    assert find_cycle(import_graph(tmp_path)) == [f"{PACKAGE}.a", f"{PACKAGE}.b", f"{PACKAGE}.a"]
