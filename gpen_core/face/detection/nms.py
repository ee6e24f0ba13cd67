"""Greedy non-maximum suppression (NMS) in plain PyTorch.

Two flavours are needed by the detectors of this package:

* ``torchvision.ops.nms`` semantics (RetinaFace, MTCNN stages 1 and 2): box area is
  ``(x2 - x1) * (y2 - y1)`` with no ``+1``; box ``j`` is suppressed by an earlier-kept box
  ``i`` when ``inter / (area_i + area_j - inter) > threshold`` (strictly greater); a box that
  has been suppressed does not suppress others. Arithmetic is done in the boxes' dtype in
  the same operation order as torchvision's CPU kernel, so in float32 the decisions match it
  exactly.
* The MTCNN "Min" flavour (MTCNN stage 3): ``+1`` pixel convention in widths/heights, and
  overlap ``inter / min(area_i, area_j)``.

The implementation processes the score-sorted boxes in blocks: a block is first suppressed
against every box kept in earlier blocks (one vectorised overlap matrix per chunk of kept
boxes), then the greedy order inside the block is resolved on a small boolean matrix. Memory
stays bounded (``block_size * kept_chunk`` overlaps at a time) and thousands of boxes take
milliseconds.
"""

from __future__ import annotations

import logging
from typing import Literal

import torch

logger = logging.getLogger(__name__)

OverlapKind = Literal["iou", "min"]

_KEPT_CHUNK = 4096


def _overlap_matrix(
    boxes_a: torch.Tensor,
    areas_a: torch.Tensor,
    boxes_b: torch.Tensor,
    areas_b: torch.Tensor,
    overlap: OverlapKind,
    pixel_offset: float,
) -> torch.Tensor:
    """Pairwise overlap between two sets of boxes.

    Args:
        boxes_a: (A, 4) x1, y1, x2, y2 of the higher-ranked boxes.
        areas_a: (A,) their areas (computed with the same ``pixel_offset``).
        boxes_b: (B, 4) boxes to test.
        areas_b: (B,) their areas.
        overlap: ``"iou"`` (intersection over union) or ``"min"`` (intersection over the
            smaller area).
        pixel_offset: 0.0 (continuous coordinates) or 1.0 (inclusive pixel convention).

    Returns:
        (A, B) overlap values in the boxes' dtype; NaN where the denominator is 0 (a NaN never
        passes a ``>`` test, as in torchvision).
    """
    a_x1, a_y1, a_x2, a_y2 = (boxes_a[:, k, None].contiguous() for k in range(4))
    b_x1, b_y1, b_x2, b_y2 = (boxes_b[None, :, k].contiguous() for k in range(4))
    xx1 = torch.maximum(a_x1, b_x1)
    yy1 = torch.maximum(a_y1, b_y1)
    xx2 = torch.minimum(a_x2, b_x2)
    yy2 = torch.minimum(a_y2, b_y2)
    widths = xx2.sub_(xx1)
    heights = yy2.sub_(yy1)
    if pixel_offset != 0.0:
        widths.add_(pixel_offset)
        heights.add_(pixel_offset)
    inter = widths.clamp_(min=0).mul_(heights.clamp_(min=0))
    if overlap == "iou":
        union = (areas_a[:, None] + areas_b[None, :]).sub_(inter)
        return inter.div_(union)
    return inter.div_(torch.minimum(areas_a[:, None], areas_b[None, :]))


def strict_threshold_in_dtype(threshold: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A 0-dim tensor ``v`` of ``dtype`` such that, for every value ``x`` of that dtype,
    ``x > v`` (compared in ``dtype``) exactly when ``float(x) > threshold`` (in float64).

    torchvision's kernel compares a float32 overlap with a C++ ``double`` threshold; torch
    itself would round the Python threshold to float32 first (so ``float32(0.4) > 0.4`` would be
    False instead of True). ``v`` is the largest ``dtype`` value not above ``threshold``.
    """
    exact = torch.tensor(threshold, dtype=torch.float64)
    rounded = exact.to(dtype)
    if rounded.to(torch.float64) > exact:
        rounded = torch.nextafter(rounded, torch.tensor(float("-inf"), dtype=dtype))
    return rounded.to(device)


def greedy_nms(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    threshold: float,
    *,
    overlap: OverlapKind = "iou",
    pixel_offset: float = 0.0,
    block_size: int = 512,
) -> torch.Tensor:
    """Greedy NMS; returns the indices of the kept boxes in descending score order.

    Args:
        boxes: (N, 4) float tensor, rows ``[x1, y1, x2, y2]`` (any device).
        scores: (N,) float tensor; higher is better. Ties keep their input order (stable sort).
        threshold: a box is suppressed when its overlap with a kept, higher-scored box is
            strictly greater than this (overlap computed in the boxes' dtype, compared with the
            threshold as float64, like torchvision).
        overlap: ``"iou"`` (torchvision semantics) or ``"min"`` (MTCNN's "Min" mode).
        pixel_offset: added to widths and heights (0.0 for torchvision, 1.0 for MTCNN's numpy
            NMS).
        block_size: number of boxes resolved together; affects speed and memory only.

    Returns:
        (K,) int64 tensor of indices into ``boxes``, on ``boxes.device``, in descending score
        order.
    """
    if boxes.ndim != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"boxes must have shape (N, 4), got {tuple(boxes.shape)}")
    if scores.shape != boxes.shape[:1]:
        raise ValueError(f"scores must have shape ({boxes.shape[0]},), got {tuple(scores.shape)}")
    if not boxes.is_floating_point():
        raise TypeError(f"boxes must be a floating-point tensor, got {boxes.dtype}")
    if overlap not in ("iou", "min"):
        raise ValueError(f"overlap must be 'iou' or 'min', got {overlap!r}")
    device = boxes.device
    count = boxes.shape[0]
    if count == 0:
        return torch.empty(0, dtype=torch.int64, device=device)

    threshold_value = strict_threshold_in_dtype(threshold, boxes.dtype, device)
    order = torch.sort(scores, descending=True, stable=True).indices
    sorted_boxes = boxes[order]
    widths = sorted_boxes[:, 2] - sorted_boxes[:, 0]
    heights = sorted_boxes[:, 3] - sorted_boxes[:, 1]
    if pixel_offset != 0.0:
        widths = widths + pixel_offset
        heights = heights + pixel_offset
    areas = widths * heights

    kept_positions: list[torch.Tensor] = []  # positions in sorted order, per block
    for start in range(0, count, block_size):
        stop = min(count, start + block_size)
        block_boxes = sorted_boxes[start:stop]
        block_areas = areas[start:stop]
        alive = torch.ones(stop - start, dtype=torch.bool, device=device)

        # 1) Suppression by boxes kept in earlier blocks (all have a higher or equal rank).
        if kept_positions:
            kept_so_far = torch.cat(kept_positions)
            for chunk_start in range(0, kept_so_far.numel(), _KEPT_CHUNK):
                chunk = kept_so_far[chunk_start : chunk_start + _KEPT_CHUNK]
                over = _overlap_matrix(
                    sorted_boxes[chunk], areas[chunk], block_boxes, block_areas, overlap, pixel_offset
                )
                alive &= ~(over > threshold_value).any(dim=0)

        # 2) Greedy resolution inside the block: row i may only suppress later rows j > i.
        over_in_block = _overlap_matrix(
            block_boxes, block_areas, block_boxes, block_areas, overlap, pixel_offset
        )
        suppresses = torch.triu(over_in_block > threshold_value, diagonal=1).cpu()
        alive_cpu = alive.cpu()
        for row in range(stop - start):
            if alive_cpu[row]:
                alive_cpu &= ~suppresses[row]
        kept_positions.append(torch.nonzero(alive_cpu).flatten().to(device) + start)

    kept = torch.cat(kept_positions)
    logger.debug(
        "greedy_nms: %d boxes -> %d kept (threshold %.3f, %s)", count, kept.numel(), threshold, overlap
    )
    return order[kept]
