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
from typing import TYPE_CHECKING

import torch

from .levels import DecoderState, LevelRegions, decode_level, decode_start
from .regions import (
    Crop,
    Interval,
    Region,
    encoder_downsample_needs,
    modulated_upsample_needs,
    rgb_upsample_needs,
    zero_outside,
)
from .styles import DecoderStyles

if TYPE_CHECKING:
    from .generator import GPEN

Progress = Callable[[int, int], None]
MIN_TILE = 16


@dataclass
class TileRegions:
    """Where one output tile needs values, per tiled decoder resolution ``r``.

    Attributes:
        out: the tile's output region at the model size (blend band included).
        levels: ``r -> LevelRegions``: ``u`` is ``h`` grown by 1 (a "valid" 3x3 conv),
            ``up_src`` / ``skip_src`` are what the level reads from the level below.

    The encoder feature of level ``r`` is needed over ``levels[r].u`` (both styled convs read it).
    """

    out: Region
    levels: dict[int, LevelRegions]

    def feature_needs(self) -> dict[int, Region]:
        """The encoder feature region each tiled level reads."""
        return {r: level.u for r, level in self.levels.items()}


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
    levels: dict[int, LevelRegions] = {}
    h, rgb = out, out
    r = size
    while r > r0:
        u = h.grow(1)
        up_src, skip_src = u.map(modulated_upsample_needs), rgb.map(rgb_upsample_needs)
        levels[r] = LevelRegions(up_src, u, h, rgb, skip_src)
        h_below, rgb_below = up_src.hull(skip_src), skip_src
        if overlap is not None:
            allowed = out.scaled(r // 2, size).grow(overlap)
            h_below, rgb_below = h_below.clip(allowed), rgb_below.clip(allowed)
        h, rgb = h_below, rgb_below
        r //= 2
    return TileRegions(out, levels)


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


def check_tiling(tile_size: object, overlap: object) -> None:
    """Refuse a ``tile_size`` / ``overlap`` a tiled forward cannot use, naming the argument.

    ``tile_size``: None (whole image) or an int >= :data:`MIN_TILE`; ``overlap``: None (exact
    halos) or an int >= 0.

    Raises:
        TypeError: not an int (a string such as ``"64"``, a float, a bool) nor None.
        ValueError: an int below the minimum.
    """
    if tile_size is not None:
        if isinstance(tile_size, bool) or not isinstance(tile_size, int):
            raise TypeError(f"tile_size must be an int >= {MIN_TILE} (the output tile side in pixels) or None "
                            f"(whole image); got {tile_size!r} ({type(tile_size).__name__})")
        if tile_size < MIN_TILE:
            raise ValueError(f"tile_size must be at least {MIN_TILE}, got {tile_size}")
    if overlap is not None:
        if isinstance(overlap, bool) or not isinstance(overlap, int):
            raise TypeError(f"overlap must be an int >= 0 (halo pixels, inexact) or None (exact halos); got "
                            f"{overlap!r} ({type(overlap).__name__})")
        if overlap < 0:
            raise ValueError(f"overlap must be >= 0 or None (exact), got {overlap}")


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
        check_tiling(tile_size, overlap)
        self.model, self.image = model, image
        self.size = model.config.size
        self.tile = min(tile_size, self.size)
        self.r0 = whole_levels_below(self.tile, self.size)
        self.overlap, self.recompute, self.progress = overlap, recompute, progress
        self.level_of = {4 * 2**j: j for j in range(model.num_levels + 1)}
        self.prepared = model.prepared()

    # ---------------------------------------------------------------- encoder on crops
    def _stage_index(self, r: int) -> int:
        return int(math.log2(self.size // r))

    def encode_crops(self, needs: dict[int, Region]) -> dict[int, Crop]:
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
            region = own if below is None else (below if own is None else own.hull(below))
            assert region is not None  # the lowest level is in needs
            regions[r] = need = region
            r *= 2
        crops: dict[int, Crop] = {}
        x = Crop(self.image, Region.whole(self.size))
        r = self.size
        while r >= lowest:
            index = self._stage_index(r)
            if index == 0:
                inp = x.take(regions[r]).contiguous(memory_format=torch.channels_last)
            else:
                inp = x.take(regions[r].map(encoder_downsample_needs))
            out = self.model.encode_stage(index, inp, pad=False, prepared=self.prepared)
            x = Crop(zero_outside(out, regions[r], r), regions[r])
            if r in needs:
                crops[r] = x
            r //= 2
        # Copies trimmed to what is needed, so the larger stage outputs can be freed.
        trimmed = {}
        for r, c in crops.items():
            keep = c.region == needs[r]
            trimmed[r] = c if keep else Crop(c.take(needs[r]).contiguous(memory_format=torch.channels_last), needs[r])
        return trimmed

    def encode_whole_levels(self) -> dict[int, torch.Tensor]:
        """Encoder features at resolutions ``<= r0`` (whole), the only ones kept with recompute."""
        features: dict[int, torch.Tensor] = {}
        r0 = self.r0
        if not self.recompute:
            sizes = [self.size // 2**i for i in range(self.model.num_stages)]
            # Every feature is kept whole here, so a channels-last copy of the (3-channel) image costs
            # little, and it makes the features channels-last whatever the caller's layout: the
            # result then does not depend on the input's strides (kernels differ in rounding by layout).
            image = self.image.contiguous(memory_format=torch.channels_last)
            for r, f in zip(sizes, self.model.encode(image), strict=True):
                features[r] = f
            return features
        step = max(1, (self.tile * r0) // self.size)
        shape = (self.image.shape[0], self.model.config.channels(r0), r0, r0)
        f_r0 = self.image.new_empty(shape).contiguous(memory_format=torch.channels_last)
        for rows in tile_grid(r0, step):
            for cols in tile_grid(r0, step):
                crop = self.encode_crops({r0: Region(rows, cols)})[r0].tensor
                f_r0[:, :, rows.lo : rows.hi, cols.lo : cols.hi] = crop
        features[r0] = f_r0
        x = f_r0
        r = r0 // 2
        while r >= 4:
            x = self.model.encode_stage(self._stage_index(r), x, prepared=self.prepared)
            features[r] = x
            r //= 2
        return features

    # ---------------------------------------------------------------- decoder on crops
    def _decode_tile(self, plan: TileRegions, state: DecoderState, enc: dict[int, Crop],
                     styles: DecoderStyles) -> torch.Tensor:
        r = 2 * self.r0
        while r <= self.size:
            level = self.level_of[r]
            # Recomputed crops belong to this tile: free (and overwrite) each at its level.
            feature = enc.pop(r) if self.recompute else enc[r]
            state = decode_level(self.prepared.levels[level - 1], styles.levels[level - 1], state, feature,
                                 plan.levels[r], r, consume_feature=self.recompute)
            del feature
            r *= 2
        return state.rgb.tensor

    # ---------------------------------------------------------------- driver
    def run(self) -> torch.Tensor:
        """``(B, 3, S, S)`` float32, the generator output."""
        model, prepared = self.model, self.prepared
        features = self.encode_whole_levels()
        styles = model.decoder_styles(model.latent(features[4]))
        state = decode_start(prepared.const, prepared.start_conv, prepared.start_rgb, features.pop(4), styles)
        r = 8
        while r <= self.r0:
            level = self.level_of[r]
            state = decode_level(prepared.levels[level - 1], styles.levels[level - 1], state,
                                 Crop(features.pop(r), Region.whole(r)), LevelRegions.whole(r), r, consume_feature=True)
            r *= 2
        a0, b0 = state.release()
        low = (a0, b0, state.rgb)
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
                enc = self.encode_crops(plan.feature_needs()) if self.recompute else full
                tile = self._decode_tile(plan, DecoderState(*low, owned=False), enc, styles)  # shared by the tiles
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
