"""One-line input checks with messages that name the input, what it got and what to do.

In the style of kornia's ``KORNIA_CHECK_SHAPE``: every public function of the core validates
its inputs with these, so every entry point (core, nodes, command line) says the same thing
about the same mistake.

Example:
    >>> import torch
    >>> check_shape(torch.zeros(2, 3, 8, 8), ["B", "3", "H", "W"], "images")
    >>> check_choice("fp32", ("fp32", "bf16"), "precision")
    >>> check_range(0.5, 0.0, 1.0, "fidelity")
    >>> check_flag(True, "recompute")
"""
from __future__ import annotations

import math
from collections.abc import Collection, Sequence

import torch

FLOAT_RANGE_TOLERANCE = 0.05
"""Float images a little outside [0, 1] (resampling overshoot) are accepted and clamped;
beyond this margin the caller almost certainly passed [0, 255] values."""


def describe_shape(x: object) -> str:
    """``(2, 3, 8, 8)`` for a tensor, else the type name."""
    return str(tuple(x.shape)) if isinstance(x, torch.Tensor) else type(x).__name__


def check_shape(x: object, dims: Sequence[str], name: str, hint: str = "") -> None:
    """Raise ``ValueError`` unless ``x`` is a tensor whose dimensions match ``dims``.

    Each entry of ``dims`` is a symbol (any size, e.g. ``"B"``), a number (that exact size),
    or numbers joined by ``|`` (any of them, e.g. ``"1|2|3|4"``).

    Args:
        x: the value to check.
        dims: one entry per dimension, e.g. ``["B", "3", "H", "W"]``.
        name: the input's name in the message.
        hint: appended to the message (what to do).

    Raises:
        ValueError: naming the expected and the received shape.
    """
    ok = isinstance(x, torch.Tensor) and x.ndim == len(dims)
    if ok:
        assert isinstance(x, torch.Tensor)
        for size, dim in zip(x.shape, dims, strict=True):
            allowed = [int(d) for d in dim.split("|")] if dim.replace("|", "").isdigit() else None
            if allowed is not None and int(size) not in allowed:
                ok = False
                break
    if not ok:
        expected = "(" + ", ".join(dims) + ")"
        raise ValueError(f"{name} must have shape {expected}, got {describe_shape(x)}" + (f"; {hint}" if hint else ""))


def check_choice(value: object, choices: Collection[object], name: str) -> None:
    """Raise ``ValueError`` unless ``value`` is one of ``choices`` (listed in the message)."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")


def check_range(
    value: float, low: float | None, high: float | None, name: str, *, integer: bool = False
) -> None:
    """Raise ``ValueError`` unless ``low <= value <= high`` (a None bound is open), and finite.

    Args:
        integer: also require an ``int`` (``bool`` is refused).
    """
    if integer and (isinstance(value, bool) or not isinstance(value, int)):
        raise ValueError(f"{name} must be an integer; got {value!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise ValueError(f"{name} must be a number; got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        raise ValueError(f"{name} must be in [{lo}, {hi}]; got {value!r}")


def check_flag(value: object, name: str, *, error: type[Exception] = ValueError, show_type: bool = False) -> None:
    """Raise ``error`` unless ``value`` is ``True`` or ``False`` (``1``, ``"yes"`` are refused).

    Args:
        show_type: also name ``value``'s type in the message (``got 1 (int)``).
    """
    if not isinstance(value, bool):
        shown = f"{value!r} ({type(value).__name__})" if show_type else repr(value)
        raise error(f"{name} must be True or False; got {shown}")


def check_image(images: torch.Tensor, name: str = "image", *, accepts_uint8: bool = True) -> None:
    """Raise unless ``images`` holds pixel values the pipeline can use.

    Accepted: a non-empty float tensor with finite values in [0, 1] (up to
    :data:`FLOAT_RANGE_TOLERANCE` of overshoot), or a ``uint8`` tensor (values 0..255) when
    ``accepts_uint8`` (False for a path that reads the tensor in place, chunk by chunk, and
    converts nothing: whole-photo restore). The layout is checked separately (:func:`check_shape`).

    Raises:
        TypeError: not a tensor, or a dtype that is neither floating point nor an accepted uint8.
        ValueError: empty, NaN/inf, or float values outside [0, 1] (e.g. [0, 255] data).
    """
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(images).__name__}")
    if images.numel() == 0:
        raise ValueError(f"{name} is empty: shape {describe_shape(images)}")
    if images.dtype == torch.uint8 and accepts_uint8:
        return
    if not images.is_floating_point():
        if accepts_uint8:
            raise TypeError(f"{name} must be float in [0, 1] or uint8, got {images.dtype}")
        raise TypeError(
            f"{name} must be float in [0, 1] here; got {images.dtype} (pass images.float() / 255 for 8-bit data: "
            "this path reads the images in place, chunk by chunk, and converts no uint8)"
        )
    low, high = torch.stack(torch.aminmax(images)).tolist()  # one pass; a NaN propagates to both, an inf is one
    if not (math.isfinite(low) and math.isfinite(high)):
        bad = int((~torch.isfinite(images)).sum())  # counted only for the message
        raise ValueError(f"{name} contains {bad} NaN or infinite value(s); fix the input before restoring it")
    if low < -FLOAT_RANGE_TOLERANCE or high > 1.0 + FLOAT_RANGE_TOLERANCE:
        fix = "divide by 255 or pass a uint8 tensor" if accepts_uint8 else "divide by 255"
        raise ValueError(
            f"{name} must hold values in [0, 1]; got values in [{low:.4g}, {high:.4g}] (for 8-bit data {fix})"
        )


def image_as_float(images: torch.Tensor, name: str = "image") -> torch.Tensor:
    """``images`` checked by :func:`check_image`, as float32 in [0, 1] (uint8 divided by 255, overshoot clamped)."""
    check_image(images, name)
    if images.dtype == torch.uint8:
        return images.float() / 255.0
    return images.float().clamp(0.0, 1.0)
