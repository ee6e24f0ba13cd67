"""Reading GPEN checkpoint files into a plain state dict, with errors that say what was found.

Accepted: ``.pth``/``.pt`` (read with ``torch.load(weights_only=True)``: code in a pickle is
refused, never run), ``.safetensors``, training checkpoints that nest the generator under
``g_ema``, ``params_ema``, ``state_dict``, ``params`` or ``model``, and ``module.`` key prefixes.
"""
from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Callable, Mapping, Union

import torch

StateDict = dict[str, torch.Tensor]
CheckpointSource = Union[str, os.PathLike, Mapping[str, torch.Tensor]]

NESTING_KEYS = ("g_ema", "params_ema", "state_dict", "params", "model", "generator")
"""Keys under which training code stores the generator weights, tried in this order."""

GENERATOR_MARKERS = ("generator.input.input", "final_linear.0.weight", "ecd0.0.0.weight")


class CheckpointError(ValueError):
    """A checkpoint cannot be used as a GPEN generator; the message names the file and the cause."""


def describe(source: CheckpointSource) -> str:
    """How to name ``source`` in messages."""
    return str(source) if isinstance(source, (str, os.PathLike)) else "<state dict>"


def read_file(path: str | os.PathLike) -> object:
    """Deserialise a checkpoint file without running code in it.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: unreadable, truncated, corrupt, or a pickle that asks to run code.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"GPEN checkpoint not found: {path}. Download the official weights (e.g. GPEN-BFR-512.pth) "
            "yourself and put them in ComfyUI/models/gpen/ or pass the right path."
        )
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: the file is empty (0 bytes); download it again")
    if path.suffix.lower() == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as err:
            raise CheckpointError(f"{path}: not a readable safetensors file, truncated or corrupt ({err})") from err
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        text = str(err)
        if "Weights only load failed" in text or "Unsupported global" in text or "Unsupported operand" in text:
            raise CheckpointError(
                f"{path}: refused to load: the pickle asks to run code or build objects other than tensors, "
                "which is how malicious checkpoints work. Use the official weights, or convert a file you trust "
                f"to .safetensors. Details: {text.splitlines()[0]}"
            ) from err
        raise CheckpointError(f"{path}: not a PyTorch checkpoint, truncated or corrupt ({text})") from err
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, IndexError, KeyError) as err:
        # Garbage bytes surface from the unpickler as IndexError/KeyError/ValueError/EOFError,
        # truncated zip archives as RuntimeError/OSError.
        raise CheckpointError(
            f"{path}: cannot be read; the file is truncated or corrupt ({type(err).__name__}: {err})"
        ) from err


def _find_tensors(obj: object, name: str) -> StateDict:
    """The generator state dict inside a loaded object (plain, nested, or ``module.``-prefixed)."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{name}: holds a {type(obj).__name__}, not a state dict of tensors")
    if not any(isinstance(v, torch.Tensor) for v in obj.values()):
        for key in NESTING_KEYS:
            if key in obj and isinstance(obj[key], Mapping):
                return _find_tensors(obj[key], f"{name}[{key!r}]")
        found = ", ".join(sorted(map(str, obj))[:8])
        raise CheckpointError(f"{name}: no tensors found; top-level keys: {found}")
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if tensors and all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module."):]: v for k, v in tensors.items()}
    return tensors


def _looks_like_discriminator(keys: set[str]) -> bool:
    return "final_conv.0.weight" in keys or any(k.startswith("convs.") and ".conv1." in k for k in keys)


def load_state_dict(source: CheckpointSource) -> StateDict:
    """A GPEN generator state dict from a file path or a (possibly nested) mapping.

    Raises:
        FileNotFoundError, CheckpointError: see :func:`read_file`; also for a discriminator
            file (``GPEN-BFR-*-D.pth``) or another architecture.
    """
    name = describe(source)
    obj = read_file(source) if isinstance(source, (str, os.PathLike)) else source
    state = _find_tensors(obj, name)
    keys = set(state)
    if all(marker in keys for marker in GENERATOR_MARKERS):
        return state
    if _looks_like_discriminator(keys):
        raise CheckpointError(
            f"{name}: this is a GPEN discriminator (as in GPEN-BFR-*-D.pth), used only for training. "
            "Load the generator file instead, e.g. GPEN-BFR-512.pth."
        )
    sample = ", ".join(sorted(keys)[:6])
    raise CheckpointError(
        f"{name}: not a GPEN generator; expected keys such as {', '.join(GENERATOR_MARKERS)}, "
        f"found {len(keys)} tensors like {sample}"
    )


def key_mismatch(expected: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor],
                 optional: Callable[[str], bool] = lambda key: False) -> str | None:
    """What differs between a model's state dict and a loaded one, or None when they match.

    Lists missing, unexpected and mis-shaped keys (the first five of each, with counts);
    keys for which ``optional(key)`` is true may be missing.
    """
    missing = [k for k in expected if k not in state and not optional(k)]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})"
             for k, v in expected.items() if k in state and state[k].shape != v.shape]
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
        if items:
            more = f" and {len(items) - 5} more" if len(items) > 5 else ""
            parts.append(f"{len(items)} {label}: {', '.join(items[:5])}{more}")
    return "; ".join(parts) or None


def save_safetensors(state: StateDict, path: str | os.PathLike, *, overwrite: bool = False) -> None:
    """Write ``state`` as safetensors (contiguous copies); refuses to overwrite unless asked."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True (--force) to replace it")
    save_file({k: v.detach().contiguous() for k, v in state.items()}, str(path), metadata={"format": "pt"})
