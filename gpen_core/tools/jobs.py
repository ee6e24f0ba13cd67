"""The work for one job of a batch (read, restore, write, report), shared by every runner.

The local command line (:mod:`gpen_core.tools.enhance_cmd`) and any other runner call :func:`run_job`
with the same typed settings (:class:`JobSettings`) and a runtime loaded once per process
(:func:`load_runtime` from a picklable :class:`RuntimeSpec`), so behaviour cannot drift between them.
A job never raises for its own file (the reason is in the :class:`JobResult`); an interrupt does.
"""
from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..arch.generator import GPEN
from ..face.masks import mask_mode
from ..face.options import RestoreOptions
from ..face.pipeline import FaceNetworks
from ..face.stats import RestoreStats
from ..images.files import MAX_FRAMES, MAX_PIXELS, ImageReadError
from ..run_options import RunOptions
from ..runtime.report import ProcessPeak
from ..video.source import VideoReadError
from .batch import Job, is_disk_full

__all__ = ["JobResult", "JobSettings", "Runtime", "RuntimeSpec", "job_label", "load_runtime", "run_job"]

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class RuntimeSpec:
    """What a worker loads (plain values: it can be sent to another process).

    Attributes:
        model: the GPEN checkpoint file.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:1`` ...
        precision, input_range, compile: as :func:`gpen_core.loading.load_model`.
        detector: a detector name or weights path; None for aligned crops (no detection, no paste).
        detector_dirs: folders searched for detector weights.
        mask: the paste-mask mode (a parser is loaded when the mode uses one).
        parser_where: a ParseNet file or folders to search for one.
        parser_precision: what the parser computes in (:data:`gpen_core.face.parsing.PARSER_PRECISIONS`).
    """

    model: str
    device: str = "auto"
    precision: str = "auto"
    input_range: str = "[-1,1]"
    compile: str = "off"
    detector: str | None = "auto"
    detector_dirs: tuple[str, ...] = ()
    mask: str = "auto"
    parser_where: str | tuple[str, ...] = ()
    parser_precision: str = "model"


@dataclass
class Runtime:
    """The loaded networks of a worker.

    Attributes:
        model: the GPEN generator.
        networks: detector (and parser) for whole photos; None for aligned crops.
        detector_name: the detector's name (for the summary line).
    """

    model: GPEN
    networks: FaceNetworks | None
    detector_name: str = ""

    @property
    def device(self) -> torch.device:
        return self.model.device


def load_runtime(spec: RuntimeSpec) -> Runtime:
    """Load the networks of ``spec`` (model, then detector and parser for whole photos).

    Raises:
        FileNotFoundError, CheckpointError, DetectorWeightsNotFoundError, ValueError: with the file named.
    """
    from ..face.detection import loader
    from ..face.parsing import load_parser_for_mask, resolve_parser_dtype
    from ..runtime.precision import resolve_device

    device = resolve_device(spec.device)
    networks = None
    detector = None
    if spec.detector is not None:
        detector = loader.load_detector(spec.detector, list(spec.detector_dirs), device=device)
    from .. import loading

    model = loading.load_model(spec.model, device=device, precision=spec.precision, input_range=spec.input_range,
                               compile=spec.compile)
    if detector is not None:
        where = spec.parser_where if isinstance(spec.parser_where, str) else list(spec.parser_where)
        dtype = resolve_parser_dtype(spec.parser_precision, model.dtype, model.device)
        parser = load_parser_for_mask(spec.mask, where, device=model.device, dtype=dtype)
        networks = FaceNetworks(model, detector, parser)
    return Runtime(model, networks, "" if detector is None else detector.name)


@dataclass(frozen=True)
class JobSettings:
    """The typed options every job of a batch runs with.

    Attributes:
        restore: detection, tracking, paste and run options of whole photos (ignored for aligned crops).
        aligned: the inputs are aligned face crops: GPEN alone (``restore.run`` sets tiles and overlap).
        keep_size: aligned crops: write at the input size, not the model size.
        max_pixels: the largest frame read (:data:`gpen_core.images.files.MAX_PIXELS`), checked from the
            file's header before decoding.
        max_frames: the most frames read from one clip (checked from its header, and while decoding).

    Whole photos also write their paste mask when the job plans one (``--save-mask``: ``job.mask``).
    """

    restore: RestoreOptions = field(default_factory=RestoreOptions)
    aligned: bool = False
    keep_size: bool = False
    max_pixels: int = MAX_PIXELS
    max_frames: int = MAX_FRAMES

    @property
    def run(self) -> RunOptions:
        return self.restore.run


@dataclass
class JobResult:
    """What became of one job.

    Attributes:
        label: the input as shown to the user (with the frame of an animation).
        written: the files written.
        faces: faces restored (None for aligned crops or when it failed).
        error: why it failed, one line without the file name (None: done).
        disk_full: the failure means no later write can succeed.
        summary: the photo's summary line (faces, stages, peak memory), when it was restored.
        traceback: the traceback of an unexpected error, for ``--debug``.
    """

    label: str
    written: list[str] = field(default_factory=list)
    faces: int | None = None
    error: str | None = None
    disk_full: bool = False
    summary: str | None = None
    traceback: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def job_label(job: Job) -> str:
    return str(job.source) if job.frame is None else f"{job.source} (frame {job.frame + 1})"


def run_job(job: Job, settings: JobSettings, runtime: Runtime, *, progress: Progress | None = None,
            stats: RestoreStats | None = None) -> JobResult:
    """Read one image (or clip), restore it, write its outputs atomically; never raises for the file itself.

    A clip (``job.video``) goes through :func:`gpen_core.video.restore_video` (streamed; tracking as
    ``settings.restore.track`` says); a clip whose stream breaks off is written up to there and reported as
    failed, saying so.

    Args:
        job: the input (and frame) and its planned output files.
        settings: the batch's options.
        runtime: the loaded networks (:func:`load_runtime`).
        progress: ``progress(done, total)`` of the pipeline (a cancel point: an exception from it propagates).
        stats: the photo's live figures (read by a progress display); a new one when None.

    Returns:
        A :class:`JobResult`; ``KeyboardInterrupt`` and ``SystemExit`` propagate.
    """
    from .. import enhance
    from ..images.files import read_image, write_image
    from ..images.tensors import split_alpha

    result = JobResult(job_label(job))
    stats = stats if stats is not None else RestoreStats()
    peak = ProcessPeak(runtime.device)
    peak.start()
    io_seconds = 0.0
    try:
        if job.video:  # a clip: decoded, restored and encoded as a stream
            return _run_clip(job, settings, runtime, result, progress, stats, peak)
        started = time.perf_counter()
        image = read_image(job.source, frame=job.frame, max_pixels=settings.max_pixels)
        io_seconds += time.perf_counter() - started
        with torch.inference_mode():
            if runtime.networks is None:
                run = settings.run
                out = enhance.enhance_images(runtime.model, image[None], keep_size=settings.keep_size,
                                             tile_size=run.core_tile_size, overlap=run.core_overlap,
                                             recompute=run.recompute, progress=progress)[0]
                mask = None
            else:
                from ..face.pipeline import restore_faces

                rgb, alpha = split_alpha(image[None])
                restored = restore_faces(runtime.networks, rgb, settings.restore, keep_crops=False,
                                         progress=progress, stats=stats)
                out = restored.images[0] if alpha is None else torch.cat([restored.images[0], alpha[0]])
                mask = restored.masks[0]
                result.faces = len(restored.faces)
        started = time.perf_counter()
        write_image(job.target, out)
        result.written.append(str(job.target))
        if job.mask is not None and mask is not None:  # planned and checked with the job's other output
            write_image(job.mask, mask[None].expand(3, -1, -1))
            result.written.append(str(job.mask))
        io_seconds += time.perf_counter() - started
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as err:  # noqa: BLE001 -- one bad file never loses the batch: it is listed at the end
        result.error = failure_reason(err, job.source)
        result.disk_full = is_disk_full(err)
        if result.error.endswith("(an unexpected error: run with --debug for the traceback)"):
            result.traceback = traceback.format_exc()
        return result
    if runtime.networks is not None:
        result.summary = _summary(settings, runtime, stats, {"read/write": io_seconds}, peak)
    return result


def _summary(settings: JobSettings, runtime: Runtime, stats: RestoreStats, extra: dict[str, float] | None,
             peak: ProcessPeak) -> str:
    assert runtime.networks is not None
    used = mask_mode(settings.restore.paste.mask).parser != "never" and runtime.networks.parser is not None
    return stats.summary(runtime.detector_name, "parse" if used else "box", extra, peak.describe())


def _run_clip(job: Job, settings: JobSettings, runtime: Runtime, result: JobResult, progress: Progress | None,
              stats: RestoreStats, peak: ProcessPeak) -> JobResult:
    """Restore a clip into ``job.target`` (decoding and encoding are timed within the detect and paste stages).

    Raises:
        VideoReadError, ValueError, OSError: the clip cannot be read or written (nothing is left behind).
    """
    from ..video import restore_video

    if runtime.networks is None:
        raise ValueError("a video needs the face detector: --aligned takes face crops")
    clip = restore_video(runtime.networks, job.source, job.target, settings.restore, progress=progress, stats=stats,
                         max_pixels=settings.max_pixels, max_frames=settings.max_frames)
    result.written.append(str(job.target))
    result.faces = stats.faces_restored
    if clip.problem is not None:
        result.error = (f"{clip.problem}; the {clip.frames} frame(s) before it were restored and written to "
                        f"{job.target}")
    result.summary = f"{clip.describe()}; {_summary(settings, runtime, stats, None, peak)}"
    return result


def failure_reason(err: BaseException, source: Path) -> str:
    """One line saying why a file failed, without repeating the file name."""
    text = str(err).splitlines()[0] if str(err) else ""
    text = text.removeprefix(f"{source}: ")
    if isinstance(err, OSError) and not isinstance(err, (ImageReadError, VideoReadError)):
        where = f" ({err.filename})" if err.filename else ""
        return f"cannot write the output{where}: {err.strerror or text}"
    if isinstance(err, (ImageReadError, VideoReadError, ValueError, MemoryError, FloatingPointError)):
        return text or type(err).__name__
    return f"{type(err).__name__}: {text} (an unexpected error: run with --debug for the traceback)"
