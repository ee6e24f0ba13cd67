"""Temporal smoothing of face landmarks over video frames, against flicker.

Faces of consecutive frames are matched by box overlap (IoU); each matched face continues a track
whose landmarks go through a one-pole low-pass filter::

    smoothed[t] = strength * smoothed[t - 1] + (1 - strength) * detected[t]

A face with no match in the previous frame (a new face, or a scene cut) starts a new track at its
detected landmarks, so nothing is smoothed across a cut. Strength 0 leaves the landmarks untouched.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import torch

from .detection.result import FaceDetections

if TYPE_CHECKING:
    from .options import TrackOptions

__all__ = ["DEFAULT_MATCH_IOU", "FaceTracker", "LandmarkSmoother", "box_iou", "match_boxes"]

DEFAULT_MATCH_IOU = 0.3
"""Least box IoU for a face to continue a track of the previous frame."""


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(N, M)`` intersection over union of ``(N, 4)`` and ``(M, 4)`` ``[x1, y1, x2, y2]`` boxes (float64)."""
    a, b = a.to(torch.float64), b.to(torch.float64)
    top_left = torch.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(dim=2)
    area_a = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(dim=1)
    area_b = (b[:, 2:] - b[:, :2]).clamp(min=0).prod(dim=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


def match_boxes(previous: torch.Tensor, current: torch.Tensor, min_iou: float) -> list[int | None]:
    """For each current box, the index of its previous box (or ``None``): greedy by highest IoU, one to one.

    Args:
        previous: ``(P, 4)`` boxes of the previous frame.
        current: ``(C, 4)`` boxes of this frame.
        min_iou: pairs below this IoU never match.
    """
    matches: list[int | None] = [None] * current.shape[0]
    if previous.shape[0] == 0 or current.shape[0] == 0:
        return matches
    iou = box_iou(previous, current)
    while True:
        best = int(torch.argmax(iou))
        prev_index, cur_index = divmod(best, iou.shape[1])
        if float(iou[prev_index, cur_index]) < min_iou:
            return matches
        matches[cur_index] = prev_index
        iou[prev_index, :] = -1.0
        iou[:, cur_index] = -1.0


class LandmarkSmoother:
    """Smooths the landmarks of the faces of consecutive frames (one call per frame, in order).

    Args:
        strength: filter coefficient in [0, 1): 0 = off (landmarks returned as given), 0.5 halves
            the weight of each older frame, 0.9 smooths strongly (and lags behind fast motion).
        min_iou: least box IoU to continue a track (:data:`DEFAULT_MATCH_IOU`).
    """

    def __init__(self, strength: float, min_iou: float = DEFAULT_MATCH_IOU) -> None:
        if not 0.0 <= strength < 1.0:
            raise ValueError(f"landmark smoothing strength must be in [0, 1), got {strength}")
        if not 0.0 < min_iou <= 1.0:
            raise ValueError(f"min_iou must be in (0, 1], got {min_iou}")
        self.strength = float(strength)
        self.min_iou = float(min_iou)
        self._boxes = torch.zeros((0, 4))
        self._smoothed = torch.zeros((0, 5, 2), dtype=torch.float64)

    def reset(self) -> None:
        """Forget every track (the next frame starts afresh)."""
        self._boxes = torch.zeros((0, 4))
        self._smoothed = torch.zeros((0, 5, 2), dtype=torch.float64)

    def __call__(self, boxes: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
        """The landmarks of one frame's faces, smoothed along their tracks.

        Args:
            boxes: ``(N, 4)`` detector boxes of this frame (matched against the previous frame's).
            landmarks: ``(N, K, 2)`` detected landmarks.

        Returns:
            ``(N, K, 2)`` in ``landmarks``' dtype; ``landmarks`` itself when strength is 0.
        """
        if self.strength == 0.0:
            return landmarks
        detected = landmarks.detach().to("cpu", torch.float64)
        smoothed = detected.clone()
        for current, previous in enumerate(match_boxes(self._boxes, boxes.detach().cpu(), self.min_iou)):
            if previous is not None:
                smoothed[current] = self.strength * self._smoothed[previous] + (1.0 - self.strength) * detected[current]
        self._boxes = boxes.detach().cpu()
        self._smoothed = smoothed
        return smoothed.to(landmarks.device, landmarks.dtype)


class FaceTracker:
    """Follows the faces of frames that come in order; hands back each frame's faces once they are final.

    The pipeline pushes every frame's detections and restores a frame only when the tracker has handed
    it back, so a tracker may look ahead (hold frames back) before it decides. This one decides at once:
    each frame comes back as detected, its landmarks smoothed along their tracks when
    ``options.smoothing`` > 0 (:class:`LandmarkSmoother`).

    Args:
        options: the tracking options (:class:`gpen_core.face.options.TrackOptions`).
    """

    def __init__(self, options: TrackOptions) -> None:
        self.smoother = LandmarkSmoother(options.smoothing) if options.smoothing > 0 else None

    def push(self, detections: FaceDetections) -> list[FaceDetections]:
        """The faces of the next frame; returns the frames now final, oldest first."""
        if self.smoother is None:
            return [detections]
        landmarks = self.smoother(detections.boxes, detections.landmarks)
        return [dataclasses.replace(detections, landmarks=landmarks)]

    def finish(self) -> list[FaceDetections]:
        """The frames still held back, at the end of the clip (none here)."""
        return []
