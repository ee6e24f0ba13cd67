"""Common face-detection entry point: one call for every detector, with the same options.

Example::

    from gpen_core.face.detection import FaceSelection, detect_faces, load_detector

    detector = load_detector("retinaface_resnet50", search_dirs=[models_dir / "facedetection"])
    faces = detect_faces(detector, image_chw, selection=FaceSelection("largest", max_faces=1))
    faces.boxes      # (N, 4) float32 x1, y1, x2, y2 px
    faces.landmarks  # (N, 5, 2) float32 (x, y) px: eye L, eye R, nose, mouth L, mouth R (image left/right)
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

from .detectors import FaceDetector
from .image_input import image_to_rgb255
from .result import FaceDetections
from .selection import FaceSelection, select_faces

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
"""``progress(done, total)``: called between detector stages; may raise to cancel."""


def detect_faces(
    detector: FaceDetector,
    image: torch.Tensor,
    *,
    score_threshold: float | None = None,
    selection: FaceSelection | None = None,
    progress: Progress | None = None,
) -> FaceDetections:
    """Detect faces in one RGB image and select some of them.

    Args:
        detector: from :func:`.loader.load_detector` (or any :class:`.detectors.FaceDetector`).
        image: (3, H, W) RGB tensor; uint8 in [0, 255] or float in [0, 1]; any device (it is
            moved to the detector's device).
        score_threshold: keep faces whose score is strictly greater; ``None`` or 0 uses the
            detector's default (RetinaFace 0.97 like facexlib's FaceRestoreHelper, MTCNN 0.7).
        selection: which faces, in which order (:class:`.selection.FaceSelection`); ``None``:
            every face in score order. Its ``min_face_size`` is also a hint to the detector
            (MTCNN starts its image pyramid at half of it, which makes it faster; the faces it
            then finds can differ slightly from a full pyramid's).
        progress: ``progress(done, total)`` called before the first and after each detector
            stage (MTCNN: each pyramid scale, R-Net, O-Net; RetinaFace: backbone stages,
            feature pyramid, context modules, heads, post-processing). It may raise (e.g. a
            cancelled ComfyUI prompt) to stop detection there; the exception propagates.

    Returns:
        :class:`.result.FaceDetections` on the CPU, in the selection order, coordinates in
        pixels of ``image``.

    Raises:
        ValueError / TypeError: bad image shape, dtype or range, or bad options.
    """
    selection = selection or FaceSelection()
    if not isinstance(selection, FaceSelection):
        raise TypeError(f"selection must be a FaceSelection or None, got {type(selection).__name__}")
    detections = find_faces(detector, image, score_threshold=score_threshold,
                            min_face_size=selection.min_face_size, progress=progress)
    selected = select_faces(detections, selection)
    logger.debug("%s: %d faces found, %d selected (%s)", detector.name, len(detections), len(selected), selection)
    return selected


def find_faces(
    detector: FaceDetector,
    image: torch.Tensor,
    *,
    score_threshold: float | None = None,
    min_face_size: float = 0.0,
    progress: Progress | None = None,
) -> FaceDetections:
    """Every face of one RGB image above the score threshold, before any selection (see :func:`detect_faces`).

    ``min_face_size`` is only the detector's hint (MTCNN's pyramid); the bound itself is the selection's.
    """
    threshold = detector.default_score_threshold if not score_threshold else float(score_threshold)
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"score_threshold must be in [0, 1) (0 or None = the detector's default), got {threshold}")
    pixels = image_to_rgb255(image, detector.device)
    return detector.detect_rgb255(pixels, threshold, min_face_size, progress=progress).to("cpu")
