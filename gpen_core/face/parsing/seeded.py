"""Seeded ParseNet weights and face crops, reproducible on any machine (no weights file needed).

The rule is the one of ``shared/reference/parsenet/parsenet_weights.py``, written over our own
module's state dict (whose key order is the official one). Take the keys in order with index
``i`` from 0, counting every key; ``g = torch.Generator().manual_seed(base + i)``, then:

* ``*.num_batches_tracked``: int64 zero (``g`` unused);
* ``*.running_mean``: ``randn * 0.1``;  ``*.running_var``: ``0.5 + rand``;
* ``*.weight``, 1-D (BatchNorm gamma): ``1 + randn * 0.1``;
* ``*.weight``, 4-D (convs): ``randn * (gain / sqrt(fan_in))``, one Python float scalar;
* ``*.bias``: ``randn * 0.05``.

The public reference is ``base=3000``, ``gain=0.85``, image seed 8. Used by the tests, the
benchmark and the README figure.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping

import numpy as np
import torch

from .network import ParseNet, ParseNetConfig

__all__ = ["PUBLIC_BASE", "PUBLIC_GAIN", "seeded_parse_images", "seeded_parsenet_state_dict", "state_dict_digest"]

PUBLIC_BASE = 3000
PUBLIC_GAIN = 0.85


def seeded_parsenet_state_dict(
    config: ParseNetConfig | None = None, base: int = PUBLIC_BASE, gain: float = PUBLIC_GAIN
) -> dict[str, torch.Tensor]:
    """float32 weights (int64 counters) for every key of ``ParseNet(config)``, in official order."""
    with torch.device("meta"):
        layout = ParseNet(config).state_dict()
    out: dict[str, torch.Tensor] = {}
    for index, (key, meta) in enumerate(layout.items()):
        shape = tuple(meta.shape)
        if key.endswith("num_batches_tracked"):
            out[key] = torch.zeros((), dtype=torch.int64)
            continue
        g = torch.Generator().manual_seed(base + index)
        if key.endswith("running_mean"):
            tensor = torch.randn(shape, generator=g) * 0.1
        elif key.endswith("running_var"):
            tensor = 0.5 + torch.rand(shape, generator=g)
        elif key.endswith("weight") and len(shape) == 1:
            tensor = 1 + torch.randn(shape, generator=g) * 0.1
        elif key.endswith("weight") and len(shape) == 4:
            fan_in = shape[1] * shape[2] * shape[3]
            tensor = torch.randn(shape, generator=g) * (gain / math.sqrt(fan_in))
        elif key.endswith("bias"):
            tensor = torch.randn(shape, generator=g) * 0.05
        else:  # pragma: no cover - every ParseNet key has a rule
            raise KeyError(f"no seeding rule for {key} {shape}")
        out[key] = tensor.contiguous()
    return out


def state_dict_digest(state: Mapping[str, torch.Tensor]) -> str:
    """sha256 over (key, dtype, shape, raw bytes) of every entry in order (the reference digest)."""
    h = hashlib.sha256()
    for key, value in state.items():
        h.update(key.encode())
        h.update(str(value.dtype).encode())
        h.update(str(tuple(value.shape)).encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def seeded_parse_images(seed: int, batch: int = 1, size: int = 512) -> np.ndarray:
    """``(batch, size, size, 3)`` uint8 BGR crops: ``torch.randint(0, 256, ...)`` seeded with ``seed``."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, size, size, 3), generator=g, dtype=torch.uint8).numpy()
