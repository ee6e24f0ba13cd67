"""Image tensors in and out of the network: channels, alpha, resizing, value ranges."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..arch.config import INPUT_RANGES


def split_alpha(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Split grey / grey+alpha / RGB / RGBA images into RGB and an optional alpha.

    Args:
        images: ``(B, C, H, W)`` float in [0, 1], C in {1, 2, 3, 4}.

    Returns:
        ``rgb (B, 3, H, W)`` (grey repeated) and ``alpha (B, 1, H, W)`` or None.
    """
    if images.dim() != 4 or images.shape[1] not in (1, 2, 3, 4):
        raise ValueError(
            f"expected images of shape (B, C, H, W) with C in 1..4 (grey, grey+alpha, RGB, RGBA); "
            f"got {tuple(images.shape)}"
        )
    channels = images.shape[1]
    colour = images[:, : 3 if channels >= 3 else 1]
    alpha = images[:, -1:] if channels in (2, 4) else None
    if colour.shape[1] == 1:
        colour = colour.expand(-1, 3, -1, -1)
    return colour, alpha


def resize(images: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bicubic resize with antialiasing when shrinking, clamped to [0, 1]; ``(B, C, h, w) -> (B, C, height, width)``."""
    if images.shape[-2:] == (height, width):
        return images
    out = F.interpolate(images.float(), size=(height, width), mode="bicubic", align_corners=False, antialias=True)
    return out.clamp_(0.0, 1.0)


def to_network(rgb: torch.Tensor, input_range: str) -> torch.Tensor:
    """``(B, 3, S, S)`` in [0, 1] to the model's value range (``"[-1,1]"`` or ``"[0,1]"``)."""
    low, high = INPUT_RANGES[input_range]
    return rgb * (high - low) + low


def from_network(out: torch.Tensor, input_range: str) -> torch.Tensor:
    """Network output in the model's value range to [0, 1], clamped (as the official wrapper does)."""
    low, high = INPUT_RANGES[input_range]
    return ((out - low) / (high - low)).clamp_(0.0, 1.0)
