"""``gpen bench``: time and peak memory per size and precision, with seeded weights (no file needed)."""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..arch.tiled import MIN_TILE
from ..checks import check_range
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
    check_bench_options(args)
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
    p.set_defaults(func=cmd_bench)
