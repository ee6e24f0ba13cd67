"""The nodes' logic, without ComfyUI: the pack is imported as a package, as ComfyUI does."""
from __future__ import annotations

import importlib
import sys

import pytest
import torch

from helpers import TINY


@pytest.fixture(scope="module")
def model(pack):
    core = importlib.import_module("comfyui_gpen.gpen_core")
    return core.build_model(core.seeded_state_dict(TINY, 4))


def test_importing_the_pack_needs_no_comfyui(pack):
    assert "comfy" not in sys.modules and "folder_paths" not in sys.modules
    assert callable(pack.comfy_entrypoint) and pack.WEB_DIRECTORY == "./web"


def test_layout_round_trip(pack):
    logic = pack.nodes.logic
    images = torch.rand(2, 40, 30, 3)
    assert torch.equal(logic.bchw_to_comfy(logic.comfy_to_bchw(images)), images)
    assert logic.comfy_to_bchw(torch.rand(40, 30, 3)).shape == (1, 3, 40, 30)
    with pytest.raises(ValueError, match=r"\(B, H, W, C\).*\(2, 40, 30, 7\)"):
        logic.comfy_to_bchw(torch.rand(2, 40, 30, 7))


def test_widget_values_map_to_core_options(pack):
    options = importlib.import_module("comfyui_gpen.gpen_core.run_options").RunOptions
    assert (options(0, -1).core_tile_size, options(0, -1).core_overlap) == ("auto", None)
    assert (options(256, 8, True).core_tile_size, options(256, 8).core_overlap) == (256, 8)
    for bad, message in [((256, -2), "overlap"), ((256, 0, False, None, 0), "batch_size"),
                         ((256, 0, False, None, -1), "batch_size"), (("64",), "tile_size .* must be an integer")]:
        with pytest.raises(ValueError, match=message):
            options(*bad)
    check = pack.nodes.logic.check_node_tile_size
    check(0)
    check(64)
    for small in (16, 48):  # exact but minutes per image: a node refuses and says what to use
        with pytest.raises(ValueError, match=r"0 \(automatic\) or at least 64"):
            check(small)


def test_option_lists_are_the_cores(pack):
    logic = pack.nodes.logic
    core = importlib.import_module("comfyui_gpen.gpen_core")
    detection = importlib.import_module("comfyui_gpen.gpen_core.face.detection")
    assert logic.PRECISION_OPTIONS == core.PRECISIONS
    assert logic.INPUT_RANGE_OPTIONS == ("[-1,1]", "[0,1]")
    assert ("auto", *detection.DETECTOR_NAMES) == logic.DETECTOR_OPTIONS
    assert logic.SELECTION_OPTIONS[: len(detection.FACE_ORDERS)] == detection.FACE_ORDERS
    assert "all" in logic.SELECTION_OPTIONS  # saved workflows use it
    assert logic.BENCH_SIZES == ("256", "512", "1024", "2048")
    assert set(logic.BENCH_PRECISIONS) == {"fp32", "fp16", "bf16", "fp32+fp16", "fp32+bf16"}


def test_enhance_node_logic(pack, model):
    logic = pack.nodes.logic
    images = torch.rand(3, 50, 70, 3)
    steps = []
    run = importlib.import_module("comfyui_gpen.gpen_core.run_options").RunOptions
    out = logic.enhance_comfy_images(model, images, run(32), progress=lambda d, t: steps.append((d, t)))
    assert out.shape == (3, 64, 64, 3) and out.dtype == torch.float32 and out.device.type == "cpu"
    assert steps[-1] == (12, 12)  # 3 images x 4 tiles
    same = logic.enhance_comfy_images(model, images, run(0, batch_size=2), output_size="input size")
    assert same.shape == (3, 50, 70, 3)
    with pytest.raises(ValueError, match="output_size"):
        logic.enhance_comfy_images(model, images, output_size="huge")
    kept = []
    measured = logic.enhance_comfy_images(model, images, run(32), on_record=kept.append)
    assert torch.equal(measured, out) and len(kept) == 1
    assert kept[0].strategy == "tiles of 32" and kept[0].peak_bytes > 0 and kept[0].peak_method == "live tensors"
