"""Restored face crops to paste masks: ParseNet in batches, in the GPEN model's precision and device.

The memory plan counts the parser too: :func:`parser_peak_bytes` estimates its activations so
that the face batch size fits both networks (they run one after the other on a batch).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import torch

from .inputs import PARSE_SIZE, parser_input
from .masks import class_mask, gpen_paste_mask, kept_classes
from .network import ParseNet, ParseNetConfig

logger = logging.getLogger(__name__)

__all__ = ["parse_classes", "parse_paste_masks", "parser_peak_bytes"]


def parser_peak_bytes(config: ParseNetConfig, dtype: torch.dtype, batch: int, size: int = PARSE_SIZE) -> int:
    """An upper estimate of the activation memory of ``parser.logits`` on ``batch`` crops (weights excluded).

    Follows the forward: in a block, the block input and the shortcut output stay alive while
    ``conv1`` holds its upsampled input, the padded copy and two outputs (conv, norm); the
    largest block sets the peak (the ``size``-side blocks: ~480 channel-planes at 512, about
    0.5 GB per face in float32). Checked against measured peaks in the tests.
    """
    e = torch.empty((), dtype=dtype).element_size()
    clip = config.clip
    side = size
    head = config.base_ch
    planes = [3.0 + 2 * 3 + 2 * config.base_ch]  # input, padded input, encoder.0 out (+ its norm-free copy)

    def block(cin: int, cout: int, side_in: float, side_out: float, up: bool) -> float:
        a_in, a_out = side_in * side_in, side_out * side_out
        shortcut = cout * a_out
        conv1_in = cin * a_out if up else cin * a_in  # upsampled (or not) input of conv1
        conv1_out = cout * a_out if up else cout * a_in
        conv1 = cin * a_in + shortcut + (2 if up else 1) * conv1_in + 2 * conv1_out
        conv2 = cin * a_in + shortcut + 2 * conv1_out + 2 * cout * a_out
        return max(conv1, conv2)

    total_side = float(side)
    for _ in range(config.down_steps):
        planes.append(block(clip(head), clip(head * 2), total_side, total_side / 2, up=False))
        head *= 2
        total_side /= 2
    for _ in range(config.res_depth):
        planes.append(2 * clip(head) * total_side**2 + block(clip(head), clip(head), total_side, total_side, up=False))
    out_side = total_side
    for _ in range(config.up_steps):
        planes.append(block(clip(head), clip(head // 2), out_side, out_side * 2, up=True))
        head //= 2
        out_side *= 2
    planes.append(out_side**2 * (2 * clip(head) + 2 * config.parsing_ch))
    peak = max(planes[1:]) if len(planes) > 1 else planes[0]
    # the planes above are for a size x size input; the factor covers allocator rounding
    return int(1.1 * batch * e * peak)


def _logits_checked(parser: ParseNet, x: torch.Tensor) -> torch.Tensor:
    """Logits, recomputed in float32 (logged) when half precision overflows to inf/NaN."""
    logits = parser.logits(x)
    if not torch.isfinite(logits).all():
        if x.dtype == torch.float32:
            raise FloatingPointError("ParseNet produced non-finite logits in float32; the weights are broken")
        logger.warning("ParseNet overflowed in %s; this batch is parsed again in float32", x.dtype)
        parser.float()
        try:
            logits = parser.logits(x.float())
        finally:
            parser.to(x.dtype)
    return logits


def parse_classes(parser: ParseNet, crops: torch.Tensor, *, batch_size: int = 1) -> torch.Tensor:
    """Class map of each crop: argmax of the logits at 512 (the official input size).

    Args:
        parser: a loaded :class:`ParseNet` (its device and dtype are used).
        crops: ``(N, 3, S, S)`` RGB crops, float in [0, 1] or uint8.
        batch_size: crops per forward.

    Returns:
        ``(N, 512, 512)`` int64 class indices, on the parser's device.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    weight = parser.out_mask_conv.conv2d.weight
    out = []
    with torch.inference_mode():
        for start in range(0, crops.shape[0], batch_size):
            chunk = crops[start : start + batch_size].to(weight.device)
            x = parser_input(chunk, dtype=weight.dtype)
            out.append(_logits_checked(parser, x).argmax(dim=1))
    if not out:
        return torch.zeros((0, PARSE_SIZE, PARSE_SIZE), dtype=torch.int64, device=weight.device)
    return torch.cat(out)


def parse_paste_masks(
    parser: ParseNet,
    crops: torch.Tensor,
    *,
    kept: Iterable[int] | None = None,
    batch_size: int = 1,
) -> torch.Tensor:
    """GPEN's paste masks for restored crops: parse, class table, ``mask_postprocess``, resize.

    Args:
        parser: a loaded :class:`ParseNet`.
        crops: ``(N, 3, S, S)`` restored RGB crops, float in [0, 1] (quantised to 8-bit levels
            and resized to 512 exactly as the official code does).
        kept: classes pasted (default :func:`kept_classes`, GPEN's table).
        batch_size: crops per parser forward.

    Returns:
        ``(N, S, S)`` float32 masks in [0, 1] on ``crops``' device.
    """
    kept = kept_classes() if kept is None else tuple(kept)
    size = crops.shape[-1]
    masks = []
    for start in range(0, crops.shape[0], batch_size):
        classes = parse_classes(parser, crops[start : start + batch_size], batch_size=batch_size)
        masks.append(gpen_paste_mask(class_mask(classes, kept), size).to(crops.device))
    if not masks:
        return torch.zeros((0, size, size), dtype=torch.float32, device=crops.device)
    return torch.cat(masks)
