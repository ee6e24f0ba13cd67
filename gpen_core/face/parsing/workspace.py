"""The padded-input buffer ParseNet's convolutions read, reused from layer to layer.

Every ParseNet conv reads its input padded by reflection (1 px), after a nearest 2x
upsample in the up blocks. Allocating those padded copies anew costs more than copying
them: on the CPU a fresh large tensor is fresh pages, faulted in on first touch (a
reflection pad of a 64 x 512 x 512 float32 map: 18 ms; the same copy into a buffer that
is already mapped: ~3 ms). A :class:`PadWorkspace` holds one storage, grown to the largest
padded input seen, and writes each padded input into it: the interior in one copy (for an
up conv, the 2x nearest upsample is that copy, a broadcast of each pixel to 2 x 2), then
the four reflected borders. The values are those of ``F.pad(F.interpolate(x, scale_factor=2),
(1, 1, 1, 1), mode="reflect")`` bit for bit (copies only).

A padded view is valid until the next :meth:`PadWorkspace.pad`: callers drop it first
(and when the storage must grow, the old one is released before the new one is made).
"""

from __future__ import annotations

import torch

__all__ = ["PadWorkspace", "is_channels_last"]


def is_channels_last(weight: torch.Tensor) -> bool:
    """Whether a conv weight ``(C_out, C_in, kH, kW)`` is stored channels-last: its conv then reads
    channels-last inputs (see :meth:`~.network.ParseNet.set_dtype` for when)."""
    return not weight.is_contiguous() and weight.is_contiguous(memory_format=torch.channels_last)


class PadWorkspace:
    """One reusable buffer for the padded inputs of a forward (or of many: keep it across batches).

    Attributes:
        nbytes: bytes of the buffer now held (0 before the first pad).
    """

    def __init__(self) -> None:
        self._storage: torch.Tensor | None = None

    @property
    def nbytes(self) -> int:
        return 0 if self._storage is None else self._storage.numel()

    def _buffer(self, nbytes: int, device: torch.device) -> torch.Tensor:
        if self._storage is None or self._storage.numel() < nbytes or self._storage.device != device:
            self._storage = None  # the old buffer goes before the new one comes
            self._storage = torch.empty(nbytes, dtype=torch.uint8, device=device)
        return self._storage[:nbytes]

    def pad(self, x: torch.Tensor, *, upsample: bool, weight: torch.Tensor) -> torch.Tensor:
        """``x`` reflection-padded by 1 px (after a nearest 2x upsample when ``upsample``), ready for ``weight``.

        Args:
            x: ``(N, C, H, W)`` with ``H, W >= 2`` (reflection needs two pixels), any layout.
            upsample: nearest 2x first (the up convs).
            weight: the weight of the conv that reads it: the result takes its dtype and its
                layout (channels-last when :func:`is_channels_last`).

        Returns:
            ``(N, C, H' + 2, W' + 2)`` view of the workspace buffer (``H' = 2H`` when upsampling),
            valid until the next call.
        """
        n, c, h, w = x.shape
        if h < 2 or w < 2:
            raise ValueError(
                f"ParseNet feature map of {h} x {w} is too small for its reflection padding; the input side "
                "must be at least 2 * 2 ** down_steps (512 for the official network)"
            )
        scale = 2 if upsample else 1
        height, width = scale * h + 2, scale * w + 2
        flat = self._buffer(n * c * height * width * weight.element_size(), x.device).view(weight.dtype)
        if is_channels_last(weight):
            out = flat.view(n, height, width, c).permute(0, 3, 1, 2)
        else:
            out = flat.view(n, c, height, width)
        inner = out[:, :, 1:-1, 1:-1]
        if upsample:
            sn, sc, sh, sw = inner.stride()
            blocks = inner.as_strided((n, c, h, 2, w, 2), (sn, sc, 2 * sh, sh, 2 * sw, sw), inner.storage_offset())
            blocks.copy_(x[:, :, :, None, :, None].expand(n, c, h, 2, w, 2))
        else:
            inner.copy_(x)
        out[:, :, 0, 1:-1] = out[:, :, 2, 1:-1]
        out[:, :, -1, 1:-1] = out[:, :, -3, 1:-1]
        out[:, :, :, 0] = out[:, :, :, 2]
        out[:, :, :, -1] = out[:, :, :, -3]
        return out
