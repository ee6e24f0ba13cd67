"""Face restoration as three steps (detect + align, restore, paste) and the upscale-aware paste."""
from __future__ import annotations

import pytest
import torch
from standins import IdentityGPEN, TemplateFaceDetector

import gpen_core as g
from gpen_core.face.align import apply_affine
from gpen_core.face.faces import AlignedFaces, image_scale, scale_matrices
from gpen_core.face.options import PasteOptions, RestoreOptions
from gpen_core.face.pipeline import FaceNetworks, restore_faces
from gpen_core.face.restore import (
    detect_and_align,
    paste_back,
    paste_size,
    restore_crops,
)
from gpen_core.face.stats import RestoreStats
from gpen_core.images.files import read_image
from gpen_core.images.tensors import resize
from gpen_core.run_options import RunOptions
from helpers import TINY, psnr


@pytest.fixture(scope="module")
def portrait(photos_dir) -> torch.Tensor:
    return read_image(photos_dir / "portrait-1947.png")[:3]  # (3, 439, 328)


def test_restore_faces_is_the_three_steps(portrait, tiny_model):
    model = tiny_model
    detector = TemplateFaceDetector(0.5)
    images = torch.stack([portrait, portrait.flip(-1), torch.full_like(portrait, 0.5)])
    with torch.inference_mode():
        options = RestoreOptions(paste=PasteOptions(fidelity=0.7), run=RunOptions(tile_size=None), chunk_frames=2)
        whole = restore_faces(FaceNetworks(model, detector), images, options)
        crops, faces = detect_and_align(detector, images, TINY.size)
        restored = restore_crops(model, crops, RunOptions(tile_size=None))
        pasted, masks = paste_back(images, restored, faces, PasteOptions(fidelity=0.7))
    assert faces.image_index.tolist() == [0, 1]
    assert torch.equal(whole.faces.matrices, faces.matrices)
    assert torch.equal(whole.crops, crops) and torch.equal(whole.restored, restored)
    assert torch.equal(whole.images, pasted) and torch.equal(whole.masks, masks)
    assert not torch.equal(pasted[:2], images[:2]) and torch.equal(pasted[2], images[2])


def test_upscale_factor_pastes_into_the_resized_image(portrait):
    """Stand-in generator, fidelity 1, factor 2: the resized original inside the masks (up to resampling),
    exactly the resized original outside them."""
    model = IdentityGPEN(512)
    with torch.inference_mode():
        result = restore_faces(FaceNetworks(model, TemplateFaceDetector(0.6)), portrait[None],
                               RestoreOptions(paste=PasteOptions(upscale_factor=2.0)))
    expected = resize(portrait[None], 878, 656)
    assert result.images.shape == (1, 3, 878, 656) and result.masks.shape == (1, 878, 656)
    inside, outside = result.masks[0] > 0, result.masks[0] == 0
    assert 0.1 < float(inside.float().mean()) < 0.9
    assert torch.equal(result.images[0][:, outside], expected[0][:, outside])
    value = psnr(result.images[0][:, inside], expected[0][:, inside])
    assert value >= 35, value
    # the record keeps coordinates of the image the faces were found in
    assert result.faces.source_sizes == ((439, 328),)


def test_upscaled_image_is_cropped_and_pasted_into(portrait):
    model = IdentityGPEN(256)
    upscaled = torch.rand(1, 3, 658, 492, generator=torch.Generator().manual_seed(1))  # 1.5x, rounded
    with torch.inference_mode():
        result = restore_faces(FaceNetworks(model, TemplateFaceDetector(0.6)), portrait[None], upscaled=upscaled)
        crops, faces = detect_and_align(TemplateFaceDetector(0.6), portrait[None], 256)
    outside = result.masks[0] == 0
    assert result.images.shape == upscaled.shape and 0 < float(outside.float().mean()) < 1
    assert torch.equal(result.images[0][:, outside], upscaled[0][:, outside])
    # the crops come from the upscaled image (noise here), aligned by the original's landmarks
    assert torch.equal(result.faces.matrices, faces.matrices)
    assert psnr(result.crops, crops) < 15
    matrices = scale_matrices(faces.matrices, 658 / 439, 492 / 328)
    assert torch.equal(result.crops, g.face.warp_faces(upscaled[0], matrices, 256)[None][0])


def test_a_stretched_upscaled_image_is_refused(portrait):
    stretched = torch.rand(1, 3, 439 * 2, 328 * 3)
    with pytest.raises(ValueError, match="984x878.*same factor in both directions"):
        restore_faces(FaceNetworks(IdentityGPEN(64), TemplateFaceDetector()), portrait[None], upscaled=stretched)
    with pytest.raises(ValueError, match="upscale_factor is 2 but the upscaled image is 984x1317"):
        paste_size((439, 328), 2.0, (1317, 984))
    assert paste_size((439, 328), 3.0, (1317, 984)) == (1317, 984)
    assert paste_size((439, 328), 1.5, None) == (658, 492)
    with pytest.raises(ValueError, match=r"upscale_factor must be in \[1, 8\]"):
        paste_size((439, 328), 9.0, None)


def test_scale_matrices_follow_the_resize_convention():
    """A source point p sits at (p + 0.5) * s - 0.5 in the resized copy; both land on the same crop point."""
    matrices = torch.tensor(
        [[[0.8, -0.3, 12.0], [0.3, 0.8, -7.0]], [[1.5, 0.0, 3.0], [0.0, 1.5, 4.0]]], dtype=torch.float64
    )
    points = torch.rand(2, 7, 2, dtype=torch.float64) * 100
    scale = torch.tensor([2.5, 1.75], dtype=torch.float64)  # (x, y)
    moved = (points + 0.5) * scale - 0.5
    scaled = scale_matrices(matrices, 1.75, 2.5)
    assert torch.allclose(apply_affine(scaled, moved), apply_affine(matrices, points), atol=1e-10)
    assert scale_matrices(matrices, 1.0, 1.0) is matrices
    assert image_scale((480, 640), (961, 1281)) == (961 / 480, 1281 / 640)  # rounding of a 2x upscale


def test_paste_back_says_what_does_not_match(portrait):
    crops, faces = detect_and_align(TemplateFaceDetector(), portrait[None], 64)
    with pytest.raises(ValueError, match=r"restored crops must be \(1, 3, 64, 64\)"):
        paste_back(portrait[None], torch.zeros(2, 3, 64, 64), faces)
    with pytest.raises(ValueError, match="found in 1 image.*2 image"):
        paste_back(portrait[None].repeat(2, 1, 1, 1), crops, faces)


def test_aligned_faces_join_and_check():
    one = AlignedFaces(torch.tensor([0, 0]), torch.zeros(2, 2, 3, dtype=torch.float64), torch.zeros(2, 4),
                       torch.zeros(2, 5, 2), torch.ones(2), ((10, 20),), 64)
    joined = AlignedFaces.concat([one, AlignedFaces.empty(((10, 20),), 64), one])
    assert joined.image_index.tolist() == [0, 0, 2, 2] and joined.num_images == 3
    assert joined.of_image(2).tolist() == [2, 3] and len(joined.of_image(1)) == 0
    part, rows = joined.images(1, 3)
    assert rows.tolist() == [2, 3] and part.image_index.tolist() == [1, 1] and part.num_images == 2
    with pytest.raises(ValueError, match=r"image_index must be in \[0, 1\)"):
        AlignedFaces(torch.tensor([1]), torch.zeros(1, 2, 3), torch.zeros(1, 4), torch.zeros(1, 5, 2),
                     torch.ones(1), ((10, 20),), 64)
    with pytest.raises(ValueError, match="different crop sizes"):
        AlignedFaces.concat([one, AlignedFaces.empty((), 128)])


def test_each_face_batch_hands_over_a_measured_run(portrait):
    stats = RestoreStats(measure=True)
    frames = torch.stack([portrait, torch.full_like(portrait, 0.5), portrait])
    with torch.inference_mode():
        restore_faces(FaceNetworks(IdentityGPEN(64), TemplateFaceDetector()), frames, RestoreOptions(chunk_frames=1),
                      stats=stats)
    assert len(stats.records) == 2  # the frame without a face runs no GPEN
    assert all(r.peak_bytes > 0 and r.device == "cpu" for r in stats.records)
    record = stats.record
    assert record is not None and record.whole_peak_bytes is not None
    assert record.whole_peak_bytes >= record.peak_bytes  # the whole run holds GPEN's peak and more
