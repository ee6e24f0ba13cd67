"""Safe reading of ``torch.save`` state dicts and strict key checking with clear errors."""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from .errors import InvalidDetectorWeightsError

_MODULE_PREFIX = "module."

# What torch.load raises on files that are not (complete, safe) torch.save checkpoints: the
# weights-only unpickler rejects foreign objects with UnpicklingError; garbage bytes surface as
# IndexError / KeyError / EOFError / ValueError from the legacy unpickler, and truncated zip
# archives as RuntimeError or OSError from the zip reader. Each is re-raised with its message.
_LOAD_ERRORS = (
    pickle.UnpicklingError,
    RuntimeError,
    EOFError,
    ValueError,
    IndexError,
    KeyError,
    OSError,
    zipfile.BadZipFile,
)


def read_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a ``torch.save`` state dict safely (``weights_only=True``, onto the CPU).

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
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except _LOAD_ERRORS as err:
        raise InvalidDetectorWeightsError(
            f"{path} is not a readable PyTorch checkpoint (torch.load(weights_only=True) failed: "
            f"{type(err).__name__}: {err})"
        ) from err
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

    missing = [k for k in expected if k not in state_dict and not is_optional(k)]
    unexpected = [k for k in state_dict if k not in expected]
    wrong_shape = [
        f"{k}: file {tuple(state_dict[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in state_dict and state_dict[k].shape != expected[k].shape
    ]
    if missing or unexpected or wrong_shape:
        raise InvalidDetectorWeightsError(
            f"{source} does not match {model_description}: {len(missing)} missing keys "
            f"{missing[:5]}, {len(unexpected)} unexpected keys {unexpected[:5]}, "
            f"{len(wrong_shape)} shape mismatches {wrong_shape[:3]}"
        )
    complete = dict(state_dict)
    for key, value in expected.items():
        if key not in complete:  # only optional keys can be absent here
            complete[key] = value
    model.load_state_dict(complete, strict=True)
