"""Face node logic without ComfyUI: Detect & Align -> Enhance -> Paste equals Face Restore, bit for bit."""
from __future__ import annotations

import importlib

import pytest
import torch
from standins import IdentityGPEN, TemplateFaceDetector

from helpers import TINY


@pytest.fixture(scope="module")
def logic(pack):
    return importlib.import_module("comfyui_gpen.nodes.face_logic")


@pytest.fixture(scope="module")
def model(pack):
    core = importlib.import_module("comfyui_gpen.gpen_core")
    return core.build_model(core.seeded_state_dict(TINY, 4))


@pytest.fixture(scope="module")
def core(pack):
    return importlib.import_module("comfyui_gpen.gpen_core")


def options(core, *, fidelity=1.0, upscale_factor=1.0, tile_size=None):
    face = core.face
    run = core.run_options.RunOptions(tile_size)
    return face.RestoreOptions(paste=face.PasteOptions(fidelity=fidelity, upscale_factor=upscale_factor), run=run)


def networks(core, model):
    return core.face.FaceNetworks(model, TemplateFaceDetector(0.6))


@pytest.fixture(scope="module")
def frames() -> torch.Tensor:
    """Three RGBA frames (B, H, W, 4): alpha must come through too."""
    return torch.rand(3, 72, 96, 4, generator=torch.Generator().manual_seed(0))


def split_path(pack, core, logic, model, images, *, upscaled=None, upscale_factor=1.0, fidelity=0.6):
    crops, faces = logic.detect_comfy_images(TemplateFaceDetector(0.6), images, model.config.size, upscaled=upscaled)
    restored = pack.nodes.logic.enhance_comfy_images(model, crops, core.run_options.RunOptions(32))
    target = images if upscaled is None else upscaled
    paste = core.face.PasteOptions(fidelity=fidelity, upscale_factor=upscale_factor)
    return logic.paste_comfy_images(target, faces, restored, paste)


@pytest.mark.parametrize("upscale_factor", [1.0, 1.5])
def test_detect_enhance_paste_equals_face_restore(pack, core, logic, model, frames, upscale_factor):
    out, before, after, mask = logic.restore_comfy_images(
        networks(core, model), frames, options(core, fidelity=0.6, tile_size=32, upscale_factor=upscale_factor)
    )
    split_out, split_mask = split_path(pack, core, logic, model, frames, upscale_factor=upscale_factor)
    size = (round(72 * upscale_factor), round(96 * upscale_factor))
    assert out.shape == (3, *size, 4) and mask.shape == (3, *size) and before.shape == after.shape == (3, 64, 64, 3)
    assert torch.equal(out, split_out) and torch.equal(mask, split_mask)
    outside = mask == 0
    assert 0 < float(outside.float().mean()) < 1
    if upscale_factor == 1.0:
        assert torch.equal(out[outside], frames[outside])
    assert torch.equal(out[..., 3], split_out[..., 3])  # alpha carried (and resized)


def test_detect_enhance_paste_equals_face_restore_with_an_upscaled_image(pack, core, logic, model, frames):
    upscaled = torch.rand(3, 144, 192, 3, generator=torch.Generator().manual_seed(1))
    out, _, _, mask = logic.restore_comfy_images(
        networks(core, model), frames, options(core, fidelity=0.6, tile_size=32), upscaled=upscaled
    )
    split_out, split_mask = split_path(pack, core, logic, model, frames, upscaled=upscaled)
    # Face Restore carries the alpha of image; the paste here goes into the upscaled image, which has none
    assert torch.equal(out[..., :3], split_out) and torch.equal(mask, split_mask)
    outside = mask == 0
    assert out.shape == (3, 144, 192, 4)
    assert torch.equal(out[..., :3][outside], upscaled[outside])


def test_crops_can_be_dropped_for_long_videos(core, logic, frames):
    model = IdentityGPEN(64)
    kept = logic.restore_comfy_images(networks(core, model), frames)
    dropped = logic.restore_comfy_images(networks(core, model), frames, keep_crops=False)
    assert kept[1].shape == kept[2].shape == (3, 64, 64, 3)
    assert dropped[1].shape == dropped[2].shape == (1, 64, 64, 3)  # unused outputs: one black placeholder
    assert not dropped[1].any() and not dropped[2].any()
    assert torch.equal(kept[0], dropped[0]) and torch.equal(kept[3], dropped[3])


def test_paste_takes_crops_of_any_size_and_names_a_count_mismatch(logic, frames):
    images = frames[..., :3]
    crops, faces = logic.detect_comfy_images(TemplateFaceDetector(0.6), images, 64)
    out, mask = logic.paste_comfy_images(images, faces, crops.repeat_interleave(2, 1).repeat_interleave(2, 2))
    assert out.shape == images.shape and mask.shape == images.shape[:3]
    with pytest.raises(ValueError, match="restored_faces has 2 crop.*3 face"):
        logic.paste_comfy_images(images, faces, crops[:2])
    with pytest.raises(ValueError, match="image has 2 frame.*found in 3"):
        logic.paste_comfy_images(images[:2], faces, crops)


def test_linked_outputs_reads_the_prompt(logic):
    prompt = {
        "3": {"class_type": "GPENFaceRestore", "inputs": {"image": ["1", 0]}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0]}},
        "5": {"class_type": "PreviewImage", "inputs": {"images": ["3", 2]}},
    }
    assert logic.linked_outputs(prompt, "3") == {0, 2}
    assert logic.linked_outputs(prompt, "4") == set()
    assert logic.linked_outputs(None, "3") is None


def test_paste_goes_in_chunks_and_takes_masks_per_crop(core, logic, frames, monkeypatch):
    images = frames[..., :3]
    crops, faces = logic.detect_comfy_images(TemplateFaceDetector(0.6), images, 64)
    restored = 1 - crops
    paste = core.face.PasteOptions(upscale_factor=1.5)
    whole, whole_mask = logic.paste_comfy_images(images, faces, restored, paste)
    monkeypatch.setattr(core.face.pipeline, "chunk_frames_for", lambda *sizes: 1)
    chunked, chunked_mask = logic.paste_comfy_images(images, faces, restored, paste)
    assert torch.equal(whole, chunked) and torch.equal(whole_mask, chunked_mask)
    nothing, nothing_mask = logic.paste_comfy_images(images, faces, restored, face_masks=torch.zeros(3, 32, 32))
    assert torch.equal(nothing, images) and float(nothing_mask.max()) == 0
    square = torch.zeros(3, 64, 64)
    square[:, 16:48, 16:48] = 1.0
    _, square_mask = logic.paste_comfy_images(images, faces, restored, face_masks=square)
    assert float(square_mask.max()) == 1.0
    assert float((square_mask > 0).float().mean()) < float((whole_mask > 0).float().mean())  # a smaller region
    with pytest.raises(ValueError, match=r"one mask per face \(3, H, W\)"):
        logic.paste_comfy_images(images, faces, restored, face_masks=torch.zeros(2, 64, 64))


def test_no_face_gives_a_black_placeholder_crop_that_paste_ignores(core, logic):
    """An IMAGE batch cannot be empty (Save/Preview Image fail on one): without faces the crop outputs hold
    one black crop, and pasting it back through the faces record (zero faces) returns the image unchanged."""
    uniform = torch.full((2, 48, 40, 3), 0.25)
    crops, faces = logic.detect_comfy_images(TemplateFaceDetector(0.6), uniform, 64)
    assert len(faces) == 0 and crops.shape == (1, 64, 64, 3) and not crops.any()
    out, mask = logic.paste_comfy_images(uniform, faces, crops)
    assert torch.equal(out, uniform) and not mask.any()
    image, before, after, mask = logic.restore_comfy_images(networks(core, IdentityGPEN(64)), uniform)
    assert torch.equal(image, uniform) and not mask.any()
    assert before.shape == after.shape == (1, 64, 64, 3) and not before.any() and not after.any()


@pytest.mark.parametrize("bad, message", [
    (lambda crops: crops.clone().index_fill_(1, torch.tensor([3]), float("nan")),
     r"restored_faces contains \d+ NaN or infinite"),
    (lambda crops: crops * 255 + 1, r"restored_faces must hold values in \[0, 1\]"),
])
def test_paste_checks_its_crops_like_face_restore_checks_its_images(logic, frames, bad, message):
    images = frames[..., :3]
    crops, faces = logic.detect_comfy_images(TemplateFaceDetector(0.6), images, 64)
    with pytest.raises(ValueError, match=message):
        logic.paste_comfy_images(images, faces, bad(crops))


def test_paste_refuses_empty_masks(logic, frames):
    images = frames[..., :3]
    crops, faces = logic.detect_comfy_images(TemplateFaceDetector(0.6), images, 64)
    with pytest.raises(ValueError, match=r"face_masks must hold one mask per face \(3, H, W\) with H, W >= 1"):
        logic.paste_comfy_images(images, faces, crops, face_masks=torch.zeros(3, 0, 0))
    with pytest.raises(ValueError, match=r"face_masks must hold one mask per face"):
        logic.paste_comfy_images(images, faces, crops, face_masks=torch.zeros(2, 0, 0))
    with pytest.raises(ValueError, match=r"face_masks contains \d+ NaN"):
        logic.paste_comfy_images(images, faces, crops, face_masks=torch.full((3, 8, 8), float("nan")))
