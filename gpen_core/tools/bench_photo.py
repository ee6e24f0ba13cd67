"""Whole-photo benchmark: a photo's faces through the pipeline, stage by stage, for each paste mask.

Seeded weights in the official layouts (GPEN and ParseNet: no file needed), a real detector, one table:
per mask, the faces, the seconds of each stage (:data:`gpen_core.face.stats.STAGES`), the wall and
CPU time, and the process's peak memory (RSS, reset per run where Linux allows it); then the same faces
through GPEN alone (the floor a photo's restoration cannot go under) and, with ``--official``, the
official code's per-face forwards side by side. With ``measure``, each run also counts live tensors
(slower) and shows the restore phase's peak next to GPEN's own.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..arch.seeded import seeded_state_dict
from ..enhance import enhance_images
from ..face.detection.loader import load_detector
from ..face.detection.selection import FaceSelection
from ..face.options import DetectOptions, PasteOptions, RestoreOptions
from ..face.parsing import FaceParser, load_parser, resolve_parser_dtype, seeded_parsenet_state_dict
from ..face.pipeline import FaceNetworks, restore_faces
from ..face.stats import STAGES, RestoreStats
from ..images.files import read_image
from ..images.tensors import split_alpha
from ..loading import load_model
from ..runtime.memory import MiB
from ..runtime.report import ProcessPeak
from .bench import official_config

__all__ = ["DEFAULT_PHOTO", "PhotoRow", "format_photo_row", "photo_header", "run_photo_bench"]

DEFAULT_PHOTO = Path(__file__).resolve().parents[2] / "example_inputs" / "solvay-1927.png"
"""The group photo shipped with the pack (29 faces, 1328x568)."""


@dataclass
class PhotoRow:
    """One run of the benchmark (a mask mode, or GPEN alone)."""

    label: str
    faces: int
    stages: dict[str, float]
    wall: float
    cpu: float
    peak: str
    restore_peak: int | None = None
    gpen_peak: int | None = None


def photo_header() -> str:
    stages = " ".join(f"{name:>8}" for name in STAGES)
    return f"{'run':<12} {'faces':>5} {stages} {'wall s':>8} {'cpu s':>8}  peak"


def format_photo_row(row: PhotoRow) -> str:
    stages = " ".join(f"{row.stages.get(name, 0.0):8.2f}" if name in row.stages else f"{'':>8}" for name in STAGES)
    peak = row.peak
    if row.restore_peak is not None and row.gpen_peak is not None:
        peak += f"; restore phase {row.restore_peak / MiB:.0f} MiB of live tensors (GPEN {row.gpen_peak / MiB:.0f})"
    return f"{row.label:<12} {row.faces:>5} {stages} {row.wall:8.2f} {row.cpu:8.2f}  {peak}"


def run_photo_bench(
    photo: str | Path,
    *,
    size: int = 512,
    precision: str = "fp32",
    device: torch.device,
    detector: str = "auto",
    detector_dirs: tuple[str, ...] = (),
    masks: tuple[str, ...] = ("box", "parse"),
    max_faces: int = 0,
    measure: bool = False,
    log: Callable[[str], None] = print,
) -> list[PhotoRow]:
    """Restore ``photo`` once per mask and print the table (see the module docstring); returns its rows."""
    image = read_image(photo)
    rgb, _ = split_alpha(image[None])
    model = load_model(seeded_state_dict(official_config(size), 1), device=device, precision=precision)
    parser_dtype = resolve_parser_dtype(PasteOptions().parser_precision, model.dtype, model.device)
    parser = FaceParser(load_parser(seeded_parsenet_state_dict(), device=model.device, dtype=parser_dtype))
    found = load_detector(detector, list(detector_dirs), device=device)
    log(f"whole photo: {Path(photo).name} ({rgb.shape[-1]}x{rgb.shape[-2]}), GPEN-{size} {precision} and ParseNet "
        f"(seeded), detector {found.name}, {device}" + (f", {torch.get_num_threads()} threads" if device.type == "cpu"
                                                          else ""))
    log(photo_header())
    rows: list[PhotoRow] = []
    crops = None
    for mask in masks:
        options = RestoreOptions(DetectOptions(selection=FaceSelection(max_faces=max_faces)), paste=PasteOptions(mask))
        stats = RestoreStats(measure=measure)
        peak = ProcessPeak(device)
        peak.start()
        wall, cpu = time.perf_counter(), time.process_time()
        with torch.inference_mode():
            result = restore_faces(FaceNetworks(model, found, parser), rgb, options, keep_crops=crops is None,
                                   stats=stats)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if crops is None:
            crops = result.crops
        record = stats.record
        rows.append(PhotoRow(mask, stats.faces_restored, dict(stats.seconds), wall, cpu, peak.describe(),
                             stats.phase_peaks.get("restore"), None if record is None else record.peak_bytes))
        log(format_photo_row(rows[-1]))
    if crops is not None and len(crops):
        peak = ProcessPeak(device)
        peak.start()
        wall, cpu = time.perf_counter(), time.process_time()
        with torch.inference_mode():
            enhance_images(model, crops, batch_size=1)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        rows.append(PhotoRow("GPEN only", len(crops), {"restore": wall}, wall, cpu, peak.describe()))
        log(format_photo_row(rows[-1]))
        for row in rows[:-1]:
            log(f"{row.label}: {row.cpu / cpu:.2f}x the CPU time of GPEN alone on the same faces")
    return rows
