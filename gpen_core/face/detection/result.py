"""The result type shared by every face detector of this package."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class FaceDetections:
    """Faces found in one image, one row per face.

    Attributes:
        boxes: (N, 4) float32 ``[x1, y1, x2, y2]`` in pixels of the input image (x to the
            right, y down). Not clipped: a face at the border may extend past the image.
        scores: (N,) float32 detector confidence in [0, 1].
        landmarks: (N, 5, 2) float32 ``(x, y)`` pixels, in the order of facexlib's
            FaceRestoreHelper 5-point template: eye image-left, eye image-right, nose, mouth
            corner image-left, mouth corner image-right ("image left" = smaller x; for a
            frontal face, the subject's right eye).
        image_size: ``(height, width)`` of the image the coordinates refer to.
    """

    boxes: torch.Tensor
    scores: torch.Tensor
    landmarks: torch.Tensor
    image_size: tuple[int, int]

    def __post_init__(self) -> None:
        count = self.boxes.shape[0] if self.boxes.ndim == 2 else -1
        if self.boxes.shape != (count, 4):
            raise ValueError(f"boxes must have shape (N, 4), got {tuple(self.boxes.shape)}")
        if self.scores.shape != (count,):
            raise ValueError(f"scores must have shape ({count},), got {tuple(self.scores.shape)}")
        if self.landmarks.shape != (count, 5, 2):
            raise ValueError(f"landmarks must have shape ({count}, 5, 2), got {tuple(self.landmarks.shape)}")

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    @classmethod
    def empty(cls, image_size: tuple[int, int], device: torch.device | str = "cpu") -> FaceDetections:
        """No faces."""
        return cls(
            boxes=torch.zeros((0, 4), dtype=torch.float32, device=device),
            scores=torch.zeros((0,), dtype=torch.float32, device=device),
            landmarks=torch.zeros((0, 5, 2), dtype=torch.float32, device=device),
            image_size=image_size,
        )

    def take(self, indices: torch.Tensor) -> FaceDetections:
        """Rows ``indices`` ((K,) int64 or (N,) bool), in that order."""
        indices = indices.to(self.boxes.device)
        return FaceDetections(
            self.boxes[indices], self.scores[indices], self.landmarks[indices], self.image_size
        )

    def to(self, device: torch.device | str) -> FaceDetections:
        """Copy of the detections on ``device``."""
        return FaceDetections(
            self.boxes.to(device), self.scores.to(device), self.landmarks.to(device), self.image_size
        )

    @property
    def box_sizes(self) -> torch.Tensor:
        """(N,) float32: the larger of each box's width and height, in pixels."""
        return torch.maximum(self.boxes[:, 2] - self.boxes[:, 0], self.boxes[:, 3] - self.boxes[:, 1])

    @property
    def box_areas(self) -> torch.Tensor:
        """(N,) float32: width * height of each box (0 for degenerate boxes)."""
        widths = (self.boxes[:, 2] - self.boxes[:, 0]).clamp(min=0)
        heights = (self.boxes[:, 3] - self.boxes[:, 1]).clamp(min=0)
        return widths * heights
