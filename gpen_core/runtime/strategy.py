"""Choosing tile size and recompute from the memory available, and the out-of-memory ladder."""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..arch.config import GPENConfig
from ..arch.generator import GPEN
from ..arch.tiled import MIN_TILE, effective_tile, whole_levels_below
from .memory import allocator_module

log = logging.getLogger(__name__)

TILE_SIZES = (1024, 512, 256, 128, 64)
"""Tile sizes the automatic strategy and the out-of-memory ladder try, largest first."""
FLOOR_TILE = 64
"""The smallest tile the ladder goes down to before giving up."""
TILE_HALO = 12
"""Pixels a tile grows by at the top level (exact receptive field plus rounding), for estimates."""


@dataclass(frozen=True)
class Strategy:
    """How to run one forward: ``tile_size`` None means the whole image."""

    tile_size: int | None = None
    recompute: bool = False

    def describe(self) -> str:
        tiles = "whole image" if self.tile_size is None else f"tiles of {self.tile_size}"
        return tiles + (" + recompute" if self.recompute else "")


class GPENOutOfMemoryError(MemoryError):
    """Every rung of the out-of-memory ladder failed; the message lists what was tried."""


def estimate_peak_bytes(config: GPENConfig, dtype: torch.dtype, batch: int, strategy: Strategy) -> int:
    """An upper estimate of the activation memory of one forward (weights excluded).

    Models what is alive together at each decoder level: the encoder features still to be
    used, the previous level's two halves, and the level's transient buffers (transposed
    conv output, blurred output, the two halves, the conv output); for tiles, the same on
    the tile plus halo, added to the whole low-resolution levels. Checked against measured
    peaks in the tests.
    """
    e = torch.empty((), dtype=dtype).element_size()
    s = config.size
    out = batch * 3 * s * s * 4

    def fmap(r: int, side: int) -> int:  # elements of one feature map at resolution r
        return config.channels(r) * side * side

    def working(r: int, side: int) -> int:  # transients of decoder level r on side x side
        below = 2 * fmap(r // 2, side // 2 + TILE_HALO // 2) if r > 4 else 0
        return max(below + 3 * fmap(r, side), 4 * fmap(r, side))

    def decoder_peak(levels: list[int], kept_above: Callable[[int], int]) -> int:
        return max(kept_above(r) + working(r, r) + 3 * 4 // e * r * r for r in levels)

    levels = config.resolutions
    if strategy.tile_size is None and not strategy.recompute:
        kept = lambda r: sum(fmap(q, q) for q in levels if q >= r)  # noqa: E731
        return int(1.2 * batch * e * decoder_peak(levels, kept)) + out
    tile = effective_tile(strategy.tile_size, s)
    r0 = whole_levels_below(tile, s)
    low = [r for r in levels if r <= r0]
    high_features = 0 if strategy.recompute else sum(fmap(r, r) for r in levels if r > r0)
    whole = decoder_peak(low, lambda r: sum(fmap(q, q) for q in low if q >= r) + high_features)
    state = 2 * fmap(r0, r0)
    side = tile + TILE_HALO
    tiles = max(working(r, side * r // s + TILE_HALO) for r in levels if r > r0)
    encoder = 2 * fmap(s, side + 2 * TILE_HALO) if strategy.recompute else 0
    return int(1.2 * batch * e * max(whole, state + high_features + tiles + encoder)) + out


def candidate_strategies(size: int) -> list[Strategy]:
    """From fastest to leanest: whole, then tiles from large to small, each without then with recompute."""
    out = [Strategy(None, False)]
    for tile in TILE_SIZES:
        if tile < size:
            out += [Strategy(tile, False), Strategy(tile, True)]
    out.append(Strategy(floor_tile(size), True))
    return list(dict.fromkeys(out))


def choose_strategy(model: GPEN, batch: int, budget_bytes: int, *, margin: float = 0.8) -> Strategy:
    """The fastest strategy whose estimate fits in ``margin * budget_bytes`` (else the leanest)."""
    candidates = candidate_strategies(model.config.size)
    for strategy in candidates:
        if estimate_peak_bytes(model.config, model.dtype, batch, strategy) <= margin * budget_bytes:
            return strategy
    return candidates[-1]


TileSize = int | None | str
"""``tile_size`` of the enhance functions: None = whole image; ``"auto"`` (or 0) = chosen from the free
memory; an int >= :data:`gpen_core.arch.tiled.MIN_TILE` = that tile."""


def is_auto(tile_size: TileSize) -> bool:
    """Whether ``tile_size`` asks for the automatic choice (``"auto"`` or 0)."""
    return tile_size == "auto" or (isinstance(tile_size, int) and not isinstance(tile_size, bool) and tile_size == 0)


def plan_strategy(
    model: GPEN, batch: int, tile_size: TileSize, recompute: bool = False, budget_bytes: int | None = None
) -> Strategy:
    """The strategy a run starts with: the one asked for, or under ``"auto"`` the fastest that fits.

    Args:
        model: the GPEN that will run (its size and dtype count).
        batch: images per forward.
        tile_size: see :data:`TileSize`.
        recompute: asked-for recompute (``"auto"`` chooses recompute itself).
        budget_bytes: memory for activations under ``"auto"``; default: the free memory of ``model.device``.

    Raises:
        ValueError: ``tile_size`` is neither None, ``"auto"``/0 nor an int >= MIN_TILE.
    """
    if is_auto(tile_size):
        budget = budget_bytes if budget_bytes is not None else free_memory_bytes(model.device)
        return choose_strategy(model, batch, budget)
    if tile_size is not None and (
        not isinstance(tile_size, int) or isinstance(tile_size, bool) or tile_size < MIN_TILE
    ):
        raise ValueError(
            f"tile_size must be None (whole image), 'auto' or 0 (automatic), or a size >= {MIN_TILE}; got {tile_size!r}"
        )
    return Strategy(tile_size, recompute)


def memory_needed(
    model: GPEN, batch: int, tile_size: TileSize, recompute: bool = False, budget_bytes: int | None = None
) -> int:
    """Estimated activation bytes (weights excluded) of the strategy a run with these options starts with.

    The one figure callers use to make room before a run (e.g. ComfyUI's ``load_models_gpu``):
    :func:`plan_strategy` then :func:`estimate_peak_bytes`, the same functions
    :func:`gpen_core.enhance.enhance_images` uses. Under ``"auto"`` pass the ``budget_bytes`` of
    the device the model will run on (before it is moved there, ``model.device`` is another one).
    """
    strategy = plan_strategy(model, batch, tile_size, recompute, budget_bytes)
    return estimate_peak_bytes(model.config, model.dtype, batch, strategy)


def free_memory_bytes(device: torch.device) -> int:
    """Free memory for activations on ``device``.

    CUDA, XPU (any ``torch.<type>`` with ``mem_get_info``): the device's free memory plus what torch
    holds in its cache, and no more than this process may still allocate under
    ``set_per_process_memory_fraction``. Else available RAM (CPU, and MPS's unified memory).
    """
    module = allocator_module(device)
    if module is None or not all(callable(getattr(module, f, None)) for f in ("mem_get_info", "memory_reserved")):
        from .report import available_ram_bytes

        return available_ram_bytes()
    free, total = module.mem_get_info(device)
    allocated = module.memory_allocated(device)
    available = free + module.memory_reserved(device) - allocated
    get_fraction = getattr(module, "get_per_process_memory_fraction", None)
    if callable(get_fraction):
        available = min(available, int(get_fraction(device) * total) - allocated)
    return max(0, int(available))


def floor_tile(size: int) -> int:
    """The smallest tile the ladder tries: :data:`FLOOR_TILE`, or half the model size if smaller."""
    return max(MIN_TILE, min(FLOOR_TILE, size // 2))


def next_rung(strategy: Strategy, size: int) -> Strategy | None:
    """The next, leaner strategy after an out-of-memory error, or None at the floor."""
    tile = strategy.tile_size or size
    floor = floor_tile(size)
    if tile > floor:
        return Strategy(max(floor, tile // 2), strategy.recompute)
    if not strategy.recompute:
        return Strategy(strategy.tile_size, True)
    return None


@dataclass
class LadderResult:
    """The output and the strategies tried (the last one succeeded)."""

    output: torch.Tensor
    tried: list[Strategy] = field(default_factory=list)


def run_with_ladder(run: Callable[[Strategy], torch.Tensor], start: Strategy, size: int) -> LadderResult:
    """Call ``run(strategy)``; on ``torch.OutOfMemoryError`` retry leaner strategies down to the floor.

    Only the error's message is kept: the error object's traceback holds the failed attempt's frames,
    and with them its activations, which must be freed (and the allocator's cache emptied) before the
    next, leaner attempt.

    Raises:
        GPENOutOfMemoryError: the floor failed too; the message lists every strategy tried.
    """
    tried: list[Strategy] = []
    strategy: Strategy | None = start
    last_message = ""
    while strategy is not None:
        tried.append(strategy)
        try:
            return LadderResult(run(strategy), tried)
        except torch.OutOfMemoryError as err:
            last_message = str(err).splitlines()[0] if str(err) else type(err).__name__
        if torch.cuda.is_available():  # the failed attempt's tensors are gone with the error
            torch.cuda.empty_cache()
        following = next_rung(strategy, size)
        if following is not None:
            log.warning("GPEN ran out of memory with %s; retrying with %s", strategy.describe(), following.describe())
        strategy = following
    attempts = ", ".join(s.describe() for s in tried)
    raise GPENOutOfMemoryError(
        f"GPEN ran out of memory with every strategy tried ({attempts}). Free memory (close other models, "
        f"lower the batch size), or use precision fp16/bf16. Last error: {last_message}"
    )
