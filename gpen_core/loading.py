"""``load_model``: a checkpoint (file or state dict) to a ready :class:`GPEN` on a device."""
from __future__ import annotations

import os

import torch

from .weights import CheckpointError, CheckpointSource, describe, key_mismatch, load_state_dict
from .arch.config import ConfigError, config_from_state_dict
from .arch.generator import GPEN
from .runtime.precision import resolve_device, resolve_dtype


def build_model(state: dict[str, torch.Tensor], *, name: str = "<state dict>", input_range: str = "[-1,1]") -> GPEN:
    """A float32 CPU :class:`GPEN` holding ``state``, loaded strictly.

    Raises:
        CheckpointError: shapes that fit no GPEN, or missing, unexpected or mis-shaped keys.
    """
    try:
        config = config_from_state_dict(state, input_range=input_range)
    except ConfigError as err:
        raise CheckpointError(f"{name}: {err}") from err
    model = GPEN(config)
    mismatch = key_mismatch(model.state_dict(), state)
    if mismatch:
        raise CheckpointError(f"{name}: does not match GPEN-{config.size} ({config}): {mismatch}")
    model.load_state_dict(state, strict=True)
    return model.eval().requires_grad_(False)


def load_model(
    source: CheckpointSource,
    *,
    device: str | torch.device | None = None,
    precision: str = "fp32",
    input_range: str = "[-1,1]",
    compute_device: str | torch.device | None = None,
) -> GPEN:
    """Load a GPEN generator checkpoint.

    Args:
        source: a ``.pth``/``.pt``/``.safetensors`` path or a state dict (plain, nested under
            ``g_ema``/``params_ema``/``state_dict``, or with ``module.`` prefixes).
        device: ``None``/``"auto"``: the current CUDA device when there is one, else CPU.
        precision: ``fp32``, ``fp16``, ``bf16`` or ``auto`` (see :func:`gpen_core.runtime.precision.resolve_dtype`).
        input_range: ``"[-1,1]"`` (BFR, colorization, inpainting) or ``"[0,1]"`` (Seg2face).
        compute_device: the device the model will run on, if not ``device`` (e.g. weights kept on
            the CPU until a model manager moves them); ``auto`` precision is resolved for it.

    Returns:
        The generator in eval mode, gradients off, with ``.config`` and ``.precision`` set.

    Raises:
        FileNotFoundError, CheckpointError: with the file name and what was found.
    """
    state = load_state_dict(source)
    model = build_model(state, name=describe(source), input_range=input_range)
    del state
    target = resolve_device(device)
    model.to(device=target)
    runs_on = resolve_device(compute_device) if compute_device is not None else target
    model.set_dtype(resolve_dtype(precision, runs_on))
    model.precision = precision
    model.source = source if isinstance(source, (str, os.PathLike)) else None
    return model


def change_dtype(model: GPEN, dtype: torch.dtype) -> None:
    """Switch ``model`` to ``dtype``, re-reading the weights from its file when it has one,
    so that moving up from half precision restores the exact stored values."""
    model.set_dtype(dtype)
    if model.source is not None:
        model.load_state_dict(load_state_dict(model.source), strict=True)
