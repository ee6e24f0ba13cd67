"""OpenCV's ``cv2.resize(img, (w, h))`` (INTER_LINEAR) on 8-bit images, bit for bit, in torch.

GPEN's ``FaceParse.process`` resizes the uint8 crop to 512 with OpenCV before parsing. OpenCV
does that in fixed point (weights scaled by 2048, two separately truncated products), which
is not a rounded float bilinear: for 256 -> 512 a float bilinear differs by one level at 8-9 %
of the bytes and moves hundreds of argmax pixels. This is the vectorised OpenCV arithmetic
(checked against OpenCV 4.12 and 5.0 on x86-64; see ``shared/reference/parsenet/README.md``):

* per axis, output index ``d``, source size ``N``, output size ``D``:
  ``f = float32((d + 0.5) * (N / D) - 0.5)``, ``s = floor(f)``, ``t = f - s``;
* horizontally the edge columns take one tap (``s < 0 -> s = 0, t = 0``;
  ``s >= N - 1 -> s = N - 1, t = 0``); weights ``round((1 - t) * 2048)``, ``round(t * 2048)``;
  row values are integers at scale 2048;
* vertically ``s`` and ``t`` are not clamped, only the two source rows are;
* ``out = ((b0 * (h[r0] >> 4)) >> 16) + ((b1 * (h[r1] >> 4)) >> 16) + 2 >> 2``.

An exact 2x downscale (OpenCV switches to INTER_AREA there) gives ``(a + b + c + d + 2) >> 2``
per block with the same formula.
"""

from __future__ import annotations

import torch

__all__ = ["cv2_resize_uint8"]

_SCALE_BITS = 11  # INTER_RESIZE_COEF_BITS: weights are integers out of 2048


def _axis(src: int, dst: int, device: torch.device, *, clamp_edges: bool) -> tuple[torch.Tensor, ...]:
    """Source indices ``(i0, i1)`` and integer weights ``(w0, w1)`` of one axis (int64)."""
    d = torch.arange(dst, dtype=torch.float64, device=device)
    f = ((d + 0.5) * (src / dst) - 0.5).to(torch.float32)
    s = torch.floor(f)
    t = f - s
    s = s.to(torch.int64)
    if clamp_edges:
        low = s < 0
        high = s >= src - 1
        s = torch.where(low, torch.zeros_like(s), torch.where(high, torch.full_like(s, src - 1), s))
        t = torch.where(low | high, torch.zeros_like(t), t)
    one = torch.ones((), dtype=torch.float32, device=device)
    w0 = torch.round((one - t) * (1 << _SCALE_BITS)).to(torch.int64)  # round half to even, as cvRound
    w1 = torch.round(t * (1 << _SCALE_BITS)).to(torch.int64)
    i0 = s.clamp(0, src - 1)
    i1 = (s + 1).clamp(0, src - 1)
    return i0, i1, w0, w1


def cv2_resize_uint8(images: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resize 8-bit images exactly like ``cv2.resize(img, (width, height))`` (INTER_LINEAR).

    Args:
        images: ``(..., H, W)`` uint8 tensor (e.g. ``(N, C, H, W)``), any device.
        height, width: output size (positive).

    Returns:
        ``(..., height, width)`` uint8; the input itself when the size is unchanged
        (OpenCV copies then).
    """
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim < 2:
        got = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a uint8 tensor of shape (..., H, W), got {got}")
    if height < 1 or width < 1:
        raise ValueError(f"output size must be positive, got {height} x {width}")
    src_h, src_w = images.shape[-2:]
    if (src_h, src_w) == (height, width):
        return images
    device = images.device
    x0, x1, a0, a1 = _axis(src_w, width, device, clamp_edges=True)
    y0, y1, b0, b1 = _axis(src_h, height, device, clamp_edges=False)
    # int32 is enough: a row value is at most 255 * 2048, and a product at most 2048 * 32640
    pixels = images.to(torch.int32)
    rows = pixels[..., x0] * a0.to(torch.int32) + pixels[..., x1] * a1.to(torch.int32)  # (..., H, width)
    rows = rows >> 4
    top = (rows[..., y0, :] * b0.to(torch.int32)[:, None]) >> 16
    bottom = (rows[..., y1, :] * b1.to(torch.int32)[:, None]) >> 16
    return ((top + bottom + 2) >> 2).clamp_(0, 255).to(torch.uint8)
