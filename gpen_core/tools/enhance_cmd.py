"""``gpen enhance``: restore the faces of photos and video clips (or aligned crops) in a folder, carefully.

Every option, input and the output folder are checked before any model loads (the typed options'
constructors hold the rules; their messages are given the command line's flag names); every
readable file is processed by :func:`gpen_core.tools.jobs.run_job`; failures are listed at the end.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from ..arch.config import INPUT_RANGES
from ..arch.graphs import COMPILE_MODES
from ..arch.tiled import MIN_TILE
from ..checks import check_range
from ..face.detection.catalog import DETECTOR_NAMES
from ..face.detection.selection import FACE_ORDERS, ORDER_ALIASES, FaceSelection
from ..face.finish import COLOR_SPACES
from ..face.masks import MASK_MODE_NAMES, MASK_MODES
from ..face.options import (
    DEFAULT_BRIDGE_FRAMES,
    DEFAULT_MIN_TRACK_FRAMES,
    DEFAULT_SCENE_CUT,
    DEFAULT_SHORT_TRACK_SCORE,
    MAX_SMOOTHING,
    DetectOptions,
    PasteOptions,
    RestoreOptions,
    TrackOptions,
)
from ..face.parsing.precision import PARSER_PRECISIONS
from ..face.stats import RestoreStats
from ..images.files import BYTES_PER_PIXEL_READ, MAX_FRAMES, MAX_PIXELS
from ..official_files import official_names
from ..run_options import AUTO_TILE, EXACT_OVERLAP, RunOptions
from ..runtime.precision import PRECISIONS
from ..video.source import VIDEO_SUFFIXES
from ..zoo.locate import (
    MODELS_DIR_ENV,
    fetch_detector_weights,
    fetch_parser_weights,
    models_dirs,
    resolve_weights,
    search_folders,
)
from .arguments import check_checkpoint_path, check_device
from .batch import Failures, Job, OutputFolder, UsageError, collect_inputs, plan_jobs, select_jobs
from .batch_report import DISK_FULL, BatchReport
from .download_cmd import TqdmProgress
from .jobs import JobSettings, Runtime, RuntimeSpec, load_runtime, run_job
from .ray_options import add_ray_arguments, ray_options

__all__ = ["add_enhance_parser", "cmd_enhance", "enhance_settings", "parse_tile_size", "runtime_spec"]

AUTO_TILE_NAME = "auto"
WHOLE_IMAGE = ("none", "whole")
WHOLE_PHOTO_OPTIONS = ("detector", "detector_dir", "fidelity", "selection", "faces", "max_faces", "min_face_size",
                       "max_face_size", "score_threshold", "mask", "parser", "parser_precision", "no_keep_hair",
                       "no_keep_neck", "no_smooth_small_faces", "no_keep_grey", "color_match", "save_mask", "smoothing",
                       "bridge_frames", "min_track_frames", "short_track_score", "scene_cut")
"""Options of whole-photo restoration, refused with ``--aligned`` (they would do nothing)."""
FLAGS = {
    "score_threshold": "--score-threshold", "min_face_size": "--min-face-size", "max_face_size": "--max-face-size",
    "max_faces": "--max-faces", "fidelity": "--fidelity", "overlap": "--overlap", "tile_size": "--tile-size",
    "landmark_smoothing": "--smoothing", "bridge_frames": "--bridge-frames", "min_track_frames": "--min-track-frames",
    "short_track_score": "--short-track-score", "scene_cut": "--scene-cut",
}
"""Field names of the typed options -> the flags that set them (for the messages)."""
TRACK_FIELDS = ("smoothing", "bridge_frames", "min_track_frames", "short_track_score", "scene_cut")
""":class:`TrackOptions` fields set by the flags of the same names (clips: frames in sequence)."""


def parse_tile_size(text: str) -> int | None:
    """``--tile-size``: ``auto`` or 0 -> :data:`AUTO_TILE`; ``none``/``whole`` -> None (whole image); N >= 16 -> N."""
    value = text.strip().lower()
    if value in (AUTO_TILE_NAME, "0"):
        return AUTO_TILE
    if value in WHOLE_IMAGE:
        return None
    try:
        size = int(value)
    except ValueError:
        size = -1
    if size < MIN_TILE:
        raise UsageError(
            f"--tile-size must be auto (or 0: chosen from free memory), none (whole image) or a size in pixels "
            f">= {MIN_TILE}; got {text!r}"
        )
    return size


def _flagged(error: ValueError) -> UsageError:
    """An options error as a usage error, its field names given as the flags that set them."""
    text = str(error)
    for name, flag in FLAGS.items():
        text = re.sub(rf"(?<![\w-]){name}\b", flag, text)
    return UsageError(text)


def enhance_settings(args: argparse.Namespace) -> JobSettings:
    """Every ``enhance`` option checked and typed (one meaning per value, as in the nodes)."""
    if args.aligned:
        given = [f"--{name.replace('_', '-')}" for name in WHOLE_PHOTO_OPTIONS if getattr(args, name) not in (None, [])]
        if given:
            raise UsageError(f"{', '.join(given)}: only for whole photos; drop them or drop --aligned")
    elif args.keep_size:
        raise UsageError("--keep-size only applies to --aligned crops (whole photos keep their size)")
    if any(sep in args.suffix for sep in ("/", "\\", os.sep)):
        raise UsageError(f"--suffix {args.suffix!r}: a file-name part without folder separators, e.g. _gpen")
    try:
        run = RunOptions(tile_size=parse_tile_size(args.tile_size), overlap=args.overlap, recompute=args.recompute)
        paste = PasteOptions(mask=args.mask or "auto", keep_hair=not args.no_keep_hair,
                             keep_neck=not args.no_keep_neck, smooth_small_faces=not args.no_smooth_small_faces,
                             keep_grey=not args.no_keep_grey, color_match=args.color_match or "off",
                             fidelity=1.0 if args.fidelity is None else args.fidelity,
                             parser_precision=args.parser_precision or PARSER_PRECISIONS[0])
        track = TrackOptions(**{name: getattr(args, name) for name in TRACK_FIELDS if getattr(args, name) is not None})
    except ValueError as error:
        raise _flagged(error) from None
    try:
        selection = FaceSelection(args.selection or "score", args.faces, args.min_face_size or 0.0,
                                  args.max_face_size or 0.0, args.max_faces or 0)
    except ValueError as error:
        raise UsageError(f"face selection: {_flagged(error)}") from None
    try:
        detect = DetectOptions(args.score_threshold or 0.0, selection)
    except ValueError as error:
        raise _flagged(error) from None
    check_range(args.max_pixels, 1, None, "--max-pixels", integer=True)
    check_range(args.max_frames, 1, None, "--max-frames", integer=True)
    restore = RestoreOptions(detect=detect, track=track, paste=paste, run=run)
    return JobSettings(restore, aligned=args.aligned, keep_size=args.keep_size, max_pixels=args.max_pixels,
                       max_frames=args.max_frames)


def runtime_spec(args: argparse.Namespace) -> RuntimeSpec:
    """What the workers load, every file on disk: ``--model`` as a path, a file of the models folders or an
    official name (downloaded when missing); the detector's and the parser's files likewise (``auto`` fetches
    RetinaFace ResNet-50 and ParseNet when none is there; ``GPEN_NO_DOWNLOAD=1`` turns downloads off). The
    parser is ``--parser``, else looked for in the detector folders and the folder of the model.

    Raises:
        UsageError: no such model file or name; DownloadError: a download failed.
    """
    models = tuple(args.models_dir or ())
    if Path(args.model).is_dir():
        check_checkpoint_path(args.model)  # raises: a folder, naming the checkpoints in it
    try:
        model_path = resolve_weights(args.model, "gpen", models, progress=TqdmProgress(f"--model {args.model}"))
    except (FileNotFoundError, ValueError) as err:
        raise UsageError(f"--model {args.model}: {err}") from None
    if args.aligned:
        return RuntimeSpec(model=str(model_path), device=args.device, precision=args.precision,
                           input_range=args.input_range, compile=args.compile, detector=None)
    detector = args.detector or "auto"
    detector_dirs = (*(args.detector_dir or ()), *map(str, search_folders("facedetection", models_dirs(models))))
    fetch_detector_weights(detector, detector_dirs, progress=TqdmProgress("face detector"))
    mask = args.mask or MASK_MODE_NAMES[0]
    parser_where: str | tuple[str, ...] = args.parser or (*detector_dirs, str(model_path.parent))
    if not (args.parser and Path(args.parser).is_file()):
        fetch_parser_weights(mask, list(parser_where) if isinstance(parser_where, tuple) else [parser_where],
                             progress=TqdmProgress("face parser"))
    return RuntimeSpec(
        model=str(model_path), device=args.device, precision=args.precision, input_range=args.input_range,
        compile=args.compile, detector=detector, detector_dirs=detector_dirs, mask=mask, parser_where=parser_where,
        parser_precision=args.parser_precision or PARSER_PRECISIONS[0],
    )


def cmd_enhance(args: argparse.Namespace) -> int:
    settings = enhance_settings(args)
    ray = ray_options(args)  # None: this process runs the jobs
    if ray is None:  # with --ray the workers resolve the device on their own nodes
        check_device(args.device)
    files, ignored = collect_inputs(args.inputs)
    out_dir = Path(args.output)
    failures = Failures()
    jobs = plan_jobs(files, out_dir, args.suffix, failures, save_mask=bool(args.save_mask),
                     max_pixels=args.max_pixels, max_frames=args.max_frames, videos=not args.aligned)
    jobs, skipped = select_jobs(jobs, files, force=args.force, skip_existing=args.skip_existing)
    if ignored:
        names = ", ".join(p.name for p in ignored[:8]) + (" ..." if len(ignored) > 8 else "")
        print(f"note: ignored {len(ignored)} file(s) without an image or video suffix: {names}", file=sys.stderr)
    if skipped:
        print(f"skipping {skipped} image(s) or clip(s) whose output exists (--skip-existing)", file=sys.stderr)
    if not jobs:
        if failures:
            print(failures.report(), file=sys.stderr)
            return 1
        print(f"nothing to do: every output exists in {out_dir}", file=sys.stderr)
        return 0
    folder = OutputFolder(out_dir)
    folder.prepare()
    written: list[Job] = []
    try:
        spec = runtime_spec(args)
        if ray is None:
            written = run_local(jobs, settings, load_runtime(spec), failures, debug=args.debug)
        else:
            from .ray_runner import run_ray

            written = run_ray(jobs, settings, spec, failures, ray, debug=args.debug)
    finally:
        if not written:
            folder.remove_if_empty()
    clips = sum(job.video for job in written)
    print(f"wrote {len(written) - clips} image(s)" + (f" and {clips} video(s)" if clips else "") + f" to {out_dir}",
          file=sys.stderr)
    if failures:
        print(failures.report(), file=sys.stderr)
        if skipped or written:
            print("rerun with --skip-existing to retry only these", file=sys.stderr)
        return 1
    return 0


def run_local(jobs: list[Job], settings: JobSettings, runtime: Runtime, failures: Failures, *,
              debug: bool = False) -> list[Job]:
    """Run every job in this process; a failing file is recorded and the next one runs. Returns the jobs
    done (their outputs written)."""
    report = BatchReport(jobs, failures, debug=debug)
    try:
        for index, job in enumerate(jobs):
            stats = RestoreStats()
            report.start(index, stats)
            if report.record(index, run_job(job, settings, runtime, progress=report.line.update, stats=stats)):
                report.fail_unrecorded(DISK_FULL)
                break
    finally:
        report.end_line()
    return report.finish()


def add_enhance_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """The ``enhance`` subcommand; its option lists are the core's constants."""
    p = sub.add_parser("enhance", parents=[common],
                       help="restore the faces of photos and video clips (or of aligned crops with --aligned)",
                       description="Images are written as PNG: <stem><suffix>.png, and <stem>_f0001<suffix>.png ... "
                                   "for every frame of animations / multi-page files (GIF, APNG, WebP, TIFF). Video "
                                   f"clips ({', '.join(VIDEO_SUFFIXES)}) are written as <stem><suffix>.mp4 (H.264, "
                                   "the source's frame times and audio), their faces followed over the frames.")
    p.add_argument("inputs", nargs="+", help="image or video files, or folders")
    p.add_argument("--aligned", action="store_true", help="inputs are aligned face crops: no detection, no paste-back")
    p.add_argument("--detector", default=None,
                   help=f"auto (default), {', '.join(DETECTOR_NAMES)}, or a weights file/folder")
    p.add_argument("--detector-dir", action="append", default=None,
                   help="folder with detector weights (repeatable), e.g. ComfyUI/models/facedetection")
    p.add_argument("--fidelity", type=float, default=None,
                   help="1 (default): restored faces (the official paste), 0: the input exactly; mixed in image space")
    p.add_argument("--mask", choices=MASK_MODE_NAMES, default=None,
                   help="paste mask: " + "; ".join(f"{m.name}: {m.help}" for m in MASK_MODES.values())
                   + f" (default {MASK_MODE_NAMES[0]})")
    p.add_argument("--parser", default=None,
                   help="ParseNet-latest.pth / parsing_parsenet.pth, or a folder with one (default: the "
                        "--detector-dir folders and the folder of --model)")
    p.add_argument("--parser-precision", choices=PARSER_PRECISIONS, default=None,
                   help="parse mask: what ParseNet computes in: model (default: the generator's; bf16 for an fp16 "
                        "generator on the CPU), fp32 (the official network bit for bit), bf16 (about 3x faster on a "
                        "CPU with AVX512-BF16; moves ~0.04%% of the mask's pixels), fp16 (GPUs)")
    p.add_argument("--no-keep-hair", action="store_true", default=None, help="parse mask: keep the original hair")
    p.add_argument("--no-keep-neck", action="store_true", default=None,
                   help="parse mask: keep the original neck (as facexlib)")
    p.add_argument("--no-smooth-small-faces", action="store_true", default=None,
                   help="skip the official 3x3 smoothing of faces whose box is under 100 px")
    p.add_argument("--no-keep-grey", action="store_true", default=None,
                   help="paste GPEN's colours into grey photos too")
    p.add_argument("--color-match", choices=COLOR_SPACES, default=None,
                   help="match the restored face's colour mean and spread inside the mask to the original's")
    p.add_argument("--save-mask", action="store_true", default=None,
                   help="also write the paste mask as <stem><suffix>_mask.png")
    p.add_argument("--selection", choices=[*FACE_ORDERS, *ORDER_ALIASES], default=None,
                   help="face order (default: score; all = score)")
    p.add_argument("--faces", default=None, help='indices in that order, e.g. "0", "0,2", "1-3" (default: all)')
    p.add_argument("--max-faces", type=int, default=None, help="at most this many faces per image; 0: no limit")
    p.add_argument("--min-face-size", type=float, default=None,
                   help="ignore faces whose box side max(w, h) is smaller (px); 0: no bound")
    p.add_argument("--max-face-size", type=float, default=None,
                   help="ignore faces whose box side max(w, h) is larger (px); 0: no bound")
    p.add_argument("--score-threshold", type=float, default=None, help="detector confidence; 0: the detector's default")
    p.add_argument("--smoothing", type=float, default=None,
                   help=f"clips: landmark smoothing along each face's track, 0 (default: off) to {MAX_SMOOTHING}; "
                        "higher = steadier but slower to follow motion")
    p.add_argument("--bridge-frames", type=int, default=None,
                   help=f"clips: a face missed for up to N frames is restored there too, its landmarks interpolated "
                        f"(default {DEFAULT_BRIDGE_FRAMES}; 0: off)")
    p.add_argument("--min-track-frames", type=int, default=None,
                   help=f"clips: a face found in fewer frames than N (default {DEFAULT_MIN_TRACK_FRAMES}; 1: off) "
                        "scoring under --short-track-score is a false detection and is not restored")
    p.add_argument("--short-track-score", type=float, default=None,
                   help=f"clips: the score that keeps a short track (default {DEFAULT_SHORT_TRACK_SCORE})")
    p.add_argument("--scene-cut", type=float, default=None,
                   help=f"clips: a frame differing from the previous by more than this (mean of a thumbnail, 0..1; "
                        f"default {DEFAULT_SCENE_CUT}; 0: off) is a scene cut: faces are not followed across it")
    p.add_argument("--model", required=True,
                   help="GPEN checkpoint (.pth/.pt/.safetensors), a file of the models folders, or an official name "
                        f"({', '.join(official_names('gpen'))}: downloaded into the models folder when missing)")
    p.add_argument("--models-dir", action="append", default=None,
                   help="a ComfyUI models folder (holding gpen/ and facedetection/; repeatable); also "
                        f"{MODELS_DIR_ENV} "
                        "and, when the pack sits in ComfyUI/custom_nodes, that ComfyUI's models folder")
    p.add_argument("-o", "--output", required=True, help="output folder (created if missing)")
    p.add_argument("--keep-size", action="store_true", help="--aligned: write at the input size, not the model size")
    p.add_argument("--precision", choices=PRECISIONS, default="auto")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--compile", choices=COMPILE_MODES, default=COMPILE_MODES[0],
                   help="cuda_graphs: replay a captured CUDA graph per face-batch shape (CUDA only)")
    p.add_argument("--input-range", choices=tuple(INPUT_RANGES), default=next(iter(INPUT_RANGES)),
                   help="[0,1] for Seg2face")
    p.add_argument("--tile-size", default=AUTO_TILE_NAME,
                   help="decoder tile size: auto or 0 (default: from free memory), none (whole image), "
                        f"or N >= {MIN_TILE}")
    p.add_argument("--overlap", type=int, default=EXACT_OVERLAP,
                   help=f"{EXACT_OVERLAP} (default): exact halos; N >= 0: cut halos (needs tiles or --recompute)")
    p.add_argument("--recompute", action="store_true", help="recompute encoder features to save memory")
    p.add_argument("--suffix", default="", help="appended to output file stems, e.g. _gpen")
    p.add_argument("--max-pixels", type=int, default=MAX_PIXELS,
                   help=f"largest frame read, in pixels (default {MAX_PIXELS:,}); larger files are listed as failed "
                        f"before anything is decoded; a frame takes about {BYTES_PER_PIXEL_READ} bytes of memory "
                        "per pixel")
    p.add_argument("--max-frames", type=int, default=MAX_FRAMES,
                   help=f"most frames read from one animation / multi-page file or clip (default {MAX_FRAMES:,})")
    existing = p.add_mutually_exclusive_group()
    existing.add_argument("--force", action="store_true", help="overwrite existing outputs (never an input file)")
    existing.add_argument("--skip-existing", action="store_true",
                          help="only process images and clips whose output is missing (resume an interrupted run)")
    add_ray_arguments(p)
    p.set_defaults(func=cmd_enhance)

