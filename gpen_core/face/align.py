"""Alignment of faces to GPEN's 5-point template, in plain PyTorch (CPU or CUDA, batched).

This module reproduces the alignment of the official GPEN code (``align_faces.py`` and
``face_enhancement.py`` of yangxy/GPEN) without OpenCV or scikit-image:

* :func:`reference_points` is ``get_reference_facial_points(output_size=(size, size),
  inner_padding_factor=0.25, outer_padding=(0, 0), default_square=True)``;
* :func:`similarity_transform` is the Umeyama least-squares similarity (rotation, uniform
  scale, translation; never a reflection) that the official ``_umeyama`` computes from the
  detected landmarks to the template;
* :func:`warp_faces` cuts the aligned crops out of the image, like the official
  ``cv2.warpAffine(img, tfm, (size, size), flags=3)``.

Coordinate convention (used everywhere in this package, and the one of OpenCV and of the
face detectors): a point ``(x, y)`` is in pixels, x to the right, y down, and the *centre* of
pixel ``(row i, column j)`` is at ``(x, y) = (j, i)``. Pixel ``j`` thus covers
``[j - 0.5, j + 0.5)``, and an image of width ``W`` spans ``[-0.5, W - 0.5]``. An affine
matrix ``M`` of shape ``(2, 3)`` maps a point ``p`` to ``M[:, :2] @ p + M[:, 2]``.

With ``torch.nn.functional.grid_sample(..., align_corners=False)`` the normalised grid
coordinate of the pixel-centre coordinate ``x`` in an image of width ``W`` is
``(2 * x + 1) / W - 1``; this is the conversion :func:`warp_faces` uses.

Differences from the official code, on purpose:

* The official ``warpAffine(..., flags=3)`` asks for ``INTER_AREA``, which OpenCV's affine
  warp silently replaces with ``INTER_LINEAR`` (bilinear). :func:`warp_faces` defaults to
  bicubic (``mode="bicubic"``, PyTorch's cubic convolution with ``A = -0.75``, the same kernel
  as OpenCV's ``INTER_CUBIC``), which keeps more detail; ``mode="bilinear"`` gives the
  official behaviour.
* Border handling is the official one: OpenCV's default ``BORDER_CONSTANT`` with value 0,
  i.e. samples outside the image are black (``padding_mode="zeros"``). Each interpolation tap
  that falls outside the image counts as 0, as in OpenCV.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_FACE_SIZE",
    "apply_affine",
    "invert_affine",
    "reference_points",
    "similarity_transform",
    "warp_faces",
]

DEFAULT_FACE_SIZE = 512
"""Crop size of the standard GPEN-BFR-512 model."""

# The official template: 5 points (x, y) in a 96 x 112 crop (the SphereFace/ArcFace
# reference), in the order eye image-left, eye image-right, nose, mouth corner image-left,
# mouth corner image-right.
_BASE_POINTS: tuple[tuple[float, float], ...] = (
    (30.29459953, 51.69630051),
    (65.53179932, 51.50139999),
    (48.02519989, 71.73660278),
    (33.54930115, 92.3655014),
    (62.72990036, 92.20410156),
)
_BASE_CROP_SIZE: tuple[int, int] = (96, 112)  # (width, height)
_INNER_PADDING_FACTOR = 0.25

_SUPPORTED_MODES = ("bicubic", "bilinear", "nearest")


def reference_points(
    size: int = DEFAULT_FACE_SIZE,
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """GPEN's 5-point template for a square crop of ``size`` x ``size`` pixels.

    Same values as the official ``get_reference_facial_points((size, size), 0.25, (0, 0),
    True)``: the 96 x 112 base template is made square (112 x 112, points shifted right by
    8 px), padded by 25 % of its size on every side (168 x 168, points shifted by 28 px) and
    scaled by ``size / 168``. At 512: ``(202.04, 242.88), (309.43, 242.29), (256.08, 303.96),
    (211.96, 366.83), (300.89, 366.34)``.

    Args:
        size: side of the square crop in pixels (> 0).
        dtype: floating dtype of the result (computed in float64).
        device: device of the result.

    Returns:
        ``(5, 2)`` tensor of ``(x, y)`` pixel coordinates (pixel-centre convention, see the
        module docstring), rows in the order eye image-left, eye image-right, nose, mouth
        corner image-left, mouth corner image-right.
    """
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise ValueError(f"size must be a positive int, got {size!r}")
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating dtype, got {dtype}")
    points = torch.tensor(_BASE_POINTS, dtype=torch.float64)
    width, height = _BASE_CROP_SIZE
    side = max(width, height)
    # 0) make the crop square: centre the points horizontally in the wider crop
    points = points + torch.tensor([(side - width) / 2.0, (side - height) / 2.0], dtype=torch.float64)
    # 1) pad the square by inner_padding_factor on each side
    pad = side * _INNER_PADDING_FACTOR * 2.0
    points = points + pad / 2.0
    padded_side = side + round(pad)
    # 2) scale to the output size (outer padding is 0)
    points = points * (size / padded_side)
    return points.to(dtype=dtype, device=device)


def _check_points(name: str, points: torch.Tensor, batched: bool) -> None:
    if not isinstance(points, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(points).__name__}")
    expected = "(N, K, 2)" if batched else "(K, 2)"
    ndim = 3 if batched else 2
    if points.ndim != ndim or points.shape[-1] != 2 or points.shape[-2] < 2:
        raise ValueError(f"{name} must have shape {expected} with K >= 2, got {tuple(points.shape)}")
    if not (points.dtype.is_floating_point or points.dtype in (torch.int32, torch.int64)):
        raise ValueError(f"{name} must be a real (float or int) tensor, got {points.dtype}")


def _check_matrices(name: str, matrices: torch.Tensor) -> None:
    if not isinstance(matrices, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(matrices).__name__}")
    if matrices.ndim != 3 or matrices.shape[1:] != (2, 3):
        raise ValueError(f"{name} must have shape (N, 2, 3), got {tuple(matrices.shape)}")
    if not matrices.dtype.is_floating_point:
        raise ValueError(f"{name} must be a floating tensor, got {matrices.dtype}")


def _result_dtype(*tensors: torch.Tensor) -> torch.dtype:
    dtype = torch.float32
    for tensor in tensors:
        if tensor.dtype.is_floating_point:
            dtype = torch.promote_types(dtype, tensor.dtype)
    return dtype


def similarity_transform(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """Least-squares similarity transforms (Umeyama 1991) mapping ``src`` onto ``dst``.

    For each face ``n`` this finds the rotation ``R`` (det +1, never a reflection), the
    uniform scale ``s > 0`` and the translation ``t`` minimising
    ``sum_k |s R src[n, k] + t - dst[k]|^2``, exactly as the official GPEN ``_umeyama``
    (with ``estimate_scale=True``). Computed in float64 whatever the input dtype.

    Args:
        src: ``(N, K, 2)`` points ``(x, y)`` in the image (e.g. detected 5-point landmarks,
            pixels), ``K >= 2``.
        dst: ``(K, 2)`` target points shared by every face (e.g. :func:`reference_points`),
            or ``(N, K, 2)`` one set per face.

    Returns:
        ``(N, 2, 3)`` matrices ``M`` with ``M[:, :, :2] @ p + M[:, :, 2]`` mapping image
        points to template points; dtype float32, or float64 when an input is float64;
        on ``src``'s device.

    Raises:
        ValueError: on a wrong shape, non-finite points, or a face whose ``src`` points all
            coincide (no transform defined).
    """
    _check_points("src", src, batched=True)
    if not isinstance(dst, torch.Tensor):
        raise TypeError(f"dst must be a torch.Tensor, got {type(dst).__name__}")
    if dst.ndim == 3:
        _check_points("dst", dst, batched=True)
        if dst.shape != src.shape:
            raise ValueError(
                f"dst of shape (N, K, 2) must match src {tuple(src.shape)}, got {tuple(dst.shape)}"
            )
    else:
        _check_points("dst", dst, batched=False)
        if dst.shape[0] != src.shape[1]:
            raise ValueError(
                f"dst must have shape ({src.shape[1]}, 2) to match src {tuple(src.shape)}, "
                f"got {tuple(dst.shape)}"
            )
    out_dtype = _result_dtype(src, dst)
    device = src.device
    count = src.shape[0]
    if count == 0:
        return torch.zeros((0, 2, 3), dtype=out_dtype, device=device)

    src64 = src.to(dtype=torch.float64)
    dst64 = dst.to(device=device, dtype=torch.float64)
    if dst64.ndim == 2:
        dst64 = dst64.unsqueeze(0).expand(count, -1, -1)
    if not (torch.isfinite(src64).all() and torch.isfinite(dst64).all()):
        raise ValueError("src and dst must be finite (got NaN or inf)")

    src_mean = src64.mean(dim=1, keepdim=True)  # (N, 1, 2)
    dst_mean = dst64.mean(dim=1, keepdim=True)
    src_demean = src64 - src_mean
    dst_demean = dst64 - dst_mean
    num_points = src64.shape[1]

    # Eq. (38): covariance dst^T src / K, (N, 2, 2)
    covariance = dst_demean.transpose(1, 2) @ src_demean / num_points
    # population variance of src summed over x and y, (N,)
    src_variance = (src_demean**2).sum(dim=2).mean(dim=1)
    degenerate = src_variance <= torch.finfo(torch.float64).tiny
    if bool(degenerate.any()):
        indices = degenerate.nonzero().flatten().tolist()
        raise ValueError(f"src points of face(s) {indices} all coincide: no similarity transform")

    u, singular, vh = torch.linalg.svd(covariance)
    # Eq. (39)-(40), (43): flip the last axis when needed so that det(R) = +1. With
    # d = det(U) det(V^T) this covers both the full-rank case (d = sign det A) and the
    # rank-1 (collinear points) branch of the official code.
    sign = torch.linalg.det(u) * torch.linalg.det(vh)  # +-1, (N,)
    diag = torch.ones((count, 2), dtype=torch.float64, device=device)
    diag[:, 1] = sign
    rotation = u @ torch.diag_embed(diag) @ vh  # (N, 2, 2)
    # Eq. (41)-(42)
    scale = (singular * diag).sum(dim=1) / src_variance  # (N,)
    linear = rotation * scale[:, None, None]
    translation = dst_mean.squeeze(1) - (linear @ src_mean.transpose(1, 2)).squeeze(2)
    matrices = torch.cat([linear, translation.unsqueeze(2)], dim=2)
    return matrices.to(dtype=out_dtype)


def invert_affine(matrices: torch.Tensor) -> torch.Tensor:
    """Inverse of 2-D affine transforms.

    Args:
        matrices: ``(N, 2, 3)`` float affine matrices ``[A | t]``.

    Returns:
        ``(N, 2, 3)`` matrices ``[A^-1 | -A^-1 t]``, same dtype and device (computed in
        float64).

    Raises:
        ValueError: on a wrong shape or a singular (non-invertible) matrix.
    """
    _check_matrices("matrices", matrices)
    m64 = matrices.to(torch.float64)
    linear = m64[:, :, :2]
    det = torch.linalg.det(linear)
    magnitude = linear.abs().amax(dim=(1, 2))
    # singular relative to the size of the entries (the matrix scale itself may be tiny or big)
    bad = ~torch.isfinite(m64).all(dim=(1, 2)) | (det.abs() <= 1e-12 * magnitude * magnitude)
    if bool(bad.any()):
        indices = bad.nonzero().flatten().tolist()
        raise ValueError(f"affine matrices {indices} are singular or not finite, cannot invert")
    inverse_linear = torch.linalg.inv(linear)
    inverse_translation = -(inverse_linear @ m64[:, :, 2:])
    return torch.cat([inverse_linear, inverse_translation], dim=2).to(matrices.dtype)


def apply_affine(matrices: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Apply affine matrices to points.

    Args:
        matrices: ``(N, 2, 3)`` affine matrices.
        points: ``(N, K, 2)`` points ``(x, y)``, or ``(K, 2)`` shared by every matrix.

    Returns:
        ``(N, K, 2)`` transformed points, in the promoted float dtype.
    """
    _check_matrices("matrices", matrices)
    if not isinstance(points, torch.Tensor) or points.ndim not in (2, 3) or points.shape[-1] != 2:
        shape = tuple(points.shape) if isinstance(points, torch.Tensor) else type(points).__name__
        raise ValueError(f"points must have shape (K, 2) or (N, K, 2), got {shape}")
    if points.ndim == 3 and points.shape[0] != matrices.shape[0]:
        raise ValueError(
            f"points (N, K, 2) must have N = {matrices.shape[0]} like matrices, got {tuple(points.shape)}"
        )
    dtype = _result_dtype(matrices, points)
    m = matrices.to(dtype)
    p = points.to(device=matrices.device, dtype=dtype)
    return p @ m[:, :, :2].transpose(-1, -2) + m[:, None, :, 2]


def _pixel_grid(matrices64: torch.Tensor, height: int, width: int, x0: int = 0, y0: int = 0) -> torch.Tensor:
    """Source coordinates for every output pixel: ``(n, height, width, 2)`` float64 ``(x, y)``.

    ``matrices64`` maps output pixel centres ``(x0 + j, y0 + i)`` to source coordinates.
    """
    device = matrices64.device
    xs = torch.arange(width, dtype=torch.float64, device=device) + x0
    ys = torch.arange(height, dtype=torch.float64, device=device) + y0
    a = matrices64[:, :, None, None, :]  # (n, 2, 1, 1, 3)
    coords = a[..., 0] * xs[None, None, None, :] + a[..., 1] * ys[None, None, :, None] + a[..., 2]
    return coords.permute(0, 2, 3, 1)  # (n, height, width, 2)


def normalize_grid(coords: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Pixel-centre coordinates ``(..., 2)`` ``(x, y)`` to ``grid_sample`` coordinates for a
    source of ``height`` x ``width`` (``align_corners=False``): ``(2 x + 1) / W - 1``."""
    scale = torch.tensor([2.0 / width, 2.0 / height], dtype=coords.dtype, device=coords.device)
    offset = torch.tensor([1.0 / width - 1.0, 1.0 / height - 1.0], dtype=coords.dtype, device=coords.device)
    return coords * scale + offset


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def warp_faces(
    image: torch.Tensor,
    matrices: torch.Tensor,
    size: int = DEFAULT_FACE_SIZE,
    *,
    image_index: torch.Tensor | None = None,
    mode: str = "bicubic",
    clamp: bool = True,
    chunk_size: int = 8,
) -> torch.Tensor:
    """Cut aligned face crops out of an image (or a batch of images).

    Output pixel ``(i, j)`` of crop ``n`` (centre at crop coordinate ``(x, y) = (j, i)``)
    takes the value of the image at ``invert_affine(matrices)[n] @ (j, i, 1)``, sampled with
    ``grid_sample(mode=mode, padding_mode="zeros", align_corners=False)``: outside the image
    is black (0), like the official ``cv2.warpAffine`` with its default ``BORDER_CONSTANT``.

    Faces are sampled in chunks of ``chunk_size`` straight from the one image they belong to
    (the image is never copied per face).

    Args:
        image: ``(C, H, W)`` float image in [0, 1] (C = 3 for RGB), or a ``(B, C, H, W)``
            batch; with a batch of ``B > 1``, ``image_index`` says which image each face
            comes from.
        matrices: ``(N, 2, 3)`` affine matrices mapping image points to crop points (e.g.
            from :func:`similarity_transform` towards :func:`reference_points(size)`).
        size: side ``S`` of the square crops in pixels.
        image_index: ``(N,)`` integer indices into the batch, required when ``B > 1``.
        mode: ``"bicubic"`` (default), ``"bilinear"`` (the official GPEN behaviour) or
            ``"nearest"``.
        clamp: clamp the result to [0, 1] (bicubic overshoots slightly at sharp edges).
        chunk_size: faces sampled per ``grid_sample`` call (memory ~ ``chunk_size * S * S``).

    Returns:
        ``(N, C, S, S)`` crops, dtype and device of ``image``; in [0, 1] when ``clamp``.
    """
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"image must be a torch.Tensor, got {type(image).__name__}")
    if image.ndim == 3:
        batch = image.unsqueeze(0)
    elif image.ndim == 4:
        batch = image
    else:
        raise ValueError(f"image must have shape (C, H, W) or (B, C, H, W), got {tuple(image.shape)}")
    if not image.dtype.is_floating_point:
        raise ValueError(f"image must be a float tensor in [0, 1], got {image.dtype}")
    num_images, channels, height, width = batch.shape
    if channels < 1 or height < 1 or width < 1:
        raise ValueError(f"image must be non-empty, got shape {tuple(image.shape)}")
    _check_matrices("matrices", matrices)
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise ValueError(f"size must be a positive int, got {size!r}")
    if mode not in _SUPPORTED_MODES:
        raise ValueError(f"mode must be one of {_SUPPORTED_MODES}, got {mode!r}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    count = matrices.shape[0]
    device = image.device

    if image_index is None:
        if num_images != 1:
            raise ValueError(
                f"image is a batch of {num_images} images (shape {tuple(image.shape)}): "
                "pass image_index (N,) to say which image each face comes from"
            )
        index = torch.zeros(count, dtype=torch.long)
    else:
        if not isinstance(image_index, torch.Tensor) or image_index.shape != (count,):
            shape = (
                tuple(image_index.shape)
                if isinstance(image_index, torch.Tensor)
                else type(image_index).__name__
            )
            raise ValueError(f"image_index must have shape ({count},) like matrices, got {shape}")
        if image_index.dtype.is_floating_point or image_index.dtype == torch.bool:
            raise ValueError(f"image_index must be an integer tensor, got {image_index.dtype}")
        index = image_index.to(device="cpu", dtype=torch.long)
        if count and (int(index.min()) < 0 or int(index.max()) >= num_images):
            raise ValueError(f"image_index values must be in [0, {num_images}), got {index.tolist()}")

    work_dtype = _work_dtype(image.dtype)
    output = torch.empty((count, channels, size, size), dtype=image.dtype, device=device)
    if count == 0:
        return output
    inverse64 = invert_affine(matrices.to(device=device, dtype=torch.float64))

    for image_id in torch.unique(index).tolist():
        faces = (index == image_id).nonzero().flatten().tolist()
        source = batch[image_id : image_id + 1].to(work_dtype)  # (1, C, H, W), no copy if same dtype
        for start in range(0, len(faces), chunk_size):
            chunk = faces[start : start + chunk_size]
            coords = _pixel_grid(inverse64[chunk], size, size)  # (n, S, S, 2)
            grid = normalize_grid(coords, height, width).to(work_dtype)
            # stack the n crops vertically so one image serves every face of the chunk
            grid = grid.reshape(1, len(chunk) * size, size, 2)
            sampled = F.grid_sample(source, grid, mode=mode, padding_mode="zeros", align_corners=False)
            sampled = sampled.reshape(channels, len(chunk), size, size).permute(1, 0, 2, 3)
            if clamp:
                sampled = sampled.clamp(0.0, 1.0)
            output[torch.tensor(chunk, device=device)] = sampled.to(image.dtype)
    logger.debug("warped %d face(s) to %dx%d crops (mode=%s)", count, size, size, mode)
    return output
