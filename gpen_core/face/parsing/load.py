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

from ...network_entry import NetworkEntry, WeightsFile
from ...official_files import OFFICIAL_FILES, download_url
from ...weight_checks import BATCHNORM_COUNTER
from ...weights import CheckpointError, CheckpointSource, StateDict, build_checked, describe
from ..masks import mask_mode
from .face_parser import FaceParser
from .inputs import PARSE_SIZE
from .network import ParseNet, ParseNetConfig

logger = logging.getLogger(__name__)

__all__ = [
    "PARSENET_FILE",
    "PARSENET_NETWORK",
    "PARSER_DOWNLOADS",
    "ParserWeightsNotFoundError",
    "find_parser_weights",
    "load_parser",
    "load_parser_for_mask",
    "parsenet_config_from_state_dict",
    "read_parser_state_dict",
    "require_parser_weights",
]

PARSER_DOWNLOADS: dict[str, str] = {e.file_name: download_url(e) for e in OFFICIAL_FILES if e.network == "parsenet"}
"""The two official files (same network), in lookup order, with where they are fetched from (the official table)."""

_MARKERS = ("encoder.0.conv2d.weight", "out_mask_conv.conv2d.weight")
_OTHER_NETWORKS = (
    (("cp.resnet.conv1.weight", "ffm.convblk.conv.weight"),
     "facexlib's BiSeNet parser (parsing_bisenet.pth), a different network; use parsing_parsenet.pth"),
    (("generator.input.input", "ecd0.0.0.weight"), "a GPEN generator, not a face parser"),
    (("body.stage1.0.0.weight", "ClassHead.0.conv1x1.weight", "body.conv1.weight"), "a RetinaFace face detector"),
)


class ParserWeightsNotFoundError(FileNotFoundError):
    """No ParseNet file was found; the message names the files, where to put them and the URLs."""


def _dirs(search_dirs: Iterable[str | os.PathLike] | str | os.PathLike) -> list[Path]:
    return [Path(search_dirs)] if isinstance(search_dirs, (str, os.PathLike)) else [Path(d) for d in search_dirs]


def find_parser_weights(search_dirs: Iterable[str | os.PathLike] | str | os.PathLike) -> Path | None:
    """The first ParseNet file found, or None.

    Looks in each folder, in order, for ``ParseNet-latest.pth``, ``parsing_parsenet.pth``
    and their ``.safetensors`` twins (names compared case-insensitively).
    """
    found = PARSENET_NETWORK.find(_dirs(search_dirs))
    return None if found is None else found[0]


def require_parser_weights(search_dirs: Iterable[str | os.PathLike] | str | os.PathLike) -> Path:
    """Like :func:`find_parser_weights`, but raises :class:`ParserWeightsNotFoundError` when absent."""
    found = find_parser_weights(search_dirs)
    if found is not None:
        return found
    where = ", ".join(map(str, _dirs(search_dirs))) or "(no folders were given)"
    sources = "; ".join(f"{name} from {url}" for name, url in PARSER_DOWNLOADS.items())
    raise ParserWeightsNotFoundError(
        f"The face-parsing paste mask needs ParseNet weights, which were not found in: {where}. "
        f"Download one of them ({sources}) and put it in one of those folders "
        "(for ComfyUI: models/facedetection/ or models/gpen/), or run `gpen download ParseNet-latest`, or use "
        "the 'box' mask."
    )


def _parsenet_why_not(state: Mapping[str, torch.Tensor]) -> str | None:
    """None for a ParseNet state dict, else what it is instead (when recognised) or what is missing."""
    if all(marker in state for marker in _MARKERS):
        return None
    for markers, what in _OTHER_NETWORKS:
        if any(marker in state for marker in markers):
            return f"this is {what}, not ParseNet weights"
    sample = ", ".join(sorted(state)[:5])
    expected = ", ".join(_MARKERS)
    return f"not ParseNet weights; expected keys such as {expected}, found {len(state)} tensors like {sample}"


def read_parser_state_dict(source: CheckpointSource) -> StateDict:
    """The ParseNet state dict of a file or mapping: plain, nested under a training key, or ``module.``-prefixed,
    through the checks every weights file goes through (:mod:`gpen_core.weight_checks`).

    Raises:
        ParserWeightsNotFoundError: no such file.
        CheckpointError: unreadable, unsafe, not a ParseNet (the message names the file and,
            when recognised, what the file is instead), non-float or non-finite values.
    """
    if isinstance(source, (str, os.PathLike)) and not os.path.exists(source):
        raise ParserWeightsNotFoundError(f"ParseNet weights not found: {source}")
    return PARSENET_FILE.read(source)


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


def build_parsenet(state: StateDict, name: str = "<state dict>") -> ParseNet:
    """The :class:`ParseNet` whose shapes ``state`` has, holding it (CPU, float32, eval mode, gradients off).

    Raises:
        CheckpointError: shapes that fit no ParseNet, or missing, unexpected or mis-shaped keys (a
            missing ``num_batches_tracked`` counter is allowed: unused in eval mode).
    """
    config = parsenet_config_from_state_dict(state, name)
    return build_checked(
        lambda: ParseNet(config), state, name, f"ParseNet ({config})", optional_key_suffix=BATCHNORM_COUNTER
    )


PARSENET_FILE = WeightsFile(
    names=tuple(PARSER_DOWNLOADS),
    what="ParseNet",
    why_not=_parsenet_why_not,
    build=build_parsenet,
    counters=(BATCHNORM_COUNTER,),
)
"""GPEN's ``ParseNet-latest.pth`` and facexlib's ``parsing_parsenet.pth`` (the same 238-key state dict)."""

PARSENET_NETWORK = NetworkEntry(
    name="parsenet",
    task="parse",
    folder="facedetection",
    files=(PARSENET_FILE,),
    sizes=(PARSE_SIZE,),
    supports_half=True,
    supports_bfloat16=True,
)
"""The face parser in the model zoo. Its home is ``models/facedetection`` (facexlib's); the nodes also look in
``models/gpen``, where GPEN's repository keeps it. Half precision: a batch that overflows is parsed again in
float32 (:mod:`.run`)."""


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
    model = build_parsenet(read_parser_state_dict(source), name)
    model.set_dtype(dtype).to(device=device or "cpu")  # half: BatchNorms folded here, from the float32 weights
    logger.debug("loaded ParseNet %s from %s", model.config, name)
    return model


def load_parser_for_mask(
    mask: str,
    where: str | os.PathLike | Iterable[str | os.PathLike],
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> FaceParser | None:
    """The parser a paste-mask mode needs (:data:`gpen_core.face.masks.MASK_MODES`): None when the mode
    never parses, and for a mode that parses "if found" when no file is found (logged).

    Args:
        mask: a mask mode name.
        where: a ParseNet file, or folders to search (:func:`find_parser_weights`).
        device, dtype: as :func:`load_parser` (the dtype from :func:`~.precision.resolve_parser_dtype`).

    Raises:
        ValueError: an unknown mode.
        ParserWeightsNotFoundError: the mode requires a parser and no file was found.
        CheckpointError: a file was found but cannot be used (never silently replaced by the box).
    """
    needs = mask_mode(mask).parser
    if needs == "never":
        return None
    if isinstance(where, (str, os.PathLike)) and Path(where).is_file():
        path: Path | None = Path(where)
    else:
        path = require_parser_weights(where) if needs == "required" else find_parser_weights(where)
    if path is None:
        logger.info("no face parser (ParseNet-latest.pth / parsing_parsenet.pth) found: pasting with the box mask")
        return None
    logger.info("face parser: %s", path)
    return FaceParser(load_parser(path, device=device, dtype=dtype))
