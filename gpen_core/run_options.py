"""How GPEN runs: tile size, halo overlap, recompute, memory budget and batch, checked once.

Built by the nodes and the command line from their inputs, with one meaning per value
(:data:`AUTO_TILE`, :data:`EXACT_OVERLAP`); the core functions take it as it is.
"""
from __future__ import annotations

from dataclasses import dataclass

from .arch.tiled import MIN_TILE
from .checks import check_flag, check_range
from .runtime.strategy import TileSize

__all__ = ["AUTO_TILE", "EXACT_OVERLAP", "RunOptions"]

AUTO_TILE = 0
"""``tile_size`` meaning: chosen from the free memory (the core's ``"auto"``)."""
EXACT_OVERLAP = -1
"""``overlap`` meaning: exact halos (the core's ``overlap=None``)."""


@dataclass(frozen=True)
class RunOptions:
    """How GPEN runs (see :func:`gpen_core.enhance.enhance_images` and :meth:`gpen_core.GPEN.forward`).

    Attributes:
        tile_size: :data:`AUTO_TILE` (0): chosen from the free memory; ``None``: the whole image,
            untiled; else a decoder tile side of at least :data:`gpen_core.arch.tiled.MIN_TILE` pixels.
        overlap: :data:`EXACT_OVERLAP` (-1): exact halos; ``N >= 0``: halos cut to ``N`` pixels per
            level and tiles blended (cheaper, inexact near tile edges); needs tiling or recompute.
        recompute: recompute encoder features per tile (peak memory follows the tile size).
        memory_budget: bytes for activations under automatic tiling and face batches (None: the
            device's free memory).
        batch_size: images (faces) per forward; None: automatic (one on the CPU, where each face is a
            progress and cancel point; on a GPU as many as fit the budget).

    Raises:
        ValueError: a value outside its range (NaN, negative, zero where meaningless, a tile under
            the minimum), or an overlap without tiling.
    """

    tile_size: int | None = AUTO_TILE
    overlap: int = EXACT_OVERLAP
    recompute: bool = False
    memory_budget: int | None = None
    batch_size: int | None = None

    def __post_init__(self) -> None:
        if self.tile_size is not None:
            check_range(self.tile_size, 0, None, "tile_size (0: automatic)", integer=True)
            if 0 < self.tile_size < MIN_TILE:
                raise ValueError(f"tile_size must be 0 (automatic), None (whole image) or at least {MIN_TILE} "
                                 f"pixels; got {self.tile_size}")
        check_range(self.overlap, EXACT_OVERLAP, None, "overlap (-1: exact)", integer=True)
        check_flag(self.recompute, "recompute")
        if self.overlap != EXACT_OVERLAP and self.tile_size is None and not self.recompute:
            raise ValueError("overlap cuts the halos of tiles: give a tile_size (0: automatic) or recompute too, "
                             "or leave overlap at -1 (exact)")
        if self.memory_budget is not None:
            check_range(self.memory_budget, 1, None, "memory_budget (bytes)", integer=True)
        if self.batch_size is not None:
            check_range(self.batch_size, 1, None, "batch_size (None: automatic)", integer=True)

    @property
    def core_tile_size(self) -> TileSize:
        """``tile_size`` as :func:`gpen_core.enhance.enhance_images` takes it (``"auto"``, None or pixels)."""
        return "auto" if self.tile_size == AUTO_TILE else self.tile_size

    @property
    def core_overlap(self) -> int | None:
        """``overlap`` as :meth:`gpen_core.GPEN.forward` takes it (None: exact)."""
        return None if self.overlap == EXACT_OVERLAP else self.overlap
