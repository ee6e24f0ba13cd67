"""Node logic without ComfyUI: the widgets' option lists (read from the core), image layout, option
mapping, and the enhance / restore calls."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..gpen_core.arch.config import INPUT_RANGES, OFFICIAL_CONFIGS
from ..gpen_core.arch.generator import GPEN
from ..gpen_core.enhance import Enhanced, enhance_images
from ..gpen_core.face.detection.catalog import DETECTOR_NAMES
from ..gpen_core.face.detection.selection import FACE_ORDERS, ORDER_ALIASES
from ..gpen_core.run_options import AUTO_TILE, EXACT_OVERLAP, RunOptions
from ..gpen_core.runtime.memory import allocator_module
from ..gpen_core.runtime.precision import DTYPES, PRECISIONS
from ..gpen_core.runtime.report import RunRecord

# ----------------------------------------------------------------------------- widget option lists
# Every list is the core's own constant (or built from it), so nodes, command line and core accept the same values.
PRECISION_OPTIONS: tuple[str, ...] = PRECISIONS
INPUT_RANGE_OPTIONS: tuple[str, ...] = tuple(INPUT_RANGES)
DEVICES = ("auto", "cpu", "cuda")
"""Load GPEN Model's ``device``: ``auto`` = ComfyUI's device (offloaded by its model management)."""
DETECTOR_OPTIONS: tuple[str, ...] = ("auto", *DETECTOR_NAMES)
"""``auto`` = the first detector whose weights are found (order: :data:`gpen_core.face.detection.DETECTORS`)."""
DETECTOR_DEVICES = ("auto", "cpu")
SELECTION_OPTIONS: tuple[str, ...] = (*FACE_ORDERS, *ORDER_ALIASES)
"""Face orders, then the old names saved workflows still use (``all`` = ``score``)."""
BENCH_SIZES: tuple[str, ...] = tuple(str(size) for size in OFFICIAL_CONFIGS)
BENCH_PRECISIONS: tuple[str, ...] = (*DTYPES, *(f"fp32+{name}" for name in DTYPES if name != "fp32"))
"""One precision, or fp32 (the error reference) plus a half precision."""
OUTPUT_SIZES = ("model size", "input size")

NODE_MIN_TILE = 64
"""Smallest tile a node accepts (0 = automatic aside). Smaller tiles are exact but slow: a 256 forward in
16-pixel tiles takes about a minute on a CPU (issue 8); the core's own floor stays ``MIN_TILE``."""


REPORT_NODE = "GPENVRAMReport"
"""The node that shows the last measured run."""


def measure_wanted(prompt: dict[str, Any] | None, device: torch.device) -> bool:
    """Whether a GPEN run should measure its peak memory for GPEN VRAM Report.

    Measuring is cheap where the allocator keeps statistics (CUDA, XPU), so it is always on there.
    Elsewhere (the CPU) it counts live tensors, which slows the run, so it is on only when the
    API-format ``prompt`` holds a GPEN VRAM Report node, or when the prompt is unknown (``None``).
    """
    if allocator_module(device) is not None or prompt is None:
        return True
    return any(isinstance(node, dict) and node.get("class_type") == REPORT_NODE for node in prompt.values())


def comfy_to_bchw(images: torch.Tensor) -> torch.Tensor:
    """ComfyUI IMAGE ``(B, H, W, C)`` float [0, 1] -> ``(B, C, H, W)``; a single ``(H, W, C)`` gets a batch axis."""
    if images.dim() == 3:
        images = images[None]
    if images.dim() != 4 or images.shape[-1] not in (1, 2, 3, 4):
        raise ValueError(f"expected an IMAGE of shape (B, H, W, C) with C in 1..4; got {tuple(images.shape)}")
    return images.movedim(-1, 1)


def bchw_to_comfy(images: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` -> ComfyUI IMAGE ``(B, H, W, C)`` float32 on the CPU, contiguous."""
    return images.movedim(1, -1).float().cpu().contiguous()


def check_node_tile_size(tile_size: int) -> None:
    """What the nodes accept: 0 (automatic) or at least :data:`NODE_MIN_TILE`; checked before a model loads.

    The core accepts smaller tiles (same result, minutes per image); a node refuses them and says what to use.
    """
    if tile_size != AUTO_TILE and tile_size < NODE_MIN_TILE:
        raise ValueError(
            f"tile_size must be 0 (automatic) or at least {NODE_MIN_TILE} pixels; got {tile_size}. Smaller tiles "
            "give the same result far more slowly: use 0 to let the free memory decide"
        )


def node_run_options(tile_size: int, overlap: int = EXACT_OVERLAP, recompute: bool = False,
                     batch_size: int | None = None) -> RunOptions:
    """A node's GPEN widgets as the core's :class:`RunOptions`, checked (the core's rules, then the nodes' tile
    rule, :func:`check_node_tile_size`) before any model loads or downloads."""
    run = RunOptions(tile_size, overlap, recompute, batch_size=batch_size)
    check_node_tile_size(tile_size)
    return run


def enhance_comfy_images(
    model: GPEN,
    images: torch.Tensor,
    run: RunOptions | None = None,
    *,
    output_size: str = "model size",
    progress: Callable[[int, int], None] | None = None,
    on_record: Callable[[RunRecord], None] | None = None,
) -> torch.Tensor:
    """GPEN Enhance: ComfyUI IMAGE in, ComfyUI IMAGE out (3 channels, 4 when the input had alpha).

    ``run``: tiles, overlap, recompute, memory budget and images per forward (``batch_size`` None: 1).
    ``on_record``: when given, the run is measured and its :class:`RunRecord` is handed to it.
    """
    run = run or RunOptions()
    if output_size not in OUTPUT_SIZES:
        raise ValueError(f"output_size must be one of {OUTPUT_SIZES}; got {output_size!r}")
    with torch.inference_mode():
        out = enhance_images(
            model,
            comfy_to_bchw(images),
            keep_size=output_size == "input size",
            batch_size=run.batch_size or 1,
            memory_budget=run.memory_budget,
            progress=progress,
            measure=on_record is not None,
            tile_size=run.core_tile_size,
            overlap=run.core_overlap,
            recompute=run.recompute,
        )
    if isinstance(out, Enhanced):
        if on_record is not None:
            on_record(out.record)
        out = out.images
    return bchw_to_comfy(out)
