"""A loaded ParseNet as the paste pipeline uses it: restored crops in, GPEN's paste masks out."""
from __future__ import annotations

import torch

from .masks import kept_classes
from .network import ParseNet
from .run import parse_paste_masks, parser_peak_bytes

__all__ = ["FaceParser"]


class FaceParser:
    """Makes paste masks with a loaded :class:`ParseNet` (a :class:`gpen_core.face.masks.MaskParser`).

    Args:
        net: the network, on the device and in the dtype it runs in.
    """

    def __init__(self, net: ParseNet) -> None:
        self.net = net

    @property
    def device(self) -> torch.device:
        return self.net.out_mask_conv.conv2d.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.net.out_mask_conv.conv2d.weight.dtype

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> FaceParser:
        """Move the network (in place); returns ``self``."""
        self.net.to(device=device, dtype=dtype)
        return self

    def paste_masks(self, crops: torch.Tensor, *, keep_hair: bool = True, keep_neck: bool = True) -> torch.Tensor:
        """GPEN's paste masks of ``(N, 3, S, S)`` restored crops in [0, 1], parsed in one batch.

        Returns:
            ``(N, S, S)`` float32 masks in [0, 1] on ``crops``' device.
        """
        kept = kept_classes(keep_hair=keep_hair, keep_neck=keep_neck)
        return parse_paste_masks(self.net, crops, kept=kept, batch_size=max(1, crops.shape[0]))

    def peak_bytes(self, batch: int) -> int:
        """Upper estimate of one forward's activations on ``batch`` crops (:func:`parser_peak_bytes`)."""
        return parser_peak_bytes(self.net.config, self.dtype, batch)
