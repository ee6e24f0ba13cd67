"""Safe reading of every checkpoint this package loads (GPEN, face detectors, face parsers).

One reader (:func:`read_file`), one rule for ``module.`` prefixes (:func:`strip_module_prefix`) and
one strict loader (:func:`load_strict`) serve every network. For GPEN generators, accepted:
``.pth``/``.pt`` (read with ``torch.load(weights_only=True)``: code in a pickle is refused, never run),
``.safetensors``, training checkpoints that nest the generator under ``g_ema``, ``params_ema``,
``state_dict``, ``params`` or ``model``, and ``module.`` key prefixes.
"""
from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

import torch

from .digests import changed_since_recorded

StateDict = dict[str, torch.Tensor]
CheckpointSource = str | os.PathLike | Mapping[str, torch.Tensor]

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

    A file downloaded by :mod:`gpen_core.zoo.download` is first compared with the SHA-256 its
    download recorded (:mod:`gpen_core.digests`).

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: unreadable, truncated, corrupt, a pickle that asks to run code, or a
            downloaded file that changed on disk since its download.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a checkpoint file; pass the .pth/.safetensors file in it")
    if not path.is_file():
        raise FileNotFoundError(
            f"GPEN checkpoint not found: {path}. Download the official weights (e.g. GPEN-BFR-512.pth) "
            "yourself and put them in ComfyUI/models/gpen/ or pass the right path."
        )
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: the file is empty (0 bytes); download it again")
    changed = changed_since_recorded(path)
    if changed:
        raise CheckpointError(changed)
    if path.suffix.lower() == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as err:
            raise CheckpointError(f"{path}: not a readable safetensors file, truncated or corrupt ({err})") from err
    not_pickle = _not_a_pickle(path)
    if not_pickle:
        raise CheckpointError(f"{path}: not a PyTorch checkpoint: {not_pickle}")
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        text = str(err)
        lowered = text.lower()
        detail = next((line.strip() for line in text.splitlines() if "nsupported" in line), text.splitlines()[0])
        if "unsupported global" in lowered or "unsupported class" in lowered:
            raise CheckpointError(
                f"{path}: refused to load: the pickle asks to run code or build objects other than tensors, "
                "which is how malicious checkpoints work. Use the official weights, or convert a file you trust "
                f"to .safetensors. Details: {detail}"
            ) from err
        raise CheckpointError(
            f"{path}: not a PyTorch checkpoint: a pickle that is not a torch.save file of tensors, or corrupt "
            f"({detail}); it was refused, nothing in it ran"
        ) from err
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, IndexError, KeyError) as err:
        # Garbage bytes surface from the unpickler as IndexError/KeyError/ValueError/EOFError,
        # truncated zip archives as RuntimeError/OSError.
        raise CheckpointError(
            f"{path}: cannot be read; the file is truncated or corrupt ({type(err).__name__}: {err})"
        ) from err


def _not_a_pickle(path: Path) -> str | None:
    """Why a ``.pth`` file cannot be a torch checkpoint, judged from its first bytes; None if it may be one.

    ``torch.save`` writes a zip archive (``PK``) or, in the legacy format, a pickle (``0x80``).
    """
    with path.open("rb") as f:
        head = f.read(512)
    if head.startswith((b"PK\x03\x04", b"\x80")):
        return None
    if len(head) > 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < path.stat().st_size:
        return f"it is a safetensors file; rename it to {path.with_suffix('.safetensors').name}"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return f"unknown content (starts with bytes {head[:8].hex(' ')}), corrupt or another kind of file"
    start = " ".join(text.split())[:40]
    page = " (a web page: probably an error page saved instead of the download)" if "<html" in text.lower() else ""
    return f"a text file{page}, starting {start!r}; download the weights again"


MODULE_PREFIX = "module."
"""Left on every key by ``nn.DataParallel`` / ``DistributedDataParallel``."""


def strip_module_prefix(state: Mapping[str, torch.Tensor]) -> StateDict:
    """Remove one leading ``module.`` from every key that has it (the one rule for all networks)."""
    return {(k[len(MODULE_PREFIX):] if k.startswith(MODULE_PREFIX) else k): v for k, v in state.items()}


def read_tensor_file(path: str | os.PathLike, error: type[CheckpointError] = CheckpointError) -> StateDict:
    """A plain ``{name: tensor}`` state dict from a file, read safely (:func:`read_file`).

    Args:
        path: a ``.pth``/``.pt``/``.safetensors`` file holding a flat mapping of tensors.
        error: the :class:`CheckpointError` subclass to raise (e.g. the detectors' own).

    Raises:
        FileNotFoundError: no such file.
        CheckpointError (``error``): unreadable, or not a flat mapping of names to tensors.
    """
    try:
        loaded = read_file(path)
    except CheckpointError as err:
        raise error(str(err)) from err
    if not isinstance(loaded, Mapping):
        raise error(f"{path} holds a {type(loaded).__name__}, not a state dict (a mapping of names to tensors)")
    not_tensors = [str(key) for key, value in loaded.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise error(f"{path} is not a plain state dict: entries that are not tensors: {not_tensors[:5]}")
    return {str(key): value for key, value in loaded.items()}


def load_strict(
    model: torch.nn.Module,
    state: Mapping[str, torch.Tensor],
    source: str,
    description: str,
    *,
    optional_key_suffix: str | None = None,
    error: type[CheckpointError] = CheckpointError,
) -> None:
    """Load ``state`` into ``model`` with strict key and shape checking.

    Args:
        model: the module to fill.
        state: prefix-stripped weights.
        source: where the weights came from (for the message), e.g. a file path.
        description: what the weights should be (for the message).
        optional_key_suffix: model keys ending with this may be absent (the model keeps its
            own value), e.g. ``"num_batches_tracked"``.
        error: the :class:`CheckpointError` subclass to raise.

    Raises:
        CheckpointError (``error``): listing missing / unexpected / mis-shaped keys.
    """
    expected = model.state_dict()

    def is_optional(key: str) -> bool:
        return optional_key_suffix is not None and key.endswith(optional_key_suffix)

    mismatch = key_mismatch(expected, state, is_optional)
    if mismatch:
        raise error(f"{source} does not match {description}: {mismatch}")
    complete = dict(state)
    for key, value in expected.items():
        complete.setdefault(key, value)  # only optional keys can be absent here
    model.load_state_dict(complete, strict=True)


def find_tensors(obj: object, name: str) -> StateDict:
    """The state dict inside a loaded object (plain, nested under a training key, or ``module.``-prefixed)."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{name}: holds a {type(obj).__name__}, not a state dict of tensors")
    if not any(isinstance(v, torch.Tensor) for v in obj.values()):
        for key in NESTING_KEYS:
            if key in obj and isinstance(obj[key], Mapping):
                return find_tensors(obj[key], f"{name}[{key!r}]")
        found = ", ".join(sorted(map(str, obj))[:8])
        raise CheckpointError(f"{name}: no tensors found; top-level keys: {found}")
    return strip_module_prefix({str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)})


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
    state = find_tensors(obj, name)
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
