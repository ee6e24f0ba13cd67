"""Layers that stay: a module imports only from its own layer or the ones below it.

weights, checks (file, values), the network entry type, the official files' table, digests -> arch ->
runtime, images -> loading, enhance, run options -> face -> video -> zoo -> tools -> the ``gpen_core`` package itself
(its public names) -> nodes (ComfyUI).
The core never imports ``nodes`` or ComfyUI (``comfy``, ``comfy_api``, ``folder_paths``, ``server``).
Imports inside functions count; only ``if TYPE_CHECKING:`` imports do not (see ``import_graph``).
"""
from __future__ import annotations

from pathlib import Path

import pytest
from import_graph import external_imports, import_graph

from helpers import REPO_ROOT

PACKAGES = ("gpen_core", "nodes")
LAYERS: tuple[tuple[str, ...], ...] = (
    ("gpen_core.weights", "gpen_core.checks", "gpen_core.official_files", "gpen_core.digests", "gpen_core.file_checks",
     "gpen_core.weight_checks", "gpen_core.network_entry"),
    ("gpen_core.arch",),
    ("gpen_core.runtime", "gpen_core.images"),
    ("gpen_core.loading", "gpen_core.enhance", "gpen_core.run_options"),
    ("gpen_core.face",),
    ("gpen_core.video",),
    ("gpen_core.zoo",),
    ("gpen_core.tools", "gpen_core.__main__"),
    ("gpen_core",),
    ("nodes",),
)
"""Every module's layer, lowest first, by the longest matching module prefix (``gpen_core`` itself: only the
package's ``__init__``, so a new top-level module must be placed here)."""
EXACT = frozenset({"gpen_core"})
COMFYUI = frozenset({"comfy", "comfy_api", "comfy_extras", "folder_paths", "server", "nodes"})
"""ComfyUI's own top-level modules (``nodes`` is also ComfyUI's ``nodes.py``)."""


def layer_of(module: str) -> int:
    """The index in :data:`LAYERS` of the longest prefix of ``module``; KeyError when it has none."""
    best, length = -1, -1
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            covers = module == prefix or (prefix not in EXACT and module.startswith(prefix + "."))
            if covers and len(prefix) > length:
                best, length = index, len(prefix)
    if best < 0:
        raise KeyError(f"{module} is in no layer: add it to LAYERS in tests/test_layers.py")
    return best


def upward_imports(root: Path) -> list[str]:
    """``a -> b`` for every import of a higher layer's module, and every ComfyUI import of the core."""
    graph = import_graph(root, PACKAGES)
    found = [f"{a} (layer {layer_of(a)}) imports {b} (layer {layer_of(b)})"
             for a in sorted(graph) for b in sorted(graph[a]) if layer_of(b) > layer_of(a)]
    for module, names in sorted(external_imports(root, PACKAGES).items()):
        if module.startswith("gpen_core") and names & COMFYUI:
            found.append(f"{module} imports ComfyUI's {', '.join(sorted(names & COMFYUI))}")
    return found


def test_every_module_has_a_layer():
    for module in import_graph(REPO_ROOT, PACKAGES):
        layer_of(module)


def test_no_module_imports_from_a_layer_above():
    wrong = upward_imports(REPO_ROOT)
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@pytest.mark.parametrize("wrong, message", [
    ({"gpen_core/arch/generator.py": "def f():\n    from ..face import pipeline\n"},
     "gpen_core.arch.generator (layer 1) imports gpen_core.face.pipeline (layer 4)"),
    ({"gpen_core/face/pipeline.py": "from ..tools import cli\n"},
     "gpen_core.face.pipeline (layer 4) imports gpen_core.tools.cli (layer 7)"),
    ({"gpen_core/loading.py": "import gpen_core.tools.cli\n"},
     "gpen_core.loading (layer 3) imports gpen_core.tools.cli (layer 7)"),
    ({"gpen_core/face/pipeline.py": "import comfy.model_management\n"}, "imports ComfyUI's comfy"),
    ({"gpen_core/tools/cli.py": "from nodes import face_logic\n"},
     "gpen_core.tools.cli (layer 7) imports nodes.face_logic (layer 9)"),
    ({"gpen_core/tools/cli.py": "import folder_paths\n"}, "imports ComfyUI's folder_paths"),
])
def test_a_wrong_import_is_found(tmp_path, wrong, message):
    """The checker itself, on a small copy of the layout with one deliberately wrong import."""
    layout = {f"{package}/__init__.py": "" for package in ("gpen_core", "gpen_core/arch", "gpen_core/face",
                                                            "gpen_core/tools", "nodes")}
    layout.update({"gpen_core/arch/generator.py": "", "gpen_core/face/pipeline.py": "from ..arch import generator\n",
                   "gpen_core/tools/cli.py": "from ..face import pipeline\n", "gpen_core/loading.py": "",
                   "nodes/face_logic.py": "from ..gpen_core.tools import cli\n"})
    write(tmp_path, layout)
    assert upward_imports(tmp_path) == []
    write(tmp_path, wrong)
    assert any(message in line for line in upward_imports(tmp_path)), upward_imports(tmp_path)
