"""Shared fixtures: tiny seeded GPEN models (fast)."""
from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

import pytest
import torch

import gpen_core as g
from helpers import REPO_ROOT, TINY


@pytest.fixture(scope="session")
def tiny_state() -> dict[str, torch.Tensor]:
    return g.seeded_state_dict(TINY, 7)


@pytest.fixture()
def tiny_model(tiny_state) -> g.GPEN:
    return g.build_model(tiny_state)


@pytest.fixture(scope="session")
def pack() -> ModuleType:
    """The repository imported as the package ``comfyui_gpen`` (relative imports as in ComfyUI), with
    ``nodes.logic`` loaded: the node logic, callable without ComfyUI."""
    if "comfyui_gpen" not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            "comfyui_gpen", REPO_ROOT / "__init__.py", submodule_search_locations=[str(REPO_ROOT)]
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["comfyui_gpen"] = module
        spec.loader.exec_module(module)
    importlib.import_module("comfyui_gpen.nodes.logic")
    return sys.modules["comfyui_gpen"]
