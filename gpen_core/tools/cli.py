"""Command line: ``gpen {enhance,convert,bench,gpu-check} ...`` (also ``python -m gpen_core``).

A careful batch tool: every option, input and the output folder are checked before any model
loads; every readable file is processed; failures are listed with their file and reason at the
end. Exit status: 0 all done, 1 some files failed (the others were written), 2 nothing was run
(a wrong option, path or checkpoint), 130 interrupted. Expected errors print one ``error:`` line;
``--debug`` shows tracebacks.
"""
from __future__ import annotations

import argparse
import logging
import sys

from ..weights import CheckpointError
from .batch import UsageError
from .bench_cmd import add_bench_parser
from .convert_cmd import add_convert_parser
from .download_cmd import add_download_parser
from .enhance_cmd import add_enhance_parser, parse_tile_size
from .gpu_check import add_gpu_check_parser

__all__ = ["build_parser", "main", "parse_tile_size"]


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log details")
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks (for bug reports)")
    parser = argparse.ArgumentParser(prog="gpen", description="GPEN face restoration outside ComfyUI",
                                     parents=[common])
    sub = parser.add_subparsers(dest="command", required=True)
    add_enhance_parser(sub, common)
    add_convert_parser(sub, common)
    add_bench_parser(sub, common)
    add_gpu_check_parser(sub, common)
    add_download_parser(sub, common)
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
        return int(args.func(args))
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
