"""Command line: ``python -m gpen_core {enhance,convert,bench} ...``.

A careful batch tool: every option, input and the output folder are checked before any model
loads; every readable file is processed; failures are listed with their file and reason at the
end. Exit status: 0 all done, 1 some files failed (the others were written), 2 nothing was run
(a wrong option, path or checkpoint), 130 interrupted. Expected errors print one ``error:`` line;
``--debug`` shows tracebacks.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from pathlib import Path

import torch

from ..arch.graphs import COMPILE_MODES
from ..arch.tiled import MIN_TILE
from ..checks import check_range
from ..face.detection.selection import FACE_ORDERS, ORDER_ALIASES, FaceSelection
from ..images.files import ImageReadError, read_image, write_image
from ..runtime.precision import PRECISIONS, resolve_device
from ..weights import CheckpointError
from .batch import (
    Failures,
    Job,
    OutputFolder,
    UsageError,
    collect_inputs,
    is_disk_full,
    plan_jobs,
    select_jobs,
)
from .gpu_check import add_gpu_check_parser

log = logging.getLogger(__name__)

AUTO_TILE = "auto"
WHOLE_IMAGE = ("none", "whole")
EXACT_OVERLAP = -1
"""``--overlap`` value meaning exact halos (the core's ``overlap=None``), as in the node."""
DETECTOR_OPTIONS = ("detector", "detector_dir", "fidelity", "selection", "faces", "max_faces", "min_face_size",
                    "max_face_size", "score_threshold", "mask", "parser", "no_keep_hair", "no_keep_neck",
                    "no_smooth_small_faces", "no_keep_grey", "color_match", "save_mask")
"""Options of whole-photo restoration, refused with ``--aligned`` (they would do nothing)."""
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".safetensors")


class ProgressLine:
    """A one-line progress bar on stderr: ``label [#####     ] 3/10``."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total = label, total

    def __call__(self, done: int, total: int | None = None) -> None:
        total = total or self.total
        filled = int(30 * done / max(total, 1))
        end = "\n" if done >= total else ""
        bar = "#" * filled + " " * (30 - filled)
        print(f"\r{self.label} [{bar}] {done}/{total}", end=end, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# option checks (nothing is loaded here)


def parse_tile_size(text: str) -> int | str | None:
    """``--tile-size``: ``auto`` or 0 -> ``"auto"``; ``none``/``whole`` -> None (whole image); N >= 16 -> N."""
    value = text.strip().lower()
    if value in (AUTO_TILE, "0"):
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


def check_device(name: str, option: str = "--device") -> torch.device:
    """``--device`` as a torch device that exists here."""
    try:
        device = resolve_device(name)
    except RuntimeError as err:
        raise UsageError(f"{option} {name}: {str(err).splitlines()[0]}") from err
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UsageError(f"{option} {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def check_checkpoint_path(name: str, option: str = "--model") -> Path:
    path = Path(name)
    if path.is_dir():
        found = sorted(p.name for p in path.iterdir() if p.suffix.lower() in CHECKPOINT_SUFFIXES)
        hint = f" ({', '.join(found[:5])} there)" if found else ""
        raise UsageError(f"{option} {path} is a folder; pass the checkpoint file itself{hint}")
    if not path.is_file():
        raise UsageError(f"{option} {path}: no such file")
    return path


def check_enhance_options(args: argparse.Namespace) -> dict:
    """Validate every ``enhance`` option; returns the core's options (one meaning per value, as the nodes)."""
    if args.aligned:
        given = [f"--{name.replace('_', '-')}" for name in DETECTOR_OPTIONS if getattr(args, name) not in (None, [])]
        if given:
            raise UsageError(f"{', '.join(given)}: only for whole photos; drop them or drop --aligned")
    elif args.keep_size:
        raise UsageError("--keep-size only applies to --aligned crops (whole photos keep their size)")
    fidelity = 1.0 if args.fidelity is None else args.fidelity
    check_range(fidelity, 0.0, 1.0, "--fidelity")
    score = args.score_threshold or 0.0
    check_range(score, 0.0, 0.999, "--score-threshold (0: the detector's default)")
    max_faces = args.max_faces or 0
    check_range(max_faces, 0, None, "--max-faces (0: no limit)", integer=True)
    min_face = args.min_face_size or 0.0
    check_range(min_face, 0.0, None, "--min-face-size (0: no bound)")
    max_face = args.max_face_size or 0.0
    check_range(max_face, 0.0, None, "--max-face-size (0: no bound)")
    try:
        selection = FaceSelection(args.selection or "score", args.faces, float(min_face), float(max_face), max_faces)
    except ValueError as error:
        raise UsageError(f"face selection: {error}") from None
    check_range(args.overlap, EXACT_OVERLAP, None, "--overlap (-1: exact)", integer=True)
    tile_size = parse_tile_size(args.tile_size)
    if args.overlap != EXACT_OVERLAP and not isinstance(tile_size, int) and not args.recompute:
        # under auto the whole image may run untiled, where a cut halo means nothing
        raise UsageError("--overlap cuts the halos of tiles: give --tile-size N too (or --recompute)")
    if any(sep in args.suffix for sep in ("/", "\\", os.sep)):
        raise UsageError(f"--suffix {args.suffix!r}: a file-name part without folder separators, e.g. _gpen")
    from ..face.paste import PasteOptions

    paste = PasteOptions(mask=args.mask or "auto", keep_hair=not args.no_keep_hair, keep_neck=not args.no_keep_neck,
                         smooth_small_faces=not args.no_smooth_small_faces, keep_grey=not args.no_keep_grey,
                         color_match=args.color_match or "off")
    return {
        "paste": paste,
        "fidelity": fidelity,
        "score_threshold": score or None,
        "selection": selection,
        "forward": {
            "tile_size": tile_size,
            "overlap": None if args.overlap == EXACT_OVERLAP else args.overlap,
            "recompute": args.recompute,
        },
    }


# ---------------------------------------------------------------------------------------------
# enhance


def _load_parser(args: argparse.Namespace, model_path: Path, model):
    """The ParseNet for ``--mask`` (None for box, or for auto without a file): ``--parser``, else the
    ``--detector-dir`` folders and the folder of ``--model``."""
    from ..face.parsing import load_parser_for_mask

    where = args.parser or [*(args.detector_dir or []), str(model_path.parent)]
    return load_parser_for_mask(args.mask or "auto", where, device=model.device, dtype=model.dtype)


def _restore_photo(model, detector, image: torch.Tensor, options: dict,
                   parser=None) -> tuple[torch.Tensor, int, torch.Tensor]:
    """Detect, align, enhance and paste back every face of one ``(C, H, W)`` image; (image, faces found, mask)."""
    from ..face.restore import DetectOptions, restore_faces
    from ..images.tensors import split_alpha

    rgb, alpha = split_alpha(image[None])
    chosen: FaceSelection = options["selection"]
    detect = DetectOptions(options["score_threshold"], chosen.min_face_size, chosen.order, chosen.max_faces,
                           chosen.indices, chosen.max_face_size)
    result = restore_faces(model, detector, rgb, detect=detect, fidelity=options["fidelity"], parser=parser,
                           paste=options["paste"], **options["forward"])
    out = result.images[0] if alpha is None else torch.cat([result.images[0], alpha[0]])
    return out, len(result.faces), result.masks[0]


def _job_label(job: Job) -> str:
    return str(job.source) if job.frame is None else f"{job.source} (frame {job.frame + 1})"


def cmd_enhance(args: argparse.Namespace) -> int:
    options = check_enhance_options(args)
    device = check_device(args.device)
    model_path = check_checkpoint_path(args.model)
    files, ignored = collect_inputs(args.inputs)
    out_dir = Path(args.output)
    failures = Failures()
    jobs = plan_jobs(files, out_dir, args.suffix, failures)
    jobs, skipped = select_jobs(jobs, files, force=args.force, skip_existing=args.skip_existing)
    if ignored:
        names = ", ".join(p.name for p in ignored[:8]) + (" ..." if len(ignored) > 8 else "")
        print(f"note: ignored {len(ignored)} file(s) without an image suffix: {names}", file=sys.stderr)
    if skipped:
        print(f"skipping {skipped} image(s) whose output exists (--skip-existing)", file=sys.stderr)
    if not jobs:
        if failures:
            print(failures.report(), file=sys.stderr)
            return 1
        print(f"nothing to do: every output exists in {out_dir}", file=sys.stderr)
        return 0
    folder = OutputFolder(out_dir)
    folder.prepare()
    written = 0
    try:
        detector = None
        if not args.aligned:
            from ..face.detection.loader import load_detector

            detector = load_detector(args.detector or "auto", args.detector_dir or [], device=device)
        from ..loading import load_model

        model = load_model(model_path, device=device, precision=args.precision, input_range=args.input_range,
                           compile=args.compile)
        if detector is not None:
            options["parser"] = _load_parser(args, model_path, model)
        written = _run_jobs(jobs, model, detector, options, args, failures)
    finally:
        if written == 0:
            folder.remove_if_empty()
    print(f"wrote {written} image(s) to {out_dir}", file=sys.stderr)
    if failures:
        print(failures.report(), file=sys.stderr)
        if skipped or written:
            print("rerun with --skip-existing to retry only these", file=sys.stderr)
        return 1
    return 0


def _run_jobs(jobs: list[Job], model, detector, options: dict, args: argparse.Namespace, failures: Failures) -> int:
    """Run every job; a failing file is recorded and the next one runs. Returns the images written."""
    from ..enhance import enhance_images

    progress = ProgressLine("enhance", len(jobs))
    written = 0
    no_faces = []
    with torch.inference_mode():
        for index, job in enumerate(jobs):
            try:
                image = read_image(job.source, frame=job.frame)
                if detector is None:
                    out = enhance_images(model, image[None], keep_size=args.keep_size, **options["forward"])[0]
                else:
                    out, faces, mask = _restore_photo(model, detector, image, options, options.get("parser"))
                    if faces == 0:
                        no_faces.append(_job_label(job))
                    if args.save_mask:
                        write_image(job.target.with_name(f"{job.target.stem}_mask.png"), mask[None].expand(3, -1, -1))
                write_image(job.target, out)
                written += 1
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as err:  # noqa: BLE001 -- one bad file never loses the batch: it is listed at the end
                if args.debug:
                    traceback.print_exc()
                failures.add(_job_label(job), _reason(err, job.source))
                if is_disk_full(err):
                    for rest in jobs[index + 1:]:
                        failures.add(_job_label(rest), "not processed: the output disk is full")
                    break
            progress(index + 1)
    if no_faces:
        print(f"no face found (written unchanged) in {len(no_faces)} image(s): {', '.join(no_faces)}", file=sys.stderr)
    return written


def _reason(err: BaseException, source: Path) -> str:
    """One line saying why a file failed, without repeating the file name."""
    text = str(err).splitlines()[0] if str(err) else ""
    text = text.removeprefix(f"{source}: ")
    if isinstance(err, OSError) and not isinstance(err, ImageReadError):
        where = f" ({err.filename})" if err.filename else ""
        return f"cannot write the output{where}: {err.strerror or text}"
    if isinstance(err, (ImageReadError, ValueError, MemoryError, FloatingPointError)):
        return text
    return f"{type(err).__name__}: {text} (an unexpected error: run with --debug for the traceback)"


# ---------------------------------------------------------------------------------------------
# convert


def cmd_convert(args: argparse.Namespace) -> int:
    source = check_checkpoint_path(args.input, "input")
    target = Path(args.output)
    suffix = target.suffix.lower()
    if suffix not in CHECKPOINT_SUFFIXES:
        raise UsageError(f"output {target}: the suffix picks the format; use .safetensors, .pth or .pt")
    if target.exists() and target.resolve() == source.resolve():
        raise UsageError(f"output {target} is the input; write to another file")
    if target.exists() and not args.force:
        raise UsageError(f"{target} exists; use --force to overwrite it")
    if target.parent != Path("") and not target.parent.is_dir():
        raise UsageError(f"output folder {target.parent} does not exist")
    from ..loading import build_model, load_state_dict
    from ..weights import save_safetensors

    state = load_state_dict(source)
    build_model(state, name=str(source))  # refuse to write something that is not a loadable GPEN
    partial = target.with_name(f".{target.name}.partial")
    try:
        if suffix == ".safetensors":
            save_safetensors(state, partial, overwrite=True)
        else:
            torch.save({k: v.detach().contiguous() for k, v in state.items()}, partial)
        os.replace(partial, target)
    finally:
        if partial.exists():
            partial.unlink()
    kind = "safetensors" if suffix == ".safetensors" else "a PyTorch state dict (torch.save)"
    print(f"wrote {target} as {kind} ({len(state)} tensors)", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------------------------
# bench


def check_bench_options(args: argparse.Namespace) -> torch.device:
    from ..arch.config import GPENConfig

    check_range(args.repeat, 1, None, "--repeat", integer=True)
    check_range(args.tile_size, MIN_TILE, None, "--tile-size", integer=True)
    for overlap in args.overlaps:
        check_range(overlap, 0, None, "--overlaps", integer=True)
    for size in args.sizes:
        try:
            GPENConfig(size, 2, 0.125)
        except ValueError as err:
            raise UsageError(f"--sizes {size}: {err}") from err
    if args.official is not None:
        model_file = Path(args.official) / "face_model" / "gpen_model.py"
        if not model_file.is_file():
            raise UsageError(f"--official {args.official}: not a yangxy/GPEN checkout (no {model_file})")
    if args.plot is not None:
        plot = Path(args.plot)
        if plot.suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp"):
            raise UsageError(f"--plot {plot}: give an image file name (.png)")
        if not plot.parent.is_dir() and plot.parent != Path(""):
            raise UsageError(f"--plot {plot}: the folder {plot.parent} does not exist")
    return check_device(args.device)


def cmd_bench(args: argparse.Namespace) -> int:
    check_bench_options(args)
    if args.nms:
        from .bench_nms import run_nms_bench

        run_nms_bench(args.repeat)
        return 0
    from .bench import run_bench

    run_bench(args)
    return 0


# ---------------------------------------------------------------------------------------------
# parser and main


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log details")
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks (for bug reports)")
    parser = argparse.ArgumentParser(prog="python -m gpen_core", description="GPEN face restoration outside ComfyUI",
                                     parents=[common])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("enhance", parents=[common],
                       help="restore the faces of photos (or of aligned crops with --aligned)",
                       description="Outputs are PNG: <stem><suffix>.png, and <stem>_f0001<suffix>.png ... for "
                                   "every frame of animations / multi-page files (GIF, APNG, WebP, TIFF).")
    p.add_argument("inputs", nargs="+", help="image files or folders")
    p.add_argument("--aligned", action="store_true", help="inputs are aligned face crops: no detection, no paste-back")
    p.add_argument("--detector", default=None,
                   help="auto (default), retinaface_resnet50, retinaface_mobile0.25, mtcnn, or a weights file/folder")
    p.add_argument("--detector-dir", action="append", default=None,
                   help="folder with detector weights (repeatable), e.g. ComfyUI/models/facedetection")
    p.add_argument("--fidelity", type=float, default=None,
                   help="1 (default): restored faces (the official paste), 0: the input exactly; mixed in image space")
    p.add_argument("--mask", choices=["auto", "parse", "box"], default=None,
                   help="paste mask: parse (face parsing, as the official code), box (blurred square), auto (default: "
                        "parse when a ParseNet file is found, else box)")
    p.add_argument("--parser", default=None,
                   help="ParseNet-latest.pth / parsing_parsenet.pth, or a folder with one (default: the "
                        "--detector-dir folders and the folder of --model)")
    p.add_argument("--no-keep-hair", action="store_true", default=None, help="parse mask: keep the original hair")
    p.add_argument("--no-keep-neck", action="store_true", default=None,
                   help="parse mask: keep the original neck (as facexlib)")
    p.add_argument("--no-smooth-small-faces", action="store_true", default=None,
                   help="skip the official 3x3 smoothing of faces whose box is under 100 px")
    p.add_argument("--no-keep-grey", action="store_true", default=None,
                   help="paste GPEN's colours into grey photos too")
    p.add_argument("--color-match", choices=["off", "lab", "ycbcr"], default=None,
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
    p.add_argument("--model", required=True, help="GPEN checkpoint (.pth/.pt/.safetensors)")
    p.add_argument("-o", "--output", required=True, help="output folder (created if missing)")
    p.add_argument("--keep-size", action="store_true", help="--aligned: write at the input size, not the model size")
    p.add_argument("--precision", choices=PRECISIONS, default="auto")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--compile", choices=COMPILE_MODES, default="off",
                   help="cuda_graphs: replay a captured CUDA graph per face-batch shape (CUDA only)")
    p.add_argument("--input-range", choices=["[-1,1]", "[0,1]"], default="[-1,1]", help="[0,1] for Seg2face")
    p.add_argument("--tile-size", default=AUTO_TILE,
                   help="decoder tile size: auto or 0 (default: from free memory), none (whole image), "
                        f"or N >= {MIN_TILE}")
    p.add_argument("--overlap", type=int, default=EXACT_OVERLAP, help="-1 (default): exact halos; N >= 0: cut halos")
    p.add_argument("--recompute", action="store_true", help="recompute encoder features to save memory")
    p.add_argument("--suffix", default="", help="appended to output file stems, e.g. _gpen")
    existing = p.add_mutually_exclusive_group()
    existing.add_argument("--force", action="store_true", help="overwrite existing outputs (never an input file)")
    existing.add_argument("--skip-existing", action="store_true",
                          help="only process images whose output is missing (resume an interrupted run)")
    p.set_defaults(func=cmd_enhance)

    p = sub.add_parser("convert", parents=[common],
                       help="convert a GPEN checkpoint; the output suffix picks the format",
                       description=".safetensors: safetensors; .pth/.pt: a plain state dict written by torch.save.")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--force", action="store_true", help="overwrite the output")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("bench", parents=[common], help="time and peak memory per size and precision (seeded weights)")
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=PRECISIONS[1:])
    p.add_argument("--device", default="auto")
    p.add_argument("--repeat", type=int, default=2, help="timed runs per row, >= 1 (the best is shown)")
    p.add_argument("--tile-size", type=int, default=256, help="tile size of the tiled rows")
    p.add_argument("--no-backward", action="store_true", help="skip the forward+backward rows")
    p.add_argument("--no-parser", action="store_true", help="skip the face-parser (ParseNet) rows")
    p.add_argument("--overlaps", type=int, nargs="*", default=[0, 2], help="inexact overlaps to measure too")
    p.add_argument("--plot", default=None, help="also draw memory and time per strategy into this PNG")
    p.add_argument("--official", default=None, help="path to a yangxy/GPEN checkout: also time the official code (CPU)")
    p.add_argument("--nms", action="store_true", help="time the face detectors' NMS instead (a table; no GPEN rows)")
    p.set_defaults(func=cmd_bench)

    add_gpu_check_parser(sub, common)
    return parser


EXPECTED_ERRORS = (UsageError, FileNotFoundError, FileExistsError, CheckpointError, ValueError, MemoryError,
                   FloatingPointError, OSError)
"""Errors with a message meant for the user: one ``error:`` line, exit status 2, no traceback."""


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.verbose = getattr(args, "verbose", False)
    args.debug = getattr(args, "debug", False)
    level = logging.DEBUG if args.debug else logging.INFO if args.verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except EXPECTED_ERRORS as err:
        if args.debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Exception as err:
        if args.debug:
            raise
        print(f"error: {type(err).__name__}: {err}\n(unexpected: run again with --debug for the traceback, "
              "and report it)", file=sys.stderr)
        return 2
