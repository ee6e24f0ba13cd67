"""Detector objects with one common interface (:class:`FaceDetector`).

Each detector takes the internal image layout produced by
:func:`.image_input.image_to_rgb255_chw` ((3, H, W) float32 RGB in [0, 255] on the detector's
device) and returns :class:`.result.FaceDetections`. Users normally call
:func:`.detection.detect_faces`, which validates the image and applies the common options.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F

from .mtcnn import MTCNNNets
from .mtcnn_pipeline import DEFAULT_PYRAMID_FACTOR, DEFAULT_STAGE_THRESHOLDS, run_mtcnn
from .result import FaceDetections
from .retinaface import BGR_MEAN, RetinaFaceNet
from .retinaface_postprocess import postprocess_retinaface

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
"""``progress(done, total)``, called between detector stages; may raise to cancel."""


@runtime_checkable
class FaceDetector(Protocol):
    """What :func:`.detection.detect_faces` needs from a detector."""

    name: str
    """e.g. ``"retinaface_resnet50"``, ``"retinaface_mobile0.25"``, ``"mtcnn"``."""
    device: torch.device
    default_score_threshold: float
    """Score threshold used when the caller passes ``None``."""

    def detect_rgb255(
        self,
        image: torch.Tensor,
        score_threshold: float,
        min_face_size: float,
        progress: Progress | None = None,
    ) -> FaceDetections:
        """Detect faces in (3, H, W) float32 RGB [0, 255] on ``self.device``; keep scores
        strictly above ``score_threshold``; ``min_face_size`` (px, >= 0) is a hint the detector
        may use to skip work (filtering is done by the caller). ``progress(done, total)`` is
        called with 0 first, between stages, and with ``total`` last; an exception it raises
        stops detection and propagates."""
        ...


class RetinaFaceDetector:
    """RetinaFace (facexlib-compatible) as a :class:`FaceDetector`.

    Args:
        net: a loaded :class:`.retinaface.RetinaFaceNet`.
        device: where to run it; the network is moved there.
        nms_threshold: IoU above which lower-scored boxes are suppressed (facexlib: 0.4).
        max_input_side: if set and the image's longer side exceeds it, the network sees a
            bilinearly downscaled copy (coordinates are mapped back). ``None`` (default) runs at
            the original size, as facexlib's default ``use_origin_size=True``.
    """

    default_score_threshold = 0.97
    """facexlib's FaceRestoreHelper (used by GPEN / CodeFormer pipelines) calls
    ``detect_faces(img, 0.97)``."""

    def __init__(
        self,
        net: RetinaFaceNet,
        device: torch.device | str = "cpu",
        nms_threshold: float = 0.4,
        max_input_side: int | None = None,
    ) -> None:
        if max_input_side is not None and max_input_side < 32:
            raise ValueError(f"max_input_side must be >= 32 or None, got {max_input_side}")
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        self.name = f"retinaface_{net.backbone_name}"
        self.nms_threshold = nms_threshold
        self.max_input_side = max_input_side
        self._bgr_mean = torch.tensor(BGR_MEAN, dtype=torch.float32, device=self.device).view(3, 1, 1)

    def detect_rgb255(
        self,
        image: torch.Tensor,
        score_threshold: float,
        min_face_size: float,
        progress: Progress | None = None,
    ) -> FaceDetections:
        height, width = image.shape[1:]
        total = self.net.stages + 2  # network stages, heads, post-processing
        done = 0

        def step() -> None:
            nonlocal done
            done += 1
            if progress is not None:
                progress(done, total)

        if progress is not None:
            progress(0, total)
        with torch.inference_mode():
            bgr = image.flip(0)
            if self.max_input_side is not None and max(height, width) > self.max_input_side:
                resize = self.max_input_side / max(height, width)
                bgr = F.interpolate(bgr[None], scale_factor=resize, mode="bilinear", align_corners=False)[0]
            network_input = (bgr - self._bgr_mean)[None]
            loc, conf, landmarks = self.net(network_input, step)
            step()
            input_height, input_width = network_input.shape[2:]
            boxes, scores, points = postprocess_retinaface(
                loc[0],
                conf[0],
                landmarks[0],
                input_height,
                input_width,
                conf_threshold=score_threshold,
                nms_threshold=self.nms_threshold,
            )
            if (input_height, input_width) != (height, width):
                # Map network-input pixels back to the caller's image.
                xy_scale = torch.tensor(
                    [width / input_width, height / input_height], dtype=torch.float32, device=boxes.device
                )
                boxes = boxes * xy_scale.repeat(2)
                points = points * xy_scale.repeat(5)
        step()
        return FaceDetections(
            boxes=boxes.float(),
            scores=scores.float(),
            landmarks=points.reshape(-1, 5, 2).float(),
            image_size=(height, width),
        )


class MTCNNDetector:
    """MTCNN (facenet-pytorch weights) as a :class:`FaceDetector`.

    Args:
        nets: loaded :class:`.mtcnn.MTCNNNets`.
        device: where to run them; the networks are moved there.
        pyramid_min_face_size: smallest face (px) the image pyramid looks for (facenet-pytorch
            default 20), unless half the caller's ``min_face_size`` is larger. Smaller is slower.
        stage_thresholds: P-Net / R-Net / O-Net thresholds (facenet-pytorch default 0.6, 0.7, 0.7).
        pyramid_factor: ratio between pyramid scales (default 0.709).
    """

    name = "mtcnn"
    default_score_threshold = 0.7
    """Same as the O-Net stage threshold, i.e. no extra filtering by default."""

    def __init__(
        self,
        nets: MTCNNNets,
        device: torch.device | str = "cpu",
        pyramid_min_face_size: float = 20.0,
        stage_thresholds: Sequence[float] = DEFAULT_STAGE_THRESHOLDS,
        pyramid_factor: float = DEFAULT_PYRAMID_FACTOR,
    ) -> None:
        self.device = torch.device(device)
        self.nets = nets.to(self.device)
        for network in (nets.pnet, nets.rnet, nets.onet):
            network.eval()
        self.pyramid_min_face_size = float(pyramid_min_face_size)
        self.stage_thresholds = tuple(float(t) for t in stage_thresholds)
        self.pyramid_factor = float(pyramid_factor)

    def detect_rgb255(
        self,
        image: torch.Tensor,
        score_threshold: float,
        min_face_size: float,
        progress: Progress | None = None,
    ) -> FaceDetections:
        height, width = image.shape[1:]
        # The pyramid starts at half the caller's minimum: starting at the minimum itself loses
        # faces near the bound (on the Solvay photo with a 45 px minimum, 14 of the 18 faces a full
        # pyramid finds; from half of it, 17).
        pyramid_min = max(self.pyramid_min_face_size, float(min_face_size) / 2)
        with torch.inference_mode():
            boxes, scores, points = run_mtcnn(
                self.nets, image, pyramid_min, self.stage_thresholds, self.pyramid_factor, progress
            )
            threshold = torch.tensor(score_threshold, dtype=torch.float32, device=scores.device)
            keep = scores > threshold
        return FaceDetections(
            boxes=boxes[keep].float(),
            scores=scores[keep].float(),
            landmarks=points[keep].float(),
            image_size=(height, width),
        )
