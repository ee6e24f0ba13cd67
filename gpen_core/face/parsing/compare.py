"""How far two parses of the same crops are apart, in what the paste uses: classes, kept pixels, paste masks.

Used to measure a half-precision parser against float32 (benchmark, tests, ``docs/parser_precision.md``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch

from .masks import class_mask, gpen_paste_mask

__all__ = ["MaskDifference", "mask_difference"]


@dataclass(frozen=True)
class MaskDifference:
    """Differences between two class maps of the same crops.

    Attributes:
        pixels: class-map pixels compared (``N * 512 * 512``).
        class_flips: pixels whose class (argmax) differs.
        mask_flips: pixels whose kept / dropped state differs (the 0/1 map GPEN blurs).
        paste_max: max abs difference of the paste masks (:func:`gpen_paste_mask`, values in [0, 1]).
        paste_mean: mean abs difference of the paste masks.
    """

    pixels: int
    class_flips: int
    mask_flips: int
    paste_max: float
    paste_mean: float

    def describe(self) -> str:
        """One line, e.g. for the benchmark."""
        return (f"{self.class_flips} class / {self.mask_flips} mask pixels of {self.pixels} flipped, "
                f"paste mask max {self.paste_max:.2e} mean {self.paste_mean:.2e}")


def mask_difference(reference: torch.Tensor, other: torch.Tensor, kept: Iterable[int],
                    size: int | None = None) -> MaskDifference:
    """Compare two ``(N, H, W)`` integer class maps (:func:`~.run.parse_classes`) of the same crops.

    Args:
        reference, other: the class maps (e.g. float32 and bfloat16 parses).
        kept: the classes pasted (:func:`~.masks.kept_classes`).
        size: side of the paste masks compared (the model's; default: the class maps' side).
    """
    if reference.shape != other.shape or reference.ndim != 3:
        raise ValueError(f"class maps must both be (N, H, W); got {tuple(reference.shape)} and {tuple(other.shape)}")
    kept = tuple(kept)
    mask_a, mask_b = class_mask(reference, kept), class_mask(other.to(reference.device), kept)
    paste = (gpen_paste_mask(mask_a, size) - gpen_paste_mask(mask_b, size)).abs()
    return MaskDifference(
        pixels=reference.numel(),
        class_flips=int((reference != other.to(reference.device)).sum()),
        mask_flips=int((mask_a != mask_b).sum()),
        paste_max=float(paste.max()) if paste.numel() else 0.0,
        paste_mean=float(paste.mean()) if paste.numel() else 0.0,
    )
