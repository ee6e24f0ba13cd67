"""``gpen bench``: time and peak memory per size and precision, with seeded weights (no file needed)."""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..arch.tiled import MIN_TILE
from ..checks import check_range
from ..face.masks import MASK_MODE_NAMES
from ..runtime.precision import DTYPES
from .arguments import check_device
from .batch import UsageError

__all__ = ["add_bench_parser", "cmd_bench"]


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
    device = check_bench_options(args)
    if args.photo is not None:
        from .bench_photo import DEFAULT_PHOTO, run_photo_bench

        photo = Path(args.photo) if args.photo else DEFAULT_PHOTO
        if not photo.is_file():
            raise UsageError(f"--photo {photo}: no such file")
        (precision,) = args.precisions[:1]
        run_photo_bench(photo, size=args.sizes[-1], precision=precision, device=device,
                        detector=args.detector or "auto", detector_dirs=tuple(args.detector_dir or ()),
                        masks=tuple(args.masks), max_faces=args.max_faces, measure=args.measure)
        return 0
    if args.nms:
        from .bench_nms import run_nms_bench

        run_nms_bench(args.repeat)
        return 0
    from .bench import run_bench

    run_bench(args)
    return 0


def add_bench_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("bench", parents=[common], help="time and peak memory per size and precision (seeded weights)")
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=tuple(DTYPES))
    p.add_argument("--device", default="auto")
    p.add_argument("--repeat", type=int, default=2, help="timed runs per row, >= 1 (the best is shown)")
    p.add_argument("--tile-size", type=int, default=256, help="tile size of the tiled rows")
    p.add_argument("--no-backward", action="store_true", help="skip the forward+backward rows")
    p.add_argument("--no-parser", action="store_true", help="skip the face-parser (ParseNet) rows")
    p.add_argument("--overlaps", type=int, nargs="*", default=[0, 2], help="inexact overlaps to measure too")
    p.add_argument("--plot", default=None, help="also draw memory and time per strategy into this PNG")
    p.add_argument("--official", default=None, help="path to a yangxy/GPEN checkout: also time the official code (CPU)")
    p.add_argument("--nms", action="store_true", help="time the face detectors' NMS instead (a table; no GPEN rows)")
    p.add_argument("--photo", nargs="?", const="", default=None,
                   help="whole-photo mode: a photo's faces stage by stage, per paste mask, against GPEN alone "
                        "(default photo: the pack's example_inputs/solvay-1927.png; GPEN size: the last of --sizes; "
                        "precision: the first of --precisions)")
    p.add_argument("--masks", nargs="+", default=["box", "parse"], choices=MASK_MODE_NAMES,
                   help="--photo: the paste masks to run")
    p.add_argument("--max-faces", type=int, default=0, help="--photo: at most this many faces (0: all)")
    p.add_argument("--detector", default=None, help="--photo: the face detector (default auto)")
    p.add_argument("--detector-dir", action="append", default=None, help="--photo: folder with detector weights")
    p.add_argument("--measure", action="store_true", help="--photo: also count live tensors (slower)")
    p.set_defaults(func=cmd_bench)
