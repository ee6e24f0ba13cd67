"""Paste restored face crops back into the full image, in plain PyTorch (CPU or CUDA).

Reproduces the paste-back of the official GPEN ``face_enhancement.py`` (yangxy/GPEN):

* **Mask**: the official feathered rectangle or a softened parsing mask, built in crop pixels by
  :mod:`gpen_core.face.masks`; ``paste_faces(mask=...)`` takes either.
* **Fidelity.** The official code blends the restored crop with the aligned original crop
  before warping back (``cv2.addWeighted(ef, alpha, of, 1 - alpha, 0)``), so at ``alpha`` 0
  it pastes the face resampled twice (up to 62 levels off the input). Here the blend is in
  image space: ``image * (1 - fidelity * m) + warped_face * fidelity * m``, so fidelity 0
  returns the input exactly and fidelity 1 is the official paste.
* **Finishing** (:func:`gpen_core.face.finish.finish_faces`): grey photos get grey faces, an
  optional colour match, and the official smoothing of small faces.
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
  is exactly 0 are returned bit-identical to the input. :func:`paste_into` applies the rule
  to faces given a batch at a time (the running mask carries it from batch to batch), so a
  photo with many faces needs buffers of one image and one face batch, never one per face.

Coordinates follow the pixel-centre convention documented in :mod:`gpen_core.face.align`.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from .align import _check_matrices, _pixel_grid, _work_dtype, invert_affine, normalize_grid
from .finish import finish_faces
from .masks import official_paste_mask

if TYPE_CHECKING:
    from .options import PasteOptions

logger = logging.getLogger(__name__)

__all__ = ["FACE_MODES", "paste_faces", "paste_into"]

FACE_MODES = ("bicubic", "bilinear", "nearest")
"""Interpolations of the face when it is warped back (the mask is always bilinear)."""


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

    With ``options``, the crops are finished first (:func:`~gpen_core.face.finish.finish_faces`: grey kept grey,
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
            :func:`gpen_core.face.masks.soften_parsing_mask`), float in [0, 1]; default
            :func:`gpen_core.face.masks.official_paste_mask`.
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
    if mode not in FACE_MODES:
        raise ValueError(f"mode must be one of {FACE_MODES}, got {mode!r}")
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
    faces = restored if options is None else finish_faces(restored, originals, masks, options, face_sizes)
    paste_into(pasted, full_mask, image, faces, matrices, masks, fidelity=fidelity, mode=mode, margin=margin)
    logger.debug("pasted %d face(s) into a %dx%d image", count, width, height)
    return pasted, full_mask


def paste_into(
    out: torch.Tensor,
    full_mask: torch.Tensor,
    image: torch.Tensor,
    faces: torch.Tensor,
    matrices: torch.Tensor,
    masks: torch.Tensor,
    *,
    fidelity: float = 1.0,
    mode: str = "bicubic",
    margin: int = 2,
) -> None:
    """Paste finished faces into ``out`` in place, keeping the official overlap rule across calls.

    The core of :func:`paste_faces`, for callers that paste a photo's faces a batch at a time into
    one output: ``full_mask`` holds the strongest mask pasted so far at every pixel (start it at 0,
    ``out`` as a copy of ``image``); a face wins a pixel only where its mask is strictly larger, so
    faces pasted in order over several calls give what one call with all of them gives. Only each
    face's region of interest is touched.

    Args:
        out: ``(C, H, W)`` the image being pasted into (written).
        full_mask: ``(H, W)`` float running mask (written), float32 (float64 for a float64 image).
        image: ``(C, H, W)`` the paste target before any face (the blend's base; never written).
        faces: ``(N, C, S, S)`` crops to paste, already finished, float in [0, 1].
        matrices: ``(N, 2, 3)`` image -> crop matrices.
        masks: ``(1, S, S)`` shared or ``(N, S, S)`` per-face crop masks in [0, 1], in ``full_mask``'s dtype.
        fidelity, mode, margin: as :func:`paste_faces` (checked there).
    """
    _, height, width = image.shape
    size = faces.shape[-1]
    device, work = image.device, full_mask.dtype
    matrices64 = matrices.to(device=device, dtype=torch.float64)
    inverse64 = invert_affine(matrices64)
    for n in range(faces.shape[0]):
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
        face_mask = masks[n if masks.shape[0] > 1 else 0][None, None].to(device)
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
        target = out[:, y0:y1, x0:x1]
        out[:, y0:y1, x0:x1] = torch.where(wins, blended.to(out.dtype), target)
