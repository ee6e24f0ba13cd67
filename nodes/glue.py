"""What every node module shares (imports ComfyUI): socket types, the device option, ComfyUI's progress
bar with its cancel point (for runs and for weight downloads), and making room for a GPEN run.

The option lists themselves live in :mod:`.logic` (no ComfyUI there), read from the core.
"""
from __future__ import annotations

from collections.abc import Callable

import comfy.model_management as mm
import comfy.utils
import torch
from comfy_api.latest import io

from ..gpen_core.run_options import AUTO_TILE, RunOptions
from ..gpen_core.runtime.strategy import memory_needed

GPENModel = io.Custom("GPEN_MODEL")
"""A ComfyUI ``ModelPatcher`` whose ``model.gpen`` is the generator (see ``comfy_nodes.GPENHolder``)."""
FaceDetector = io.Custom("GPEN_FACE_DETECTOR")
"""A :class:`gpen_core.face.detection.FaceDetector`."""


def interruptible_progress(total: int) -> Callable[[int, int], None]:
    """A ``progress(done, total)`` callback for the core: ComfyUI's progress bar, and the point where a
    cancelled prompt stops (``throw_exception_if_processing_interrupted``)."""
    bar = comfy.utils.ProgressBar(total)

    def progress(done: int, steps: int) -> None:
        mm.throw_exception_if_processing_interrupted()
        bar.update_absolute(done, steps)

    return progress


def download_progress() -> Callable[[int, int | None], None]:
    """A ``progress(done_bytes, total_bytes)`` callback for a weights download: ComfyUI's progress bar
    (updated once per percent) and the cancel point (a cancelled download keeps its ``.part`` and resumes)."""
    bar: comfy.utils.ProgressBar | None = None
    shown = -1

    def progress(done: int, total: int | None) -> None:
        nonlocal bar, shown
        mm.throw_exception_if_processing_interrupted()
        steps = total or max(done, 1)
        if bar is None:
            bar = comfy.utils.ProgressBar(steps)
        percent = done * 100 // steps
        if percent != shown:
            shown = percent
            bar.update_absolute(done, steps)

    return progress


def devices_for(choice: str) -> tuple[torch.device, torch.device]:
    """(load device, offload device) for a loader's ``device`` option (see ``logic.DEVICES``)."""
    if choice == "cpu":
        return torch.device("cpu"), torch.device("cpu")
    load = mm.get_torch_device()
    if choice == "cuda" and load.type != "cuda":
        raise RuntimeError("device 'cuda' was chosen but ComfyUI runs without a CUDA device (started with --cpu?)")
    return load, mm.unet_offload_device()


def load_for_run(gpen_model, run: RunOptions, batch: int = 1, needed: int | None = None) -> int | None:
    """Make room for a GPEN run and load the model on its device; returns the run's memory budget.

    ComfyUI is asked to free what the core says the run will need (``needed``, e.g. a whole photo's
    :func:`gpen_core.face.pipeline.restore_memory_bytes`; by default :func:`memory_needed`: the strategy
    that will run, for ``batch`` images), then moves the model. The budget is the free memory of the
    model's device when the tile size is automatic, the figure the core chooses its tiles from;
    ``None`` for a fixed tile size.

    Args:
        gpen_model: the ``GPEN_MODEL`` (a ComfyUI ``ModelPatcher``).
        run: the node's checked run options (:func:`.logic.node_run_options`).
        batch: images per forward pass (>= 1).
        needed: bytes to make room for, when the caller knows better than GPEN's own estimate.
    """
    gpen = gpen_model.model.gpen
    if needed is None:
        needed = memory_needed(gpen, max(1, batch), run.core_tile_size, run.recompute,
                               budget_bytes=free_bytes(gpen_model))
    mm.load_models_gpu([gpen_model], memory_required=needed)
    return mm.get_free_memory(gpen.device) if run.tile_size == AUTO_TILE else None


def free_bytes(gpen_model) -> int:
    """Free memory of the device the model will run on (ComfyUI's figure)."""
    return int(mm.get_free_memory(gpen_model.load_device))
