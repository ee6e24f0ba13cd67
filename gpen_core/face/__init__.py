"""Whole photos, in pipeline order: detect (``detection``), follow over frames (``tracking``), align
(``align``), restore with GPEN, parse (``parsing``) and paste back (``masks``, ``finish``, ``paste``);
``restore`` holds the steps, ``pipeline`` runs them a face batch at a time over frames or a stream.

Example::

    from gpen_core.face import FaceNetworks, RestoreOptions, PasteOptions, load_detector, restore_faces

    detector = load_detector("auto", search_dirs=["models/facedetection"])
    result = restore_faces(FaceNetworks(model, detector), images)   # images (B, 3, H, W) RGB in [0, 1]
    result.images, result.masks, result.faces         # or the steps: detect_and_align, restore_crops, paste_back

    parser = load_parser_for_mask("auto", ["models/facedetection"])  # None when no ParseNet file is found
    options = RestoreOptions(paste=PasteOptions(color_match="lab"))
    result = restore_faces(FaceNetworks(model, detector, parser), images, options)
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
from .masks import MASK_MODE_NAMES, official_paste_mask
from .options import DetectOptions, PasteOptions, RestoreOptions, TrackOptions
from .parsing import FaceParser, ParseNet, load_parser, load_parser_for_mask
from .paste import paste_faces
from .pipeline import FaceNetworks, FaceRestorer, RestoredBatch, RestoredFrame, paste_restored, restore_faces
from .restore import detect_and_align, paste_back, restore_crops
from .stats import RestoreStats
from .tracking import FaceTracker, LandmarkSmoother

__all__ = [
    "DETECTOR_NAMES",
    "FACE_ORDERS",
    "MASK_MODE_NAMES",
    "AlignedFaces",
    "DetectOptions",
    "FaceDetections",
    "FaceDetector",
    "FaceNetworks",
    "FaceParser",
    "FaceRestorer",
    "FaceSelection",
    "FaceTracker",
    "LandmarkSmoother",
    "ParseNet",
    "PasteOptions",
    "RestoreOptions",
    "RestoreStats",
    "RestoredBatch",
    "RestoredFrame",
    "TrackOptions",
    "detect_and_align",
    "detect_faces",
    "load_detector",
    "load_parser",
    "load_parser_for_mask",
    "official_paste_mask",
    "paste_back",
    "paste_faces",
    "paste_restored",
    "reference_points",
    "restore_crops",
    "restore_faces",
    "similarity_transform",
    "warp_faces",
]
