"""Shared fixtures: tiny seeded GPEN models (fast)."""
from __future__ import annotations

import importlib.util
from types import ModuleType

import pytest
import torch

import gpen_core as g
from helpers import TINY, import_pack


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
    module = import_pack("comfyui_gpen")
    importlib.import_module("comfyui_gpen.nodes.logic")
    return module
