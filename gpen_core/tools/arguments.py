"""Checks of command-line arguments shared by the subcommands (nothing is loaded here)."""
from __future__ import annotations

from pathlib import Path

import torch

from ..runtime.precision import resolve_device
from .batch import UsageError

__all__ = ["CHECKPOINT_SUFFIXES", "check_checkpoint_path", "check_device"]

CHECKPOINT_SUFFIXES = (".pth", ".pt", ".safetensors")


def check_device(name: str, option: str = "--device") -> torch.device:
    """``--device`` as a torch device that exists here."""
    try:
        device = resolve_device(name)
    except (RuntimeError, ValueError) as err:  # ValueError: the meta device
        raise UsageError(f"{option} {name}: {str(err).splitlines()[0]}") from err
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UsageError(f"{option} {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def check_checkpoint_path(name: str, option: str = "--model") -> Path:
    """A checkpoint file that exists (a folder is refused, naming the checkpoints in it)."""
    path = Path(name)
    if path.is_dir():
        found = sorted(p.name for p in path.iterdir() if p.suffix.lower() in CHECKPOINT_SUFFIXES)
        hint = f" ({', '.join(found[:5])} there)" if found else ""
        raise UsageError(f"{option} {path} is a folder; pass the checkpoint file itself{hint}")
    if not path.is_file():
        raise UsageError(f"{option} {path}: no such file")
    return path
