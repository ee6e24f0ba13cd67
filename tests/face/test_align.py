"""Tests of gpen_core.face.align: GPEN template, Umeyama similarity, crop warping."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gpen_core.face.align import (
    apply_affine,
    invert_affine,
    reference_points,
    similarity_transform,
    warp_faces,
)
from helpers import similarity_matrix

# values given by the official get_reference_facial_points((512, 512), 0.25, (0, 0), True)
OFFICIAL_512 = np.array(
    [
        [202.04, 242.88],
        [309.43, 242.29],
        [256.08, 303.96],
        [211.96, 366.83],
        [300.89, 366.34],
    ]
)


def closed_form_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Independent 2-D least-squares similarity (no reflection) with complex numbers:
    dst ~ c * src + t, c = sum(conj(a) b) / sum(|a|^2) on centred points."""
    zs = src[:, 0] + 1j * src[:, 1]
    zd = dst[:, 0] + 1j * dst[:, 1]
    a = zs - zs.mean()
    b = zd - zd.mean()
    c = (np.conj(a) * b).sum() / (np.abs(a) ** 2).sum()
    t = zd.mean() - c * zs.mean()
    return np.array([[c.real, -c.imag, t.real], [c.imag, c.real, t.imag]])


# ----------------------------------------------------------------------------- template


def test_reference_points_512_match_official() -> None:
    points = reference_points(512)
    assert points.shape == (5, 2)
    assert points.dtype == torch.float64
    np.testing.assert_array_equal(np.round(points.numpy(), 2), OFFICIAL_512)


def test_reference_points_scale_with_size() -> None:
    p512 = reference_points(512)
    p256 = reference_points(256)
    p1024 = reference_points(1024, dtype=torch.float32)
    torch.testing.assert_close(p256, p512 / 2, rtol=0, atol=1e-12)
    assert p1024.dtype == torch.float32
    torch.testing.assert_close(p1024.double(), p512 * 2, rtol=0, atol=1e-4)
    np.testing.assert_allclose(p256.numpy(), OFFICIAL_512 / 2, atol=0.006)
    # order: eye image-left, eye image-right, nose, mouth image-left, mouth image-right
    assert p512[0, 0] < p512[2, 0] < p512[1, 0]
    assert p512[3, 0] < p512[4, 0]
    assert p512[:2, 1].max() < p512[2, 1] < p512[3:, 1].min()


@pytest.mark.parametrize("size", [0, -4, 2.5, True])
def test_reference_points_rejects_bad_size(size: object) -> None:
    with pytest.raises(ValueError, match="size"):
        reference_points(size)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- similarity


def test_similarity_recovers_known_transform() -> None:
    template = reference_points(512)
    generator = torch.Generator().manual_seed(0)
    count = 16
    angles = torch.rand(count, generator=generator, dtype=torch.float64) * 360 - 180
    scales = 0.05 + torch.rand(count, generator=generator, dtype=torch.float64) * 3.0
    shifts = torch.rand(count, 2, generator=generator, dtype=torch.float64) * 4000 - 1000
    # known template -> image similarities; landmarks = their images of the template
    known = torch.stack(
        [
            similarity_matrix(float(a), float(s), float(t[0]), float(t[1]))
            for a, s, t in zip(angles, scales, shifts, strict=True)
        ]
    )
    landmarks = apply_affine(known, template)  # (N, 5, 2)
    matrices = similarity_transform(landmarks, template)
    assert matrices.shape == (count, 2, 3)
    assert matrices.dtype == torch.float64
    mapped = apply_affine(matrices, landmarks)
    max_error = float((mapped - template).abs().max())
    print(f"max template error without noise: {max_error:.3e} px")
    assert max_error < 1e-3
    # the result is the inverse of the known similarity
    torch.testing.assert_close(matrices, invert_affine(known), rtol=0, atol=1e-8)
    torch.testing.assert_close(invert_affine(matrices), known, rtol=0, atol=1e-6)


def test_similarity_with_noise_matches_closed_form_least_squares() -> None:
    template = reference_points(512)
    generator = torch.Generator().manual_seed(1)
    known = similarity_matrix(17.0, 0.4, 120.0, 80.0).unsqueeze(0).repeat(8, 1, 1)
    landmarks = apply_affine(known, template)
    landmarks = landmarks + torch.randn(landmarks.shape, generator=generator, dtype=torch.float64) * 1.5
    matrices = similarity_transform(landmarks.float(), template)
    assert matrices.dtype == torch.float64  # template is float64
    for n in range(8):
        expected = closed_form_similarity(landmarks[n].numpy(), template.numpy())
        np.testing.assert_allclose(matrices[n].numpy(), expected, rtol=0, atol=1e-6 * np.abs(expected).max())
    # still close to the inverse of the known transform (noise 1.5 px at scale 0.4)
    error = (apply_affine(matrices, apply_affine(known, template)) - template).abs().max()
    assert float(error) < 15.0


def test_similarity_never_reflects() -> None:
    template = reference_points(512)
    mirrored = template.clone()
    mirrored[:, 0] = 512 - mirrored[:, 0]  # a mirror image of the template
    matrices = similarity_transform(mirrored.unsqueeze(0), template)
    det = torch.linalg.det(matrices[:, :, :2])
    assert float(det) > 0
    expected = closed_form_similarity(mirrored.numpy(), template.numpy())
    np.testing.assert_allclose(matrices[0].numpy(), expected, atol=1e-8)


def test_similarity_float32_landmarks_give_float32() -> None:
    template = reference_points(512, dtype=torch.float32)
    landmarks = apply_affine(similarity_matrix(5, 0.3, 40, 50).unsqueeze(0).float(), template)
    matrices = similarity_transform(landmarks, template)
    assert matrices.dtype == torch.float32
    assert float((apply_affine(matrices, landmarks) - template).abs().max()) < 1e-3


def test_similarity_rejects_bad_input() -> None:
    template = reference_points(512)
    with pytest.raises(ValueError, match=r"\(5, 2\)"):
        similarity_transform(torch.zeros(5, 2), template)
    with pytest.raises(ValueError, match=r"\(1, 4, 2\)"):
        similarity_transform(torch.zeros(1, 4, 2), template)
    with pytest.raises(ValueError, match="coincide"):
        similarity_transform(torch.ones(2, 5, 2), template)
    bad = torch.rand(1, 5, 2)
    bad[0, 2, 0] = float("nan")
    with pytest.raises(ValueError, match="finite"):
        similarity_transform(bad, template)
    assert similarity_transform(torch.zeros(0, 5, 2), template).shape == (0, 2, 3)


def test_invert_affine() -> None:
    matrices = torch.stack(
        [similarity_matrix(30, 2.0, 5, -7), torch.tensor([[1.0, 0.5, 3], [0.2, 2.0, 1]])]
    ).float()
    inverse = invert_affine(matrices)
    assert inverse.dtype == torch.float32 and inverse.shape == (2, 2, 3)
    points = torch.rand(2, 7, 2) * 100
    torch.testing.assert_close(
        apply_affine(inverse, apply_affine(matrices, points)), points, atol=1e-4, rtol=0
    )
    with pytest.raises(ValueError, match="singular"):
        invert_affine(torch.zeros(1, 2, 3))
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        invert_affine(torch.zeros(2, 3))


# ----------------------------------------------------------------------------- warping


def cubic_weights(t: float, a: float = -0.75) -> list[float]:
    """Cubic convolution weights of the 4 taps at offsets -1, 0, 1, 2 (Keys, A = -0.75)."""

    def near(x: float) -> float:  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x: float) -> float:  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return [far(t + 1), near(t), near(1 - t), far(2 - t)]


def numpy_warp_reference(image: np.ndarray, matrix: np.ndarray, size: int, mode: str) -> np.ndarray:
    """Pure-numpy warp, same convention as warp_faces: crop pixel (i, j) has its centre at
    (x, y) = (j, i) and reads the image at inverse(matrix) @ (j, i, 1), where image pixel
    (r, c) has its centre at (c, r); taps outside the image count as 0."""
    channels, height, width = image.shape
    linear = matrix[:, :2]
    inverse_linear = np.linalg.inv(linear)
    inverse_t = -inverse_linear @ matrix[:, 2]
    out = np.zeros((channels, size, size))

    def tap(r: int, c: int) -> np.ndarray:
        if 0 <= r < height and 0 <= c < width:
            return image[:, r, c]
        return np.zeros(channels)

    for i in range(size):
        for j in range(size):
            x, y = inverse_linear @ np.array([j, i], dtype=np.float64) + inverse_t
            x0, y0 = math.floor(x), math.floor(y)
            tx, ty = x - x0, y - y0
            if mode == "bicubic":
                wx, wy = cubic_weights(tx), cubic_weights(ty)
                value = np.zeros(channels)
                for m in range(4):
                    for k in range(4):
                        value += wy[m] * wx[k] * tap(y0 - 1 + m, x0 - 1 + k)
            else:  # bilinear
                value = (1 - ty) * ((1 - tx) * tap(y0, x0) + tx * tap(y0, x0 + 1)) + ty * (
                    (1 - tx) * tap(y0 + 1, x0) + tx * tap(y0 + 1, x0 + 1)
                )
            out[:, i, j] = value
    return out


@pytest.mark.parametrize("mode", ["bicubic", "bilinear"])
def test_warp_matches_numpy_reference(mode: str) -> None:
    generator = torch.Generator().manual_seed(2)
    image = torch.rand(3, 23, 31, generator=generator, dtype=torch.float64)
    size = 20
    matrices = torch.stack(
        [
            similarity_matrix(25.0, 1.3, -3.0, 4.0),  # magnify, parts of the crop fall outside
            similarity_matrix(-70.0, 0.7, 12.0, 20.0),  # shrink, partly outside
            similarity_matrix(0.0, 1.0, -5.25, -1.5),  # sub-pixel translation
        ]
    )
    crops = warp_faces(image, matrices, size, mode=mode, clamp=False)
    assert crops.shape == (3, 3, size, size) and crops.dtype == torch.float64
    for n in range(3):
        expected = numpy_warp_reference(image.numpy(), matrices[n].numpy(), size, mode)
        np.testing.assert_allclose(crops[n].numpy(), expected, rtol=0, atol=1e-9)
    clamped = warp_faces(image, matrices, size, mode=mode)
    assert float(clamped.min()) >= 0 and float(clamped.max()) <= 1


def test_warp_pixel_centre_convention() -> None:
    """Identity and integer translations copy pixels; out-of-image is black (0)."""
    image = torch.rand(3, 40, 50)
    identity = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    crop = warp_faces(image, identity, 40)
    torch.testing.assert_close(crop[0], image[:, :, :40], atol=1e-5, rtol=0)
    # image -> crop: x' = x - 7, y' = y - 3, so crop pixel (i, j) = image pixel (i + 3, j + 7)
    shift = torch.tensor([[[1.0, 0.0, -7.0], [0.0, 1.0, -3.0]]])
    crop = warp_faces(image, shift, 16)
    torch.testing.assert_close(crop[0], image[:, 3:19, 7:23], atol=1e-5, rtol=0)
    # crop pixel (i, j) = image pixel (i - 5, j - 5): the first 5 rows and columns are black
    crop = warp_faces(image, torch.tensor([[[1.0, 0.0, 5.0], [0.0, 1.0, 5.0]]]), 16)
    # (float32 grid rounding can leave ~1e-6 of the neighbouring pixel)
    assert float(crop[0, :, :5].abs().max()) < 1e-5 and float(crop[0, :, :, :5].abs().max()) < 1e-5
    torch.testing.assert_close(crop[0, :, 5:, 5:], image[:, :11, :11], atol=1e-5, rtol=0)
    # a 2x magnification about pixel centres: crop (2i, 2j) reads image (i, j)... shifted so
    # that image pixel centre 0 maps to crop pixel centre 0
    zoom = torch.tensor([[[2.0, 0.0, 0.0], [0.0, 2.0, 0.0]]])
    crop = warp_faces(image, zoom, 20, mode="bilinear")
    torch.testing.assert_close(crop[0, :, ::2, ::2], image[:, :10, :10], atol=1e-5, rtol=0)
    torch.testing.assert_close(
        crop[0, :, 1::2, 0], (image[:, :10, 0] + image[:, 1:11, 0]) / 2, atol=1e-5, rtol=0
    )


def test_warp_puts_landmarks_on_template() -> None:
    """Gaussian blobs drawn at the landmarks land on the template points in the crop."""
    size = 128
    height, width = 300, 260
    template = reference_points(size)
    known = similarity_matrix(-28.0, 1.2, 60.0, 90.0).unsqueeze(0)  # template -> image
    landmarks = apply_affine(known, template)[0]  # (5, 2)
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64), indexing="ij"
    )
    matrix = similarity_transform(landmarks.unsqueeze(0), template)
    for k in range(5):
        blob = torch.exp(-((xs - landmarks[k, 0]) ** 2 + (ys - landmarks[k, 1]) ** 2) / (2 * 3.0**2))
        crop = warp_faces(blob.expand(3, -1, -1), matrix, size, mode="bilinear")[0, 0]
        total = crop.sum()
        cy = float((crop * torch.arange(size, dtype=torch.float64)[:, None]).sum() / total)
        cx = float((crop * torch.arange(size, dtype=torch.float64)[None, :]).sum() / total)
        assert abs(cx - float(template[k, 0])) < 0.05, (k, cx, cy)
        assert abs(cy - float(template[k, 1])) < 0.05, (k, cx, cy)


def test_warp_batch_with_image_index() -> None:
    generator = torch.Generator().manual_seed(3)
    batch = torch.rand(3, 3, 60, 70, generator=generator)
    matrices = torch.stack(
        [similarity_matrix(10.0 * n, 0.8 + 0.1 * n, -float(n), 2.0 * n) for n in range(5)]
    ).float()
    index = torch.tensor([2, 0, 2, 1, 0])
    crops = warp_faces(batch, matrices, 32, image_index=index, chunk_size=2)
    for n in range(5):
        single = warp_faces(batch[int(index[n])], matrices[n : n + 1], 32)
        assert torch.equal(crops[n], single[0])
    # a (1, C, H, W) batch needs no index
    assert torch.equal(warp_faces(batch[:1], matrices[:2], 32), warp_faces(batch[0], matrices[:2], 32))


def test_warp_rejects_bad_input() -> None:
    image = torch.rand(3, 20, 20)
    matrices = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    with pytest.raises(ValueError, match=r"\(20, 20\)"):
        warp_faces(image[0], matrices, 8)
    with pytest.raises(ValueError, match=r"\(1, 3, 3\)"):
        warp_faces(image, torch.zeros(1, 3, 3), 8)
    with pytest.raises(ValueError, match="image_index"):
        warp_faces(torch.rand(2, 3, 20, 20), matrices, 8)
    with pytest.raises(ValueError, match="image_index"):
        warp_faces(torch.rand(2, 3, 20, 20), matrices, 8, image_index=torch.tensor([2]))
    with pytest.raises(ValueError, match="mode"):
        warp_faces(image, matrices, 8, mode="area")
    with pytest.raises(ValueError, match="float"):
        warp_faces((image * 255).to(torch.uint8), matrices, 8)
    assert warp_faces(image, torch.zeros(0, 2, 3), 8).shape == (0, 3, 8, 8)
