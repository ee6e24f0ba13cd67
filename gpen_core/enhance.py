"""Whole-image enhancement: resize to the model, run GPEN in batches with the memory strategy,
check the output, map back, and record the run for the memory report."""
from __future__ import annotations

import logging
import math
import time
from typing import Callable, Union

import torch

from .arch.generator import GPEN
from .loading import change_dtype
from .images.tensors import from_network, resize, split_alpha, to_network
from .runtime.memory import LiveTensorPeak
from .runtime.report import RunRecord, record_run
from .runtime.precision import NAMES, NonFiniteOutputError, check_finite, safer_dtype
from .runtime.strategy import Strategy, choose_strategy, free_memory_bytes, run_with_ladder
from .arch.tiled import effective_tile

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
"""``progress(done, total)`` in steps (tiles); may raise to interrupt."""
TileSize = Union[int, None, str]
"""None: whole image; an int: that tile size; ``"auto"``: chosen from the free memory."""


def run_checked(model: GPEN, batch: torch.Tensor, **forward_options) -> torch.Tensor:
    """``model(batch)`` with a non-finite check; under precision ``auto``, retry in safer dtypes.

    Args:
        batch: ``(B, 3, S, S)`` in the model's value range.

    Raises:
        NonFiniteOutputError: NaN/inf in the output with an explicit precision, or in every
            dtype tried under ``auto``.
    """
    while True:
        out = model(batch, **forward_options)
        try:
            check_finite(out, model.dtype)
            return out
        except NonFiniteOutputError:
            fallback = safer_dtype(model.dtype, model.device) if model.precision == "auto" else None
            if fallback is None:
                raise
            log.warning(
                "GPEN output had NaN/inf in %s; switching this model to %s and retrying",
                NAMES[model.dtype], NAMES[fallback],
            )
            change_dtype(model, fallback)


def tiles_per_image(size: int, strategy: Strategy) -> int:
    if strategy.tile_size is None and not strategy.recompute:
        return 1
    return math.ceil(size / effective_tile(strategy.tile_size, size)) ** 2


def enhance_images(
    model: GPEN,
    images: torch.Tensor,
    *,
    keep_size: bool = False,
    batch_size: int = 1,
    tile_size: TileSize = None,
    overlap: int | None = None,
    recompute: bool = False,
    memory_budget: int | None = None,
    progress: Progress | None = None,
) -> torch.Tensor:
    """Enhance whole images (already-cropped, aligned faces) of any size.

    Args:
        model: a loaded :class:`GPEN`.
        images: ``(B, C, H, W)`` float in [0, 1], C in 1..4 (grey, grey+alpha, RGB, RGBA), any device.
        keep_size: resize the result back to ``H x W``; else it is ``S x S`` (the model size).
        batch_size: images per forward pass.
        tile_size: see :data:`TileSize`.
        overlap, recompute: see :meth:`GPEN.forward`; with ``tile_size="auto"`` recompute is chosen too.
        memory_budget: bytes for activations under ``"auto"`` (default: free memory of the device).
        progress: see :data:`Progress`.

    Returns:
        ``(B, 3 or 4, H', W')`` float in [0, 1] on the images' device; alpha, if any, is resized
        and kept; grey input comes back as RGB.

    Raises:
        GPENOutOfMemoryError: even the leanest strategy ran out of memory.
        NonFiniteOutputError: see :func:`run_checked`.
    """
    rgb, alpha = split_alpha(images)
    s = model.config.size
    device = model.device
    out_h, out_w = (images.shape[-2], images.shape[-1]) if keep_size else (s, s)
    batch_size = max(1, batch_size)
    total = images.shape[0]
    if tile_size == "auto":
        budget = memory_budget if memory_budget is not None else free_memory_bytes(device)
        strategy = choose_strategy(model, min(batch_size, total), budget)
        log.info("GPEN strategy for %d MiB free: %s", budget // 2**20, strategy.describe())
    else:
        strategy = Strategy(tile_size, recompute)
    n_batches = math.ceil(total / batch_size)
    results = []
    started = time.perf_counter()
    counter = LiveTensorPeak() if device.type == "cpu" else None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    for index, start in enumerate(range(0, total, batch_size)):
        chunk = to_network(resize(rgb[start : start + batch_size].to(device), s, s), model.config.input_range)

        def run(current: Strategy) -> torch.Tensor:
            steps = tiles_per_image(s, current)

            def tile_done(done: int, _total: int) -> None:
                if progress is not None:
                    progress(index * steps + done, n_batches * steps)

            return run_checked(
                model, chunk, tile_size=current.tile_size, overlap=overlap, recompute=current.recompute,
                progress=tile_done,
            )

        if counter is not None:
            with counter:
                ladder = run_with_ladder(run, strategy, s)
        else:
            ladder = run_with_ladder(run, strategy, s)
        strategy = ladder.tried[-1]  # later batches start from what worked
        if progress is not None and tiles_per_image(s, strategy) == 1:
            progress(index + 1, n_batches)
        out = resize(from_network(ladder.output, model.config.input_range), out_h, out_w)
        results.append(out.to(images.device))
    if device.type == "cuda":
        peak, method = torch.cuda.max_memory_allocated(device) - base, "torch.cuda.max_memory_allocated"
    else:
        peak, method = counter.peak_bytes, "live tensors"
    record_run(RunRecord(str(device), peak, method, time.perf_counter() - started, strategy.describe()))
    result = torch.cat(results)
    if alpha is not None:
        result = torch.cat([result, resize(alpha.float(), out_h, out_w).to(result.device)], dim=1)
    return result
