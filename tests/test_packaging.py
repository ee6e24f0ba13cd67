"""What ``pip install .`` installs (only ``gpen_core``, every subpackage, the ``gpen`` command) and what the
weights page documents (the official table, entry for entry). ``.ci/run`` installs the pack and runs
``gpen --help`` and ``comfy node validate`` for real."""
from __future__ import annotations

import importlib
import re

import pytest

from gpen_core.arch.config import GPENConfig
from gpen_core.face.parsing import ParseNetConfig
from gpen_core.official_files import GPEN_HOST, OFFICIAL_FILES
from helpers import REPO_ROOT

tomllib = pytest.importorskip("tomllib")


@pytest.fixture(scope="module")
def pyproject() -> dict:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_the_installed_packages_are_gpen_core_and_all_its_subpackages(pyproject):
    listed = pyproject["tool"]["setuptools"]["packages"]
    inits = (REPO_ROOT / "gpen_core").rglob("__init__.py")
    on_disk = sorted(".".join(p.parent.relative_to(REPO_ROOT).parts) for p in inits)
    assert sorted(listed) == on_disk
    assert "nodes" not in listed  # would shadow ComfyUI's own nodes.py


def test_the_gpen_command_is_python_m_gpen_core(pyproject):
    target = pyproject["project"]["scripts"]["gpen"]
    module, _, function = target.partition(":")
    assert getattr(importlib.import_module(module), function) is importlib.import_module("gpen_core.tools.cli").main
    assert "from .tools.cli import main" in (REPO_ROOT / "gpen_core" / "__main__.py").read_text()


def test_requirements_txt_lists_the_package_dependencies(pyproject):
    lines = [line.strip() for line in (REPO_ROOT / "requirements.txt").read_text().splitlines()]
    assert [line for line in lines if line and not line.startswith("#")] == pyproject["project"]["dependencies"]
    assert not any(re.match(r"torch\b", dep) for dep in pyproject["project"]["dependencies"])  # ComfyUI's own


def test_the_weights_page_lists_the_official_table():
    page = (REPO_ROOT / "docs" / "weights.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| (\S+) \| `([^`]+)` \| `models/(\w+)` \| (\S+) \|$", page, flags=re.MULTILINE)
    assert rows == [(e.name, e.file_name, e.folder, e.url) for e in OFFICIAL_FILES]


def test_every_entry_describes_a_network_that_can_be_built():
    names = [e.name.lower() for e in OFFICIAL_FILES] + [e.file_name.lower() for e in OFFICIAL_FILES]
    assert len(set(names)) == len(names)
    for entry in OFFICIAL_FILES:
        assert entry.url.startswith("https://") and entry.url.endswith("/" + entry.file_name)
        if entry.network == "gpen":
            assert entry.url == GPEN_HOST + entry.file_name and entry.folder == "gpen"
            assert GPENConfig(**entry.config).size == int(entry.name.rsplit("-", 1)[1])
        elif entry.network == "parsenet":
            assert ParseNetConfig(**entry.config) == ParseNetConfig()
        else:  # a detector: the network names the backbone, the shapes say the rest
            assert entry.network in ("retinaface_resnet50", "retinaface_mobile0.25") and entry.config == {}
