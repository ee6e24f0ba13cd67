"""Common face-detection entry point: one call for every detector, with the same options.

Example::

    from gpen_core.face.detection.loader import load_detector
    from gpen_core.face.detection.api import detect_faces

    detector = load_detector("retinaface_resnet50", search_dirs=[models_dir / "facedetection"])
    faces = detect_faces(detector, image_hwc, selection="largest", max_faces=1)
    faces.boxes      # (N, 4) float32 x1, y1, x2, y2 px
    faces.landmarks  # (N, 5, 2) float32 (x, y) px: eye L, eye R, nose, mouth L, mouth R (image left/right)
"""

from __future__ import annotations

import logging
from typing import Literal, get_args

import torch

from .detectors import FaceDetector
from .image_input import image_to_rgb255_chw
from .result import FaceDetections

logger = logging.getLogger(__name__)

FaceSelection = Literal["all", "largest", "center"]
FACE_SELECTIONS: tuple[str, ...] = get_args(FaceSelection)


def order_faces(detections: FaceDetections, selection: FaceSelection) -> torch.Tensor:
    """Indices that order faces by the selection rule.

    * ``"all"``: detector order (descending score);
    * ``"largest"``: descending box area;
    * ``"center"``: ascending distance from the box centre to the image centre.

    Ties keep detector order. Returns a (N,) int64 tensor.
    """
    if selection == "all":
        return torch.arange(len(detections), device=detections.boxes.device)
    if selection == "largest":
        return torch.sort(detections.box_areas, descending=True, stable=True).indices
    if selection == "center":
        height, width = detections.image_size
        centres = (detections.boxes[:, :2] + detections.boxes[:, 2:]) / 2
        image_centre = torch.tensor([width / 2, height / 2], dtype=centres.dtype, device=centres.device)
        distances = ((centres - image_centre) ** 2).sum(dim=1)
        return torch.sort(distances, stable=True).indices
    raise ValueError(f"selection must be one of {FACE_SELECTIONS}, got {selection!r}")


def detect_faces(
    detector: FaceDetector,
    image: torch.Tensor,
    *,
    score_threshold: float | None = None,
    min_face_size: float = 0.0,
    selection: FaceSelection = "all",
    max_faces: int | None = None,
) -> FaceDetections:
    """Detect faces in one RGB image.

    Args:
        detector: from :func:`.loader.load_detector` (or any :class:`.detectors.FaceDetector`).
        image: (H, W, 3) RGB tensor (channels last, like one ComfyUI IMAGE frame); uint8 in
            [0, 255] or float in [0, 1]; any device (it is moved to the detector's device).
        score_threshold: keep faces whose score is strictly greater; ``None`` uses the
            detector's default (RetinaFace 0.97 like facexlib's FaceRestoreHelper, MTCNN 0.7).
        min_face_size: drop faces whose box is smaller than this (px) in both width and height
            (i.e. ``max(width, height) < min_face_size``); 0 keeps all. MTCNN also starts its
            image pyramid there, which makes it faster.
        selection: ``"all"`` (score order), ``"largest"`` (area order) or ``"center"``
            (closest to the image centre first); see :func:`order_faces`.
        max_faces: keep at most this many faces after ordering (``None``: no limit), e.g.
            ``selection="largest", max_faces=1`` for the single largest face.

    Returns:
        :class:`.result.FaceDetections` on the CPU, in the selection order, coordinates in
        pixels of ``image``.

    Raises:
        ValueError / TypeError: bad image shape, dtype or range, or bad options.
    """
    if selection not in FACE_SELECTIONS:
        raise ValueError(f"selection must be one of {FACE_SELECTIONS}, got {selection!r}")
    if max_faces is not None and max_faces < 0:
        raise ValueError(f"max_faces must be >= 0 or None, got {max_faces}")
    if min_face_size < 0:
        raise ValueError(f"min_face_size must be >= 0, got {min_face_size}")
    threshold = detector.default_score_threshold if score_threshold is None else float(score_threshold)
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"score_threshold must be in [0, 1), got {threshold}")

    pixels = image_to_rgb255_chw(image, detector.device)
    detections = detector.detect_rgb255(pixels, threshold, float(min_face_size)).to("cpu")
    found = len(detections)
    if min_face_size > 0:
        detections = detections.take(detections.box_sizes >= min_face_size)
    detections = detections.take(order_faces(detections, selection))
    if max_faces is not None:
        detections = detections.take(torch.arange(min(max_faces, len(detections))))
    logger.debug(
        "%s: %d faces found, %d returned (threshold %.3f, min size %.1f px, %s, max %s)",
        detector.name,
        found,
        len(detections),
        threshold,
        min_face_size,
        selection,
        max_faces,
    )
    return detections
