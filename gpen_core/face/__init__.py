"""Whole photos, in pipeline order: detect (``detection``), align (``align``), restore with GPEN,
paste back (``paste``); ``restore`` runs the whole chain.

Example::

    from gpen_core.face import load_detector, restore_faces

    detector = load_detector("auto", search_dirs=["models/facedetection"])
    results = restore_faces(model, detector, images)   # images (B, 3, H, W) RGB in [0, 1]
"""
from .align import reference_points, similarity_transform, warp_faces
from .detection import (
    DETECTOR_NAMES,
    FACE_ORDERS,
    FaceDetections,
    FaceDetector,
    FaceSelection,
    detect_faces,
    load_detector,
)
from .paste import official_paste_mask, paste_faces
from .restore import DetectOptions, RestoredImage, restore_faces

__all__ = [
    "DETECTOR_NAMES",
    "FACE_ORDERS",
    "DetectOptions",
    "FaceDetections",
    "FaceDetector",
    "FaceSelection",
    "RestoredImage",
    "detect_faces",
    "load_detector",
    "official_paste_mask",
    "paste_faces",
    "reference_points",
    "restore_faces",
    "similarity_transform",
    "warp_faces",
]
