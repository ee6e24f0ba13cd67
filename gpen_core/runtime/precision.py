"""Precision choice (fp32 / fp16 / bf16 / auto), device choice, and non-finite output checks."""
from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "fp16", "bf16")
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
NAMES = {dtype: name for name, dtype in DTYPES.items()}


class NonFiniteOutputError(FloatingPointError):
    """The network produced NaN or infinity, usually an fp16 overflow."""


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None`` or ``"auto"``: the current CUDA device when there is one, else the CPU.

    Raises:
        ValueError: the ``meta`` device (it holds shapes, no values: weights moved there are lost).
        RuntimeError: CUDA asked for where PyTorch sees none.
    """
    if device is None or str(device) == "auto":
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(device)
    if device.type == "meta":
        raise ValueError(
            f"device {device}: the meta device holds shapes but no values, so the weights would be lost and every "
            "output empty; use cpu, cuda, cuda:1 ... or auto"
        )
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device} was asked for, but this PyTorch build sees no CUDA device")
    return device


def bf16_supported(device: torch.device) -> bool:
    """Whether bfloat16 convolutions run natively on ``device`` (CUDA: compute capability >= 8.0)."""
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device)[0] >= 8
    return device.type == "cpu"


def resolve_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The compute dtype for ``precision`` on ``device``.

    ``auto``: bf16 on CUDA devices that support it (as fast as fp16 on those, and it cannot
    overflow), fp16 on other CUDA devices of compute capability >= 7.0 (tensor cores),
    fp32 on older GPUs and on the CPU (CPU half precision saves memory but is slower).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return DTYPES[precision]
    if device.type == "cuda":
        major = torch.cuda.get_device_capability(device)[0]
        if major >= 8:
            return torch.bfloat16
        if major >= 7:
            return torch.float16
    return torch.float32


def safer_dtype(dtype: torch.dtype, device: torch.device) -> torch.dtype | None:
    """The next dtype to retry in after a non-finite output: fp16 -> bf16 (if supported) -> fp32."""
    if dtype == torch.float16 and bf16_supported(device):
        return torch.bfloat16
    if dtype in (torch.float16, torch.bfloat16):
        return torch.float32
    return None


def check_finite_input(x: torch.Tensor, name: str) -> None:
    """Raise ValueError when ``x`` (``(B, ...)``) holds NaN or infinity, naming the batch items; nothing is run.

    A non-finite input makes a non-finite output in every precision: it must be rejected before the
    model runs, not taken for a half-precision overflow.
    """
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        per_item = (~finite).reshape(x.shape[0], -1).sum(dim=1)
        items = [str(i) for i in per_item.nonzero().flatten().tolist()]
        shown = ", ".join(items[:8]) + (" ..." if len(items) > 8 else "")
        raise ValueError(
            f"{name} holds {int(per_item.sum())} NaN/inf values (batch item(s) {shown}); GPEN was not run. "
            f"Replace them first (e.g. torch.nan_to_num) or fix what produced them."
        )


def check_finite(out: torch.Tensor, dtype: torch.dtype) -> None:
    """Raise :class:`NonFiniteOutputError` when ``out`` holds NaN or infinity."""
    if not bool(torch.isfinite(out).all()):
        bad = int((~torch.isfinite(out)).sum())
        hint = " Use precision 'bf16' or 'fp32' (or 'auto', which retries)." if dtype != torch.float32 else ""
        raise NonFiniteOutputError(f"GPEN produced {bad} non-finite values in {NAMES.get(dtype, dtype)}.{hint}")
