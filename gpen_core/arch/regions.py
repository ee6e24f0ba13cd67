"""Receptive-field arithmetic for computing GPEN layer by layer on crops.

An :class:`Interval` ``[lo, hi)`` is a range of rows or columns in the global pixel
coordinates of one resolution; a :class:`Region` is a rectangle. Each ``*_needs``
function returns exactly the input region an operation reads to produce a given
output region (zero padding at the image border is modelled by reading positions
outside the image, which hold zeros).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Interval:
    """Half-open ``[lo, hi)``; may extend past the image (those positions are zeros)."""

    lo: int
    hi: int

    @property
    def size(self) -> int:
        return self.hi - self.lo

    def grow(self, before: int, after: int | None = None) -> Interval:
        return Interval(self.lo - before, self.hi + (before if after is None else after))

    def hull(self, other: Interval) -> Interval:
        return Interval(min(self.lo, other.lo), max(self.hi, other.hi))

    def clip(self, other: Interval) -> Interval:
        return Interval(max(self.lo, other.lo), min(self.hi, other.hi))


def _ceil_half(v: int) -> int:
    return -((-v) // 2)


def modulated_upsample_needs(out: Interval) -> Interval:
    """Official upsampling modulated conv: transposed 3x3 stride 2, then 4-tap blur, padding 1."""
    return Interval(_ceil_half(out.lo - 3), (out.hi + 1) // 2 + 1)


def rgb_upsample_needs(out: Interval) -> Interval:
    """Official ``Upsample``: zero insertion, 4-tap FIR, padding (2, 1)."""
    return Interval(_ceil_half(out.lo - 2), out.hi // 2 + 1)


def encoder_downsample_needs(out: Interval) -> Interval:
    """Encoder stage: 4-tap blur, padding 2, then 3x3 convolution stride 2."""
    return Interval(2 * out.lo - 2, 2 * out.hi + 2)


@dataclass(frozen=True)
class Region:
    """A rectangle ``rows x cols`` in the coordinates of one resolution."""

    rows: Interval
    cols: Interval

    @staticmethod
    def whole(size: int) -> Region:
        return Region(Interval(0, size), Interval(0, size))

    def map(self, fn) -> Region:
        return Region(fn(self.rows), fn(self.cols))

    def grow(self, n: int) -> Region:
        return Region(self.rows.grow(n), self.cols.grow(n))

    def hull(self, other: Region) -> Region:
        return Region(self.rows.hull(other.rows), self.cols.hull(other.cols))

    def clip(self, other: Region) -> Region:
        return Region(self.rows.clip(other.rows), self.cols.clip(other.cols))

    def scaled(self, factor_num: int, factor_den: int) -> Region:
        """The footprint at another resolution: ``[floor(lo*n/d), ceil(hi*n/d))``."""

        def f(iv: Interval) -> Interval:
            return Interval((iv.lo * factor_num) // factor_den, -((-iv.hi * factor_num) // factor_den))

        return self.map(f)


@dataclass
class Crop:
    """A tensor ``(B, C, h, w)`` holding the values of ``region`` (global coordinates)."""

    tensor: torch.Tensor
    region: Region

    def take(self, region: Region) -> torch.Tensor:
        """The values over ``region``; positions this crop does not hold are zeros.

        Returns a view when ``region`` lies inside the crop, else a zero-padded copy.
        """
        own = self.region
        top, left = region.rows.lo - own.rows.lo, region.cols.lo - own.cols.lo
        bottom, right = own.rows.hi - region.rows.hi, own.cols.hi - region.cols.hi
        if min(top, left, bottom, right) >= 0:
            return self.tensor[:, :, top : top + region.rows.size, left : left + region.cols.size]
        # F.pad with negative amounts crops; positive amounts add zeros.
        padded = F.pad(self.tensor, (-left, -right, -top, -bottom))
        return padded.contiguous(memory_format=torch.channels_last)


def zero_outside(tensor: torch.Tensor, region: Region, size: int) -> torch.Tensor:
    """In place: zero the positions of ``region`` that lie outside the ``size x size`` image."""
    rows, cols = region.rows, region.cols
    top, bottom = max(0, -rows.lo), max(0, rows.hi - size)
    left, right = max(0, -cols.lo), max(0, cols.hi - size)
    h, w = tensor.shape[-2:]
    if top:
        tensor[:, :, :top].zero_()
    if bottom:
        tensor[:, :, h - bottom :].zero_()
    if left:
        tensor[:, :, :, :left].zero_()
    if right:
        tensor[:, :, :, w - right :].zero_()
    return tensor
