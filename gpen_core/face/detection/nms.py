"""Greedy non-maximum suppression (NMS) on the CPU (PyTorch in and out, numpy inside).

Two flavours are needed by the detectors of this package:

* ``torchvision.ops.nms`` semantics (RetinaFace, MTCNN stages 1 and 2): box area is
  ``(x2 - x1) * (y2 - y1)`` with no ``+1``; box ``j`` is suppressed by an earlier-kept box
  ``i`` when ``inter / (area_i + area_j - inter) > threshold`` (strictly greater); a box that
  has been suppressed does not suppress others. Arithmetic is done in the boxes' dtype in
  the same operation order as torchvision's CPU kernel, so in float32 the decisions match it
  exactly.
* The MTCNN "Min" flavour (MTCNN stage 3): ``+1`` pixel convention in widths/heights, and
  overlap ``inter / min(area_i, area_j)``.

How it stays fast while deciding exactly as the plain greedy loop: with a threshold >= 0, only
boxes that *intersect* can suppress one another (no intersection gives an overlap of 0, or
NaN, never ``> threshold``). Boxes are sorted along x (or y, whichever gives fewer candidate
pairs) by their low edge, and a ``searchsorted`` gives each box the window of sorted positions
that holds every box it can intersect (:class:`_Sweep`). Then two exact passes share the work:

1. the greedy loop itself, in score order, one kept box at a time against its window only
   (:func:`_suppress_from_kept`): cheap when each kept box removes many others (crowded or
   clustered boxes, as a detector's raw output); it hands over as soon as it stops paying;
2. for the boxes still undecided, which only suppress among themselves from there on, all
   suppressing pairs at once: blocks of consecutive boxes in sweep order against their windows
   as dense matrices (:func:`_suppression_edges`), then the greedy order resolved over those
   sparse edges (:func:`_resolve_greedy`): cheap when boxes are spread out and most survive.

The arithmetic runs in numpy: its element-wise ops stay on the calling thread, where PyTorch's
would wait for its intra-op thread pool, which costs several times the work itself on a
loaded machine. ``python -m gpen_core bench --nms`` prints timings.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

logger = logging.getLogger(__name__)

OverlapKind = Literal["iou", "min"]

DEFAULT_BLOCK_SIZE = 64
_COLUMN_CHUNK = 4096  # at most block_size x 4096 overlaps per matrix
_LOOP_OVERHEAD = 2500
"""Cost of one step of the one-kept-box-at-a-time loop beyond its overlaps, in overlaps (about
25 us of numpy calls against about 10 ns per overlap)."""
_CHECK_EVERY = 32


def _overlap_matrix(
    boxes_a: np.ndarray,
    areas_a: np.ndarray,
    boxes_b: np.ndarray,
    areas_b: np.ndarray,
    overlap: OverlapKind,
    pixel_offset: float,
) -> np.ndarray:
    """Pairwise overlap between two sets of boxes.

    Args:
        boxes_a: (A, 4) x1, y1, x2, y2.
        areas_a: (A,) their areas (computed with the same ``pixel_offset``).
        boxes_b: (B, 4) boxes to test, same dtype.
        areas_b: (B,) their areas.
        overlap: ``"iou"`` (intersection over union) or ``"min"`` (intersection over the
            smaller area).
        pixel_offset: 0.0 (continuous coordinates) or 1.0 (inclusive pixel convention).

    Returns:
        (A, B) overlap values in the boxes' dtype, in torchvision's operation order (max/min,
        subtract, clamp at 0, multiply, ``area_a + area_b - inter``, divide); NaN where the
        denominator is 0 (a NaN never passes a ``>`` test, as in torchvision). Symmetric in a
        and b (max, min, + and * are commutative in floating point).
    """
    a = np.ascontiguousarray(boxes_a.T)[:, :, None]  # (4, A, 1), each coordinate contiguous
    b = np.ascontiguousarray(boxes_b.T)[:, None, :]  # (4, 1, B)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        widths = np.minimum(a[2], b[2])
        widths -= np.maximum(a[0], b[0])
        heights = np.minimum(a[3], b[3])
        heights -= np.maximum(a[1], b[1])
        if pixel_offset != 0.0:
            widths += widths.dtype.type(pixel_offset)
            heights += heights.dtype.type(pixel_offset)
        inter = np.maximum(widths, 0, out=widths)
        inter *= np.maximum(heights, 0, out=heights)
        if overlap == "iou":
            union = areas_a[:, None] + areas_b[None, :]
            union -= inter
            inter /= union
        else:
            inter /= np.minimum(areas_a[:, None], areas_b[None, :])
    return inter


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


@dataclass
class _Sweep:
    """Boxes sorted along one axis by their low edge, with the window of possible partners of
    each: every box that can intersect the box at sorted position p lies in positions
    ``[starts[p], ends[p])``.

    A later box q can intersect p only if ``low_q < high_p + offset`` exactly, an earlier one
    only if ``low_p < high_q + offset``; both are tested in float64 with the bound nudged one
    ulp up, so rounding can only add candidates, never drop one. (NaN coordinates sort last;
    their overlaps are NaN and never suppress.) The axis, x or y, is the one with fewer
    candidate pairs.
    """

    order: np.ndarray
    """(N,) rows of the boxes in sweep order."""
    position: np.ndarray
    """(N,) sweep position of each row (inverse of ``order``)."""
    starts: np.ndarray
    ends: np.ndarray

    @classmethod
    def build(cls, boxes: np.ndarray, pixel_offset: float) -> _Sweep:
        count = boxes.shape[0]
        positions = np.arange(count)
        best: tuple[int, _Sweep] | None = None
        for axis in (0, 1):
            low = boxes[:, axis].astype(np.float64)
            order = np.argsort(low, kind="stable")
            low = low[order]
            reach = np.nextafter(boxes[order, axis + 2].astype(np.float64) + pixel_offset, np.inf)
            reach[np.isnan(reach)] = np.inf  # a NaN edge: a candidate of every box (never suppresses)
            ends = np.maximum(np.searchsorted(low, reach, side="right"), positions + 1)
            starts = np.minimum(np.searchsorted(np.maximum.accumulate(reach), low, side="left"), positions)
            pairs = int((ends - positions - 1).sum())
            if best is None or pairs < best[0]:
                position = np.empty(count, dtype=np.int64)
                position[order] = positions
                best = (pairs, cls(order, position, starts, ends))
        assert best is not None
        return best[1]


def _suppress_from_kept(
    ranked: np.ndarray,
    areas: np.ndarray,
    threshold_value: np.ndarray,
    overlap: OverlapKind,
    pixel_offset: float,
    removed: np.ndarray,
    kept: np.ndarray,
) -> int:
    """The greedy loop itself, one kept box at a time against its window of partners, for as
    long as it pays: it does when each kept box removes many others (crowded or clustered
    boxes). Updates ``removed`` and ``kept`` (by rank) in place.

    Returns:
        The first rank not decided yet (``N`` when every box is); the boxes from there on that
        are not ``removed`` are left to :func:`_suppression_edges`.
    """
    count = ranked.shape[0]
    sweep = _Sweep.build(ranked, pixel_offset)
    swept, swept_areas = ranked[sweep.order], areas[sweep.order]
    positions = np.arange(count)
    # Worth going on while a kept box decides more boxes than its cost would pay for in the
    # all-pairs pass: (loop overhead + its window) versus (boxes decided x their forward window),
    # all in units of one overlap.
    loop_cost = _LOOP_OVERHEAD + float((sweep.ends - sweep.starts).mean())
    pair_cost_per_box = float((sweep.ends - positions).mean()) + 1.0
    iterations, decided = 0, 0
    for rank in range(count):
        if removed[rank]:
            continue
        kept[rank] = True
        position = sweep.position[rank]
        low, high = sweep.starts[position], sweep.ends[position]
        over = _overlap_matrix(
            ranked[rank : rank + 1], areas[rank : rank + 1], swept[low:high], swept_areas[low:high],
            overlap, pixel_offset,
        )[0]
        partners = sweep.order[low:high]
        suppressed = partners[(over > threshold_value) & (partners > rank)]
        decided += 1 + int(np.count_nonzero(~removed[suppressed]))
        removed[suppressed] = True
        iterations += 1
        if iterations % _CHECK_EVERY == 0:
            if decided / _CHECK_EVERY * pair_cost_per_box < loop_cost:
                return rank + 1
            decided = 0
    return count


def _suppression_edges(
    ranked: np.ndarray,
    areas: np.ndarray,
    threshold_value: np.ndarray,
    overlap: OverlapKind,
    pixel_offset: float,
    block_size: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Every pair of boxes whose overlap is ``> threshold_value`` (a threshold >= 0).

    Boxes that do not intersect never pass (their overlap is 0 or NaN), so each block of
    ``block_size`` boxes in sweep order is compared, as one dense matrix, only with the boxes
    up to its last possible partner.

    Returns:
        ``first``, ``second``: (E,) int64 ranks (rows of ``ranked``) with ``first < second``.
    """
    count = ranked.shape[0]
    sweep = _Sweep.build(ranked, pixel_offset)
    order, ends = sweep.order, sweep.ends
    swept, swept_areas = ranked[order], areas[order]
    firsts: list[np.ndarray] = []
    seconds: list[np.ndarray] = []
    for start in range(0, count, block_size):
        stop = min(count, start + block_size)
        window_end = int(ends[start:stop].max())
        for column in range(start + 1, window_end, _COLUMN_CHUNK):
            column_stop = min(window_end, column + _COLUMN_CHUNK)
            over = _overlap_matrix(
                swept[start:stop], swept_areas[start:stop],
                swept[column:column_stop], swept_areas[column:column_stop],
                overlap, pixel_offset,
            )
            passes = over > threshold_value
            if column < stop:  # each unordered pair once: column position > row position
                passes = np.triu(passes, k=start - column + 1)
            rows, columns = np.nonzero(passes)
            if rows.size:
                a, b = order[rows + start], order[columns + column]
                firsts.append(np.minimum(a, b))
                seconds.append(np.maximum(a, b))
    if not firsts:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty
    return np.concatenate(firsts), np.concatenate(seconds)


def _resolve_greedy(count: int, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Greedy decisions over sparse suppression edges ``first[k] -> second[k]`` (ranks, with
    ``first < second``): in rank order, a box not removed yet is kept and removes its partners.
    Returns the kept ranks in ascending order."""
    removed = np.zeros(count, dtype=bool)
    if first.size:
        edge_order = np.argsort(first, kind="stable")
        first, second = first[edge_order], second[edge_order]
        starts = np.flatnonzero(np.concatenate(([True], first[1:] != first[:-1])))
        stops = np.append(starts[1:], first.size)
        for source, begin, end in zip(first[starts].tolist(), starts.tolist(), stops.tolist(), strict=True):
            if not removed[source]:
                removed[second[begin:end]] = True
    return np.flatnonzero(~removed)


def greedy_nms(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    threshold: float,
    *,
    overlap: OverlapKind = "iou",
    pixel_offset: float = 0.0,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> torch.Tensor:
    """Greedy NMS; returns the indices of the kept boxes in descending score order.

    Args:
        boxes: (N, 4) float tensor, rows ``[x1, y1, x2, y2]`` (any device; the work is done on
            the CPU, which is faster than a GPU for this sequential decision).
        scores: (N,) float tensor; higher is better. Ties keep their input order (stable sort).
        threshold: >= 0; a box is suppressed when its overlap with a kept, higher-scored box
            is strictly greater than this (overlap computed in the boxes' dtype, compared with
            the threshold as float64, like torchvision).
        overlap: ``"iou"`` (torchvision semantics) or ``"min"`` (MTCNN's "Min" mode).
        pixel_offset: added to widths and heights (0.0 for torchvision, 1.0 for MTCNN's numpy
            NMS); >= 0.
        block_size: boxes compared together as one dense matrix; affects memory and speed only.

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
    if not threshold >= 0.0:  # the intersecting-pairs shortcut needs it; also rejects NaN
        raise ValueError(f"threshold must be >= 0, got {threshold}")
    if not pixel_offset >= 0.0:
        raise ValueError(f"pixel_offset must be >= 0, got {pixel_offset}")
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    device = boxes.device
    count = boxes.shape[0]
    if count == 0:
        return torch.empty(0, dtype=torch.int64, device=device)

    order = torch.sort(scores.detach().cpu(), descending=True, stable=True).indices
    ranked_tensor = boxes.detach().cpu()[order]  # row r = the box of rank r
    # numpy for the arithmetic: single-threaded element-wise ops (no thread pool to wait for on a
    # busy machine) with the same IEEE results as torch's; bfloat16, which numpy lacks, in float32.
    dtype = torch.float32 if ranked_tensor.dtype == torch.bfloat16 else ranked_tensor.dtype
    ranked = ranked_tensor.to(dtype).numpy()
    widths = ranked[:, 2] - ranked[:, 0]
    heights = ranked[:, 3] - ranked[:, 1]
    if pixel_offset != 0.0:
        widths = widths + widths.dtype.type(pixel_offset)
        heights = heights + heights.dtype.type(pixel_offset)
    areas = widths * heights
    threshold_value = strict_threshold_in_dtype(threshold, dtype, torch.device("cpu")).numpy()  # 0-dim
    removed = np.zeros(count, dtype=bool)
    kept = np.zeros(count, dtype=bool)
    first_undecided = _suppress_from_kept(ranked, areas, threshold_value, overlap, pixel_offset, removed, kept)
    rest = np.flatnonzero(~removed[first_undecided:]) + first_undecided
    edges = 0
    if rest.size:  # greedy NMS among the undecided boxes alone: the kept ones have done their part
        first, second = _suppression_edges(
            ranked[rest], areas[rest], threshold_value, overlap, pixel_offset, block_size
        )
        kept[rest[_resolve_greedy(rest.size, first, second)]] = True
        edges = first.size
    logger.debug(
        "greedy_nms: %d boxes -> %d kept; one at a time up to rank %d, then %d boxes by %d edges (threshold %.3f, %s)",
        count, int(kept.sum()), first_undecided, rest.size, edges, threshold, overlap,
    )
    return order[torch.from_numpy(np.flatnonzero(kept))].to(device)
