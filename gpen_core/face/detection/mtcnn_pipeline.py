"""The MTCNN detection cascade: image pyramid, P-Net proposals, R-Net refinement, O-Net
output with 5 landmarks.

This follows the arithmetic of facenet-pytorch 2.6.0's ``detect_face`` (same pyramid,
thresholds, NMS flavours, ``+1`` pixel conventions, area resampling of crops), so the boxes and
points are in the same coordinates facenet-pytorch's ``MTCNN.detect`` returns. One deliberate
difference: a candidate whose crop would be empty is dropped together with its box (facenet-pytorch
would misalign its crop list instead).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from .mtcnn import MTCNNNets
from .nms import greedy_nms

logger = logging.getLogger(__name__)

PNET_CELL_SIZE = 12
PNET_STRIDE = 2
DEFAULT_STAGE_THRESHOLDS: tuple[float, float, float] = (0.6, 0.7, 0.7)
DEFAULT_PYRAMID_FACTOR = 0.709
_CROP_BATCH = 512
PNET_STRIP_PIXELS = 1 << 20
"""P-Net runs on a scaled image larger than this (pixels) in row strips of about this size, with
a cancel point after each strip: the first scales of a large photo take seconds each (8000x6000:
about 8 s of CPU for the first; a strip about 0.5 s). A strip's float rounding can differ from a
one-piece forward by an ulp (probabilities within 1e-7); scaled images up to 1 megapixel run in
one piece."""


def _normalise(rgb_0_255: torch.Tensor) -> torch.Tensor:
    """[0, 255] RGB -> MTCNN input range (about [-1, 1])."""
    return (rgb_0_255 - 127.5) * 0.0078125


def pyramid_scales(height: int, width: int, min_face_size: float, factor: float) -> list[float]:
    """Scales at which P-Net (a 12 px face detector) sees faces from ``min_face_size`` px up.

    Returns:
        Decreasing scale factors; empty if the image is smaller than ``min_face_size``.
    """
    first_scale = 12.0 / min_face_size
    shorter_side = min(height, width) * first_scale
    scales: list[float] = []
    scale = first_scale
    while shorter_side >= 12:
        scales.append(scale)
        scale *= factor
        shorter_side *= factor
    return scales


def _square_boxes(boxes: torch.Tensor) -> torch.Tensor:
    """Grow (K, 4) boxes to squares around the same centre (side = longer side)."""
    widths = boxes[:, 2] - boxes[:, 0]
    heights = boxes[:, 3] - boxes[:, 1]
    sides = torch.maximum(widths, heights)
    x1 = boxes[:, 0] + widths * 0.5 - sides * 0.5
    y1 = boxes[:, 1] + heights * 0.5 - sides * 0.5
    return torch.stack([x1, y1, x1 + sides, y1 + sides], dim=1)


def _regress_boxes(boxes: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Apply R-Net/O-Net box offsets (fractions of the inclusive width/height)."""
    widths = boxes[:, 2] - boxes[:, 0] + 1
    heights = boxes[:, 3] - boxes[:, 1] + 1
    sizes = torch.stack([widths, heights, widths, heights], dim=1)
    return boxes + offsets * sizes


def _crop_and_resample(
    image: torch.Tensor, boxes: torch.Tensor, size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut ``boxes`` out of ``image`` (clipped to it) and area-resample each to size x size.

    Args:
        image: (3, H, W) float [0, 255].
        boxes: (K, 4) float boxes (1-based inclusive corner convention of MTCNN).
        size: output side (24 for R-Net, 48 for O-Net).

    Returns:
        ``crops`` (M, 3, size, size) normalised, and ``valid`` (K,) bool telling which boxes
        gave a non-empty crop (M = valid.sum()).
    """
    height, width = image.shape[1:]
    corners = boxes.trunc().to(torch.int64).cpu()
    x1 = corners[:, 0].clamp(min=1).tolist()
    y1 = corners[:, 1].clamp(min=1).tolist()
    x2 = corners[:, 2].clamp(max=width).tolist()
    y2 = corners[:, 3].clamp(max=height).tolist()
    crops: list[torch.Tensor] = []
    valid: list[bool] = []
    for left, top, right, bottom in zip(x1, y1, x2, y2, strict=True):
        if bottom > top - 1 and right > left - 1:
            patch = image[None, :, top - 1 : bottom, left - 1 : right]
            crops.append(F.interpolate(patch, size=(size, size), mode="area"))
            valid.append(True)
        else:
            valid.append(False)
    valid_mask = torch.tensor(valid, dtype=torch.bool, device=boxes.device)
    if not crops:
        return image.new_zeros((0, 3, size, size)), valid_mask
    return _normalise(torch.cat(crops, dim=0)), valid_mask


def _scaled_size(height: int, width: int, scale: float) -> tuple[int, int]:
    return int(height * scale + 1), int(width * scale + 1)


def pnet_strip_rows(height: int, width: int) -> int:
    """P-Net output rows per strip for a (height, width) input (all of them when it is small)."""
    output_rows = math.ceil((height - 2) / 2) - 4  # 3x3 conv, 2x2 ceil pool, two 3x3 convs
    if height * width <= PNET_STRIP_PIXELS:
        return output_rows
    return max(8, PNET_STRIP_PIXELS // (2 * width))


def pnet_strips(height: int, width: int) -> int:
    """Number of P-Net strips for a (height, width) input."""
    output_rows = math.ceil((height - 2) / 2) - 4
    return math.ceil(output_rows / pnet_strip_rows(height, width))


def _run_pnet(
    nets: MTCNNNets, normalised: torch.Tensor, strip_done: Callable[[], None]
) -> tuple[torch.Tensor, torch.Tensor]:
    """P-Net on (1, 3, H, W) in row strips of :func:`pnet_strip_rows` output rows: output rows
    [a, b) need input rows [2a, 2b + 10), and the last strip ends at the image's last row as the
    whole image does. ``strip_done()`` after each strip."""
    height, width = normalised.shape[2:]
    output_rows = math.ceil((height - 2) / 2) - 4
    rows = pnet_strip_rows(height, width)
    offsets, probabilities = [], []
    for first in range(0, output_rows, rows):
        last = min(output_rows, first + rows)
        strip_offsets, strip_probabilities = nets.pnet(normalised[:, :, 2 * first : 2 * last + 10])
        offsets.append(strip_offsets)
        probabilities.append(strip_probabilities)
        strip_done()
    if len(offsets) == 1:
        return offsets[0], probabilities[0]
    return torch.cat(offsets, dim=2), torch.cat(probabilities, dim=2)


def _scale_candidates(
    nets: MTCNNNets, image: torch.Tensor, scale: float, threshold: float, strip_done: Callable[[], None]
) -> torch.Tensor:
    """P-Net at one pyramid scale: (K, 9) boxes x1, y1, x2, y2, score, 4 offsets, after NMS 0.5."""
    height, width = image.shape[1:]
    resized = F.interpolate(image[None], size=_scaled_size(height, width, scale), mode="area")
    offsets, probabilities = _run_pnet(nets, _normalise(resized), strip_done)
    face_probability = probabilities[0, 1]
    rows, cols = torch.nonzero(face_probability >= threshold, as_tuple=True)
    scores = face_probability[rows, cols]
    cell_offsets = offsets[0][:, rows, cols].T
    cells = torch.stack([cols, rows], dim=1).to(image.dtype)
    top_left = ((PNET_STRIDE * cells + 1) / scale).floor()
    bottom_right = ((PNET_STRIDE * cells + PNET_CELL_SIZE) / scale).floor()
    candidates = torch.cat([top_left, bottom_right, scores[:, None], cell_offsets], dim=1)
    return candidates[greedy_nms(candidates[:, :4], candidates[:, 4], 0.5)]


def _propose(
    nets: MTCNNNets,
    image: torch.Tensor,
    scales: Sequence[float],
    threshold: float,
    strip_done: Callable[[], None],
) -> torch.Tensor:
    """Stage 1: P-Net over the pyramid. Returns (K, 5) squared boxes + score column.
    ``strip_done()`` is called after each P-Net strip, i.e. at least once per scale (the cancel
    points)."""
    per_scale: list[torch.Tensor] = []
    for scale in scales:
        candidates = _scale_candidates(nets, image, scale, threshold, strip_done)
        if candidates.shape[0]:
            per_scale.append(candidates)
    if not per_scale:
        return image.new_zeros((0, 5))
    candidates = torch.cat(per_scale, dim=0)
    candidates = candidates[greedy_nms(candidates[:, :4], candidates[:, 4], 0.7)]
    widths = candidates[:, 2] - candidates[:, 0]
    heights = candidates[:, 3] - candidates[:, 1]
    sizes = torch.stack([widths, heights, widths, heights], dim=1)
    boxes = _square_boxes(candidates[:, :4] + candidates[:, 5:9] * sizes)
    return torch.cat([boxes, candidates[:, 4:5]], dim=1)


def _batched(network: torch.nn.Module, crops: torch.Tensor) -> tuple[torch.Tensor, ...]:
    outputs = [network(crops[start : start + _CROP_BATCH]) for start in range(0, crops.shape[0], _CROP_BATCH)]
    return tuple(torch.cat(parts, dim=0) for parts in zip(*outputs, strict=True))


def _refine(nets: MTCNNNets, image: torch.Tensor, boxes: torch.Tensor, threshold: float) -> torch.Tensor:
    """Stage 2: R-Net on 24x24 crops. (K, 5) -> (K', 5) squared boxes + R-Net score."""
    crops, valid = _crop_and_resample(image, boxes[:, :4], 24)
    boxes = boxes[valid]
    if boxes.shape[0] == 0:
        return boxes
    offsets, probabilities = _batched(nets.rnet, crops)
    scores = probabilities[:, 1]
    passed = scores > threshold
    boxes = torch.cat([boxes[passed, :4], scores[passed, None]], dim=1)
    offsets = offsets[passed]
    keep = greedy_nms(boxes[:, :4], boxes[:, 4], 0.7)
    boxes, offsets = boxes[keep], offsets[keep]
    return torch.cat([_square_boxes(_regress_boxes(boxes[:, :4], offsets)), boxes[:, 4:5]], dim=1)


def _output(
    nets: MTCNNNets, image: torch.Tensor, boxes: torch.Tensor, threshold: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stage 3: O-Net on 48x48 crops -> final boxes (K, 4), scores (K,), points (K, 5, 2)."""
    crops, valid = _crop_and_resample(image, boxes[:, :4], 48)
    boxes = boxes[valid]
    if boxes.shape[0] == 0:
        return boxes[:, :4], boxes[:, 4], boxes.new_zeros((0, 5, 2))
    offsets, landmark_fractions, probabilities = _batched(nets.onet, crops)
    scores = probabilities[:, 1]
    passed = scores > threshold
    boxes, scores = boxes[passed, :4], scores[passed]
    offsets, landmark_fractions = offsets[passed], landmark_fractions[passed]
    widths = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
    heights = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
    points_x = widths * landmark_fractions[:, :5] + boxes[:, 0:1] - 1
    points_y = heights * landmark_fractions[:, 5:] + boxes[:, 1:2] - 1
    points = torch.stack([points_x, points_y], dim=2)
    boxes = _regress_boxes(boxes, offsets)
    keep = greedy_nms(boxes, scores, 0.7, overlap="min", pixel_offset=1.0)
    return boxes[keep], scores[keep], points[keep]


def run_mtcnn(
    nets: MTCNNNets,
    image_rgb_0_255: torch.Tensor,
    min_face_size: float = 20.0,
    stage_thresholds: Sequence[float] = DEFAULT_STAGE_THRESHOLDS,
    pyramid_factor: float = DEFAULT_PYRAMID_FACTOR,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Detect faces with MTCNN in one image.

    Args:
        nets: loaded networks, on the image's device.
        image_rgb_0_255: (3, H, W) float32 RGB in [0, 255].
        min_face_size: smallest face side (px) the pyramid looks for; > 0.
        stage_thresholds: face-probability thresholds of P-Net (``>=``), R-Net and O-Net (``>``).
        pyramid_factor: scale ratio between pyramid levels, in (0, 1).
        progress: ``progress(done, total)`` with ``total`` = P-Net strips (one per pyramid
            scale, more for scales above :data:`PNET_STRIP_PIXELS`) + 2: called with 0 first,
            then after each strip, after R-Net and after O-Net. It may raise to cancel; the
            exception propagates.

    Returns:
        ``boxes`` (N, 4) float32 ``[x1, y1, x2, y2]`` px, ``scores`` (N,) O-Net face
        probabilities, ``points`` (N, 5, 2) landmarks (eye image-left, eye image-right, nose,
        mouth image-left, mouth image-right); rows in descending score order.
    """
    if image_rgb_0_255.ndim != 3 or image_rgb_0_255.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) image, got {tuple(image_rgb_0_255.shape)}")
    if min_face_size <= 0:
        raise ValueError(f"min_face_size must be > 0, got {min_face_size}")
    if not 0.0 < pyramid_factor < 1.0:
        raise ValueError(f"pyramid_factor must be in (0, 1), got {pyramid_factor}")
    if len(stage_thresholds) != 3:
        raise ValueError(f"stage_thresholds needs 3 values, got {list(stage_thresholds)}")
    height, width = image_rgb_0_255.shape[1:]
    scales = pyramid_scales(height, width, min_face_size, pyramid_factor)
    total = sum(pnet_strips(*_scaled_size(height, width, scale)) for scale in scales) + 2
    done = 0

    def report(steps: int = 1) -> None:
        nonlocal done
        done += steps
        if progress is not None:
            progress(done, total)

    report(0)
    boxes = _propose(nets, image_rgb_0_255, scales, stage_thresholds[0], report)
    logger.debug("mtcnn: %d pyramid scales, %d proposals", len(scales), boxes.shape[0])
    if boxes.shape[0] > 0:
        boxes = _refine(nets, image_rgb_0_255, boxes, stage_thresholds[1])
        logger.debug("mtcnn: %d boxes after R-Net", boxes.shape[0])
    report()
    if boxes.shape[0] == 0:
        empty = image_rgb_0_255.new_zeros((0, 4))
        final_boxes, scores, points = empty, empty[:, 0], image_rgb_0_255.new_zeros((0, 5, 2))
    else:
        final_boxes, scores, points = _output(nets, image_rgb_0_255, boxes, stage_thresholds[2])
        logger.debug("mtcnn: %d faces after O-Net", final_boxes.shape[0])
    report()
    return final_boxes, scores, points
