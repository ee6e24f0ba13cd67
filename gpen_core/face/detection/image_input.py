"""Validation and conversion of the image given to the face detectors.

Convention (one, everywhere in the core): a single RGB image as a ``torch.Tensor`` of shape
``(3, H, W)`` (channels first), either

* ``torch.uint8`` with values in [0, 255], or
* a floating dtype with values in [0, 1].

Batches, channels-last tensors (convert at the node / CLI edge), greyscale or RGBA images are
rejected with a message naming the shape that was received.
"""

from __future__ import annotations

import torch

from ...checks import image_as_float


def image_to_rgb255(image: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """Check one RGB image and convert it to the detectors' internal range.

    Args:
        image: (3, H, W) RGB; uint8 in [0, 255] or float in [0, 1].
        device: where the result should live.

    Returns:
        (3, H, W) float32 RGB in [0, 255] on ``device`` (no rounding of float inputs).

    Raises:
        TypeError: ``image`` is not a tensor or has an unsupported dtype.
        ValueError: wrong shape, empty image, non-finite values, or float values outside [0, 1].
    """
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"image must be a torch.Tensor of shape (3, H, W), got {type(image).__name__}")
    shape = tuple(image.shape)
    if image.ndim != 3 or shape[0] != 3:
        hint = ""
        if image.ndim == 4:
            hint = " (a batch: pass one image, e.g. images[i])"
        elif image.ndim == 3 and shape[2] == 3:
            hint = " (channels last, like a ComfyUI IMAGE frame: use image.permute(2, 0, 1))"
        elif image.ndim == 3 and shape[0] == 4:
            hint = " (RGBA: drop the alpha channel, image[:3])"
        raise ValueError(f"image must have shape (3, H, W) RGB, got {shape}{hint}")
    if shape[1] < 1 or shape[2] < 1:
        raise ValueError(f"image is empty: shape {shape}")
    if image.dtype == torch.uint8:
        return image.to(device=device, dtype=torch.float32)
    # the one rule of the package (checks.py): finite, in [0, 1] up to a small clamped overshoot
    return image_as_float(image.to(device=device), "image") * 255.0
