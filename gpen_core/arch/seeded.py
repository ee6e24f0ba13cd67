"""Seeded GPEN weights and inputs in the official key layout, reproducible on any machine.

The rule is the one of ``shared/reference/gpen_weights.py``: one PCG64 stream per
tensor seeded with ``SeedSequence([seed, crc32(key)])``, 53-bit uniforms mapped to
unit variance, times a scale, plus a centre; blur kernels exact. Used by the tests,
the benchmark (no weights file needed) and the ComfyUI end-to-end test.
"""
from __future__ import annotations

import zlib

import numpy as np
import torch

from .config import GPENConfig
from .generator import GPEN
from .layers import FIRKernel, fir_kernel


def unit_uniform(seed: int, key: str, count: int) -> np.ndarray:
    """``count`` float64 values uniform on ``[-sqrt(3), sqrt(3))`` (mean 0, variance 1)."""
    bits = np.random.PCG64(np.random.SeedSequence([seed, zlib.crc32(key.encode())]))
    raw = bits.random_raw(count)
    u = (raw >> np.uint64(11)).astype(np.float64) * 2.0**-53
    return (u * 2.0 - 1.0) * np.sqrt(3.0)


def scale_and_centre(key: str) -> tuple[float, float]:
    """Scale and centre of the seeded values of one parameter key."""
    if key.startswith("generator.style.") and key.endswith(".weight"):
        return 100.0, 0.0  # mapping MLP, lr_mul 0.01: stored weights are randn / 0.01
    if key.endswith("modulation.bias"):
        return 0.1, 1.0  # initialised to 1 officially
    if key.endswith("noise.weight"):
        return 1.0, 0.0  # zero officially: randomised so the encoder-to-decoder path counts
    if key.endswith("bias"):
        return 0.1, 0.0
    return 1.0, 0.0


def seeded_state_dict(config: GPENConfig, seed: int) -> dict[str, torch.Tensor]:
    """float32 weights for every key of the official ``FullGenerator`` of ``config``, in official order.

    Buffers (the blur kernels) are the exact official values.
    """
    with torch.device("meta"):
        layout = GPEN(config)
    exact = {
        f"{name}.kernel": fir_kernel(module.upsample_factor)
        for name, module in layout.named_modules()
        if isinstance(module, FIRKernel)
    }
    out: dict[str, torch.Tensor] = {}
    for key, tensor in layout.state_dict().items():
        if key in exact:
            out[key] = exact[key]
            continue
        scale, centre = scale_and_centre(key)
        values = centre + scale * unit_uniform(seed, key, tensor.numel())
        out[key] = torch.from_numpy(values.astype(np.float32).reshape(tuple(tensor.shape)))
    return out


def seeded_input(size: int, seed: int, batch: int = 1) -> torch.Tensor:
    """``(batch, 3, size, size)`` float32 uniform on ``[-1, 1)``, the reference inputs."""
    u = unit_uniform(seed, "input", batch * 3 * size * size) / np.sqrt(3.0)
    return torch.from_numpy(u.astype(np.float32).reshape(batch, 3, size, size))
