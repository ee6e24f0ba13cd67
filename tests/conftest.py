"""Shared fixtures: tiny seeded GPEN models (fast); one torch thread; no weight downloads unless a test asks."""
from __future__ import annotations

import importlib.util
import os
from types import ModuleType

import pytest
import torch

import gpen_core as g
from helpers import TINY, import_pack

DEFAULT_TORCH_THREADS = torch.get_num_threads()
"""torch's own choice (one per core), before the line below."""
if "OMP_NUM_THREADS" not in os.environ:
    # The tests' tensors are small: a second intra-op thread mostly spin-waits, and on a busy 2-core machine
    # it takes CPU from the other processes (measured: tiling + restore + video tests 31 s instead of 77 s wall,
    # 19 instead of 71 CPU seconds). OMP_NUM_THREADS set in the environment wins.
    torch.set_num_threads(1)


os.environ["GPEN_NO_DOWNLOAD"] = "1"
os.environ.pop("GPEN_WEIGHTS_BASE_URL", None)
"""The whole session (module- and session-scoped fixtures too) runs with ``GPEN_NO_DOWNLOAD=1``: a code path that
would fetch official weights from the internet meets the opt-out instead."""


@pytest.fixture(autouse=True)
def no_weight_downloads(monkeypatch):
    """Every test starts with the opt-out set again, whatever an earlier test did. The download tests lift it
    (``monkeypatch.delenv``) and serve the files from a loopback server."""
    monkeypatch.setenv("GPEN_NO_DOWNLOAD", "1")
    monkeypatch.delenv("GPEN_WEIGHTS_BASE_URL", raising=False)


@pytest.fixture()
def default_torch_threads():
    """torch's own thread count during the test: for results compared bit for bit with references computed
    under it (another thread count changes the order of float sums in a convolution)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(DEFAULT_TORCH_THREADS)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_state() -> dict[str, torch.Tensor]:
    return g.seeded_state_dict(TINY, 7)


@pytest.fixture()
def tiny_model(tiny_state) -> g.GPEN:
    return g.build_model(tiny_state)


@pytest.fixture()
def no_model_load(monkeypatch):
    """Fail the test if a model is loaded (option and planning errors must come first)."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the options and inputs were checked")

    monkeypatch.setattr("gpen_core.loading.load_model", refuse)
    monkeypatch.setattr("gpen_core.face.detection.loader.load_detector", refuse)


@pytest.fixture(scope="session")
def pack() -> ModuleType:
    """The repository imported as the package ``comfyui_gpen`` (relative imports as in ComfyUI), with
    ``nodes.logic`` loaded: the node logic, callable without ComfyUI."""
    module = import_pack("comfyui_gpen")
    importlib.import_module("comfyui_gpen.nodes.logic")
    return module
