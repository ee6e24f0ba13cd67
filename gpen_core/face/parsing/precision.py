"""The parser's precision option: the generator's (``"model"``), or float32 / bfloat16 / float16.

float32 is the official network bit for bit. The half precisions fold the BatchNorms into the
convs and run channels-last (:meth:`~.network.ParseNet.set_dtype`); they move a few mask pixels.
Measured for bf16 against fp32 (seeded official-layout weights, 5 crops at 512: the reference
noise crop and 4 aligned faces of the shared photos): 0.96 % of the pixels change class, 0.04 %
change kept / dropped, and the paste mask after GPEN's two blurs differs by at most 0.032 (mean
2.6e-4), at 3x the float32 speed on an AVX512-BF16 CPU.
"""

from __future__ import annotations

import logging

import torch

from ...runtime.precision import DTYPES, NAMES, bf16_supported

logger = logging.getLogger(__name__)

__all__ = ["PARSER_PRECISIONS", "resolve_parser_dtype"]

PARSER_PRECISIONS = ("model", "fp32", "bf16", "fp16")
"""``model``: the generator's precision (float16 becomes bfloat16 on the CPU); the others as named."""


def resolve_parser_dtype(precision: str, model_dtype: torch.dtype, device: str | torch.device) -> torch.dtype:
    """The dtype the parser computes in, for a precision option and the generator's dtype and device.

    * ``"model"``: the generator's dtype, except float16 on the CPU, which becomes bfloat16
      (logged): PyTorch's CPU float16 convolutions are slower than float32 by 5-100x (measured
      here: a 3x3 conv 128 -> 64 at 512 x 512 took 2.1 s channels-last and 85 s NCHW in float16,
      0.30 s in float32, 0.15 s in bfloat16), and bfloat16 saves the same memory.
    * ``"fp32"``, ``"bf16"``, ``"fp16"``: as named.

    Raises:
        ValueError: an unknown option; ``"fp16"`` on the CPU (for the speed above); ``"bf16"``
            on a device without bfloat16 convolutions (CUDA before compute capability 8.0, MPS ...).
    """
    if precision not in PARSER_PRECISIONS:
        raise ValueError(f"parser precision must be one of {PARSER_PRECISIONS}, got {precision!r}")
    device = torch.device(device)
    if precision == "model":
        if model_dtype not in NAMES:
            raise ValueError(f"the generator's dtype {model_dtype} is not one of {tuple(DTYPES.values())}")
        if model_dtype == torch.float16 and device.type == "cpu":
            logger.info("face parser: bf16 on the CPU for the fp16 generator (CPU fp16 convolutions are slow)")
            return torch.bfloat16
        return model_dtype
    dtype = DTYPES[precision]
    if dtype == torch.float16 and device.type == "cpu":
        raise ValueError(
            "parser precision fp16 on the CPU: PyTorch's CPU fp16 convolutions are 5-100x slower than fp32; "
            "use bf16 (the same memory) or fp32"
        )
    if dtype == torch.bfloat16 and not bf16_supported(device):
        raise ValueError(f"parser precision bf16: {device} has no bfloat16 convolutions; use fp16 or fp32")
    return dtype
