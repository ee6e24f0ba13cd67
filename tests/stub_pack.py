"""The pack imported under the ComfyUI stand-ins (``tests/comfy_stubs.py``), for the node tests (importable as
``stub_pack``; the ``comfy`` fixture is in ``tests/nodes/conftest.py``)."""
from __future__ import annotations

import asyncio
import importlib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace

import comfy_stubs
import pytest
import torch

import gpen_core as g
from gpen_core.face.detection.retinaface import RetinaFaceNet
from helpers import TINY, forget_pack, import_pack

PACK = "gpen_pack_under_stubs"


def pack_module(name: str) -> ModuleType:
    """A module of the pack as imported under stand-ins (its own copy of ``gpen_core``)."""
    return importlib.import_module(f"{PACK}.{name}")


def small_bench(size, precisions, tile_size, device, repeat, backward=True, log=print, **options):
    """The benchmark at a 32-pixel test layout: the node's glue runs, the official sizes would take minutes."""
    bench_size = pack_module("gpen_core.tools.bench").bench_size
    return bench_size(32, precisions, min(tile_size, 32), device, 1, backward=backward, log=log)


def stubbed_pack(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[SimpleNamespace]:
    """The pack imported as ComfyUI imports it, over stand-in ComfyUI modules and a models folder holding a
    tiny GPEN and (default-initialised) RetinaFace weights."""
    models = tmp_path / "models"
    (models / "gpen").mkdir(parents=True)
    (models / "facedetection").mkdir()
    torch.save(g.seeded_state_dict(TINY, 5), models / "gpen" / "GPEN-TINY-64.pth")
    torch.manual_seed(0)
    torch.save(RetinaFaceNet("mobile0.25").state_dict(), models / "facedetection" / "detection_mobilenet0.25_Final.pth")
    stubs = comfy_stubs.install(monkeypatch, models)
    forget_pack(PACK)
    pack = import_pack(PACK)
    extension = asyncio.run(pack.comfy_entrypoint())
    nodes = asyncio.run(extension.get_node_list())
    monkeypatch.setattr(pack_module("nodes.comfy_nodes"), "bench_size", small_bench)
    yield SimpleNamespace(stubs=stubs, pack=pack, nodes=nodes)
    forget_pack(PACK)
