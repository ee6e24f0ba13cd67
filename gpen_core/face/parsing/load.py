"""Find and load ParseNet weights: GPEN's ``ParseNet-latest.pth`` or facexlib's ``parsing_parsenet.pth``.

Both files hold the same 238-key plain state dict. Reading is as safe as for GPEN checkpoints
(``torch.load(weights_only=True)``: a pickle that asks to run code is refused; ``.safetensors``
is accepted too); the architecture is read from the tensor shapes and the keys are checked
strictly, with errors that name the file. Nothing is ever downloaded.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch

from ...weights import CheckpointError, describe, find_tensors, load_strict, read_file
from .network import ParseNet, ParseNetConfig

logger = logging.getLogger(__name__)

__all__ = [
    "PARSER_DOWNLOADS",
    "ParserWeightsNotFoundError",
    "find_parser_weights",
    "load_parser",
    "load_parser_for_mask",
    "parsenet_config_from_state_dict",
    "read_parser_state_dict",
    "require_parser_weights",
]

PARSER_DOWNLOADS: dict[str, str] = {
    "ParseNet-latest.pth": "https://public-vigen-video.oss-cn-shanghai.aliyuncs.com/robin/models/ParseNet-latest.pth",
    "parsing_parsenet.pth": "https://github.com/xinntao/facexlib/releases/download/v0.2.2/parsing_parsenet.pth",
}
"""The two official files (same network), in lookup order, with where their projects publish them."""

_MARKERS = ("encoder.0.conv2d.weight", "out_mask_conv.conv2d.weight")
_OTHER_NETWORKS = (
    (("cp.resnet.conv1.weight", "ffm.convblk.conv.weight"),
     "facexlib's BiSeNet parser (parsing_bisenet.pth), a different network; use parsing_parsenet.pth"),
    (("generator.input.input", "ecd0.0.0.weight"), "a GPEN generator, not a face parser"),
    (("body.stage1.0.0.weight", "ClassHead.0.conv1x1.weight", "body.conv1.weight"), "a RetinaFace face detector"),
)


class ParserWeightsNotFoundError(FileNotFoundError):
    """No ParseNet file was found; the message names the files, where to put them and the URLs."""


def _candidate_names() -> list[str]:
    names: list[str] = []
    for file_name in PARSER_DOWNLOADS:
        names += [file_name, str(Path(file_name).with_suffix(".safetensors"))]
    return names


def find_parser_weights(search_dirs: Iterable[str | os.PathLike] | str | os.PathLike) -> Path | None:
    """The first ParseNet file found, or None.

    Looks in each folder, in order, for ``ParseNet-latest.pth``, ``parsing_parsenet.pth``
    and their ``.safetensors`` twins (names compared case-insensitively).
    """
    dirs = [Path(search_dirs)] if isinstance(search_dirs, (str, os.PathLike)) else [Path(d) for d in search_dirs]
    wanted = [name.lower() for name in _candidate_names()]
    for directory in dirs:
        if not directory.is_dir():
            continue
        present = {entry.name.lower(): entry for entry in sorted(directory.iterdir()) if entry.is_file()}
        for name in wanted:
            if name in present:
                return present[name]
    return None


def require_parser_weights(search_dirs: Iterable[str | os.PathLike] | str | os.PathLike) -> Path:
    """Like :func:`find_parser_weights`, but raises :class:`ParserWeightsNotFoundError` when absent."""
    found = find_parser_weights(search_dirs)
    if found is not None:
        return found
    dirs = [str(search_dirs)] if isinstance(search_dirs, (str, os.PathLike)) else [str(d) for d in search_dirs]
    where = ", ".join(dirs) if dirs else "(no folders were given)"
    sources = "; ".join(f"{name} from {url}" for name, url in PARSER_DOWNLOADS.items())
    raise ParserWeightsNotFoundError(
        f"The face-parsing paste mask needs ParseNet weights, which were not found in: {where}. "
        f"Download one of them yourself ({sources}) and put it in one of those folders "
        "(for ComfyUI: models/facedetection/ or models/gpen/), or use the 'box' mask. "
        "Nothing is downloaded automatically."
    )


def read_parser_state_dict(source: str | os.PathLike | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The ParseNet state dict of a file or mapping: plain, nested under a training key, or ``module.``-prefixed.

    Raises:
        ParserWeightsNotFoundError: no such file.
        CheckpointError: unreadable, unsafe, or not a ParseNet (the message names the file and,
            when recognised, what the file is instead).
    """
    name = describe(source)
    if isinstance(source, (str, os.PathLike)):
        if not Path(source).is_file():
            raise ParserWeightsNotFoundError(f"ParseNet weights not found: {source}")
        obj: object = read_file(source)
    else:
        obj = source
    state = find_tensors(obj, name)
    if all(marker in state for marker in _MARKERS):
        return state
    for markers, what in _OTHER_NETWORKS:
        if any(marker in state for marker in markers):
            raise CheckpointError(f"{name}: this is {what}, not ParseNet weights")
    sample = ", ".join(sorted(state)[:5])
    raise CheckpointError(
        f"{name}: not ParseNet weights; expected keys such as {', '.join(_MARKERS)}, "
        f"found {len(state)} tensors like {sample}"
    )


def _block_indices(state: Mapping[str, torch.Tensor], part: str) -> list[int]:
    prefix = part + "."
    return sorted({int(key.split(".")[1]) for key in state if key.startswith(prefix) and key.split(".")[1].isdigit()})


def parsenet_config_from_state_dict(state: Mapping[str, torch.Tensor], name: str = "<state dict>") -> ParseNetConfig:
    """The :class:`ParseNetConfig` whose keys and shapes are those of ``state``.

    Read from the shapes: ``base_ch`` (``encoder.0``), ``parsing_ch`` (``out_mask_conv``), the
    numbers of down, body and up blocks, and the channel clip. ``min_feat_size`` cannot be
    seen in the weights (the network is fully convolutional): the official 32 is assumed, so
    ``in_size = 32 * 2 ** down_blocks`` (512 for the official files).

    Raises:
        CheckpointError: a variant this port does not build (PReLU activations), or shapes
            that fit no ParseNet.
    """
    if any(".relu." in key for key in state):
        raise CheckpointError(
            f"{name}: a ParseNet with PReLU activations (the bare default of GPEN's class); GPEN and "
            "facexlib build it with LeakyReLU, which is the only variant supported"
        )
    for marker in _MARKERS:
        if marker not in state or state[marker].ndim != 4:
            raise CheckpointError(f"{name}: missing or malformed {marker}")
    encoder = [i for i in _block_indices(state, "encoder") if i > 0]
    body = _block_indices(state, "body")
    decoder = _block_indices(state, "decoder")
    base_ch = int(state["encoder.0.conv2d.weight"].shape[0])
    block_channels = [
        int(value.shape[dim])
        for key, value in state.items()
        if key.endswith(".conv1.conv2d.weight") and value.ndim == 4
        for dim in (0, 1)
    ]
    low = min(block_channels, default=base_ch)
    high = max(block_channels, default=base_ch)
    ch_min = low if low > base_ch else min(32, low)
    try:
        config = ParseNetConfig(
            in_size=32 * 2 ** len(encoder),
            out_size=32 * 2 ** len(decoder),
            min_feat_size=32,
            base_ch=base_ch,
            parsing_ch=int(state["out_mask_conv.conv2d.weight"].shape[0]),
            res_depth=len(body),
            ch_range=(ch_min, high),
        )
    except ValueError as err:
        raise CheckpointError(f"{name}: shapes fit no ParseNet ({err})") from err
    return config


def load_parser(
    source: str | os.PathLike | Mapping[str, torch.Tensor],
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> ParseNet:
    """A ready :class:`ParseNet` (eval mode, gradients off) from a file or a state dict.

    Args:
        source: ``.pth``/``.pt``/``.safetensors`` path or a state dict.
        device: where to put it (default CPU).
        dtype: compute dtype (:func:`~.precision.resolve_parser_dtype`); float32 is the official
            network, bfloat16 and float16 fold the BatchNorms into the convs (:meth:`ParseNet.set_dtype`).

    Raises:
        ParserWeightsNotFoundError: no such file.
        CheckpointError: the file is unreadable, unsafe, another network, or its keys or shapes
            do not match (missing, unexpected and mis-shaped keys are listed). A missing
            ``num_batches_tracked`` counter is allowed (unused in eval mode).
    """
    name = describe(source)
    state = read_parser_state_dict(source)
    config = parsenet_config_from_state_dict(state, name)
    model = ParseNet(config)
    load_strict(model, state, name, f"ParseNet ({config})", optional_key_suffix="num_batches_tracked")
    model.eval().requires_grad_(False)
    model.set_dtype(dtype).to(device=device or "cpu")  # half: BatchNorms folded here, from the float32 weights
    logger.debug("loaded ParseNet %s from %s", config, name)
    return model


def load_parser_for_mask(
    mask: str,
    where: str | os.PathLike | Iterable[str | os.PathLike],
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> ParseNet | None:
    """The parser a paste-mask mode needs: None for ``"box"``, and for ``"auto"`` when no file is found.

    Args:
        mask: ``"parse"``, ``"auto"`` or ``"box"``.
        where: a ParseNet file, or folders to search (:func:`find_parser_weights`).
        device, dtype: as :func:`load_parser` (the dtype from :func:`~.precision.resolve_parser_dtype`).

    Raises:
        ParserWeightsNotFoundError: ``"parse"`` and no file found.
        CheckpointError: a file was found but cannot be used (never silently replaced by the box).
    """
    if mask == "box":
        return None
    if isinstance(where, (str, os.PathLike)) and Path(where).is_file():
        path: Path | None = Path(where)
    else:
        path = require_parser_weights(where) if mask == "parse" else find_parser_weights(where)
    if path is None:
        return None
    logger.info("face parser: %s", path)
    return load_parser(path, device=device, dtype=dtype)
