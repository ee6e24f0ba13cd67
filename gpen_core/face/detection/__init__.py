"""Face detection: RetinaFace and MTCNN behind one :func:`detect_faces` call.

Example::

    from gpen_core.face.detection import detect_faces, load_detector

    detector = load_detector("auto", search_dirs=["models/facedetection"])
    faces = detect_faces(detector, image)   # image (3, H, W) RGB float in [0, 1]
"""
from .api import FACE_SELECTIONS, FaceSelection, detect_faces, order_faces
from .detectors import FaceDetector, MTCNNDetector, RetinaFaceDetector
from .errors import DetectorWeightsNotFoundError, FaceDetectorError, InvalidDetectorWeightsError
from .loader import DETECTOR_NAMES, load_detector
from .result import FaceDetections

__all__ = [
    "DETECTOR_NAMES",
    "FACE_SELECTIONS",
    "DetectorWeightsNotFoundError",
    "FaceDetections",
    "FaceDetector",
    "FaceDetectorError",
    "FaceSelection",
    "InvalidDetectorWeightsError",
    "MTCNNDetector",
    "RetinaFaceDetector",
    "detect_faces",
    "load_detector",
    "order_faces",
]
