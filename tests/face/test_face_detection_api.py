"""The common entry point: image checks, options, selection, progress, result type."""

from __future__ import annotations

import pytest
import torch

from gpen_core.face.detection.api import detect_faces
from gpen_core.face.detection.detectors import FaceDetector
from gpen_core.face.detection.image_input import image_to_rgb255
from gpen_core.face.detection.result import FaceDetections
from gpen_core.face.detection.selection import FaceSelection, order_faces


class ScriptedDetector:
    """Returns fixed faces and records what it was given."""

    name = "scripted"
    default_score_threshold = 0.5

    def __init__(self, boxes: list[list[float]], scores: list[float]) -> None:
        self.device = torch.device("cpu")
        self.boxes = torch.tensor(boxes, dtype=torch.float32)
        self.scores = torch.tensor(scores, dtype=torch.float32)
        self.calls: list[tuple[torch.Tensor, float, float]] = []

    def detect_rgb255(
        self, image: torch.Tensor, score_threshold: float, min_face_size: float, progress=None
    ) -> FaceDetections:
        self.calls.append((image, score_threshold, min_face_size))
        if progress is not None:
            progress(0, 1)
            progress(1, 1)
        keep = self.scores > score_threshold
        centres = (self.boxes[:, :2] + self.boxes[:, 2:]) / 2
        landmarks = centres[:, None, :].repeat(1, 5, 1)
        return FaceDetections(self.boxes[keep], self.scores[keep], landmarks[keep], tuple(image.shape[1:]))


# image 100 x 200 (H x W), centre (100, 50)
BOXES = [
    [0, 0, 20, 20],  # score 0.9, area 400, far from centre
    [90, 40, 110, 60],  # score 0.8, area 400, at the centre
    [120, 10, 180, 90],  # score 0.7, area 4800, largest
    [10, 70, 16, 76],  # score 0.4, below the default threshold
]
SCORES = [0.9, 0.8, 0.7, 0.4]


@pytest.fixture
def detector() -> ScriptedDetector:
    return ScriptedDetector(BOXES, SCORES)


def test_scripted_detector_satisfies_protocol(detector: ScriptedDetector) -> None:
    assert isinstance(detector, FaceDetector)


def test_default_threshold_and_score_order(detector: ScriptedDetector) -> None:
    faces = detect_faces(detector, torch.zeros((3, 100, 200)))
    assert faces.scores.tolist() == pytest.approx([0.9, 0.8, 0.7])
    assert faces.image_size == (100, 200)
    assert detector.calls[0][1] == 0.5
    detect_faces(detector, torch.zeros((3, 100, 200)), score_threshold=0)  # 0 = default too
    assert detector.calls[1][1] == 0.5
    faces = detect_faces(detector, torch.zeros((3, 100, 200)), score_threshold=0.3)
    assert len(faces) == 4


def test_selection_largest_and_center(detector: ScriptedDetector) -> None:
    image = torch.zeros((3, 100, 200))
    largest = detect_faces(detector, image, selection=FaceSelection("largest", max_faces=1))
    assert largest.boxes.tolist() == [BOXES[2]]
    center = detect_faces(detector, image, selection=FaceSelection("center"))
    assert center.boxes[0].tolist() == BOXES[1]
    assert center.scores.tolist() == pytest.approx([0.8, 0.7, 0.9])
    assert len(detect_faces(detector, image, selection=FaceSelection("all", max_faces=2))) == 2
    assert len(detect_faces(detector, image, selection=FaceSelection(max_faces=0))) == 3  # 0 = no limit


def test_min_face_size_filters_and_is_passed_on(detector: ScriptedDetector) -> None:
    faces = detect_faces(detector, torch.zeros((3, 100, 200)), selection=FaceSelection(min_face_size=21))
    assert faces.boxes.tolist() == [BOXES[2]]
    assert detector.calls[-1][2] == 21.0
    faces = detect_faces(detector, torch.zeros((3, 100, 200)), selection=FaceSelection(min_face_size=20))
    assert len(faces) == 3  # 20 px boxes are kept at 20


def test_bad_options(detector: ScriptedDetector) -> None:
    image = torch.zeros((3, 100, 200))
    with pytest.raises(TypeError, match="FaceSelection"):
        detect_faces(detector, image, selection="largest")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="score_threshold"):
        detect_faces(detector, image, score_threshold=1.5)
    with pytest.raises(ValueError, match="score_threshold"):
        detect_faces(detector, image, score_threshold=-0.1)


def test_progress_reaches_the_detector_and_its_exception_propagates(detector: ScriptedDetector) -> None:
    calls: list[tuple[int, int]] = []
    detect_faces(detector, torch.zeros((3, 100, 200)), progress=lambda done, total: calls.append((done, total)))
    assert calls == [(0, 1), (1, 1)]

    def cancel(done: int, total: int) -> None:
        raise KeyboardInterrupt("cancelled")

    with pytest.raises(KeyboardInterrupt, match="cancelled"):
        detect_faces(detector, torch.zeros((3, 100, 200)), progress=cancel)


@pytest.mark.parametrize(
    "shape, hint",
    [
        ((100, 200, 3), "channels last"),
        ((1, 3, 100, 200), "a batch"),
        ((4, 100, 200), "RGBA"),
        ((100, 200), ""),
        ((1, 100, 200), ""),
    ],
)
def test_wrong_shapes_are_named_in_the_error(shape: tuple[int, ...], hint: str) -> None:
    with pytest.raises(ValueError) as caught:
        image_to_rgb255(torch.zeros(shape), "cpu")
    assert str(shape) in str(caught.value)
    assert hint in str(caught.value)


def test_value_conventions() -> None:
    generator = torch.Generator().manual_seed(0)
    as_uint8 = torch.randint(0, 256, (3, 4, 5), generator=generator, dtype=torch.uint8)
    from_uint8 = image_to_rgb255(as_uint8, "cpu")
    from_float = image_to_rgb255(as_uint8.float() / 255, "cpu")
    assert from_uint8.shape == (3, 4, 5) and from_uint8.dtype == torch.float32
    assert torch.equal(from_uint8, as_uint8.float())
    torch.testing.assert_close(from_float, from_uint8, atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        image_to_rgb255(as_uint8.float(), "cpu")  # 0..255 floats
    with pytest.raises(TypeError, match=r"float in \[0, 1\] or uint8, got torch.int32"):
        image_to_rgb255(as_uint8.to(torch.int32), "cpu")
    with pytest.raises(ValueError, match="NaN"):
        image_to_rgb255(torch.full((3, 2, 2), float("nan")), "cpu")


def test_result_shape_checks() -> None:
    with pytest.raises(ValueError, match="landmarks"):
        FaceDetections(torch.zeros(2, 4), torch.zeros(2), torch.zeros(2, 10), (10, 10))
    empty = FaceDetections.empty((10, 20))
    assert len(empty) == 0 and empty.landmarks.shape == (0, 5, 2)
    assert order_faces(empty, "center").numel() == 0
