"""The decoder levels of GPEN: the one copy of their math, for whole images and for tiles.

A level at resolution ``r`` takes the previous level's features ``(a, b)`` and RGB skip
(resolution ``r / 2``) and the encoder feature of resolution ``r``, and computes (official
``StyledConv`` with ``isconcat``, ``ToRGB``)::

    a1 = leaky(upconv(cat(a, b)) + bias)       b1 = leaky(noise_w * feature + bias')
    a2 = leaky(conv3x3(cat(a1, b1)) + bias)    b2 = leaky(noise_w' * feature + bias'')
    rgb = to_rgb(cat(a2, b2)) + upsample(skip)

Every tensor is a :class:`~gpen_core.arch.regions.Crop`: the values of a region in the
level's global pixel coordinates. The plain forward passes whole regions (every crop is
the tensor itself, no copy); the tiled forward passes a tile's regions grown by the
exact receptive fields (:mod:`gpen_core.arch.tiled`), and values outside the image are
zeroed where the official padding sees zeros. Activations are stored without the
``sqrt(2)`` gain, which the consumers' scales include.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .ops import NEGATIVE_SLOPE, modulated_conv1x1, modulated_conv2d, records_grad, upsample_fir
from .regions import Crop, Interval, Region, zero_outside
from .styles import DecoderStyles, LevelStyles, Scales


@dataclass
class StyledLayer:
    """One styled convolution, prepared for a dtype (official ``StyledConv``).

    Attributes:
        weight: ``(1, C_out, C_in, k, k)`` stored weight.
        bias: ``(C_out,)`` first half of the activation bias (the convolution half).
        noise_scale: ``(1,)`` noise weight times ``sqrt(2)`` (the encoder feature lacks the gain).
        noise_bias: ``(1, C_out, 1, 1)`` second half of the activation bias (the noise half).
        blur_taps: ``(C_out, 1, 4, 4)`` upsampling blur, or None for a 3x3 conv.
    """

    weight: torch.Tensor
    bias: torch.Tensor
    noise_scale: torch.Tensor
    noise_bias: torch.Tensor
    blur_taps: torch.Tensor | None


@dataclass
class RGBLayer:
    """One to-RGB layer, prepared (official ``ToRGB``).

    Attributes:
        weight: ``(1, 3, C_in, 1, 1)`` stored weight.
        bias: ``(3,)`` in the weight's dtype.
        skip_taps: ``(3, 1, 4, 4)`` float32 upsampling taps of the RGB skip, or None (4x4).
    """

    weight: torch.Tensor
    bias: torch.Tensor
    skip_taps: torch.Tensor | None


@dataclass
class LevelLayers:
    """The layers of one decoder level."""

    up: StyledLayer
    conv: StyledLayer
    rgb: RGBLayer


@dataclass
class DecoderState:
    """What one decoder level hands to the next, at resolution ``r``.

    Attributes:
        a: ``(B, C_r, h, w)`` activated convolution half of the official concatenated feature.
        b: ``(B, C_r, h, w)`` activated encoder ("noise") half, over the same region as ``a``.
        rgb: ``(B, 3, h', w')`` float32 RGB skip.
        owned: the next level may overwrite ``a`` and ``b`` (no one else reads them); False
            for a state shared by several tiles.
    """

    a: Crop | None
    b: Crop | None
    rgb: Crop
    owned: bool = True

    def release(self) -> tuple[Crop, Crop]:
        """``(a, b)``, dropping this object's references so the consumer can free them."""
        if self.a is None or self.b is None:
            raise RuntimeError("DecoderState was already released")
        parts = (self.a, self.b)
        self.a = self.b = None
        return parts


@dataclass(frozen=True)
class LevelRegions:
    """Where a decoder level of resolution ``r`` computes, in global pixel coordinates.

    Regions may extend past the image; values there are zeros, as the official padding sees.

    Attributes:
        up_src: read from the previous level's features by the upsampling conv (at ``r / 2``).
        u: where the upsampling conv output and the first noise half are computed.
        h: where the level's features ``(a, b)`` are computed: ``u`` itself ("same" 3x3
            conv, the whole image) or ``u`` shrunk by 1 ("valid" 3x3 conv, tiles).
        rgb: where the RGB is computed (inside ``h``).
        skip_src: read from the previous RGB by the skip upsampling (at ``r / 2``).
    """

    up_src: Region
    u: Region
    h: Region
    rgb: Region
    skip_src: Region

    @staticmethod
    def whole(r: int) -> LevelRegions:
        """The whole ``r x r`` image: every crop is the tensor itself."""
        full, half = Region.whole(r), Region.whole(r // 2)
        return LevelRegions(half, full, full, full, half)


def _doubled(region: Region) -> Region:
    """Where a stride-2 upsampling of ``region`` (padding as in :mod:`.ops`) has its outputs."""
    return Region(Interval(2 * region.rows.lo, 2 * region.rows.hi), Interval(2 * region.cols.lo, 2 * region.cols.hi))


def noise_half(layer: StyledLayer, feature: torch.Tensor, *, out: torch.Tensor | None = None) -> torch.Tensor:
    """Second half of a styled conv's output: ``leaky_relu(noise_w * sqrt2 * feature + b[C:])``.

    Args:
        feature: encoder feature ``(B, C, h, w)``.
        out: where to write the result (e.g. ``feature`` at its last use), or None.
    """
    return F.leaky_relu_(torch.addcmul(layer.noise_bias, feature, layer.noise_scale, out=out), NEGATIVE_SLOPE)


def storage_of(spare: list[torch.Tensor], shape: tuple[int, ...]) -> torch.Tensor | None:
    """A channels-last tensor of ``shape`` over the memory of a ``spare`` tensor (no longer needed),
    or None when none is large enough, dense channels-last and free of autograd."""
    b, c, h, w = shape
    n = b * c * h * w
    for t in spare:
        if t.numel() >= n and t.is_contiguous(memory_format=torch.channels_last) and not records_grad(t):
            return t.permute(0, 2, 3, 1).reshape(-1)[:n].view(b, h, w, c).permute(0, 3, 1, 2)
    return None


def to_rgb(layer: RGBLayer, a: torch.Tensor, b: torch.Tensor, scales: Scales) -> torch.Tensor:
    """RGB of the features ``(a, b)``, float32 ``(B, 3, h, w)``, without the skip."""
    return modulated_conv1x1([a, b], layer.weight, scales[0], layer.bias).float()


def decode_start(const: torch.Tensor, conv: StyledLayer, rgb: RGBLayer, f4: torch.Tensor,
                 styles: DecoderStyles) -> DecoderState:
    """Level 0 (4x4): constant input ``(1, C_4, 4, 4)``, ``conv1`` with the encoder feature ``f4``, ``to_rgb1``."""
    start = const.expand(f4.shape[0], -1, -1, -1)
    y = modulated_conv2d([start], conv.weight, *styles.start_conv, bias=conv.bias)
    a, b = F.leaky_relu_(y, NEGATIVE_SLOPE), noise_half(conv, f4)
    whole = Region.whole(4)
    return DecoderState(Crop(a, whole), Crop(b, whole), Crop(to_rgb(rgb, a, b, styles.start_rgb), whole))


def decode_level(
    layers: LevelLayers, styles: LevelStyles, state: DecoderState, feature: Crop, regions: LevelRegions, r: int,
    *, consume_feature: bool = False,
) -> DecoderState:
    """One decoder level of output resolution ``r``, over ``regions``.

    Args:
        layers: the level's prepared layers.
        styles: the level's modulation scales.
        state: the previous level's output; released here, so its tensors are freed as
            soon as they have been used. Its features must cover ``regions.up_src`` and its
            RGB ``regions.skip_src`` (or hold zeros where they do not).
        feature: encoder feature of resolution ``r`` over at least ``regions.u``.
        regions: from :meth:`LevelRegions.whole` or a tile plan.
        r: the level's resolution (the image size at this level).
        consume_feature: the caller will not use ``feature`` again: when it covers exactly
            ``regions.h``, its memory holds the second noise half (not under autograd).

    Returns:
        This level's :class:`DecoderState` over ``regions.h`` (features) and ``regions.rgb`` (RGB).
    """
    u, h, rgb_region = regions.u, regions.h, regions.rgb
    skip, owned = state.rgb, state.owned
    a_prev, b_prev = state.release()
    src = regions.up_src
    # Upsampling conv over up_src (padded as officially), then cut to u.
    spare: list[torch.Tensor] = []
    y = modulated_conv2d([a_prev.take(src), b_prev.take(src)], layers.up.weight, *styles.up, upsample=True,
                         blur_taps=layers.up.blur_taps, bias=layers.up.bias, consume=owned, spare=spare)
    del a_prev, b_prev  # the level below is no longer needed
    a = Crop(y, _doubled(src)).take(u).contiguous(memory_format=torch.channels_last)
    del y
    a = zero_outside(F.leaky_relu_(a, NEGATIVE_SLOPE), u, r)
    # The first noise half takes the memory of the transposed conv's output (dead after the blur).
    b = noise_half(layers.up, feature.take(u), out=storage_of(spare, tuple(a.shape)))
    del spare
    b = zero_outside(b, u, r)
    # 3x3 conv: "same" when h == u, else "valid" on u = h grown by 1.
    y = modulated_conv2d([a, b], layers.conv.weight, *styles.conv, pad=h == u, bias=layers.conv.bias, consume=True)
    del a, b
    a2 = Crop(zero_outside(F.leaky_relu_(y, NEGATIVE_SLOPE), h, r), h)
    del y
    # At the feature's last use its memory holds the noise half, unless autograd may need it.
    overwrite = consume_feature and feature.region == h and not torch.is_grad_enabled()
    noise = noise_half(layers.conv, feature.take(h), out=feature.tensor if overwrite else None)
    b2 = Crop(zero_outside(noise, h, r), h)
    # RGB over rgb_region (inside h) plus the upsampled skip.
    rgb = to_rgb(layers.rgb, a2.take(rgb_region), b2.take(rgb_region), styles.rgb)
    skip_src = regions.skip_src
    assert layers.rgb.skip_taps is not None
    skip_up = Crop(upsample_fir(skip.take(skip_src), layers.rgb.skip_taps), _doubled(skip_src))
    del skip
    rgb.add_(skip_up.take(rgb_region))
    zero_outside(rgb, rgb_region, r)  # the next upsampling pads the image with zeros
    return DecoderState(a2, b2, Crop(rgb, rgb_region))
