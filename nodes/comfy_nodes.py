"""ComfyUI v3 nodes: Load GPEN Model, GPEN Enhance, GPEN VRAM Report, GPEN Benchmark."""
from __future__ import annotations

import os
import weakref
from dataclasses import replace

import comfy.model_management as mm
import comfy.model_patcher
import numpy as np
import torch
from comfy_api.latest import io, ui

from ..gpen_core.loading import load_model
from ..gpen_core.run_options import AUTO_TILE, EXACT_OVERLAP
from ..gpen_core.runtime.report import RunRecord, memory_report
from ..gpen_core.tools.bench import HEADER, bench_size, format_row
from ..gpen_core.tools.bench_plot import plot_rows
from .glue import GPENModel, devices_for, interruptible_progress, load_for_run
from .logic import (
    BENCH_PRECISIONS,
    BENCH_SIZES,
    DEVICES,
    INPUT_RANGE_OPTIONS,
    NODE_MIN_TILE,
    OUTPUT_SIZES,
    PRECISION_OPTIONS,
    enhance_comfy_images,
    measure_wanted,
    node_run_options,
)
from .model_folders import DOWNLOAD_MARK, gpen_files, gpen_path, is_known_gpen_name

__all__ = ["GPENBenchmark", "GPENEnhance", "GPENModel", "GPENVRAMReport", "LoadGPENModel", "interruptible_progress"]

DEFAULT_MODEL = "GPEN-BFR-512.pth"


class GPENHolder(torch.nn.Module):
    """What ComfyUI's ModelPatcher manages: the generator plus the ``device`` attribute it sets."""

    def __init__(self, gpen: torch.nn.Module, device: torch.device) -> None:
        super().__init__()
        self.gpen = gpen
        self.device = device


_loaded: weakref.WeakValueDictionary[tuple, comfy.model_patcher.ModelPatcher] = weakref.WeakValueDictionary()
"""Loaded models by (file, its mtime and size, options): reused while some graph holds them, never pinned."""


def _default_model(files: list[str]) -> str | None:
    """GPEN-BFR-512.pth when on disk; else None (ComfyUI shows the first file) when any file is on disk, so
    adding the node never starts a download by itself; else GPEN-BFR-512.pth marked for download."""
    if DEFAULT_MODEL in files:
        return DEFAULT_MODEL
    if any(not name.endswith(DOWNLOAD_MARK) for name in files):
        return None
    return DEFAULT_MODEL + DOWNLOAD_MARK if DEFAULT_MODEL + DOWNLOAD_MARK in files else None


class LastRun:
    """The last measured GPEN run of this ComfyUI process: kept by GPEN Enhance, shown by GPEN VRAM Report."""

    record: RunRecord | None = None

    @classmethod
    def keep(cls, record: RunRecord | None) -> None:
        """Keep ``record``; None (nothing was measured) keeps the one before."""
        if record is not None:
            cls.record = record


class LoadGPENModel(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        files = gpen_files()
        return io.Schema(
            node_id="GPENModelLoader",
            display_name="Load GPEN Model",
            category="GPEN",
            description="Load a GPEN generator (.pth/.pt/.safetensors) from models/gpen (or a GPEN-named file in "
                        "models/facerestore_models); size and width are read from the weights.",
            inputs=[
                io.Combo.Input("model_name", options=files, default=_default_model(files),
                               tooltip="a file of models/gpen (or a GPEN-named one of models/facerestore_models): "
                                       "official GPEN-BFR-256/512/1024/2048 (or colorization/inpainting/Seg2face) "
                                       "weights; names marked (download) are fetched into models/gpen and verified "
                                       "on first run (GPEN_NO_DOWNLOAD=1 turns downloads off)"),
                io.Combo.Input("precision", options=list(PRECISION_OPTIONS), default="auto",
                               tooltip="auto: bf16 on GPUs that support it, fp16 on other recent GPUs, fp32 on CPU; "
                                       "NaN in half precision is detected and, under auto, retried in a safer "
                                       "precision"),
                io.Combo.Input("device", options=list(DEVICES), default="auto",
                               tooltip="auto: ComfyUI's device, with the model moved off it when other models need "
                                       "the memory; cpu: always on the CPU; cuda: the GPU"),
                io.Combo.Input("input_range", options=list(INPUT_RANGE_OPTIONS), default="[-1,1]",
                               tooltip="[0,1] only for the Seg2face model"),
            ],
            outputs=[GPENModel.Output(display_name="gpen_model",
                                      tooltip="the generator, for GPEN Enhance, GPEN Face Restore and Detect & Align")],
        )

    @classmethod
    def validate_inputs(cls, model_name: str) -> bool | str:
        """Accept an official name with or without the download mark (ComfyUI then skips its list check)."""
        if is_known_gpen_name(model_name):
            return True
        return f"GPEN model {model_name!r} is neither in models/gpen nor an official name (refresh the page?)"

    @classmethod
    def execute(cls, model_name: str, precision: str, device: str, input_range: str) -> io.NodeOutput:
        path = gpen_path(model_name)
        stat = os.stat(path)
        key = (os.path.realpath(path), stat.st_mtime_ns, stat.st_size, precision, device, input_range)
        patcher = _loaded.get(key)
        if patcher is None:
            load_device, offload_device = devices_for(device)
            gpen = load_model(path, device=offload_device, precision=precision, input_range=input_range,
                              compute_device=load_device)
            patcher = comfy.model_patcher.ModelPatcher(
                GPENHolder(gpen, offload_device), load_device=load_device, offload_device=offload_device
            )
            _loaded[key] = patcher
        return io.NodeOutput(patcher)


class GPENEnhance(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="GPENEnhance",
            display_name="GPEN Enhance",
            category="GPEN",
            description="Restore aligned face crops with GPEN (any size: resized to the model size). For whole "
                        "photos use GPEN Face Restore.",
            inputs=[
                io.Image.Input("image", tooltip="face crops, roughly aligned (e.g. from GPEN Detect & Align "
                                                 "Faces), any size: each is resized to the model size"),
                GPENModel.Input("gpen_model", tooltip="from Load GPEN Model"),
                io.Int.Input("tile_size", default=AUTO_TILE, min=AUTO_TILE, max=2048, step=16,
                             tooltip=f"decoder tile size in pixels: 0 = automatic from free memory, else at least "
                                     f"{NODE_MIN_TILE}. Tiles are computed inside the network, so the result equals "
                                     "the untiled one"),
                io.Int.Input("overlap", default=EXACT_OVERLAP, min=EXACT_OVERLAP, max=64,
                             tooltip="-1 = exact halos (default). 0..64 = cut halos to this many pixels and blend "
                                     "tiles: a little faster, not exact at tile edges"),
                io.Boolean.Input("recompute", default=False,
                                 tooltip="recompute encoder features per tile: peak memory follows the tile size"),
                io.Combo.Input("output_size", options=list(OUTPUT_SIZES), default="model size",
                               tooltip="model size: the model's square output (e.g. 512x512); input size: resized "
                                       "back to each input's size"),
                io.Int.Input("batch_size", default=1, min=1, max=64, tooltip="images per forward pass"),
            ],
            outputs=[io.Image.Output(display_name="image", tooltip="the restored crops, one per input image")],
            hidden=[io.Hidden.prompt],
        )

    @classmethod
    def execute(cls, image, gpen_model, tile_size, overlap, recompute, output_size, batch_size) -> io.NodeOutput:
        gpen = gpen_model.model.gpen
        run = node_run_options(tile_size, overlap, recompute, batch_size)  # checked before the model moves
        budget = load_for_run(gpen_model, run, min(batch_size, image.shape[0]))
        out = enhance_comfy_images(
            gpen, image, replace(run, memory_budget=budget), output_size=output_size,
            progress=interruptible_progress(image.shape[0]),
            on_record=LastRun.keep if measure_wanted(cls.hidden.prompt, gpen.device) else None,
        )
        return io.NodeOutput(out.to(mm.intermediate_device()))


class GPENVRAMReport(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="GPENVRAMReport",
            display_name="GPEN VRAM Report",
            category="GPEN",
            description="Memory of the device (NVML), PyTorch's allocator, and the last GPEN run. Connect anything "
                        "to 'passthrough' to run it after that node.",
            is_output_node=True,
            not_idempotent=True,
            inputs=[io.AnyType.Input("passthrough", optional=True,
                                     tooltip="any output: the report runs after the node that makes it")],
            outputs=[io.AnyType.Output(display_name="passthrough", tooltip="the passthrough input, unchanged"),
                     io.String.Output(display_name="report", tooltip="the report text, also shown on the node")],
        )

    @classmethod
    def execute(cls, passthrough=None) -> io.NodeOutput:
        text = memory_report(mm.get_torch_device(), last=LastRun.record).format()
        return io.NodeOutput(passthrough, text, ui=ui.PreviewText(text))


class GPENBenchmark(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="GPENBenchmark",
            display_name="GPEN Benchmark",
            category="GPEN",
            description="Time, peak memory and error of each strategy (plain, tiled, recompute) with seeded "
                        "weights of the official layout: no weights file needed.",
            is_output_node=True,
            not_idempotent=True,
            inputs=[
                io.Combo.Input("size", options=list(BENCH_SIZES), default="512",
                               tooltip="the official GPEN-BFR layout to time, with seeded weights"),
                io.Combo.Input("precisions", options=list(BENCH_PRECISIONS), default="fp32+bf16",
                               tooltip="one precision, or fp32 (the reference for the error column) plus a half "
                                       "precision"),
                io.Int.Input("tile_size", default=256, min=NODE_MIN_TILE, max=2048, step=16,
                             tooltip="tile size of the tiled rows"),
                io.Int.Input("repeat", default=1, min=1, max=10, tooltip="timed runs per row (the fastest counts)"),
                io.Boolean.Input("backward", default=False, tooltip="also time forward+backward with checkpointing"),
            ],
            outputs=[io.String.Output(display_name="table", tooltip="one row per strategy and precision"),
                     io.Image.Output(display_name="plot", tooltip="bar charts of each row's peak memory and time")],
        )

    @classmethod
    def execute(cls, size, precisions, tile_size, repeat, backward) -> io.NodeOutput:
        device = mm.get_torch_device()
        mm.unload_all_models()

        def stop_if_cancelled(_row: str) -> None:
            mm.throw_exception_if_processing_interrupted()

        rows = bench_size(int(size), precisions.split("+"), tile_size, device, repeat, backward=backward,
                          log=stop_if_cancelled)
        text = "\n".join([f"GPEN benchmark on {device}"] + [HEADER] + [format_row(r) for r in rows])
        plot = torch.from_numpy(np.asarray(plot_rows(rows), dtype=np.float32) / 255.0)[None]
        return io.NodeOutput(text, plot, ui=ui.PreviewText(text))
