"""RetinaFace post-processing: prior boxes, decoding, score threshold and NMS.

Reproduces facexlib's ``RetinaFace.detect_faces`` after the forward pass, operation for
operation in float32 (see ``tests/face/data/README.md``):

* priors for strides 8/16/32 with sizes (16, 32) / (64, 128) / (256, 512) px, computed in
  float64 and stored as float32, ordered level, row, column, anchor size;
* decoding with variances (0.1, 0.2) in facexlib's order (``x2y2 = size + x1y1``);
* keep ``score > threshold`` (strict, float32), sort by score descending, NMS with
  torchvision semantics.
"""

from __future__ import annotations

import functools
import logging
import math

import torch

from .nms import greedy_nms

logger = logging.getLogger(__name__)

PRIOR_MIN_SIZES: tuple[tuple[int, int], ...] = ((16, 32), (64, 128), (256, 512))
PRIOR_STEPS: tuple[int, ...] = (8, 16, 32)
CENTER_VARIANCE = 0.1
SIZE_VARIANCE = 0.2


@functools.lru_cache(maxsize=8)
def _prior_boxes_cpu(height: int, width: int) -> torch.Tensor:
    levels: list[torch.Tensor] = []
    for step, min_sizes in zip(PRIOR_STEPS, PRIOR_MIN_SIZES, strict=True):
        rows = math.ceil(height / step)
        cols = math.ceil(width / step)
        # Same float64 expressions as facexlib's Python loop: (j + 0.5) * step / W, m / W.
        centre_x = (torch.arange(cols, dtype=torch.float64) + 0.5) * step / width
        centre_y = (torch.arange(rows, dtype=torch.float64) + 0.5) * step / height
        sizes_x = torch.tensor([m / width for m in min_sizes], dtype=torch.float64)
        sizes_y = torch.tensor([m / height for m in min_sizes], dtype=torch.float64)
        grid = torch.stack(
            torch.broadcast_tensors(
                centre_x[None, :, None],
                centre_y[:, None, None],
                sizes_x[None, None, :],
                sizes_y[None, None, :],
            ),
            dim=-1,
        )  # (rows, cols, anchors, 4)
        levels.append(grid.reshape(-1, 4))
    return torch.cat(levels).to(torch.float32)


def prior_boxes(height: int, width: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Anchor boxes for a network input of ``height`` x ``width`` pixels.

    Returns:
        (A, 4) float32 ``[cx, cy, w, h]`` as fractions of the input width/height, ordered by
        level (stride 8, 16, 32), row, column, anchor size (smaller first).
    """
    return _prior_boxes_cpu(int(height), int(width)).to(device)


def decode_boxes(loc: torch.Tensor, priors: torch.Tensor) -> torch.Tensor:
    """Decode ``loc`` (A, 4) against ``priors`` (A, 4) into (A, 4) ``[x1, y1, x2, y2]`` in
    fractions of the input size (float32, not clipped)."""
    centres = priors[:, :2] + loc[:, :2] * CENTER_VARIANCE * priors[:, 2:]
    sizes = priors[:, 2:] * torch.exp(loc[:, 2:] * SIZE_VARIANCE)
    top_left = centres - sizes / 2
    bottom_right = sizes + top_left  # facexlib updates in place: x2y2 = size + x1y1
    return torch.cat([top_left, bottom_right], dim=1)


def decode_landmarks(landmarks: torch.Tensor, priors: torch.Tensor) -> torch.Tensor:
    """Decode ``landmarks`` (A, 10) against ``priors`` (A, 4) into (A, 10)
    ``[x0, y0, ..., x4, y4]`` in fractions of the input size."""
    points = landmarks.reshape(-1, 5, 2)
    decoded = priors[:, None, :2] + points * CENTER_VARIANCE * priors[:, None, 2:]
    return decoded.reshape(-1, 10)


def postprocess_retinaface(
    loc: torch.Tensor,
    conf: torch.Tensor,
    landmarks: torch.Tensor,
    input_height: int,
    input_width: int,
    conf_threshold: float = 0.8,
    nms_threshold: float = 0.4,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Turn one image's raw network outputs into detections, as facexlib's ``detect_faces``.

    Args:
        loc: (A, 4) encoded boxes (batch dimension removed).
        conf: (A, 2) softmax scores ``[background, face]``.
        landmarks: (A, 10) encoded landmarks.
        input_height: network input height in pixels (after any resize).
        input_width: network input width in pixels.
        conf_threshold: keep anchors whose face score is strictly greater (compared in float32).
        nms_threshold: IoU above which a lower-scored box is suppressed.

    Returns:
        ``boxes`` (N, 4) float32 ``[x1, y1, x2, y2]`` in pixels of the network input, ``scores`` (N,) float32 in (0, 1],
        ``landmarks`` (N, 10) float32 ``[x0, y0, ..., x4, y4]`` px; rows in descending score
        order (stable among ties), on the input's device. Not clipped to the image.
    """
    expected = loc.shape[0]
    if loc.shape != (expected, 4) or conf.shape != (expected, 2) or landmarks.shape != (expected, 10):
        raise ValueError(
            "expected loc (A, 4), conf (A, 2), landmarks (A, 10); got "
            f"{tuple(loc.shape)}, {tuple(conf.shape)}, {tuple(landmarks.shape)}"
        )
    device = loc.device
    priors = prior_boxes(input_height, input_width, device)
    if priors.shape[0] != expected:
        raise ValueError(
            f"{expected} anchors in the outputs but {priors.shape[0]} priors for an input of "
            f"{input_height}x{input_width}"
        )
    scores = conf[:, 1].float()
    threshold = torch.tensor(conf_threshold, dtype=torch.float32, device=device)
    candidates = torch.nonzero(scores > threshold).flatten()
    scores = scores[candidates]
    order = torch.sort(scores, descending=True, stable=True).indices
    candidates, scores = candidates[order], scores[order]

    box_scale = torch.tensor(
        [input_width, input_height, input_width, input_height], dtype=torch.float32, device=device
    )
    point_scale = box_scale[:2].repeat(5)
    boxes = decode_boxes(loc[candidates].float(), priors[candidates]) * box_scale
    points = decode_landmarks(landmarks[candidates].float(), priors[candidates]) * point_scale

    keep = greedy_nms(boxes, scores, nms_threshold)
    logger.debug(
        "retinaface postprocess: %d anchors, %d above %.3f, %d after NMS",
        expected,
        candidates.numel(),
        conf_threshold,
        keep.numel(),
    )
    return boxes[keep], scores[keep], points[keep]
