"""Command line: ``python -m gpen_core {enhance,convert,bench} ...``."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import torch

from ..weights import CheckpointError, load_state_dict, save_safetensors
from ..enhance import enhance_images
from ..images.files import IMAGE_SUFFIXES, read_image, write_image
from ..loading import load_model
from ..runtime.precision import PRECISIONS, NonFiniteOutputError


class ProgressLine:
    """A one-line progress bar on stderr: ``label [#####     ] 3/10``."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total = label, total

    def __call__(self, done: int, total: int | None = None) -> None:
        total = total or self.total
        filled = int(30 * done / max(total, 1))
        end = "\n" if done >= total else ""
        print(f"\r{self.label} [{'#' * filled}{' ' * (30 - filled)}] {done}/{total}", end=end, file=sys.stderr, flush=True)


def _collect_inputs(paths: list[str]) -> list[Path]:
    files: list[Path] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES))
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"input not found: {path}")
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {', '.join(paths)}")
    return files


def _forward_options(args: argparse.Namespace) -> dict:
    tile: int | str | None = args.tile_size if args.tile_size == "auto" else (int(args.tile_size) or None)
    return {"tile_size": tile, "overlap": args.overlap, "recompute": args.recompute}


def _restore_photo(model, detector, image: torch.Tensor, args: argparse.Namespace) -> torch.Tensor:
    """Detect, align, enhance and paste back every face of one ``(C, H, W)`` image."""
    from ..face.restore import DetectOptions, restore_faces
    from ..images.tensors import split_alpha

    rgb, alpha = split_alpha(image[None])
    options = DetectOptions(args.score_threshold, args.min_face_size, args.selection, args.max_faces)
    result = restore_faces(model, detector, rgb, detect=options, fidelity=args.fidelity,
                           **_forward_options(args))[0]
    logging.getLogger(__name__).info("%d face(s) restored", len(result.detections))
    return result.image if alpha is None else torch.cat([result.image, alpha[0]])


def cmd_enhance(args: argparse.Namespace) -> int:
    files = _collect_inputs(args.inputs)
    out_dir = Path(args.output)
    targets = [out_dir / f"{f.stem}{args.suffix}.png" for f in files]
    clashes = [t for t in targets if t.exists() and not args.force]
    if clashes:
        raise FileExistsError(f"{len(clashes)} output file(s) exist, e.g. {clashes[0]}; use --force to overwrite")
    if len(set(targets)) != len(targets):
        raise ValueError("two inputs share a file name; enhance them into different output folders")
    out_dir.mkdir(parents=True, exist_ok=True)
    model = load_model(args.model, device=args.device, precision=args.precision, input_range=args.input_range)
    detector = None
    if not args.aligned:
        from ..face.detection.loader import load_detector

        detector = load_detector(args.detector, args.detector_dir, device=model.device)
    progress = ProgressLine("enhance", len(files))
    with torch.inference_mode():
        for i, (src, dst) in enumerate(zip(files, targets)):
            image = read_image(src)
            if detector is None:
                out = enhance_images(model, image[None], keep_size=args.keep_size, **_forward_options(args))[0]
            else:
                out = _restore_photo(model, detector, image, args)
            write_image(dst, out)
            progress(i + 1)
    print(f"wrote {len(targets)} image(s) to {out_dir}", file=sys.stderr)
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    state = load_state_dict(args.input)
    from ..loading import build_model

    build_model(state, name=args.input)  # refuse to write something that is not a loadable GPEN
    save_safetensors(state, args.output, overwrite=args.force)
    print(f"wrote {args.output} ({len(state)} tensors)", file=sys.stderr)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import run_bench

    run_bench(args)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m gpen_core", description="GPEN face restoration outside ComfyUI")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("enhance", help="restore the faces of photos (or of aligned crops with --aligned)")
    p.add_argument("inputs", nargs="+", help="image files or folders")
    p.add_argument("--aligned", action="store_true", help="inputs are aligned face crops: no detection, no paste-back")
    p.add_argument("--detector", default="auto",
                   help="auto, retinaface_resnet50, retinaface_mobile0.25, mtcnn, or a weights file/folder")
    p.add_argument("--detector-dir", action="append", default=[],
                   help="folder with detector weights (repeatable), e.g. ComfyUI/models/facedetection")
    p.add_argument("--fidelity", type=float, default=1.0, help="1: restored faces, 0: original faces (official alpha)")
    p.add_argument("--selection", choices=["all", "largest", "center"], default="all")
    p.add_argument("--max-faces", type=int, default=None, help="at most this many faces per image")
    p.add_argument("--min-face-size", type=float, default=0.0, help="ignore faces smaller than this (px)")
    p.add_argument("--score-threshold", type=float, default=None, help="detector confidence (default per detector)")
    p.add_argument("--model", required=True, help="GPEN checkpoint (.pth/.pt/.safetensors)")
    p.add_argument("-o", "--output", required=True, help="output folder (created if missing)")
    p.add_argument("--keep-size", action="store_true", help="--aligned: write at the input size, not the model size")
    p.add_argument("--precision", choices=PRECISIONS, default="auto")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--input-range", choices=["[-1,1]", "[0,1]"], default="[-1,1]", help="[0,1] for Seg2face")
    p.add_argument("--tile-size", default="0", help="decoder tile size in pixels, 0: whole image, auto: from free memory")
    p.add_argument("--overlap", type=int, default=None, help="tile overlap (default: exact)")
    p.add_argument("--recompute", action="store_true", help="recompute encoder features to save memory")
    p.add_argument("--suffix", default="", help="appended to output file stems")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.set_defaults(func=cmd_enhance)

    p = sub.add_parser("convert", help="convert a checkpoint to .safetensors")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--force", action="store_true", help="overwrite the output")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("bench", help="time and peak memory per size and precision (seeded weights)")
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=PRECISIONS[1:])
    p.add_argument("--device", default="auto")
    p.add_argument("--repeat", type=int, default=2, help="timed runs per row (the best is shown)")
    p.add_argument("--tile-size", type=int, default=256, help="tile size of the tiled rows")
    p.add_argument("--no-backward", action="store_true", help="skip the forward+backward rows")
    p.add_argument("--overlaps", type=int, nargs="*", default=[0, 2], help="inexact overlaps to measure too")
    p.add_argument("--plot", default=None, help="also draw memory and time per strategy into this PNG")
    p.add_argument("--official", default=None, help="path to a yangxy/GPEN checkout: also time the official code (CPU)")
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (FileNotFoundError, FileExistsError, CheckpointError, NonFiniteOutputError, ValueError, MemoryError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
