"""Restored face crops to paste masks: ParseNet in face batches, in the parser's dtype and device.

The memory plan counts the parser too: :func:`parser_peak_bytes` estimates its activations so
that the face batch size fits both networks (they run one after the other on a batch).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable

import torch

from .inputs import PARSE_SIZE, parser_input
from .masks import class_mask, gpen_paste_mask, kept_classes
from .network import ParseNet, ParseNetConfig
from .workspace import PadWorkspace

logger = logging.getLogger(__name__)

__all__ = ["parse_classes", "parse_paste_masks", "parser_peak_bytes"]

HEAD_ITEMSIZE = 4
"""Bytes per element of the parsing head's input and logits: float32 in every precision."""


def parser_peak_bytes(config: ParseNetConfig, dtype: torch.dtype, batch: int, size: int = PARSE_SIZE) -> int:
    """An upper estimate of the memory of one :func:`parse_classes` batch: its input, the
    activations of ``parser.logits``, the argmax (weights excluded).

    Follows the forward (:mod:`.network`): the padded-input buffer of the workspace (as large
    as the largest padded input so far, float32 for the head) stays; in a block, the block
    input, the shortcut output and the first conv's output are alive while that output is
    padded (in the body, the long-skip input too). The largest is the first down block at
    ``size`` (float32 at 512: ~92 M elements per face, ~0.37 GB; bfloat16 half of it). Checked
    against measured peaks in the tests, in every dtype.

    Args:
        config: the parser's architecture.
        dtype: the parser's compute dtype (:attr:`ParseNet.dtype`).
        batch: faces per forward.
        size: input side (the official 512).
    """
    e = torch.empty((), dtype=dtype).element_size()
    clip = config.clip
    scratch = 0
    peak = 0

    def pad(channels: int, side: float, itemsize: int) -> None:
        nonlocal scratch
        scratch = max(scratch, int(channels * (side + 2) ** 2 * itemsize))

    def live(*tensors: float) -> None:
        nonlocal peak
        peak = max(peak, scratch + int(sum(tensors)))

    x_in = 3 * size * size * 4  # the float32 input, alive through the batch
    pad(3, size, e)
    x: float = config.base_ch * size * size * e
    live(x_in, x)

    def block(held: float, x: float, cin: int, cout: int, side: float, scale: str) -> tuple[float, float]:
        """(output bytes, output side) of a residual block whose input ``x`` has ``side``."""
        inner = 2 * side if scale == "up" else side  # side of conv1's output
        out_side = side / 2 if scale == "down" else inner
        shortcut = 0 if scale == "none" and cin == cout else cout * out_side**2 * e
        conv1 = cout * inner**2 * e
        pad(cin, inner, e)
        live(held, x, shortcut, conv1)
        pad(cout, inner, e)
        conv2 = cout * out_side**2 * e
        live(held, x, shortcut, conv1)
        live(held, x, shortcut, conv2)
        return conv2, out_side

    side = float(size)
    head = config.base_ch
    for _ in range(config.down_steps):
        x, side = block(x_in, x, clip(head), clip(head * 2), side, "down")
        head *= 2
    feat = x
    for _ in range(config.res_depth):
        x, side = block(x_in + feat, x, clip(head), clip(head), side, "none")
    if config.res_depth == 0:
        live(x_in, feat, feat)  # feat + feat, out of place
    for _ in range(config.up_steps):
        x, side = block(x_in, x, clip(head), clip(head // 2), side, "up")
        head //= 2
    logits = config.parsing_ch * side**2 * HEAD_ITEMSIZE
    pad(clip(head), side, HEAD_ITEMSIZE)
    live(x_in, x, logits)
    live(x_in, logits, config.parsing_ch * side**2, side**2 * 8)  # isfinite check, then the int64 argmax
    # without the factor this is the measured CPU peak (official layout at 512: 356 MiB per face in float32,
    # 180 MiB in bfloat16); the factor covers allocator rounding and GPU conv workspaces (not measured here)
    return int(1.2 * batch * peak)


def _logits_checked(parser: ParseNet, x: torch.Tensor, workspace: PadWorkspace | None = None) -> torch.Tensor:
    """Logits, recomputed in float32 (logged) when half precision overflows to inf/NaN."""
    workspace = workspace if workspace is not None else PadWorkspace()
    logits = parser.logits(x, workspace)
    if not torch.isfinite(logits).all():
        dtype = parser.dtype
        if dtype == torch.float32:
            raise FloatingPointError("ParseNet produced non-finite logits in float32; the weights are broken")
        logger.warning("ParseNet overflowed in %s; this batch is parsed again in float32", dtype)
        # the same (folded, rounded) weights computed in float32, on a copy: the parser may be shared
        logits = copy.deepcopy(parser).float().logits(x.float(), workspace)
    return logits


def _classes(parser: ParseNet, crops: torch.Tensor, workspace: PadWorkspace) -> torch.Tensor:
    """Argmax class map of one batch of crops, on the parser's device."""
    x = parser_input(crops.to(parser.device))  # float32: the first pad converts it to the parser's dtype
    return _logits_checked(parser, x, workspace).argmax(dim=1)


def parse_classes(parser: ParseNet, crops: torch.Tensor, *, batch_size: int = 1) -> torch.Tensor:
    """Class map of each crop: argmax of the logits at 512 (the official input size).

    Args:
        parser: a loaded :class:`ParseNet` (it runs in its own dtype and on its device).
        crops: ``(N, 3, S, S)`` RGB crops, float in [0, 1] or uint8.
        batch_size: crops per forward (one padded-input buffer serves every batch).

    Returns:
        ``(N, 512, 512)`` int64 class indices, on the parser's device.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    workspace = PadWorkspace()
    with torch.inference_mode():
        out = [_classes(parser, crops[start : start + batch_size], workspace)
               for start in range(0, crops.shape[0], batch_size)]
    if not out:
        return torch.zeros((0, PARSE_SIZE, PARSE_SIZE), dtype=torch.int64, device=parser.device)
    return torch.cat(out)


def parse_paste_masks(
    parser: ParseNet,
    crops: torch.Tensor,
    *,
    kept: Iterable[int] | None = None,
    batch_size: int = 1,
    workspace: PadWorkspace | None = None,
) -> torch.Tensor:
    """GPEN's paste masks for restored crops: parse, class table, ``mask_postprocess``, resize.

    Args:
        parser: a loaded :class:`ParseNet`, in the dtype and on the device to parse with
            (:func:`~.load.load_parser` with :func:`~.precision.resolve_parser_dtype`).
        crops: ``(N, 3, S, S)`` restored RGB crops, float in [0, 1] (quantised to 8-bit levels
            and resized to 512 exactly as the official code does).
        kept: classes pasted (default :func:`kept_classes`, GPEN's table).
        batch_size: crops per parser forward (size it with :func:`parser_peak_bytes`).
        workspace: the padded-input buffer (default: a new one for this call). Passing the same
            one to calls on successive face batches saves mapping it again (on the CPU ~0.1 s
            per call at 512 in float32) but holds its ``nbytes`` between the calls (135 MB in
            float32, 68 MB in half precision); :func:`parser_peak_bytes` counts it.

    Returns:
        ``(N, S, S)`` float32 masks in [0, 1] on ``crops``' device.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    kept = kept_classes() if kept is None else tuple(kept)
    size = crops.shape[-1]
    workspace = workspace if workspace is not None else PadWorkspace()
    masks = []
    for start in range(0, crops.shape[0], batch_size):
        with torch.inference_mode():
            classes = _classes(parser, crops[start : start + batch_size], workspace)
        masks.append(gpen_paste_mask(class_mask(classes, kept), size).to(crops.device))
    if not masks:
        return torch.zeros((0, size, size), dtype=torch.float32, device=crops.device)
    return torch.cat(masks)
