"""Stand-ins for the face pipeline tests (importable as ``standins``): a generator that returns its
input, and cheap detectors whose answers are known."""
from __future__ import annotations

import torch

import gpen_core as g
from gpen_core.face.align import reference_points
from gpen_core.face.detection.result import FaceDetections


class IdentityGPEN(torch.nn.Module):
    """What the pipeline needs of a GPEN model, returning its input: restoration then changes nothing
    but the resampling, so the geometry of crop and paste can be checked exactly."""

    precision = "fp32"

    def __init__(self, size: int) -> None:
        super().__init__()
        self.config = g.GPENConfig(size, 2, 0.125)
        self.calls: list[int] = []

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def forward(self, x: torch.Tensor, **_options) -> torch.Tensor:
        self.calls.append(x.shape[0])
        return x.clone()


class TemplateFaceDetector:
    """One face per image whose landmarks are GPEN's template scaled to ``fraction`` of the shorter side,
    centred on the image: a face of known position in any image; none in a uniform image."""

    name, device, default_score_threshold = "template", torch.device("cpu"), 0.5

    def __init__(self, fraction: float = 0.5) -> None:
        self.fraction = fraction

    def detect_rgb255(self, image, score_threshold, min_face_size, progress=None):
        h, w = image.shape[-2:]
        if float(image.max()) == float(image.min()):
            return FaceDetections.empty((h, w))
        side = min(h, w) * self.fraction
        points = reference_points(64, dtype=torch.float32) * (side / 64)
        offset = torch.tensor([(w - side) / 2, (h - side) / 2])
        box = torch.tensor([[*offset.tolist(), *(offset + side).tolist()]])
        return FaceDetections(box, torch.tensor([0.99]), (points + offset)[None], (h, w))


class BrightRegionDetector:
    """Finds the one face of a frame as the bounding box of its non-black pixels (a photo pasted on a
    black canvas) and puts fixed landmarks, given relative to that box, inside it; ``jitter`` px of seeded
    noise is added to the landmarks, as a real detector's answers wobble from frame to frame."""

    name, device, default_score_threshold = "bright-region", torch.device("cpu"), 0.5

    def __init__(self, relative_landmarks: torch.Tensor, jitter: float = 0.0, seed: int = 0) -> None:
        self.relative = relative_landmarks
        self.jitter = jitter
        self.generator = torch.Generator().manual_seed(seed)

    def detect_rgb255(self, image, score_threshold, min_face_size, progress=None):
        h, w = image.shape[-2:]
        lit = image.amax(dim=0) > 0
        rows, cols = lit.any(dim=1).nonzero().flatten(), lit.any(dim=0).nonzero().flatten()
        if len(rows) == 0:
            return FaceDetections.empty((h, w))
        x0, y0, x1, y1 = float(cols[0]), float(rows[0]), float(cols[-1]) + 1, float(rows[-1]) + 1
        points = self.relative + torch.tensor([x0, y0])
        points = points + self.jitter * torch.randn(points.shape, generator=self.generator)
        return FaceDetections(torch.tensor([[x0, y0, x1, y1]]), torch.tensor([0.99]), points[None], (h, w))


class ReplayDetector:
    """Answers each call with the next of a list of per-frame detections (e.g. a real detector's, stored): the
    pipeline detects every frame once, in order."""

    name, device, default_score_threshold = "replay", torch.device("cpu"), 0.5

    def __init__(self, frames: list[FaceDetections]) -> None:
        self.frames = frames
        self.calls = 0

    def detect_rgb255(self, image, score_threshold, min_face_size, progress=None):
        found = self.frames[self.calls]
        self.calls += 1
        assert found.image_size == tuple(image.shape[-2:]), (found.image_size, image.shape)
        return found
