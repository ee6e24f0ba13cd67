"""Face detection: RetinaFace and MTCNN behind one :func:`detect_faces` call, and the one
face selection (order, indices, size bounds, count) used by the core, the nodes and the CLI.

Example::

    from gpen_core.face.detection import FaceSelection, detect_faces, load_detector

    detector = load_detector("auto", search_dirs=["models/facedetection"])
    faces = detect_faces(detector, image)   # image (3, H, W) RGB float in [0, 1] or uint8
    largest = detect_faces(detector, image, selection=FaceSelection("largest", max_faces=1))
"""
from .api import detect_faces, find_faces
from .catalog import DETECTOR_NAMES, DETECTORS
from .detectors import FaceDetector, MTCNNDetector, RetinaFaceDetector
from .errors import DetectorWeightsNotFoundError, FaceDetectorError, InvalidDetectorWeightsError
from .loader import load_detector
from .result import FaceDetections
from .selection import (
    FACE_ORDERS,
    MAX_FACE_INDEX,
    ORDER_ALIASES,
    FaceIndices,
    FaceOrder,
    FaceSelection,
    order_faces,
    parse_face_indices,
    select_face_indices,
    select_faces,
)

__all__ = [
    "DETECTORS",
    "DETECTOR_NAMES",
    "FACE_ORDERS",
    "MAX_FACE_INDEX",
    "ORDER_ALIASES",
    "DetectorWeightsNotFoundError",
    "FaceDetections",
    "FaceDetector",
    "FaceDetectorError",
    "FaceIndices",
    "FaceOrder",
    "FaceSelection",
    "InvalidDetectorWeightsError",
    "MTCNNDetector",
    "RetinaFaceDetector",
    "detect_faces",
    "find_faces",
    "load_detector",
    "order_faces",
    "parse_face_indices",
    "select_face_indices",
    "select_faces",
]
