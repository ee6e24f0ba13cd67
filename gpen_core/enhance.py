"""Whole-image enhancement: resize to the model, run GPEN in batches with the memory strategy,
check inputs and outputs for NaN/inf, map back; optionally measure the run."""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from typing import Literal, NamedTuple, overload

import torch

from .arch.generator import GPEN
from .arch.tiled import effective_tile
from .checks import image_as_float
from .images.tensors import from_network, resize, split_alpha, to_network
from .loading import safer_copy
from .runtime.memory import PeakMeter
from .runtime.precision import NAMES, NonFiniteOutputError, check_finite, check_finite_input, safer_dtype
from .runtime.report import RunRecord
from .runtime.strategy import Strategy, TileSize, plan_strategy, run_with_ladder

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
"""``progress(done, total)`` in steps (tiles); may raise to interrupt."""

__all__ = ["CheckedRun", "Enhanced", "Progress", "TileSize", "enhance_images", "run_checked"]


class CheckedRun:
    """Calls a GPEN with NaN/inf checks; under precision ``auto``, a non-finite output is retried in
    the next safer precision (fp16 -> bf16 -> fp32) by a *new* model built from the weights in memory
    (:func:`gpen_core.loading.safer_copy`), kept for the rest of this run.

    The model given is never changed, so other callers sharing it (other nodes, other threads)
    are unaffected; a non-finite *input* is rejected before the model runs.

    Attributes:
        model: the model the next call uses (the given one, or its safer copy after a fallback).
        dtypes: the dtypes used so far, first the given model's.
    """

    def __init__(self, model: GPEN) -> None:
        self.model = model
        self.dtypes = [model.dtype]

    @property
    def precision(self) -> str:
        """The dtypes used, e.g. ``"bf16"`` or ``"fp16 -> bf16"``."""
        return " -> ".join(NAMES.get(d, str(d)) for d in self.dtypes)

    def __call__(self, batch: torch.Tensor, **forward_options) -> torch.Tensor:
        """``model(batch, **forward_options)``, checked.

        Args:
            batch: ``(B, 3, S, S)`` in the model's value range, finite.

        Raises:
            ValueError: ``batch`` holds NaN/inf (the model is not run).
            NonFiniteOutputError: NaN/inf in the output with an explicit precision, or in every
                dtype tried under ``auto``.
        """
        check_finite_input(batch, "the GPEN input batch")
        while True:
            out = self.model(batch, **forward_options)
            try:
                check_finite(out, self.model.dtype)
                return out
            except NonFiniteOutputError:
                fallback = safer_dtype(self.model.dtype, self.model.device) if self.model.precision == "auto" else None
                if fallback is None:
                    raise
                log.warning(
                    "GPEN output had NaN/inf in %s; retrying this run with a %s copy of the model",
                    NAMES[self.model.dtype], NAMES[fallback],
                )
                del out
                self.model = safer_copy(self.model, fallback)
                self.dtypes.append(fallback)


def run_checked(model: GPEN, batch: torch.Tensor, **forward_options) -> torch.Tensor:
    """One checked forward (see :class:`CheckedRun`); ``model`` itself is never changed."""
    return CheckedRun(model)(batch, **forward_options)


def tiles_per_image(size: int, strategy: Strategy) -> int:
    if strategy.tile_size is None and not strategy.recompute:
        return 1
    return math.ceil(size / effective_tile(strategy.tile_size, size)) ** 2


class Enhanced(NamedTuple):
    """What ``enhance_images(..., measure=True)`` returns."""

    images: torch.Tensor
    record: RunRecord


@dataclass
class _BatchProgress:
    """Tile progress of one batch as overall ``progress(done, total)`` steps."""

    progress: Progress | None
    index: int
    n_batches: int
    steps: int = 1

    def __call__(self, done: int, _total: int) -> None:
        if self.progress is not None:
            self.progress(self.index * self.steps + done, self.n_batches * self.steps)


def _forward(runner: CheckedRun, chunk: torch.Tensor, overlap: int | None, tracker: _BatchProgress,
             strategy: Strategy) -> torch.Tensor:
    tracker.steps = tiles_per_image(chunk.shape[-1], strategy)
    tiled = strategy.tile_size is not None or strategy.recompute
    # An untiled forward is exact: a halo limit has no tile edge to apply to (``"auto"`` may choose it).
    return runner(chunk, tile_size=strategy.tile_size, overlap=overlap if tiled else None,
                  recompute=strategy.recompute, progress=tracker)


@overload
def enhance_images(
    model: GPEN, images: torch.Tensor, *, keep_size: bool = ..., batch_size: int = ..., tile_size: TileSize = ...,
    overlap: int | None = ..., recompute: bool = ..., memory_budget: int | None = ...,
    progress: Progress | None = ..., measure: Literal[False] = ...,
) -> torch.Tensor: ...
@overload
def enhance_images(
    model: GPEN, images: torch.Tensor, *, keep_size: bool = ..., batch_size: int = ..., tile_size: TileSize = ...,
    overlap: int | None = ..., recompute: bool = ..., memory_budget: int | None = ...,
    progress: Progress | None = ..., measure: Literal[True],
) -> Enhanced: ...
@overload
def enhance_images(
    model: GPEN, images: torch.Tensor, *, keep_size: bool = ..., batch_size: int = ..., tile_size: TileSize = ...,
    overlap: int | None = ..., recompute: bool = ..., memory_budget: int | None = ...,
    progress: Progress | None = ..., measure: bool,
) -> torch.Tensor | Enhanced: ...
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
    measure: bool = False,
) -> torch.Tensor | Enhanced:
    """Enhance whole images (already-cropped, aligned faces) of any size.

    Args:
        model: a loaded :class:`GPEN`; never changed (see :class:`CheckedRun`).
        images: ``(B, C, H, W)``, B >= 1, float in [0, 1] (finite) or uint8, C in 1..4 (grey, grey+alpha,
            RGB, RGBA), any device.
        keep_size: resize the result back to ``H x W``; else it is ``S x S`` (the model size).
        batch_size: images per forward pass.
        tile_size: see :data:`gpen_core.runtime.strategy.TileSize` (None whole image, ``"auto"``/0 automatic).
        overlap, recompute: see :meth:`GPEN.forward`; with ``tile_size="auto"`` recompute is chosen too.
        memory_budget: bytes for activations under ``"auto"`` (default: free memory of the device).
        progress: see :data:`Progress`.
        measure: also measure the peak memory of the forwards (:class:`gpen_core.runtime.memory.PeakMeter`:
            allocator statistics on CUDA/XPU, cheap; live-tensor counting elsewhere, which slows CPU
            runs) and return an :class:`Enhanced` with a :class:`RunRecord`.

    Returns:
        ``(B, 3 or 4, H', W')`` float in [0, 1] on the images' device; alpha, if any, is resized
        and kept; grey input comes back as RGB. With ``measure=True``: ``Enhanced(images, record)``.

    Raises:
        ValueError, TypeError: bad shape, dtype or values (NaN/inf, outside [0, 1], empty) in ``images``,
            or a bad ``tile_size``; nothing is run.
        GPENOutOfMemoryError: even the leanest strategy ran out of memory.
        NonFiniteOutputError: see :class:`CheckedRun`.
    """
    started = time.perf_counter()
    if overlap is not None and tile_size is None and not recompute:
        raise ValueError("overlap only applies to a tiled forward; give tile_size (or 0/'auto') too")
    images = image_as_float(images, "images")  # finite, in [0, 1] (uint8: / 255): checked before anything runs
    rgb, alpha = split_alpha(images)
    s = model.config.size
    device = model.device
    out_h, out_w = (images.shape[-2], images.shape[-1]) if keep_size else (s, s)
    batch_size = max(1, batch_size)
    total = images.shape[0]
    strategy = plan_strategy(model, max(1, min(batch_size, total)), tile_size, recompute, memory_budget)
    log.info("GPEN strategy: %s", strategy.describe())
    n_batches = math.ceil(total / batch_size)
    runner = CheckedRun(model)
    results = []
    peak, method = 0, ""
    for index, start in enumerate(range(0, total, batch_size)):
        chunk = to_network(resize(rgb[start : start + batch_size].to(device), s, s), model.config.input_range)
        meter = PeakMeter(device) if measure else None
        with meter if meter is not None else nullcontext():
            tracker = _BatchProgress(progress, index, n_batches)
            ladder = run_with_ladder(partial(_forward, runner, chunk, overlap, tracker), strategy, s)
        if meter is not None:
            peak, method = max(peak, meter.peak_bytes), meter.method
        strategy = ladder.tried[-1]  # later batches start from what worked
        if progress is not None and tiles_per_image(s, strategy) == 1:
            progress(index + 1, n_batches)
        out = resize(from_network(ladder.output, model.config.input_range), out_h, out_w)
        results.append(out.to(images.device))
    result = torch.cat(results)
    if alpha is not None:
        result = torch.cat([result, resize(alpha.float(), out_h, out_w).to(result.device)], dim=1)
    if not measure:
        return result
    if not method:  # no batch ran
        method = PeakMeter(device).method
    record = RunRecord(str(device), peak, method, time.perf_counter() - started, strategy.describe(), runner.precision)
    return Enhanced(result, record)
