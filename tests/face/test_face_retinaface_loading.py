"""Loading RetinaFace checkpoints: key variants, backbone detection, ResNet-50, bad files."""

from __future__ import annotations

import pickle
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from gpen_core.face.detection.api import detect_faces
from gpen_core.face.detection.errors import DetectorWeightsNotFoundError, FaceDetectorError, InvalidDetectorWeightsError
from gpen_core.face.detection.loader import load_detector
from gpen_core.face.detection.retinaface import (
    RetinaFaceNet,
    build_retinaface_from_state_dict,
    detect_retinaface_backbone,
    load_retinaface_net,
)


@pytest.fixture(scope="module")
def reference_state_dict(data_dir: Path) -> OrderedDict[str, torch.Tensor]:
    return torch.load(data_dir / "retinaface_mobile0.25_seed1000.pth", map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def probe_input() -> torch.Tensor:
    """A small BGR mean-subtracted input: (1, 3, 96, 128)."""
    generator = torch.Generator().manual_seed(42)
    return torch.rand((1, 3, 96, 128), generator=generator) * 255 - torch.tensor([104.0, 117.0, 123.0]).view(
        1, 3, 1, 1
    )


def outputs_of(net: RetinaFaceNet, network_input: torch.Tensor) -> tuple[torch.Tensor, ...]:
    with torch.inference_mode():
        return net(network_input)


@pytest.mark.parametrize(
    "variant",
    ["plain", "module_prefix", "no_num_batches_tracked", "module_prefix_and_no_num_batches_tracked"],
)
def test_key_variants_load_to_identical_networks(
    tmp_path: Path,
    reference_state_dict: OrderedDict[str, torch.Tensor],
    probe_input: torch.Tensor,
    variant: str,
) -> None:
    state_dict = OrderedDict(reference_state_dict)
    if "no_num_batches_tracked" in variant:
        state_dict = OrderedDict(
            (k, v) for k, v in state_dict.items() if not k.endswith("num_batches_tracked")
        )
        assert len(state_dict) == 253
    if "module_prefix" in variant:
        state_dict = OrderedDict((f"module.{k}", v) for k, v in state_dict.items())
    path = tmp_path / "weights.pth"
    torch.save(state_dict, path)

    net = load_retinaface_net(path)
    assert net.backbone_name == "mobile0.25"
    baseline = build_retinaface_from_state_dict(reference_state_dict)
    for ours, expected in zip(outputs_of(net, probe_input), outputs_of(baseline, probe_input), strict=True):
        assert torch.equal(ours, expected)
    # the weights really arrived (not the random init of a fresh model)
    assert torch.equal(
        net.state_dict()["LandmarkHead.2.conv1x1.bias"], reference_state_dict["LandmarkHead.2.conv1x1.bias"]
    )


def test_resnet50_seeded_round_trip(tmp_path: Path, make_seeded_state_dict: Callable) -> None:
    """ResNet-50 weights (README rule, gain 0.7) saved the way the released file is
    (``module.`` prefix, from DataParallel), loaded back by content, then run."""
    source = RetinaFaceNet("resnet50")
    state_dict = make_seeded_state_dict(source, 2000, 0.7)
    assert "body.layer4.2.bn3.running_var" in state_dict and "body.fc.weight" not in state_dict
    source.load_state_dict(state_dict, strict=True)
    path = tmp_path / "a_name_that_says_mobilenet0.25.pth"  # the name must not matter
    torch.save(OrderedDict((f"module.{k}", v) for k, v in state_dict.items()), path)

    assert detect_retinaface_backbone(state_dict) == "resnet50"
    detector = load_detector(path)
    assert detector.name == "retinaface_resnet50"
    net = detector.net
    generator = torch.Generator().manual_seed(3)
    network_input = torch.rand((1, 3, 100, 132), generator=generator) * 255 - torch.tensor(
        [104.0, 117.0, 123.0]
    ).view(1, 3, 1, 1)
    loc, conf, landmarks = outputs_of(net, network_input)
    anchors = 2 * (13 * 17 + 7 * 9 + 4 * 5)  # ceil(100/8)*ceil(132/8) + ... for strides 8/16/32
    assert loc.shape == (1, anchors, 4)
    assert conf.shape == (1, anchors, 2)
    assert landmarks.shape == (1, anchors, 10)
    assert torch.isfinite(loc).all() and torch.isfinite(landmarks).all()
    torch.testing.assert_close(conf.sum(dim=-1), torch.ones(1, anchors))
    assert float(conf[..., 1].std()) > 1e-3  # not a constant output
    expected_loc, _, _ = outputs_of(source, network_input)
    assert torch.equal(loc, expected_loc)

    image = torch.rand((3, 100, 132), generator=generator)
    faces = detect_faces(detector, image, score_threshold=0.5)
    assert faces.boxes.shape[1:] == (4,) and faces.landmarks.shape[1:] == (5, 2)
    assert faces.image_size == (100, 132)


def test_backbone_is_detected_from_content_not_name(
    tmp_path: Path, reference_state_dict: OrderedDict
) -> None:
    path = tmp_path / "detection_Resnet50_Final.pth"
    torch.save(reference_state_dict, path)
    assert load_retinaface_net(path).backbone_name == "mobile0.25"
    with pytest.raises(InvalidDetectorWeightsError, match="retinaface_mobile0.25"):
        load_detector("retinaface_resnet50", search_dirs=[tmp_path])


def test_missing_key_is_reported(tmp_path: Path, reference_state_dict: OrderedDict) -> None:
    state_dict = OrderedDict(reference_state_dict)
    del state_dict["ssh2.conv7x7_3.1.running_var"]
    path = tmp_path / "missing.pth"
    torch.save(state_dict, path)
    with pytest.raises(
        InvalidDetectorWeightsError, match=r"1 missing: ssh2.conv7x7_3.1.running_var$"
    ):
        load_retinaface_net(path)


def test_unexpected_key_is_reported(tmp_path: Path, reference_state_dict: OrderedDict) -> None:
    state_dict = OrderedDict(reference_state_dict)
    state_dict["body.fc.weight"] = torch.zeros(1000, 256)
    path = tmp_path / "unexpected.pth"
    torch.save(state_dict, path)
    with pytest.raises(InvalidDetectorWeightsError, match=r"1 unexpected: body.fc.weight$"):
        load_retinaface_net(path)


def test_wrong_shape_is_reported(tmp_path: Path, reference_state_dict: OrderedDict) -> None:
    state_dict = OrderedDict(reference_state_dict)
    state_dict["ClassHead.0.conv1x1.weight"] = torch.zeros(6, 64, 1, 1)
    path = tmp_path / "shape.pth"
    torch.save(state_dict, path)
    with pytest.raises(InvalidDetectorWeightsError, match="ClassHead.0.conv1x1.weight"):
        load_retinaface_net(path)


def test_unrelated_state_dict_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "other.pth"
    torch.save({"conv1.weight": torch.zeros(10, 3, 3, 3)}, path)
    with pytest.raises(InvalidDetectorWeightsError, match="not a RetinaFace checkpoint"):
        load_retinaface_net(path)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("kind", ["text", "empty", "tensor", "list", "unsafe_pickle", "truncated"])
def test_files_that_are_not_state_dicts(tmp_path: Path, data_dir: Path, kind: str) -> None:
    path = tmp_path / "detection_mobilenet0.25_Final.pth"
    if kind == "text":
        path.write_text("this is not a checkpoint\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "tensor":
        torch.save(torch.zeros(3), path)
    elif kind == "list":
        torch.save([torch.zeros(3)], path)
    elif kind == "unsafe_pickle":
        path.write_bytes(pickle.dumps(np.zeros(3)))  # not allowed by weights_only=True
    elif kind == "truncated":
        path.write_bytes((data_dir / "retinaface_mobile0.25_seed1000.pth").read_bytes()[:50_000])
    with pytest.raises(InvalidDetectorWeightsError) as caught:
        load_detector("retinaface_mobile0.25", search_dirs=[tmp_path])
    assert str(path) in str(caught.value)
    assert isinstance(caught.value, FaceDetectorError)


def test_not_found_message_says_what_to_put_where(tmp_path: Path) -> None:
    with pytest.raises(DetectorWeightsNotFoundError) as caught:
        load_detector("retinaface_resnet50", search_dirs=[tmp_path / "facedetection"])
    message = str(caught.value)
    assert "detection_Resnet50_Final.pth" in message
    assert str(tmp_path / "facedetection") in message
    assert (
        "https://github.com/xinntao/facexlib/releases/download/v0.1.0/detection_Resnet50_Final.pth" in message
    )
    assert "pip install --no-deps facenet-pytorch==2.6.0" in message
    assert isinstance(caught.value, FileNotFoundError)


def test_loader_finds_named_file_in_search_dirs(tmp_path: Path, reference_state_dict: OrderedDict) -> None:
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    models_dir = tmp_path / "facedetection"
    models_dir.mkdir()
    torch.save(reference_state_dict, models_dir / "detection_mobilenet0.25_Final.pth")
    detector = load_detector("RetinaFace_Mobile0.25", search_dirs=[empty_dir, models_dir])
    assert detector.name == "retinaface_mobile0.25"
    with pytest.raises(DetectorWeightsNotFoundError, match="neither a known face detector"):
        load_detector("yolo_face", search_dirs=[models_dir])
