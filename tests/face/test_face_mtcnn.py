"""MTCNN with facenet-pytorch's weights on real photos (skips without facenet-pytorch or the photos)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gpen_core.face.detection.api import detect_faces
from gpen_core.face.detection.detectors import MTCNNDetector
from gpen_core.face.detection.errors import DetectorWeightsNotFoundError, InvalidDetectorWeightsError
from gpen_core.face.detection.loader import load_detector
from gpen_core.face.detection.mtcnn import MTCNN_WEIGHT_FILES, load_mtcnn_nets
from gpen_core.face.detection.result import FaceDetections
from gpen_core.face.detection.selection import FaceSelection


def load_rgb(path: Path) -> torch.Tensor:
    """(3, H, W) uint8 RGB (alpha dropped)."""
    return torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)


@pytest.fixture(scope="module")
def detector(mtcnn_weights_dir: Path) -> MTCNNDetector:
    return MTCNNDetector(load_mtcnn_nets(mtcnn_weights_dir))


def assert_plausible_landmarks(faces: FaceDetections) -> None:
    """Points inside their (slightly grown) boxes; eye image-left left of eye image-right;
    eyes above the nose above the mouth corners; mouth corners left/right."""
    for box, points in zip(faces.boxes.tolist(), faces.landmarks.tolist(), strict=True):
        x1, y1, x2, y2 = box
        margin_x, margin_y = 0.05 * (x2 - x1), 0.05 * (y2 - y1)
        for x, y in points:
            assert x1 - margin_x <= x <= x2 + margin_x and y1 - margin_y <= y <= y2 + margin_y, (box, points)
        (eye_left, eye_right, nose, mouth_left, mouth_right) = points
        assert eye_left[0] < eye_right[0]
        assert mouth_left[0] < mouth_right[0]
        assert max(eye_left[1], eye_right[1]) < nose[1] < min(mouth_left[1], mouth_right[1])


def test_group_photo_finds_most_faces(detector: MTCNNDetector, photos_dir: Path) -> None:
    image = load_rgb(photos_dir / "solvay-1927.png")
    assert image.shape == (3, 568, 1328)
    faces = detect_faces(detector, image)
    assert 20 <= len(faces) <= 35, len(faces)
    assert faces.image_size == (568, 1328)
    assert bool((faces.scores > 0.7).all())
    assert bool((faces.scores[:-1] >= faces.scores[1:]).all())  # score order
    sizes = faces.box_sizes
    assert bool((sizes > 10).all()) and bool((sizes < 100).all())  # small faces in a 1328 px photo
    assert_plausible_landmarks(faces)


def test_group_photo_with_float_input_and_options(detector: MTCNNDetector, photos_dir: Path) -> None:
    image = load_rgb(photos_dir / "solvay-1927.png").float() / 255
    everything = detect_faces(detector, image)
    largest_two = detect_faces(detector, image, selection=FaceSelection("largest", max_faces=2))
    assert len(largest_two) == 2
    assert float(largest_two.box_areas.min()) == pytest.approx(
        float(everything.box_areas.sort(descending=True).values[1])
    )
    assert len(detect_faces(detector, image, selection=FaceSelection(min_face_size=1000))) == 0


def test_portrait_finds_exactly_one_face(detector: MTCNNDetector, photos_dir: Path) -> None:
    image = load_rgb(photos_dir / "portrait-1947.png")
    assert image.shape == (3, 439, 328)
    faces = detect_faces(detector, image)
    assert len(faces) == 1
    x1, y1, x2, y2 = faces.boxes[0].tolist()
    assert 100 < x2 - x1 < 250 and 100 < y2 - y1 < 300  # one large face
    assert x1 >= 0 and x2 <= 328 and y1 >= 0 and y2 <= 439
    assert_plausible_landmarks(faces)


def test_loader_finds_mtcnn_in_facenet_pytorch_and_in_a_folder(
    tmp_path: Path, mtcnn_weights_dir: Path
) -> None:
    assert load_detector("mtcnn", search_dirs=[tmp_path]).name == "mtcnn"
    folder = tmp_path / "facedetection" / "mtcnn"
    folder.mkdir(parents=True)
    for file_name in MTCNN_WEIGHT_FILES:
        (folder / file_name).write_bytes((mtcnn_weights_dir / file_name).read_bytes())
    assert isinstance(load_detector("mtcnn", search_dirs=[tmp_path / "facedetection"]), MTCNNDetector)
    assert isinstance(load_detector(folder), MTCNNDetector)


def test_folder_with_wrong_files(tmp_path: Path, mtcnn_weights_dir: Path) -> None:
    for file_name in MTCNN_WEIGHT_FILES:
        (tmp_path / file_name).write_bytes((mtcnn_weights_dir / "pnet.pt").read_bytes())
    with pytest.raises(InvalidDetectorWeightsError, match="MTCNN RNet"):
        load_detector(tmp_path)
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    with pytest.raises(DetectorWeightsNotFoundError, match="pnet.pt, rnet.pt, onet.pt"):
        load_detector(empty_dir)


def test_mtcnn_not_found_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs with or without facenet-pytorch: the package lookup is made to find nothing."""
    import gpen_core.face.detection.mtcnn as mtcnn_module

    monkeypatch.setattr(mtcnn_module, "find_facenet_pytorch_data_dir", lambda: None)
    with pytest.raises(DetectorWeightsNotFoundError) as caught:
        load_detector("mtcnn", search_dirs=[tmp_path / "facedetection"])
    message = str(caught.value)
    assert "pip install --no-deps facenet-pytorch==2.6.0" in message
    assert "pnet.pt, rnet.pt, onet.pt" in message
    assert str(tmp_path / "facedetection" / "mtcnn") in message
