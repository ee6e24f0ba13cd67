"""Face crops to ParseNet input, as GPEN's ``FaceParse.process`` prepares them.

The official code parses the 8-bit restored crop: ``cv2.resize`` to 512 (fixed point, see
:mod:`.resize`), BGR -> RGB, ``v / 255. * 2 - 1`` in float64, cast to float32. In float32,
``(v - 127.5) / 127.5`` gives the same 256 values (checked bit for bit on the reference).
"""

from __future__ import annotations

import torch

from .resize import cv2_resize_uint8

__all__ = ["PARSE_SIZE", "parser_input", "to_levels"]

PARSE_SIZE = 512
"""Side of the crops ParseNet is fed in both official pipelines."""


def to_levels(crops: torch.Tensor) -> torch.Tensor:
    """8-bit levels of float crops in [0, 1]: ``round(clamp(x, 0, 1) * 255)`` as uint8.

    A float crop that holds 8-bit values (``v / 255``) gets exactly those values back.
    uint8 input is returned as is.
    """
    if crops.dtype == torch.uint8:
        return crops
    if not crops.dtype.is_floating_point:
        raise ValueError(f"crops must be uint8 or float in [0, 1], got {crops.dtype}")
    return torch.round(crops.float().clamp(0.0, 1.0) * 255.0).to(torch.uint8)


def parser_input(crops: torch.Tensor, *, size: int = PARSE_SIZE, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """ParseNet input for RGB face crops, exactly as GPEN's ``FaceParse.process`` computes it.

    Args:
        crops: ``(N, 3, S, S)`` RGB, uint8 levels or float in [0, 1] (rounded to 8-bit levels
            first, like the official code, which parses the uint8 restored crop).
        size: network input side (512 officially).
        dtype: dtype of the result (the values are computed in float32 first).

    Returns:
        ``(N, 3, size, size)`` in [-1, 1], contiguous NCHW. (Contiguous matters: a
        channels-last input makes the CPU convolutions pick other algorithms, moving the
        logits by ~5e-5 and flipping near-tie pixels.)
    """
    if not isinstance(crops, torch.Tensor) or crops.ndim != 4 or crops.shape[1] != 3:
        shape = tuple(crops.shape) if isinstance(crops, torch.Tensor) else type(crops).__name__
        raise ValueError(f"crops must have shape (N, 3, S, S), got {shape}")
    levels = cv2_resize_uint8(to_levels(crops), size, size)
    x = (levels.to(torch.float32) - 127.5) / 127.5
    return x.to(dtype).contiguous()
