"""Safe reading of every weights file this package loads (GPEN, face detectors, face parser), for every network.

One reader (:func:`read_state`: :func:`read_file` then :func:`find_tensors`), one rule for ``module.``
prefixes (:func:`strip_module_prefix`) and one strict builder (:func:`build_checked`) serve every
network, with the checks of :mod:`gpen_core.file_checks` (before ``torch.load``) and
:mod:`gpen_core.weight_checks` (on the tensors) on the way. Accepted: ``.pth``/``.pt``
(read with ``torch.load(weights_only=True)``: code in a pickle is refused, never run), ``.safetensors``,
training checkpoints that nest the weights under ``g_ema``, ``params_ema``, ``state_dict``, ``params``,
``model`` or ``generator``, and ``module.`` key prefixes.
"""
from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

import torch

from .digests import changed_since_recorded
from .file_checks import ZIP_MAGIC, check_file
from .weight_checks import CheckpointError, check_storage

__all__ = [
    "CheckpointError",
    "CheckpointSource",
    "NESTING_KEYS",
    "StateDict",
    "build_checked",
    "describe",
    "find_tensors",
    "key_mismatch",
    "read_file",
    "read_state",
    "save_safetensors",
    "strip_module_prefix",
]

StateDict = dict[str, torch.Tensor]
CheckpointSource = str | os.PathLike | Mapping[str, torch.Tensor]

NESTING_KEYS = ("g_ema", "params_ema", "state_dict", "params", "model", "generator")
"""Keys under which training code stores the weights, tried in this order."""


def describe(source: CheckpointSource) -> str:
    """How to name ``source`` in messages."""
    return str(source) if isinstance(source, (str, os.PathLike)) else "<state dict>"


def read_file(path: str | os.PathLike, error: type[CheckpointError] = CheckpointError) -> object:
    """Deserialise a weights file without running code in it, and without unbounded work.

    Before ``torch.load`` runs, a zip checkpoint's directory is checked, and the pickle is scanned for its
    nesting depth and declared storage sizes (:mod:`gpen_core.file_checks`).

    A file downloaded by :mod:`gpen_core.zoo.download` is first compared with the SHA-256 its
    download recorded (:mod:`gpen_core.digests`).

    Raises:
        FileNotFoundError: no such file.
        CheckpointError (``error``): unreadable, truncated, corrupt, a zip bomb, nested too deeply, a
            pickle that asks to run code, or a downloaded file that changed on disk since its download.
    """
    path = Path(path)
    if path.is_dir():
        raise error(f"{path} is a folder, not a checkpoint file; pass the .pth/.safetensors file in it")
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.stat().st_size == 0:
        raise error(f"{path}: the file is empty (0 bytes); download it again")
    changed = changed_since_recorded(path)
    if changed:
        raise error(changed)
    if path.suffix.lower() == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as err:
            raise error(f"{path}: not a readable safetensors file, truncated or corrupt ({err})") from err
    not_pickle = _not_a_pickle(path)
    if not_pickle:
        raise error(f"{path}: not a PyTorch checkpoint: {not_pickle}")
    check_file(path, error)
    return _torch_load(path, error)


def _torch_load(path: Path, error: type[CheckpointError]) -> object:
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        text = str(err)
        lowered = text.lower()
        detail = next((line.strip() for line in text.splitlines() if "nsupported" in line), text.splitlines()[0])
        if "unsupported global" in lowered or "unsupported class" in lowered:
            raise error(
                f"{path}: refused to load: the pickle asks to run code or build objects other than tensors, "
                "which is how malicious checkpoints work. Use the official weights, or convert a file you trust "
                f"to .safetensors. Details: {detail}"
            ) from err
        raise error(
            f"{path}: not a PyTorch checkpoint: a pickle that is not a torch.save file of tensors, or corrupt "
            f"({detail}); it was refused, nothing in it ran"
        ) from err
    except RecursionError as err:
        raise error(f"{path}: nested too deeply to read; no checkpoint of weights is. Refused") from err
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, IndexError, KeyError) as err:
        # Garbage bytes surface from the unpickler as IndexError/KeyError/ValueError/EOFError,
        # truncated zip archives as RuntimeError/OSError.
        raise error(
            f"{path}: cannot be read; the file is truncated or corrupt ({type(err).__name__}: {err})"
        ) from err


def _not_a_pickle(path: Path) -> str | None:
    """Why a ``.pth`` file cannot be a torch checkpoint, judged from its first bytes; None if it may be one.

    ``torch.save`` writes a zip archive (``PK``) or, in the legacy format, a pickle (``0x80``).
    """
    with path.open("rb") as f:
        head = f.read(512)
    if head.startswith((ZIP_MAGIC, b"\x80")):
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


def find_tensors(obj: object, name: str, error: type[CheckpointError] = CheckpointError) -> StateDict:
    """The state dict inside a loaded object (plain, nested under :data:`NESTING_KEYS`, or ``module.``-prefixed).

    Raises:
        CheckpointError (``error``): not a mapping, or no tensors at any nesting key.
    """
    while True:
        if not isinstance(obj, Mapping):
            raise error(f"{name}: holds a {type(obj).__name__}, not a state dict of tensors")
        if any(isinstance(v, torch.Tensor) for v in obj.values()):
            return strip_module_prefix({str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)})
        key = next((k for k in NESTING_KEYS if k in obj and isinstance(obj[k], Mapping)), None)
        if key is None:
            found = ", ".join(sorted(map(str, obj))[:8])
            raise error(f"{name}: no tensors found; top-level keys: {found}")
        obj, name = obj[key], f"{name}[{key!r}]"


def read_state(source: CheckpointSource, error: type[CheckpointError] = CheckpointError) -> StateDict:
    """The state dict of a file (read safely, :func:`read_file`) or a mapping, its tensors dense and backed
    by their data (:func:`gpen_core.weight_checks.check_storage`), ``module.`` prefixes removed.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError (``error``): see :func:`read_file`, :func:`find_tensors`, ``check_storage``.
    """
    name = describe(source)
    obj = read_file(source, error) if isinstance(source, (str, os.PathLike)) else source
    state = find_tensors(obj, name, error)
    check_storage(state, name, error)
    return state


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


ModuleT = TypeVar("ModuleT", bound=torch.nn.Module)


def build_checked(
    make: Callable[[], ModuleT],
    state: Mapping[str, torch.Tensor],
    name: str,
    description: str,
    *,
    optional_key_suffix: str | None = None,
    error: type[CheckpointError] = CheckpointError,
) -> ModuleT:
    """The module ``make()`` builds, holding ``state``: shapes compared first on the ``meta`` device.

    ``make`` runs once under ``torch.device("meta")`` (no memory: the shapes of the network the file
    describes), the keys and shapes are compared with ``state``, and only then is the real module
    built (on the CPU, float32) and filled with strict key checking. A file that declares a huge
    network it does not hold is thus refused before any allocation.

    Args:
        make: builds the untrained module (its architecture already read from ``state``'s shapes).
        state: prefix-stripped weights, through :func:`read_state` and ``check_values``.
        name: where the weights came from (for the message), e.g. a file path.
        description: what the weights should be (for the message), e.g. ``"GPEN-512 (...)"``.
        optional_key_suffix: model keys ending with this may be absent (the model keeps its own
            value), e.g. ``"num_batches_tracked"``.
        error: the :class:`CheckpointError` subclass to raise.

    Returns:
        The module in eval mode, gradients off.

    Raises:
        CheckpointError (``error``): listing missing / unexpected / mis-shaped keys.
    """
    with torch.device("meta"):
        expected = make().state_dict()

    def is_optional(key: str) -> bool:
        return optional_key_suffix is not None and key.endswith(optional_key_suffix)

    mismatch = key_mismatch(expected, state, is_optional)
    if mismatch:
        raise error(f"{name}: does not match {description}: {mismatch}")
    model = make()
    own = model.state_dict()
    model.load_state_dict({key: state.get(key, own[key]) for key in own}, strict=True)
    return model.eval().requires_grad_(False)


def save_safetensors(state: StateDict, path: str | os.PathLike, *, overwrite: bool = False) -> None:
    """Write ``state`` as safetensors (contiguous copies); refuses to overwrite unless asked."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True (--force) to replace it")
    save_file({k: v.detach().contiguous() for k, v in state.items()}, str(path), metadata={"format": "pt"})
