"""Parsing classes to paste masks, as GPEN's and facexlib's official code build them.

Classes (CelebAMask-HQ order, ``CLASS_NAMES``): 0 background, 1 skin, 2 nose, 3 eyeglasses,
4/5 left/right eye, 6/7 left/right brow, 8/9 left/right ear, 10 mouth, 11/12 upper/lower lip,
13 hair, 14 hat, 15 earring, 16 necklace, 17 neck, 18 cloth.

* GPEN (``face_enhancement.py``): background, hat and cloth out, everything else in; then
  ``mask_postprocess``: 26 px border set to 0, ``GaussianBlur((101, 101), 4)`` twice (float64,
  reflect-101), cast to float32, ``cv2.resize`` to the model size.
* facexlib (``paste_faces_to_input_image``): also drops necklace and neck; blurs the 0/255 map
  twice with sigma 11, then sets a 10 px border to 0 (after the blur), then divides by 255
  (float64).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from ..masks import gaussian_blur_reflect101, resize_mask, soften_parsing_mask

__all__ = [
    "CLASS_NAMES",
    "FACEXLIB_DROPPED",
    "GPEN_DROPPED",
    "class_mask",
    "facexlib_paste_mask",
    "gpen_paste_mask",
    "kept_classes",
]

CLASS_NAMES = (
    "background", "skin", "nose", "eyeglasses", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear", "r_ear",
    "mouth", "u_lip", "l_lip", "hair", "hat", "earring", "necklace", "neck", "cloth",
)
GPEN_DROPPED = (0, 14, 18)
"""Classes GPEN's table maps to 0: background, hat, cloth."""
FACEXLIB_DROPPED = (0, 14, 16, 17, 18)
"""Classes facexlib's table maps to 0: also necklace and neck."""
HAIR = (13,)
NECK = (16, 17)
"""``keep_neck=False`` drops the neck and the necklace, as facexlib does."""

FACEXLIB_BLUR_SIGMA = 11.0
FACEXLIB_BORDER = 10
BLUR_KERNEL_SIZE = 101


def kept_classes(*, keep_hair: bool = True, keep_neck: bool = True, num_classes: int = 19) -> tuple[int, ...]:
    """Classes pasted from the restored face: GPEN's table, with hair and neck switchable.

    ``kept_classes()`` is GPEN's table; ``kept_classes(keep_neck=False)`` is facexlib's.
    """
    dropped = set(GPEN_DROPPED)
    if not keep_hair:
        dropped.update(HAIR)
    if not keep_neck:
        dropped.update(NECK)
    return tuple(c for c in range(num_classes) if c not in dropped)


def class_mask(classes: torch.Tensor, kept: Iterable[int], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """1 where the class is kept, 0 elsewhere (the official tables divided by 255).

    Args:
        classes: ``(..., H, W)`` integer class map (argmax of the logits).
        kept: class indices mapped to 1.
        dtype: dtype of the result.
    """
    if classes.dtype.is_floating_point or classes.dtype == torch.bool:
        raise ValueError(f"classes must be an integer class map, got {classes.dtype}")
    wanted = torch.tensor(sorted(set(kept)), dtype=classes.dtype, device=classes.device)
    return torch.isin(classes, wanted).to(dtype)


def gpen_paste_mask(parse: torch.Tensor, size: int | None = None) -> torch.Tensor:
    """GPEN's ``cv2.resize(mask_postprocess(parse / 255.), (size, size))``.

    Args:
        parse: ``(..., 512, 512)`` 0/1 map (:func:`class_mask`).
        size: model size to resize to (default: unchanged).

    Returns:
        float32 ``(..., size, size)`` in [0, 1], on ``parse``'s device.
    """
    soft = soften_parsing_mask(parse.to(torch.float64)).to(torch.float32)  # float64 blurs, then float32
    return soft if size is None else resize_mask(soft, size)


def facexlib_paste_mask(parse: torch.Tensor) -> torch.Tensor:
    """facexlib's mask before its resize and warp: blur the 0/255 map twice (sigma 11),
    zero a 10 px border, divide by 255.

    Args:
        parse: ``(..., H, W)`` 0/1 map (:func:`class_mask` with ``kept_classes(keep_neck=False)``).

    Returns:
        float64 ``(..., H, W)`` in [0, 1].
    """
    mask = parse.to(torch.float64) * 255.0
    for _ in range(2):
        mask = gaussian_blur_reflect101(mask, BLUR_KERNEL_SIZE, FACEXLIB_BLUR_SIGMA)
    border = FACEXLIB_BORDER
    mask[..., :border, :] = 0
    mask[..., -border:, :] = 0
    mask[..., :, :border] = 0
    mask[..., :, -border:] = 0
    return mask / 255.0
