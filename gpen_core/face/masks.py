"""Paste masks: the one place that knows the mask modes, the official mask and how to soften a parsing mask.

Below both :mod:`gpen_core.face.parsing` and :mod:`gpen_core.face.paste`: the blur and resize helpers
they share live here, and so does :func:`paste_masks_for`, which builds the crop-space paste masks of a
batch of restored faces from the mode and what is loaded. A new mask mode is one entry of
:data:`MASK_MODES` and a branch of :func:`paste_masks_for`.

* **Official mask** (GPEN ``face_enhancement.py``): ``mask = zeros((512, 512), float32)``, the rectangle
  from ``(26, 26)`` to ``(486, 486)`` (both included) set to 1 (``cv2.rectangle``, thickness -1,
  ``LINE_AA``; on a float image the anti-aliasing falls back to plain lines, so the rectangle is exactly
  1 on rows/columns 26..486 and 0 elsewhere), then blurred twice with ``cv2.GaussianBlur(mask, (101, 101),
  4)`` (OpenCV's default border ``BORDER_REFLECT_101``). :func:`official_paste_mask` builds the same mask
  with a separable float64 Gaussian and reflect-101 border (products with banded matrices, see
  :func:`gaussian_blur_reflect101`). For another model size the 512 mask is resized like the official
  code resizes its masks (``cv2.resize``, bilinear, half-pixel centres, no antialiasing).
* **Parsing mask**: in the released script the rectangle is commented out in favour of a face-parsing
  mask post-processed by ``mask_postprocess`` (26 px border set to 0, the same two blurs, resized to the
  model size): :func:`soften_parsing_mask`.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Literal, Protocol

import torch
import torch.nn.functional as F

from .align import _work_dtype

logger = logging.getLogger(__name__)

__all__ = [
    "MASK_MODES",
    "MASK_MODE_NAMES",
    "OFFICIAL_BLUR_KERNEL_SIZE",
    "OFFICIAL_BLUR_SIGMA",
    "OFFICIAL_MASK_INSET",
    "OFFICIAL_MASK_SIZE",
    "MaskMode",
    "MaskParser",
    "gaussian_blur_reflect101",
    "mask_mode",
    "official_paste_mask",
    "paste_masks_for",
    "resize_mask",
    "soften_parsing_mask",
]

OFFICIAL_MASK_SIZE = 512
"""Side of the official paste mask (the official code builds it at 512 whatever the model)."""
OFFICIAL_MASK_INSET = 26
"""Border, in pixels of the 512 mask, that is 0 before blurring."""
OFFICIAL_BLUR_KERNEL_SIZE = 101
OFFICIAL_BLUR_SIGMA = 4.0


@dataclass(frozen=True)
class MaskMode:
    """A paste-mask mode.

    Attributes:
        name: the option value (``--mask``, the node's ``mask`` widget, :attr:`PasteOptions.mask`).
        parser: whether the mode needs a face parser: ``"never"``, ``"if_found"`` (used when its
            weights are found, else the box mask, logged) or ``"required"`` (missing weights are an error).
        help: one line for option help texts.
    """

    name: str
    parser: Literal["never", "if_found", "required"]
    help: str

    @property
    def parses(self) -> bool:
        """Whether the mode's masks come from a face parser (when one is loaded)."""
        return self.parser != "never"


MASK_MODES: dict[str, MaskMode] = {
    mode.name: mode
    for mode in (
        MaskMode("auto", "if_found", "parse when a ParseNet file is found, else box"),
        MaskMode("parse", "required", "face parsing, as the official code: hair, hats, hands and background "
                                      "around the face keep their pixels"),
        MaskMode("box", "never", "the blurred square of the crop"),
    )
}
"""Every mask mode, the default first (the option lists of the nodes and the command line)."""
MASK_MODE_NAMES: tuple[str, ...] = tuple(MASK_MODES)


class MaskParser(Protocol):
    """What :func:`paste_masks_for` needs of a loaded face parser (:class:`gpen_core.face.parsing.FaceParser`)."""

    def paste_masks(self, crops: torch.Tensor, *, keep_hair: bool, keep_neck: bool) -> torch.Tensor:
        """``(N, S, S)`` float32 paste masks in [0, 1] for ``(N, 3, S, S)`` restored crops in [0, 1] (one forward)."""
        ...

    def peak_bytes(self, batch: int) -> int:
        """An upper estimate of the activation memory of one forward on ``batch`` crops (memory plans)."""
        ...


def mask_mode(name: str) -> MaskMode:
    """The :class:`MaskMode` called ``name``.

    Raises:
        ValueError: an unknown mode, listing the modes.
    """
    if name not in MASK_MODES:
        raise ValueError(f"mask must be one of {', '.join(MASK_MODE_NAMES)}; got {name!r}")
    return MASK_MODES[name]


def paste_masks_for(
    restored: torch.Tensor, mode: str, parser: MaskParser | None, *, keep_hair: bool = True, keep_neck: bool = True
) -> torch.Tensor | None:
    """The crop-space paste masks of restored faces under a mask mode.

    Args:
        restored: ``(N, 3, S, S)`` restored crops, float in [0, 1].
        mode: a name of :data:`MASK_MODES`.
        parser: the loaded face parser, or None when none was loaded.
        keep_hair, keep_neck: parse masks: paste the restored hair / neck too.

    Returns:
        ``(N, S, S)`` float32 masks in [0, 1], or None for the official box mask (the paste builds it).

    Raises:
        ValueError: an unknown mode, or a mode that requires a parser without one.
    """
    needs = mask_mode(mode)
    if not needs.parses:
        return None
    if parser is None:
        if needs.parser == "required":
            raise ValueError(f"mask {mode!r} needs ParseNet weights (ParseNet-latest.pth or parsing_parsenet.pth); "
                             "none was given or found. Use mask 'box' or 'auto'.")
        return None
    return parser.paste_masks(restored, keep_hair=keep_hair, keep_neck=keep_neck)


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


