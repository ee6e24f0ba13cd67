# mypy: disable-error-code="union-attr, operator, arg-type, index, assignment, attr-defined, misc"
# TODO(arch): type the layer access (nn.ModuleList items) and the Crop/Tensor names; then drop this line.
"""Tiled GPEN forward: tiles inside the network, layer by layer, with exact halos.

The latent comes from a fully connected layer over the whole 4x4 encoder map, so the
image is never cut into independent tiles. Instead:

1. The encoder runs whole, or (``recompute``) tile by tile up to the last whole level,
   keeping only the small low-resolution features.
2. Decoder levels below ``tile_size`` run whole.
3. Each output tile is computed level by level from crops of the level below, grown by
   the exact receptive field of every operation (see :mod:`gpen_core.arch.regions`), so the
   result equals the untiled forward. With ``recompute`` the encoder features of the
   tiled levels are recomputed per tile from a crop of the image.

``overlap`` (an int) limits every crop to the tile's footprint plus ``overlap`` pixels
at that level, which is cheaper but inexact near tile edges; output tiles then overlap
by ``overlap`` pixels and are blended with feathered weights that sum to one.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .generator import GPEN, DecoderState, DecoderStyles
from .ops import NEGATIVE_SLOPE, modulated_conv2d, upsample_fir
from .regions import (
    Crop,
    Interval,
    Region,
    encoder_downsample_needs,
    modulated_upsample_needs,
    rgb_upsample_needs,
    zero_outside,
)

Progress = Callable[[int, int], None]
MIN_TILE = 16


@dataclass
class TileRegions:
    """Where one output tile needs values, per decoder resolution ``r`` (tiled levels only).

    Attributes:
        out: the tile's output region at the model size (blend band included).
        h: where the level's features ``(a, b)`` are computed.
        u: where its upsampling conv output is computed (``h`` grown by 1 for the 3x3 conv).
        rgb: where its RGB is computed.

    The encoder feature of level ``r`` is needed over ``u[r]`` (both styled convs read it).
    """

    out: Region
    h: dict[int, Region]
    u: dict[int, Region]
    rgb: dict[int, Region]


def effective_tile(tile_size: int | None, size: int) -> int:
    """The tile a tiled forward uses: ``tile_size``, or half the image when only recompute was asked."""
    return min(tile_size or max(MIN_TILE, size // 2), size)


def whole_levels_below(tile_size: int, size: int) -> int:
    """The highest resolution decoded whole: the largest power of two below ``tile_size`` (>= 4)."""
    r = 4
    while r * 2 < min(tile_size, size):
        r *= 2
    return r


def plan_tile(out: Region, size: int, r0: int, overlap: int | None) -> TileRegions:
    """Regions of one output tile, top-down from the output to the first tiled level ``2 * r0``."""
    h, u, rgb = {size: out}, {}, {size: out}
    r = size
    while r > r0:
        u[r] = h[r].grow(1)
        rgb_below = rgb[r].map(rgb_upsample_needs)
        h_below = u[r].map(modulated_upsample_needs).hull(rgb_below)
        if overlap is not None:
            allowed = out.scaled(r // 2, size).grow(overlap)
            h_below, rgb_below = h_below.clip(allowed), rgb_below.clip(allowed)
        h[r // 2], rgb[r // 2] = h_below, rgb_below
        r //= 2
    return TileRegions(out, h, u, rgb)


def tile_grid(size: int, tile: int) -> list[Interval]:
    """``[0, tile), [tile, 2 tile), ...`` covering ``[0, size)``; the last may be shorter."""
    return [Interval(lo, min(lo + tile, size)) for lo in range(0, size, tile)]


def feather(iv: Interval, core: Interval, size: int, overlap: int) -> torch.Tensor:
    """1-D blend weights over ``iv``: ramps of ``overlap`` px toward inner tile edges, 1 elsewhere."""
    pos = torch.arange(iv.lo, iv.hi, dtype=torch.float32) + 0.5
    w = torch.ones(iv.size)
    if overlap > 0:
        if core.lo > 0:
            w = torch.minimum(w, ((pos - (core.lo - overlap)) / (2 * overlap)).clamp(min=1e-3))
        if core.hi < size:
            w = torch.minimum(w, (((core.hi + overlap) - pos) / (2 * overlap)).clamp(min=1e-3))
    return w


class TiledRun:
    """One tiled forward of ``model`` over ``image``; see the module docstring.

    Args:
        model: the generator.
        image: ``(B, 3, S, S)`` prepared by :meth:`GPEN.prepare_input`.
        tile_size: output tile size in pixels (>= 16).
        overlap: None for exact halos, else the per-level halo in pixels (inexact, blended).
        recompute: recompute encoder features per tile instead of keeping them.
        progress: called with ``(done, total)`` after every tile.
    """

    def __init__(
        self,
        model: GPEN,
        image: torch.Tensor,
        tile_size: int,
        overlap: int | None,
        recompute: bool,
        progress: Progress | None = None,
    ) -> None:
        if tile_size < MIN_TILE:
            raise ValueError(f"tile_size must be at least {MIN_TILE}, got {tile_size}")
        if overlap is not None and overlap < 0:
            raise ValueError(f"overlap must be >= 0 or None (exact), got {overlap}")
        self.model, self.image = model, image
        self.size = model.config.size
        self.tile = min(tile_size, self.size)
        self.r0 = whole_levels_below(self.tile, self.size)
        self.overlap, self.recompute, self.progress = overlap, recompute, progress
        self.level_of = {4 * 2**j: j for j in range(model.num_levels + 1)}

    # ---------------------------------------------------------------- encoder on crops
    def _stage_index(self, r: int) -> int:
        return int(math.log2(self.size // r))

    def encode_crops(self, needs: dict[int, Region], source: Crop | None = None) -> dict[int, Crop]:
        """Encoder features over ``needs[r]`` for every ``r`` in ``needs``, from the image.

        The regions of the stages in between are grown to what the next stage reads.
        Positions outside the image are zero, as the official padding sees them.
        """
        lowest = min(needs)
        regions: dict[int, Region] = {}
        need: Region | None = None
        r = lowest
        while r <= self.size:
            own = needs.get(r)
            below = need.map(encoder_downsample_needs) if need is not None else None
            need = own if below is None else (below if own is None else own.hull(below))
            regions[r] = need
            r *= 2
        image = source or Crop(self.image, Region.whole(self.size))
        crops: dict[int, Crop] = {}
        x = None
        r = self.size
        while r >= lowest:
            index = self._stage_index(r)
            if index == 0:
                inp = image.take(regions[r]).contiguous(memory_format=torch.channels_last)
            else:
                inp = x.take(regions[r].map(encoder_downsample_needs))
            out = self.model.encode_stage(index, inp, pad=False)
            x = Crop(zero_outside(out, regions[r], r), regions[r])
            if r in needs:
                crops[r] = x
            r //= 2
        # Copies trimmed to what is needed, so the larger stage outputs can be freed.
        return {
            r: c
            if c.region == needs[r]
            else Crop(c.take(needs[r]).contiguous(memory_format=torch.channels_last), needs[r])
            for r, c in crops.items()
        }

    def encode_whole_levels(self) -> dict[int, torch.Tensor]:
        """Encoder features at resolutions ``<= r0`` (whole), the only ones kept with recompute."""
        features: dict[int, torch.Tensor] = {}
        r0 = self.r0
        if not self.recompute:
            sizes = [self.size // 2**i for i in range(self.model.num_stages)]
            for r, f in zip(sizes, self.model.encode(self.image), strict=True):
                features[r] = f
            return features
        step = max(1, (self.tile * r0) // self.size)
        f_r0 = None
        for rows in tile_grid(r0, step):
            for cols in tile_grid(r0, step):
                crop = self.encode_crops({r0: Region(rows, cols)})[r0].tensor
                if f_r0 is None:
                    f_r0 = crop.new_empty((crop.shape[0], crop.shape[1], r0, r0)).contiguous(
                        memory_format=torch.channels_last
                    )
                f_r0[:, :, rows.lo : rows.hi, cols.lo : cols.hi] = crop
        features[r0] = f_r0
        x = f_r0
        r = r0 // 2
        while r >= 4:
            x = self.model.encode_stage(self._stage_index(r), x)
            features[r] = x
            r //= 2
        return features

    # ---------------------------------------------------------------- decoder on crops
    def _decode_tile(
        self, plan: TileRegions, state: tuple[Crop, Crop, Crop], enc: dict[int, Crop], styles: DecoderStyles
    ) -> torch.Tensor:
        model, g = self.model, self.model.generator
        a_prev, b_prev, rgb_prev = state
        r = 2 * self.r0
        while r <= self.size:
            level = self.level_of[r]
            s = styles.levels[level - 1]
            up, conv, to_rgb = g.convs[2 * level - 2], g.convs[2 * level - 1], g.to_rgbs[level - 1]
            u, h, rgb_region = plan.u[r], plan.h[r], plan.rgb[r]
            feature = enc.pop(r) if self.recompute else enc[r]  # recomputed crops: free after their level
            # Upsampling conv over u: transposed conv + blur computed with padding, then cropped.
            src = u.map(modulated_upsample_needs)
            c = up.conv.weight.shape[1]
            y = modulated_conv2d(
                [a_prev.take(src), b_prev.take(src)], up.conv.weight, s.up[0], s.up[1],
                upsample=True, blur_kernel=up.conv.blur.kernel, bias=up.activate.bias[:c],
            )
            a_prev = b_prev = None  # the level below is no longer needed
            y = Crop(y, Region(Interval(2 * src.rows.lo, 2 * src.rows.hi), Interval(2 * src.cols.lo, 2 * src.cols.hi)))
            a = zero_outside(
                F.leaky_relu_(y.take(u).contiguous(memory_format=torch.channels_last), NEGATIVE_SLOPE), u, r
            )
            del y
            b = zero_outside(model._noise_half(up, feature.take(u)), u, r)
            # 3x3 conv over h, "valid" on u = h grown by 1.
            y = modulated_conv2d([a, b], conv.conv.weight, s.conv[0], s.conv[1], pad=False, bias=conv.activate.bias[:c])
            del a, b
            a = Crop(zero_outside(F.leaky_relu_(y, NEGATIVE_SLOPE), h, r), h)
            b = Crop(zero_outside(model._noise_half(conv, feature.take(h)), h, r), h)
            # RGB over rgb_region (inside h) plus the upsampled skip.
            rgb = modulated_conv2d([a.take(rgb_region), b.take(rgb_region)], to_rgb.conv.weight, s.rgb[0], s.rgb[1],
                                   bias=to_rgb.bias.view(3)).float()
            skip_src = rgb_region.map(rgb_upsample_needs)
            skip = upsample_fir(rgb_prev.take(skip_src), to_rgb.upsample.kernel.float())
            skip = Crop(skip, Region(Interval(2 * skip_src.rows.lo, 2 * skip_src.rows.hi),
                                     Interval(2 * skip_src.cols.lo, 2 * skip_src.cols.hi)))
            rgb.add_(skip.take(rgb_region))
            zero_outside(rgb, rgb_region, r)  # the next upsampling pads the image with zeros
            a_prev, b_prev, rgb_prev = a, b, Crop(rgb, rgb_region)
            r *= 2
        return rgb_prev.tensor

    # ---------------------------------------------------------------- driver
    def run(self) -> torch.Tensor:
        """``(B, 3, S, S)`` float32, the generator output."""
        model = self.model
        features = self.encode_whole_levels()
        styles = model.decoder_styles(model.latent(features[4]))
        state: DecoderState = model.decode_start(features.pop(4), styles)
        r = 8
        while r <= self.r0:
            state = model.decode_level(self.level_of[r], state, features.pop(r), styles, consume_feature=True)
            r *= 2
        whole = Region.whole(self.r0)
        a0, b0 = state.release()
        low = (Crop(a0, whole), Crop(b0, whole), Crop(state.rgb, whole))
        if not self.recompute:
            full = {r: Crop(f, Region.whole(r)) for r, f in features.items()}
        features.clear()
        batch = self.image.shape[0]
        out = torch.zeros((batch, 3, self.size, self.size), dtype=torch.float32, device=self.image.device)
        blend = self.overlap if self.overlap is not None else 0
        weight_sum = torch.zeros((self.size, self.size), device=self.image.device) if blend else None
        grid = tile_grid(self.size, self.tile)
        total, done = len(grid) ** 2, 0
        for rows in grid:
            for cols in grid:
                core = Region(rows, cols)
                region = core.grow(blend).clip(Region.whole(self.size))
                plan = plan_tile(region, self.size, self.r0, self.overlap)
                enc = self.encode_crops(dict(plan.u)) if self.recompute else full
                tile = self._decode_tile(plan, low, enc, styles)
                del enc
                view = out[:, :, region.rows.lo : region.rows.hi, region.cols.lo : region.cols.hi]
                if weight_sum is None:
                    view.copy_(tile)
                else:
                    w = feather(region.rows, rows, self.size, blend)[:, None] * feather(
                        region.cols, cols, self.size, blend
                    )[None, :]
                    w = w.to(out.device)
                    view.add_(tile * w)
                    weight_sum[region.rows.lo : region.rows.hi, region.cols.lo : region.cols.hi] += w
                done += 1
                if self.progress is not None:
                    self.progress(done, total)
        if weight_sum is not None:
            out.div_(weight_sum)
        return out
