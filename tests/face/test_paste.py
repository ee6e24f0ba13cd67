"""Tests of gpen_core.face.paste: the official paste mask, paste-back, overlaps, fidelity."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gpen_core.face import paste as paste_module
from gpen_core.face.align import (
    apply_affine,
    reference_points,
    similarity_transform,
    warp_faces,
)
from gpen_core.face.masks import gaussian_blur_reflect101, official_paste_mask, soften_parsing_mask
from gpen_core.face.paste import paste_faces
from helpers import PHOTOS_DIR, psnr, similarity_matrix

PORTRAIT = PHOTOS_DIR / "portrait-1947.png"
# hand-picked 5 points (x, y) on the 328 x 439 portrait: eye image-left, eye image-right,
# nose tip, mouth corner image-left, mouth corner image-right
PORTRAIT_LANDMARKS = [[156.0, 167.0], [215.0, 167.0], [198.0, 210.0], [162.0, 250.0], [214.0, 249.0]]


def face_matrices(placements: list[tuple[float, float, float, float]], size: int) -> torch.Tensor:
    """Image -> crop matrices of faces placed by template -> image similarities
    (angle, scale in image px per crop px, tx, ty), via landmarks and the Umeyama fit."""
    template = reference_points(size)
    known = torch.stack([similarity_matrix(*p) for p in placements])
    landmarks = apply_affine(known, template).float()
    return similarity_transform(landmarks, template.float())


def smooth_image(height: int, width: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, height // 24 + 2, width // 24 + 2, generator=generator)
    image = F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)
    return image[0].clamp(0, 1)


# ----------------------------------------------------------------------------- numpy references


def numpy_gaussian_kernel(ksize: int, sigma: float) -> np.ndarray:
    x = np.arange(ksize) - (ksize - 1) / 2
    k = np.exp(-(x**2) / (2 * sigma**2))
    return k / k.sum()


def numpy_blur_reflect101(plane: np.ndarray, ksize: int, sigma: float) -> np.ndarray:
    """cv2.GaussianBlur(plane, (ksize, ksize), sigma) with BORDER_REFLECT_101 (np.pad 'reflect')."""
    kernel = numpy_gaussian_kernel(ksize, sigma)
    r = ksize // 2
    h, w = plane.shape
    padded = np.pad(plane.astype(np.float64), ((0, 0), (r, r)), mode="reflect")
    rows = sum(kernel[k] * padded[:, k : k + w] for k in range(ksize))
    padded = np.pad(rows, ((r, r), (0, 0)), mode="reflect")
    return sum(kernel[k] * padded[k : k + h, :] for k in range(ksize))


def numpy_official_mask() -> np.ndarray:
    """The official 512 mask: rectangle (26, 26)-(486, 486) filled, blurred twice (101, 4)."""
    mask = np.zeros((512, 512))
    mask[26:487, 26:487] = 1.0
    mask = numpy_blur_reflect101(mask, 101, 4.0).astype(np.float32)
    return numpy_blur_reflect101(mask, 101, 4.0).astype(np.float32)


# ----------------------------------------------------------------------------- mask


def test_blur_matches_numpy_reflect101() -> None:
    generator = torch.Generator().manual_seed(0)
    plane = torch.rand(20, 9, generator=generator, dtype=torch.float64)
    for ksize, sigma in [(5, 1.0), (11, 2.5), (25, 4.0)]:  # 25 > 9: repeated reflection
        ours = gaussian_blur_reflect101(plane, ksize, sigma)
        np.testing.assert_allclose(
            ours.numpy(), numpy_blur_reflect101(plane.numpy(), ksize, sigma), atol=1e-12
        )
    batch = torch.rand(2, 3, 16, 16, generator=generator)
    ours = gaussian_blur_reflect101(batch, 7, 1.5)
    assert ours.shape == batch.shape and ours.dtype == torch.float32
    np.testing.assert_allclose(
        ours[1, 2].numpy(), numpy_blur_reflect101(batch[1, 2].numpy(), 7, 1.5), atol=1e-6
    )


def test_official_mask_matches_numpy_reference() -> None:
    mask = official_paste_mask(512)
    assert mask.shape == (512, 512) and mask.dtype == torch.float32
    np.testing.assert_allclose(mask.numpy(), numpy_official_mask(), atol=1e-6)
    assert float(mask.min()) > 0 and float(mask.max()) <= 1
    assert float(mask[256, 256]) == pytest.approx(1.0, abs=1e-6)
    assert float(mask[0, 0]) < 1e-6
    assert 0.4 < float(mask[256, 26]) < 0.6  # the edge of the 26 px inset is half way
    # resized like cv2.resize(INTER_LINEAR): at 256 each pixel is the mean of a 2 x 2 block
    half = official_paste_mask(256)
    blocks = mask.reshape(256, 2, 256, 2).mean(dim=(1, 3))
    torch.testing.assert_close(half, blocks, atol=1e-6, rtol=0)
    # callers get their own copy of the cached mask
    mask.zero_()
    assert float(official_paste_mask(512)[256, 256]) > 0.99


def test_soften_parsing_mask_matches_official_postprocess() -> None:
    generator = torch.Generator().manual_seed(1)
    parsing = (torch.rand(512, 512, generator=generator) > 0.3).float()
    expected = parsing.numpy().copy()
    expected[:26, :] = 0
    expected[-26:, :] = 0
    expected[:, :26] = 0
    expected[:, -26:] = 0
    expected = numpy_blur_reflect101(expected, 101, 4.0)
    expected = numpy_blur_reflect101(expected, 101, 4.0)
    ours = soften_parsing_mask(parsing)
    np.testing.assert_allclose(ours.numpy(), expected, atol=1e-6)
    ours256 = soften_parsing_mask(parsing.unsqueeze(0), 256)
    assert ours256.shape == (1, 256, 256)
    np.testing.assert_allclose(
        ours256[0].numpy(), expected.reshape(256, 2, 256, 2).mean(axis=(1, 3)), atol=1e-6
    )


# ----------------------------------------------------------------------------- round trip


def check_round_trip(
    image: torch.Tensor, matrices: torch.Tensor, size: int, label: str
) -> tuple[float, float]:
    crops = warp_faces(image, matrices, size)
    pasted, mask = paste_faces(image, crops, crops, matrices)
    assert pasted.shape == image.shape and pasted.dtype == image.dtype
    assert mask.shape == image.shape[1:]
    assert float(mask.min()) >= 0 and float(mask.max()) <= 1
    inside = mask > 0
    outside = ~inside
    assert bool(inside.any())
    assert torch.equal(pasted[:, outside], image[:, outside])
    psnr_inside = psnr(pasted[:, inside], image[:, inside])
    strong = mask >= 0.5
    psnr_strong = psnr(pasted[:, strong], image[:, strong])
    print(
        f"{label}: PSNR inside mask {psnr_inside:.2f} dB, where mask >= 0.5 {psnr_strong:.2f} dB "
        f"({int(inside.sum())} px inside, {int(outside.sum())} px outside, bit-identical)"
    )
    return psnr_inside, psnr_strong


@pytest.mark.parametrize("size", [512, 256])  # 256: the crop downsamples the face (1.27 px -> 1)
def test_round_trip_on_photo(size: int) -> None:
    if not PORTRAIT.is_file():
        pytest.skip(f"test photo not found at {PORTRAIT}")
    from PIL import Image

    with Image.open(PORTRAIT) as photo:
        array = np.array(photo.convert("RGB"))
    image = torch.from_numpy(array).permute(2, 0, 1).float() / 255.0
    assert image.shape == (3, 439, 328)
    template = reference_points(size)
    matrices = similarity_transform(torch.tensor([PORTRAIT_LANDMARKS]), template).float()
    # the hand-picked eyes land within a few pixels (at 512) of the template: plausible landmarks
    eyes = apply_affine(matrices.double(), torch.tensor(PORTRAIT_LANDMARKS, dtype=torch.float64))[0, :2]
    assert float((eyes - template[:2]).abs().max()) < 15 * size / 512
    psnr_inside, psnr_strong = check_round_trip(image, matrices, size, f"portrait-1947 @{size}")
    assert psnr_inside >= 35 and psnr_strong >= 35


@pytest.mark.parametrize(
    "placement",
    [
        (0.0, 0.5, 100.0, 60.0),
        (30.0, 0.8, 220.0, 20.0),
        (-75.0, 1.3, 320.0, 150.0),  # image face bigger than the crop: the crop downsamples
        (180.0, 0.35, 300.0, 300.0),
        (15.0, 1.0, 380.0, 200.0),  # partly outside the image
    ],
)
def test_round_trip_synthetic(placement: tuple[float, float, float, float]) -> None:
    image = smooth_image(360, 480, seed=4)
    size = 256
    matrices = face_matrices([placement], size)
    psnr_inside, psnr_strong = check_round_trip(image, matrices, size, f"synthetic {placement} @{size}")
    assert psnr_inside >= 35 and psnr_strong >= 35


# ----------------------------------------------------------------------------- overlaps


def test_overlapping_faces_stronger_mask_wins() -> None:
    image = smooth_image(200, 240, seed=5)
    size = 128
    matrices = face_matrices([(10.0, 0.9, 20.0, 30.0), (-20.0, 0.8, 80.0, 50.0)], size)
    originals = warp_faces(image, matrices, size)
    restored = torch.empty_like(originals)
    restored[0] = 0.2
    restored[1] = 0.9
    mask_a = paste_faces(image, restored[:1], originals[:1], matrices[:1])[1]
    mask_b = paste_faces(image, restored[1:], originals[1:], matrices[1:])[1]
    both = (mask_a > 0.2) & (mask_b > 0.2)
    assert int(both.sum()) > 500, "the two faces must overlap"
    b_wins = mask_b > mask_a
    a_wins = (mask_a >= mask_b) & (mask_a > 0)
    assert bool((both & b_wins).any()) and bool((both & ~b_wins).any())

    pasted, mask = paste_faces(image, restored, originals, matrices)
    torch.testing.assert_close(mask, torch.maximum(mask_a, mask_b), atol=0, rtol=0)
    expected = image.clone()
    blend_a = image * (1 - mask_a) + 0.2 * mask_a
    blend_b = image * (1 - mask_b) + 0.9 * mask_b
    expected = torch.where(a_wins, blend_a, expected)
    expected = torch.where(b_wins, blend_b, expected)
    torch.testing.assert_close(pasted, expected, atol=5e-6, rtol=0)
    # in the overlap, each pixel shows one face only: the value identifies the winner
    m = torch.maximum(mask_a, mask_b)
    face_value = (pasted - image * (1 - m)) / m.clamp_min(1e-6)
    overlap_strong = both & (m > 0.9)
    np.testing.assert_allclose(face_value[:, overlap_strong & b_wins].numpy(), 0.9, atol=1e-4)
    np.testing.assert_allclose(face_value[:, overlap_strong & ~b_wins].numpy(), 0.2, atol=1e-4)
    # order does not matter except on exact ties
    pasted_swapped, mask_swapped = paste_faces(image, restored.flip(0), originals.flip(0), matrices.flip(0))
    ties = (mask_a == mask_b) & (mask_a > 0)
    torch.testing.assert_close(mask_swapped, mask, atol=0, rtol=0)
    torch.testing.assert_close(pasted_swapped[:, ~ties], pasted[:, ~ties], atol=1e-6, rtol=0)


def test_custom_masks_per_face() -> None:
    image = smooth_image(120, 120, seed=6)
    size = 64
    matrices = face_matrices([(0.0, 1.0, 10.0, 10.0), (0.0, 1.0, 40.0, 40.0)], size)
    crops = warp_faces(image, matrices, size)
    restored = torch.ones_like(crops)
    masks = torch.zeros(2, size, size)
    masks[0, 20:40, 20:40] = 1.0  # face 0 only, a hard square
    pasted, mask = paste_faces(image, restored, crops, matrices, mask=masks)
    # image -> crop is x - 10: crop square 20..39 is image 30..49 (bilinear edges ~1 px)
    assert float(mask[35:45, 35:45].min()) == pytest.approx(1.0)
    torch.testing.assert_close(pasted[:, 35:45, 35:45], torch.ones(3, 10, 10))
    assert float(mask[:, :28].max()) == 0 and float(mask[:, 52:].max()) == 0
    assert torch.equal(pasted[:, :, :28], image[:, :, :28])
    shared = paste_faces(image, restored, crops, matrices, mask=masks[0])[1]
    assert float(shared[65:75, 65:75].min()) == pytest.approx(1.0)  # face 1 uses it too


# ----------------------------------------------------------------------------- fidelity


def test_fidelity_blends_in_image_space() -> None:
    """out = image * (1 - f m) + face * f m: 0 is the input bit for bit, 1 the restored paste."""
    image = smooth_image(160, 160, seed=7)
    size = 128
    matrices = face_matrices([(20.0, 0.7, 30.0, 25.0)], size)
    originals = warp_faces(image, matrices, size)
    generator = torch.Generator().manual_seed(8)
    restored = torch.rand(originals.shape, generator=generator)
    restored_only = paste_faces(image, restored, restored, matrices)
    at0 = paste_faces(image, restored, originals, matrices, fidelity=0.0)
    at1 = paste_faces(image, restored, originals, matrices, fidelity=1.0)
    assert torch.equal(at0[0], image) and torch.equal(at0[1], restored_only[1])
    assert torch.equal(at1[0], restored_only[0])
    half = paste_faces(image, restored, originals, matrices, fidelity=0.5)[0]
    torch.testing.assert_close(half, (at0[0] + at1[0]) / 2, atol=2e-6, rtol=0)
    # constant crops on a black image: the output is fidelity * mask inside the mask
    black = torch.zeros(3, 160, 160)
    ones, zeros = torch.ones_like(originals), torch.zeros_like(originals)
    for fidelity in (0.0, 0.3, 1.0):
        pasted, mask = paste_faces(black, ones, zeros, matrices, fidelity=fidelity)
        torch.testing.assert_close(pasted, fidelity * mask.expand(3, -1, -1), atol=5e-6, rtol=0)
    with pytest.raises(ValueError, match="fidelity"):
        paste_faces(image, restored, originals, matrices, fidelity=1.5)


# ----------------------------------------------------------------------------- ROI and edge cases


def test_faces_are_warped_only_over_their_region(monkeypatch: pytest.MonkeyPatch) -> None:
    height, width = 900, 1200
    image = torch.rand(3, height, width)
    size = 64
    placements = [(5.0 * k, 0.5, 40.0 + 110.0 * k, 60.0 + 70.0 * k) for k in range(10)]
    matrices = face_matrices(placements, size)
    crops = warp_faces(image, matrices, size)
    sampled: list[int] = []
    real_grid_sample = F.grid_sample

    def spy(inputs: torch.Tensor, grid: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        sampled.append(grid.shape[0] * grid.shape[1] * grid.shape[2])
        return real_grid_sample(inputs, grid, *args, **kwargs)

    monkeypatch.setattr(paste_module.F, "grid_sample", spy)
    pasted, mask = paste_faces(image, crops, crops, matrices)
    assert len(sampled) == 2 * len(placements)  # one face warp and one mask warp per face
    # each face covers ~32 x 32 px (rotated), its ROI at most ~50 x 50: far from a full frame
    assert max(sampled) < 60 * 60, sampled
    assert int((mask > 0).sum()) < 0.05 * height * width
    outside = mask == 0
    assert torch.equal(pasted[:, outside], image[:, outside])


def full_frame_reference(
    image: torch.Tensor, faces: torch.Tensor, masks: torch.Tensor, matrices: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The official algorithm, literally: warp each face and mask over the whole frame
    (crop coordinates of every image pixel centre), keep the strictly stronger mask.

    Also returns where two faces' masks are within 1e-4 of each other (float noise may
    pick either face there)."""
    _, height, width = image.shape
    size = faces.shape[-1]
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64), indexing="ij"
    )
    full_mask = torch.zeros(height, width)
    full_img = torch.zeros_like(image)
    ambiguous = torch.zeros(height, width, dtype=torch.bool)
    for n in range(faces.shape[0]):
        m = matrices[n].double()
        cx = m[0, 0] * xs + m[0, 1] * ys + m[0, 2]
        cy = m[1, 0] * xs + m[1, 1] * ys + m[1, 2]
        grid = torch.stack([(2 * cx + 1) / size - 1, (2 * cy + 1) / size - 1], dim=-1)[None].float()
        face = F.grid_sample(
            faces[n : n + 1], grid, mode="bicubic", padding_mode="border", align_corners=False
        )
        face = face[0].clamp(0, 1)
        mask = F.grid_sample(
            masks[None, None], grid, mode="bilinear", padding_mode="zeros", align_corners=False
        )
        mask = mask[0, 0].clamp(0, 1)
        ambiguous |= ((mask - full_mask).abs() < 1e-4) & (full_mask > 0)
        stronger = mask > full_mask
        full_mask = torch.where(stronger, mask, full_mask)
        full_img = torch.where(stronger, face, full_img)
    return image * (1 - full_mask) + full_img * full_mask, full_mask, ambiguous


@pytest.mark.parametrize("mask_kind", ["official", "ones"])
def test_region_of_interest_paste_equals_full_frame_reference(mask_kind: str) -> None:
    """ROI-only pasting gives the full-frame result; an all-ones mask (hard edge at the crop
    border) makes any ROI that is too small show."""
    image = smooth_image(150, 170, seed=9)
    size = 96
    placements = [(25.0, 0.9, 20.0, 10.0), (-40.0, 1.1, 60.0, 70.0), (100.0, 0.7, 165.0, 40.0)]
    matrices = face_matrices(placements, size)
    generator = torch.Generator().manual_seed(10)
    restored = torch.rand(3, 3, size, size, generator=generator)
    masks = official_paste_mask(size) if mask_kind == "official" else torch.ones(size, size)
    pasted, mask = paste_faces(
        image, restored, restored, matrices, mask=None if mask_kind == "official" else masks
    )
    expected, expected_mask, ambiguous = full_frame_reference(image, restored, masks, matrices)
    # float32 grids computed along slightly different paths: errors of a few 1e-6
    torch.testing.assert_close(mask, expected_mask, atol=2e-5, rtol=0)
    clear = ~ambiguous
    covered = expected_mask > 0
    assert int((clear & covered).sum()) > 0.6 * int(covered.sum())
    torch.testing.assert_close(pasted[:, clear], expected[:, clear], atol=5e-5, rtol=0)
    assert int((expected_mask > 0).sum()) > 0.3 * 150 * 170  # the faces cover a good part
    # the third face is cut by the right border, and is still pasted up to it
    assert float(mask[:, -1].max()) > 0.5


@pytest.mark.parametrize("angle", [0.0, 45.0, 107.0, -160.0])
def test_region_of_interest_covers_whole_crop(angle: float) -> None:
    """One face, all-ones mask: the ROI must hold every pixel the crop touches."""
    image = smooth_image(120, 130, seed=11)
    size = 48
    # place the crop so that its centre lands on the image centre (65, 60)
    centre = (size - 1) / 2
    rad = math.radians(angle)
    tx = 65.0 - 1.3 * (math.cos(rad) * centre - math.sin(rad) * centre)
    ty = 60.0 - 1.3 * (math.sin(rad) * centre + math.cos(rad) * centre)
    matrices = face_matrices([(angle, 1.3, tx, ty)], size)
    crops = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(12))
    ones = torch.ones(size, size)
    pasted, mask = paste_faces(image, crops, crops, matrices, mask=ones, margin=0)
    expected, expected_mask, _ = full_frame_reference(image, crops, ones, matrices)
    assert float(expected_mask[0].max()) == 0 and float(expected_mask[:, 0].max()) == 0  # inside the image
    torch.testing.assert_close(mask, expected_mask, atol=2e-5, rtol=0)
    torch.testing.assert_close(pasted, expected, atol=5e-5, rtol=0)


def test_face_outside_image_and_no_faces() -> None:
    image = torch.rand(3, 50, 60)
    size = 32
    off = face_matrices([(0.0, 1.0, 500.0, 500.0)], size)
    crops = torch.rand(1, 3, size, size)
    pasted, mask = paste_faces(image, crops, crops, off)
    assert torch.equal(pasted, image) and float(mask.abs().max()) == 0
    pasted, mask = paste_faces(
        image, torch.zeros(0, 3, size, size), torch.zeros(0, 3, size, size), torch.zeros(0, 2, 3)
    )
    assert torch.equal(pasted, image) and mask.shape == (50, 60)


def test_paste_rejects_bad_input() -> None:
    image = torch.rand(3, 40, 40)
    crops = torch.rand(2, 3, 16, 16)
    matrices = face_matrices([(0.0, 1.0, 0.0, 0.0), (0.0, 1.0, 5.0, 5.0)], 16)
    with pytest.raises(ValueError, match=r"\(1, 3, 40, 40\)"):
        paste_faces(image[None], crops, crops, matrices)
    with pytest.raises(ValueError, match=r"\(2, 3, 16, 8\)"):
        paste_faces(image, crops[..., :8], crops[..., :8], matrices)
    with pytest.raises(ValueError, match="same shape"):
        paste_faces(image, crops, crops[:1], matrices)
    with pytest.raises(ValueError, match=r"\(1, 2, 3\)"):
        paste_faces(image, crops, crops, matrices[:1])
    with pytest.raises(ValueError, match=r"\(3, 16, 16\)"):
        paste_faces(image, crops, crops, matrices, mask=torch.ones(3, 16, 16))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        paste_faces(image, crops, crops, matrices, mask=torch.full((16, 16), 2.0))
