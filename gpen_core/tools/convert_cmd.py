"""``gpen convert``: a GPEN checkpoint to another format; the output suffix picks it."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

from .arguments import CHECKPOINT_SUFFIXES, check_checkpoint_path
from .batch import UsageError

__all__ = ["add_convert_parser", "cmd_convert"]


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


def add_convert_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("convert", parents=[common],
                       help="convert a GPEN checkpoint; the output suffix picks the format",
                       description=".safetensors: safetensors; .pth/.pt: a plain state dict written by torch.save.")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--force", action="store_true", help="overwrite the output")
    p.set_defaults(func=cmd_convert)
