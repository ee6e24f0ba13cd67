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
        return self.net.device

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the network computes in (its head stays float32 in half precision)."""
        return self.net.dtype

    def paste_masks(self, crops: torch.Tensor, *, keep_hair: bool = True, keep_neck: bool = True) -> torch.Tensor:
        """GPEN's paste masks of ``(N, 3, S, S)`` restored crops in [0, 1], parsed in one batch.

        The padded-input buffer lives for this call only: kept between face batches it would sit beside GPEN's
        forward (about 135 MiB in float32 at 512), raising a photo's peak for little time saved.

        Returns:
            ``(N, S, S)`` float32 masks in [0, 1] on ``crops``' device.
        """
        kept = kept_classes(keep_hair=keep_hair, keep_neck=keep_neck)
        return parse_paste_masks(self.net, crops, kept=kept, batch_size=max(1, crops.shape[0]))

    def peak_bytes(self, batch: int) -> int:
        """Upper estimate of one forward's activations on ``batch`` crops (:func:`parser_peak_bytes`)."""
        return parser_peak_bytes(self.net.config, self.dtype, batch)
