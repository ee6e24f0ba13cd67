"""Adding a face detector is one new file (its network, weights file and detector class) plus one entry in
``catalog.DETECTORS``: the loader, ``auto`` and the option lists need nothing else. Shown with a toy detector."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest
import torch

import gpen_core.face.detection.loader as loader
from gpen_core.face.detection import catalog
from gpen_core.face.detection.errors import DetectorWeightsNotFoundError, InvalidDetectorWeightsError
from gpen_core.network_entry import NetworkEntry, WeightsFile
from gpen_core.weights import build_checked

# ---- what the new file would hold -------------------------------------------------------------------------


class ToyNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.head = torch.nn.Conv2d(3, 5, 1)


class ToyDetector:
    name, default_score_threshold = "toy", 0.5

    def __init__(self, net: ToyNet, device: torch.device | str = "cpu", stride: int = 4) -> None:
        self.net, self.device, self.stride = net, torch.device(device), stride


def _why_not(state: Mapping[str, torch.Tensor]) -> str | None:
    weight = state.get("head.weight")
    return None if weight is not None and tuple(weight.shape) == (5, 3, 1, 1) else "not toy weights"


TOY = NetworkEntry(
    name="toy", task="detect", folder="facedetection", aliases=("toy_face",), runner=ToyDetector,
    files=(WeightsFile(names=("toy_face.pth",), what="toy", why_not=_why_not,
                       build=lambda state, name: build_checked(ToyNet, state, name, "toy",
                                                               error=InvalidDetectorWeightsError)),),
)

# ---- the one entry -----------------------------------------------------------------------------------------


@pytest.fixture()
def with_toy(monkeypatch):
    detectors = (*catalog.DETECTORS, TOY)
    monkeypatch.setattr(loader, "DETECTORS", detectors)
    monkeypatch.setattr(loader, "DETECTOR_FILES", tuple(f for e in detectors for f in e.files))
    monkeypatch.setattr(loader, "DETECTOR_NAMES", tuple(e.name for e in detectors))


def _toy_weights(folder: Path) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    state = ToyNet().state_dict()
    folder.mkdir(exist_ok=True)
    torch.save(state, folder / "TOY_FACE.pth")
    return state


def test_a_new_detector_loads_by_name_alias_and_path(with_toy, tmp_path):
    state = _toy_weights(tmp_path)
    for name in ("toy", "Toy_Face", str(tmp_path / "TOY_FACE.pth")):
        detector = loader.load_detector(name, [tmp_path], stride=8)
        assert isinstance(detector, ToyDetector) and detector.stride == 8
        assert torch.equal(detector.net.head.weight, state["head.weight"])


def test_auto_reaches_the_new_detector_last(with_toy, tmp_path, monkeypatch):
    monkeypatch.setattr("gpen_core.face.detection.mtcnn.find_facenet_pytorch_data_dir", lambda: None)
    with pytest.raises(DetectorWeightsNotFoundError, match="'toy' needs the file 'toy_face.pth'"):
        loader.load_detector("auto", [tmp_path])
    _toy_weights(tmp_path)
    assert isinstance(loader.load_detector("auto", [tmp_path]), ToyDetector)


def test_the_new_detector_gets_every_check(with_toy, tmp_path):
    path = tmp_path / "toy_face.pth"
    torch.save({"head.weight": torch.zeros(5, 3, 1, 1), "head.bias": torch.full((5,), float("nan"))}, path)
    with pytest.raises(InvalidDetectorWeightsError, match=rf"{path}: tensor 'head.bias' holds 5 NaN"):
        loader.load_detector("toy", [tmp_path])
    torch.save({"head.weight": torch.zeros(1).expand(5, 3, 1, 1), "head.bias": torch.zeros(5)}, path)
    with pytest.raises(InvalidDetectorWeightsError, match="an expanded view"):
        loader.load_detector("toy", [tmp_path])
