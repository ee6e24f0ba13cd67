"""Safe reading of ``torch.save`` state dicts and strict key checking with clear errors."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from ..checkpoint import CheckpointError, key_mismatch, read_file
from .errors import InvalidDetectorWeightsError

_MODULE_PREFIX = "module."


def read_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a ``torch.save`` state dict safely (``weights_only=True``, onto the CPU).

    The reading itself is :func:`gpen_core.checkpoint.read_file`, shared with the GPEN loader.

    Args:
        path: file written by ``torch.save(model.state_dict(), path)``.

    Returns:
        A plain dict of tensors, keys as stored.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        InvalidDetectorWeightsError: the file cannot be read as a checkpoint, or is not a
            mapping of names to tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weight file not found: {path}")
    try:
        loaded = read_file(path)
    except CheckpointError as err:
        raise InvalidDetectorWeightsError(str(err)) from err
    if not isinstance(loaded, Mapping):
        raise InvalidDetectorWeightsError(
            f"{path} holds a {type(loaded).__name__}, not a state dict (a mapping of names to tensors)"
        )
    not_tensors = [str(key) for key, value in loaded.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise InvalidDetectorWeightsError(
            f"{path} is not a plain state dict: entries that are not tensors: {not_tensors[:5]}"
        )
    return {str(key): value for key, value in loaded.items()}


def strip_module_prefix(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove one leading ``module.`` (left by ``nn.DataParallel``) from every key that has it."""
    return {
        (key[len(_MODULE_PREFIX) :] if key.startswith(_MODULE_PREFIX) else key): value
        for key, value in state_dict.items()
    }


def load_state_dict_strictly(
    model: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    source: str,
    model_description: str,
    optional_key_suffix: str | None = None,
) -> None:
    """Load ``state_dict`` into ``model`` with strict key and shape checking.

    Args:
        model: the module to fill.
        state_dict: prefix-stripped weights.
        source: where the weights came from (for the message), e.g. a file path.
        model_description: what the weights should be (for the message).
        optional_key_suffix: model keys ending with this may be absent from the file (the
            model keeps its own value), e.g. ``"num_batches_tracked"``.

    Raises:
        InvalidDetectorWeightsError: listing missing / unexpected / mis-shaped keys.
    """
    expected = model.state_dict()

    def is_optional(key: str) -> bool:
        return optional_key_suffix is not None and key.endswith(optional_key_suffix)

    mismatch = key_mismatch(expected, state_dict, is_optional)
    if mismatch:
        raise InvalidDetectorWeightsError(f"{source} does not match {model_description}: {mismatch}")
    complete = dict(state_dict)
    for key, value in expected.items():
        if key not in complete:  # only optional keys can be absent here
            complete[key] = value
    model.load_state_dict(complete, strict=True)
