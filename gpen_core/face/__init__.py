"""Whole photos, in pipeline order: detect (``detection``), align (``align``), restore with GPEN,
paste back (``paste``); ``restore`` runs the whole chain.

Example::

    from gpen_core.face import load_detector, restore_faces

    detector = load_detector("auto", search_dirs=["models/facedetection"])
    result = restore_faces(model, detector, images)   # images (B, 3, H, W) RGB in [0, 1]
    result.images, result.masks, result.faces         # or the steps: detect_and_align, restore_crops, paste_back

    parser = load_parser_for_mask("auto", ["models/facedetection"])  # None when no ParseNet file is found
    result = restore_faces(model, detector, images, parser=parser, paste=PasteOptions(color_match="lab"))
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
from .faces import AlignedFaces
from .parsing import ParseNet, load_parser, load_parser_for_mask
from .paste import PasteOptions, official_paste_mask, paste_faces
from .restore import (
    DetectOptions,
    RestoredBatch,
    detect_and_align,
    paste_back,
    restore_crops,
    restore_faces,
)
from .tracking import LandmarkSmoother

__all__ = [
    "DETECTOR_NAMES",
    "FACE_ORDERS",
    "AlignedFaces",
    "DetectOptions",
    "FaceDetections",
    "FaceDetector",
    "FaceSelection",
    "LandmarkSmoother",
    "RestoredBatch",
    "detect_and_align",
    "ParseNet",
    "PasteOptions",
    "detect_faces",
    "load_detector",
    "load_parser",
    "load_parser_for_mask",
    "official_paste_mask",
    "paste_back",
    "paste_faces",
    "reference_points",
    "restore_crops",
    "restore_faces",
    "similarity_transform",
    "warp_faces",
]
