"""Paste restored face crops back into the full image, in plain PyTorch (CPU or CUDA).

Reproduces the paste-back of the official GPEN ``face_enhancement.py`` (yangxy/GPEN):

* **Mask.** The official code builds ``mask = zeros((512, 512), float32)``, fills the
  rectangle from ``(26, 26)`` to ``(486, 486)`` (both included) with 1 (``cv2.rectangle``,
  thickness -1, ``LINE_AA``; on a float image the anti-aliasing falls back to plain lines,
  so the rectangle is exactly 1 on rows/columns 26..486 and 0 elsewhere), then blurs it twice
  with ``cv2.GaussianBlur(mask, (101, 101), 4)`` (kernel 101 x 101, sigma 4, OpenCV's default
  border ``BORDER_REFLECT_101``). :func:`official_paste_mask` builds the same mask with a
  separable float64 Gaussian and reflect-101 border (as products with banded matrices, see
  :func:`gaussian_blur_reflect101`). For another model size the 512 mask is resized like the official code resizes
  its masks (``cv2.resize``, bilinear, half-pixel centres, no antialiasing).
  In the released script this rectangle is commented out in favour of a face-parsing mask
  post-processed by ``mask_postprocess`` (26 px border set to 0, then the same two blurs, then
  resized to the model size): :func:`soften_parsing_mask` does that for a caller that has a
  parsing mask, and ``paste_faces(mask=...)`` accepts the result.
* **Fidelity.** The official code blends the restored crop with the aligned original crop
  before warping back (``cv2.addWeighted(ef, alpha, of, 1 - alpha, 0)``), so at ``alpha`` 0
  it pastes the face resampled twice (up to 62 levels off the input). Here the blend is in
  image space: ``image * (1 - fidelity * m) + warped_face * fidelity * m``, so fidelity 0
  returns the input exactly and fidelity 1 is the official paste.
* **Finishing** (:class:`PasteOptions`, :mod:`gpen_core.face.finish`): grey photos get grey
  faces, an optional colour match, and the official smoothing of small faces.
* **Warp back.** The official code warps both the face and its mask with the inverse
  transform over the whole frame (``cv2.warpAffine(..., tfm_inv, (W, H), flags=3)``, which is
  bilinear with a constant 0 border). Here each face is warped only over its region of
  interest (the bounding box of its crop's corners mapped into the image, clipped to the
  image, plus a margin): the mask bilinearly with zero padding (as the official code; this
  sets where a face can touch the image), the face with ``mode`` (bicubic by default, like
  :func:`gpen_core.face.align.warp_faces`) and edge-replicating padding, so that the crop's
  border pixels are not darkened where the mask is tiny but not 0 (the official warp pads
  the face with black there; the mask is at most ~1e-4 within 2 px of the crop border, so
  this changes pixels by less than ~1e-4, well under one 8-bit level).
* **Overlaps.** The official ``mask = tmp_mask - full_mask; full_mask[mask > 0] = tmp_mask;
  full_img[mask > 0] = tmp_img`` keeps, per pixel, the face with the strictly largest mask
  value (the earlier face on ties); the final image is
  ``img * (1 - full_mask) + full_img * full_mask``. Same rule here; pixels where every mask
  is exactly 0 are returned bit-identical to the input.

Coordinates follow the pixel-centre convention documented in :mod:`gpen_core.face.align`.
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .align import (
    _check_matrices,
    _pixel_grid,
    _work_dtype,
    invert_affine,
    normalize_grid,
)
from .finish import (
    COLOR_SPACES,
    SMALL_FACE_SIDE,
    is_grey,
    match_colour,
    smooth_crops,
    to_grey,
)

logger = logging.getLogger(__name__)

__all__ = [
    "MASK_MODES",
    "OFFICIAL_BLUR_KERNEL_SIZE",
    "OFFICIAL_BLUR_SIGMA",
    "OFFICIAL_MASK_INSET",
    "OFFICIAL_MASK_SIZE",
    "PasteOptions",
    "finish_faces",
    "gaussian_blur_reflect101",
    "official_paste_mask",
    "paste_faces",
    "resize_mask",
    "resolve_mask_mode",
    "soften_parsing_mask",
]

OFFICIAL_MASK_SIZE = 512
"""Side of the official paste mask (the official code builds it at 512 whatever the model)."""
OFFICIAL_MASK_INSET = 26
"""Border, in pixels of the 512 mask, that is 0 before blurring."""
OFFICIAL_BLUR_KERNEL_SIZE = 101
OFFICIAL_BLUR_SIGMA = 4.0

_FACE_MODES = ("bicubic", "bilinear", "nearest")
MASK_MODES = ("auto", "parse", "box")


@dataclass(frozen=True)
class PasteOptions:
    """How restored faces are pasted back (core, node and command line share it).

    Attributes:
        mask: ``"parse"``: the official face-parsing mask (ParseNet on the restored face: hair,
            hats, hands and background around the face keep the original pixels); ``"box"``:
            the blurred square of the crop; ``"auto"``: parse when a parser is available, else
            box (logged).
        keep_hair: parse mask: paste the restored hair (official: yes).
        keep_neck: parse mask: paste the restored neck and necklace (GPEN: yes; facexlib: no).
        smooth_small_faces: the official 3x3 smoothing of faces whose detected box has a
            shorter side under 100 px.
        keep_grey: a grey original crop gets a grey restored face (luma of GPEN's output).
        color_match: ``"off"``, ``"lab"`` or ``"ycbcr"``: match the restored face's per-channel
            mean and std inside the mask to the original crop's.
    """

    mask: str = "auto"
    keep_hair: bool = True
    keep_neck: bool = True
    smooth_small_faces: bool = True
    keep_grey: bool = True
    color_match: str = "off"

    def __post_init__(self) -> None:
        if self.mask not in MASK_MODES:
            raise ValueError(f"mask must be one of {MASK_MODES}, got {self.mask!r}")
        if self.color_match not in COLOR_SPACES:
            raise ValueError(f"color_match must be one of {COLOR_SPACES}, got {self.color_match!r}")


def resolve_mask_mode(mode: str, has_parser: bool) -> str:
    """``"parse"`` or ``"box"`` for a :attr:`PasteOptions.mask` mode.

    Raises:
        ValueError: ``"parse"`` without a parser.
    """
    if mode not in MASK_MODES:
        raise ValueError(f"mask must be one of {MASK_MODES}, got {mode!r}")
    if mode == "parse" and not has_parser:
        raise ValueError("mask 'parse' needs ParseNet weights (ParseNet-latest.pth or parsing_parsenet.pth); "
                         "none was given or found. Use mask 'box' or 'auto'.")
    if mode == "auto":
        if not has_parser:
            logger.info("no face parser (ParseNet-latest.pth / parsing_parsenet.pth) found: pasting with the box mask")
        return "parse" if has_parser else "box"
    return mode


def finish_faces(
    restored: torch.Tensor,
    originals: torch.Tensor,
    masks: torch.Tensor,
    options: PasteOptions,
    face_sizes: torch.Tensor | None = None,
) -> torch.Tensor:
    """Grey kept grey, colour match, then small-face smoothing (in that order) of the restored crops.

    Args:
        restored, originals: ``(N, 3, S, S)`` crops after and before GPEN, float in [0, 1].
        masks: ``(S, S)`` or ``(N, S, S)`` paste masks (colour statistics are weighted by them).
        options: which steps run.
        face_sizes: ``(N,)`` shorter side of each detected box in image pixels; faces under
            100 px are smoothed. None: no smoothing.

    Returns:
        ``(N, 3, S, S)`` crops to paste, dtype of ``restored``.
    """
    faces = restored
    grey = torch.zeros(faces.shape[0], dtype=torch.bool, device=faces.device)
    if options.keep_grey and faces.shape[1] == 3:
        grey = is_grey(originals.to(faces.device))
        if bool(grey.any()):
            faces = torch.where(grey.view(-1, 1, 1, 1), to_grey(faces), faces)
    if options.color_match != "off" and faces.shape[1] == 3:
        matched = match_colour(faces, originals.to(faces), masks, options.color_match)
        faces = torch.where(grey.view(-1, 1, 1, 1), faces, matched)
    if options.smooth_small_faces and face_sizes is not None and faces.shape[0]:
        small = face_sizes.to(faces.device) < SMALL_FACE_SIDE
        if bool(small.any()):
            faces = torch.where(small.view(-1, 1, 1, 1), smooth_crops(faces), faces)
    return faces


def _gaussian_kernel(kernel_size: int, sigma: float, device: torch.device) -> torch.Tensor:
    """1-D Gaussian like ``cv2.getGaussianKernel(kernel_size, sigma)`` (float64, sums to 1)."""
    half = (kernel_size - 1) / 2.0
    x = torch.arange(kernel_size, dtype=torch.float64, device=device) - half
    kernel = torch.exp(-(x * x) / (2.0 * sigma * sigma))
    return kernel / kernel.sum()


def gaussian_blur_reflect101(masks: torch.Tensor, kernel_size: int, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur with OpenCV's default border (``BORDER_REFLECT_101``).

    Equivalent to ``cv2.GaussianBlur(mask, (kernel_size, kernel_size), sigma)`` on each
    ``(H, W)`` plane (computed in float64, as two products with banded ``(H, H)`` and
    ``(W, W)`` matrices that hold the kernel and the border reflection).

    Args:
        masks: ``(..., H, W)`` float tensor (any size: the reflection repeats, like
            OpenCV's ``borderInterpolate``, when the kernel is longer than the image).
        kernel_size: odd kernel side (> 0).
        sigma: standard deviation in pixels (> 0).

    Returns:
        Tensor of the same shape, dtype and device.
    """
    if not isinstance(masks, torch.Tensor) or masks.ndim < 2:
        shape = tuple(masks.shape) if isinstance(masks, torch.Tensor) else type(masks).__name__
        raise ValueError(f"masks must have shape (..., H, W), got {shape}")
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    height, width = masks.shape[-2:]
    if height < 1 or width < 1:
        raise ValueError(f"masks must be non-empty, got shape {tuple(masks.shape)}")
    kernel = _gaussian_kernel(kernel_size, sigma, masks.device)
    rows = _reflect101_blur_matrix(kernel, height)  # (H, H)
    cols = _reflect101_blur_matrix(kernel, width)  # (W, W)
    planes = masks.to(torch.float64)
    # separable blur as two matrix products: rows @ X @ cols^T (exact, fast on CPU and GPU)
    blurred = rows @ planes @ cols.T
    return blurred.to(masks.dtype)


def _reflect101_blur_matrix(kernel: torch.Tensor, length: int) -> torch.Tensor:
    """``(length, length)`` matrix applying the 1-D ``kernel`` with reflect-101 padding.

    Row ``i`` holds the weights of output sample ``i``: tap ``k`` reads input
    ``reflect101(i + k - radius)``, where reflect-101 maps ``-1 -> 1`` and
    ``length -> length - 2`` (the edge sample is not repeated).
    """
    radius = kernel.shape[0] // 2
    positions = (
        torch.arange(length, device=kernel.device)[:, None]
        + torch.arange(-radius, radius + 1, device=kernel.device)[None, :]
    )
    period = 2 * (length - 1)
    positions = torch.remainder(positions, period) if period > 0 else torch.zeros_like(positions)
    positions = torch.where(positions >= length, period - positions, positions)
    matrix = torch.zeros((length, length), dtype=torch.float64, device=kernel.device)
    matrix.scatter_add_(1, positions, kernel.expand(length, -1).contiguous())
    return matrix


def resize_mask(masks: torch.Tensor, size: int) -> torch.Tensor:
    """Resize square masks like ``cv2.resize(mask, (size, size))`` (bilinear, half-pixel
    centres, no antialiasing).

    Args:
        masks: ``(S0, S0)`` or ``(N, S0, S0)`` float masks.
        size: new side in pixels.

    Returns:
        ``(size, size)`` or ``(N, size, size)``; the input itself when ``S0 == size``.
    """
    if masks.shape[-1] == size and masks.shape[-2] == size:
        return masks
    squeeze = masks.ndim == 2
    batch = masks.reshape(-1, 1, *masks.shape[-2:])
    work = _work_dtype(masks.dtype)
    resized = F.interpolate(
        batch.to(work), size=(size, size), mode="bilinear", align_corners=False, antialias=False
    )
    resized = resized.to(masks.dtype).reshape(*masks.shape[:-2], size, size)
    return resized[0] if squeeze and resized.ndim == 3 else resized


@functools.lru_cache(maxsize=8)
def _official_paste_mask_cached(size: int, device: str, dtype: torch.dtype) -> torch.Tensor:
    full = OFFICIAL_MASK_SIZE
    inset = OFFICIAL_MASK_INSET
    mask = torch.zeros((full, full), dtype=torch.float64, device=device)
    mask[inset : full - inset + 1, inset : full - inset + 1] = 1.0  # (26, 26)..(486, 486) inclusive
    mask = gaussian_blur_reflect101(mask, OFFICIAL_BLUR_KERNEL_SIZE, OFFICIAL_BLUR_SIGMA)
    mask = gaussian_blur_reflect101(mask, OFFICIAL_BLUR_KERNEL_SIZE, OFFICIAL_BLUR_SIGMA)
    # the official mask is float32 before any resize
    mask = mask.to(torch.float32)
    mask = resize_mask(mask, size)
    return mask.to(dtype).clamp_(0.0, 1.0)


def official_paste_mask(
    size: int = OFFICIAL_MASK_SIZE,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """GPEN's paste-back mask for ``size`` x ``size`` crops.

    Built at 512 as in the official code (1 on rows and columns 26..486, 0 elsewhere, then
    two 101 x 101 Gaussian blurs with sigma 4 and reflect-101 border), then resized bilinearly
    to ``size`` when ``size != 512``.

    Args:
        size: crop side ``S``.
        device: device of the result.
        dtype: floating dtype of the result.

    Returns:
        ``(S, S)`` mask in [0, 1] (a new tensor; about 1 in the middle, falling smoothly to
        ~0 within 26 px, at 512, of the crop border; never exactly 0 inside the crop).
    """
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise ValueError(f"size must be a positive int, got {size!r}")
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating dtype, got {dtype}")
    device_key = str(torch.device(device) if device is not None else torch.device("cpu"))
    return _official_paste_mask_cached(size, device_key, dtype).clone()


def soften_parsing_mask(
    masks: torch.Tensor,
    size: int | None = None,
    *,
    inset: int = OFFICIAL_MASK_INSET,
) -> torch.Tensor:
    """The official ``mask_postprocess`` for a face-parsing mask, then the resize to the model.

    Sets a border of ``inset`` pixels to 0, blurs twice (101 x 101, sigma 4, reflect-101) and
    resizes (bilinear) to ``size``. The official code applies it to the parsing mask of the
    restored 512 crop, divided by 255.

    Args:
        masks: ``(S0, S0)`` or ``(N, S0, S0)`` float masks in [0, 1] (``S0 > 100``; 512 in
            the official code).
        size: output side ``S`` (default: ``S0``).
        inset: border width set to 0 before blurring, in pixels of ``S0``.

    Returns:
        ``(S, S)`` or ``(N, S, S)`` float masks in [0, 1], usable as ``paste_faces(mask=...)``.
    """
    if not isinstance(masks, torch.Tensor) or masks.ndim not in (2, 3) or masks.shape[-1] != masks.shape[-2]:
        shape = tuple(masks.shape) if isinstance(masks, torch.Tensor) else type(masks).__name__
        raise ValueError(f"masks must have shape (S0, S0) or (N, S0, S0), got {shape}")
    if not masks.dtype.is_floating_point:
        raise ValueError(f"masks must be float in [0, 1], got {masks.dtype}")
    if inset < 0 or 2 * inset >= masks.shape[-1]:
        raise ValueError(f"inset must be in [0, {masks.shape[-1] // 2}), got {inset}")
    out = masks.clone()
    if inset > 0:
        out[..., :inset, :] = 0
        out[..., -inset:, :] = 0
        out[..., :, :inset] = 0
        out[..., :, -inset:] = 0
    out = gaussian_blur_reflect101(out, OFFICIAL_BLUR_KERNEL_SIZE, OFFICIAL_BLUR_SIGMA)
    out = gaussian_blur_reflect101(out, OFFICIAL_BLUR_KERNEL_SIZE, OFFICIAL_BLUR_SIGMA)
    if size is not None:
        out = resize_mask(out, size)
    return out.clamp(0.0, 1.0)


def _face_roi(
    inverse64: torch.Tensor, size: int, height: int, width: int, margin: int
) -> tuple[int, int, int, int] | None:
    """Bounding box ``(x0, y0, x1, y1)`` (exclusive ends) in the image of the crop's support.

    The mask is sampled bilinearly with zero padding, so it can be non-zero for crop
    coordinates in ``(-1, S)``; those corners are mapped into the image, and ``margin``
    pixels are added for safety. ``None`` when the box misses the image.
    """
    corners = torch.tensor(
        [[-1.0, -1.0], [size, -1.0], [size, size], [-1.0, size]], dtype=torch.float64, device=inverse64.device
    )
    mapped = corners @ inverse64[:2, :2].T + inverse64[:2, 2]
    low = mapped.min(dim=0).values
    high = mapped.max(dim=0).values
    x0 = max(math.floor(float(low[0])) - margin, 0)
    y0 = max(math.floor(float(low[1])) - margin, 0)
    x1 = min(math.ceil(float(high[0])) + margin + 1, width)
    y1 = min(math.ceil(float(high[1])) + margin + 1, height)
    if x0 >= x1 or y0 >= y1:
        return None
    return x0, y0, x1, y1


def paste_faces(
    image: torch.Tensor,
    restored: torch.Tensor,
    originals: torch.Tensor,
    matrices: torch.Tensor,
    *,
    fidelity: float = 1.0,
    mask: torch.Tensor | None = None,
    mode: str = "bicubic",
    margin: int = 2,
    options: PasteOptions | None = None,
    face_sizes: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Blend restored face crops back into the image they were cut from.

    With ``options``, the crops are finished first (:func:`finish_faces`: grey kept grey,
    colour match, small-face smoothing). Each face and its mask are then warped back
    with ``invert_affine(matrices[n])`` over the face's region of interest only. Per pixel,
    the face with the largest mask value ``m`` wins (the earlier face on ties) and the output
    is ``image * (1 - fidelity * m) + face * fidelity * m``. Pixels where every face's mask is
    exactly 0, and every pixel at fidelity 0, are the input's, bit for bit.

    Memory: one output image and one ``(H, W)`` mask, plus per-face ROI buffers; faces are
    processed one at a time, never with a full-frame tensor per face.

    Args:
        image: ``(3, H, W)`` float image in [0, 1] (any channel count ``C`` works).
        restored: ``(N, C, S, S)`` restored crops, float in [0, 1].
        originals: ``(N, C, S, S)`` aligned crops before restoration (from
            :func:`gpen_core.face.align.warp_faces`), float in [0, 1].
        matrices: ``(N, 2, 3)`` image -> crop affine matrices used to cut the crops.
        fidelity: in [0, 1]: 1 pastes the restored faces (the official paste), 0 returns
            the image unchanged; in between, a mix in image space.
        mask: ``(S, S)`` mask shared by every face, or ``(N, S, S)`` one per face (e.g. from
            :func:`soften_parsing_mask`), float in [0, 1]; default :func:`official_paste_mask`.
        mode: interpolation of the face when warping back: ``"bicubic"`` (default),
            ``"bilinear"`` (official) or ``"nearest"``. The mask is always bilinear.
        margin: extra pixels around each face's region of interest (>= 0).
        options: finishing steps (:func:`finish_faces`; None: none, the crops are pasted as
            given); its ``mask`` mode is the caller's business (pass the mask in ``mask``).
        face_sizes: ``(N,)`` shorter side in image pixels of each face's detected box, for
            the small-face smoothing (None: no smoothing).

    Returns:
        ``(pasted, paste_mask)``: ``(C, H, W)`` image (dtype and device of ``image``), values
        in [0, 1] for inputs in [0, 1]; ``(H, W)`` mask in [0, 1], the per-pixel maximum of
        the faces' warped masks, float64 for a float64 image and float32 otherwise (so that
        tiny mask values do not underflow to 0 for a half-precision image).
    """
    if not isinstance(image, torch.Tensor) or image.ndim != 3:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"image must have shape (C, H, W), got {shape}")
    if not image.dtype.is_floating_point:
        raise ValueError(f"image must be a float tensor in [0, 1], got {image.dtype}")
    channels, height, width = image.shape
    for name, crops in (("restored", restored), ("originals", originals)):
        if (
            not isinstance(crops, torch.Tensor)
            or crops.ndim != 4
            or crops.shape[1] != channels
            or crops.shape[2] != crops.shape[3]
        ):
            shape = tuple(crops.shape) if isinstance(crops, torch.Tensor) else type(crops).__name__
            raise ValueError(f"{name} must have shape (N, {channels}, S, S), got {shape}")
        if not crops.dtype.is_floating_point:
            raise ValueError(f"{name} must be float in [0, 1], got {crops.dtype}")
    if restored.shape != originals.shape:
        raise ValueError(
            f"restored {tuple(restored.shape)} and originals {tuple(originals.shape)} must have the same shape"
        )
    count, _, size, _ = restored.shape
    _check_matrices("matrices", matrices)
    if matrices.shape[0] != count:
        raise ValueError(
            f"matrices must have shape ({count}, 2, 3) like the crops, got {tuple(matrices.shape)}"
        )
    fidelity = float(fidelity)
    if not 0.0 <= fidelity <= 1.0:
        raise ValueError(f"fidelity must be in [0, 1], got {fidelity}")
    if mode not in _FACE_MODES:
        raise ValueError(f"mode must be one of {_FACE_MODES}, got {mode!r}")
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")

    device = image.device
    work = _work_dtype(image.dtype)
    if mask is None:
        masks = official_paste_mask(size, device=device, dtype=work).unsqueeze(0)
    else:
        if not isinstance(mask, torch.Tensor) or mask.shape not in ((size, size), (count, size, size)):
            shape = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise ValueError(
                f"mask must have shape ({size}, {size}) or ({count}, {size}, {size}), got {shape}"
            )
        if not mask.dtype.is_floating_point:
            raise ValueError(f"mask must be float in [0, 1], got {mask.dtype}")
        masks = mask.to(device=device, dtype=work)
        if masks.ndim == 2:
            masks = masks.unsqueeze(0)
        if masks.numel() and (not torch.isfinite(masks).all() or masks.min() < 0 or masks.max() > 1):
            raise ValueError("mask values must be finite and in [0, 1]")

    pasted = image.clone()
    full_mask = torch.zeros((height, width), dtype=work, device=device)
    if count == 0:
        return pasted, full_mask
    matrices64 = matrices.to(device=device, dtype=torch.float64)
    inverse64 = invert_affine(matrices64)
    faces = restored if options is None else finish_faces(restored, originals, masks, options, face_sizes)

    for n in range(count):
        roi = _face_roi(inverse64[n], size, height, width, margin)
        if roi is None:
            logger.debug("face %d lies outside the image; skipped", n)
            continue
        x0, y0, x1, y1 = roi
        roi_h, roi_w = y1 - y0, x1 - x0
        # crop coordinates of the ROI's pixel centres, normalised for grid_sample on S x S
        coords = _pixel_grid(matrices64[n : n + 1], roi_h, roi_w, x0=x0, y0=y0)
        grid = normalize_grid(coords, size, size).to(work)  # (1, h, w, 2)

        face = faces[n : n + 1].to(device=device, dtype=work)
        # "border" for the face: its edge pixels are not darkened by zeros where the mask
        # (sampled with zero padding, which sets the support) is still slightly above 0
        face_roi = F.grid_sample(face, grid, mode=mode, padding_mode="border", align_corners=False)[0]
        face_roi = face_roi.clamp(0.0, 1.0)
        face_mask = masks[n if masks.shape[0] > 1 else 0][None, None]
        mask_roi = F.grid_sample(face_mask, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[
            0, 0
        ]
        mask_roi = mask_roi.clamp(0.0, 1.0)

        current = full_mask[y0:y1, x0:x1]
        wins = mask_roi > current  # strictly stronger: the earlier face keeps ties (official rule)
        if not bool(wins.any()):
            continue
        full_mask[y0:y1, x0:x1] = torch.where(wins, mask_roi, current)
        base = image[:, y0:y1, x0:x1].to(work)
        weight = mask_roi * fidelity
        blended = base * (1.0 - weight) + face_roi * weight
        target = pasted[:, y0:y1, x0:x1]
        pasted[:, y0:y1, x0:x1] = torch.where(wins, blended.to(image.dtype), target)

    logger.debug("pasted %d face(s) into a %dx%d image", count, width, height)
    return pasted, full_mask
