"""Our MTCNN against facenet-pytorch's own ``MTCNN.detect`` (its own networks and pipeline)
on the same weight files and photos.

facenet-pytorch is a test-only reference here (never imported by ``gpen_core``). Its modules
import two torchvision helpers; torchvision is not installed beside this torch, so when it
cannot be imported this test provides stand-ins: ``batched_nms`` (only called with a single
image index, i.e. plain NMS) backed by our ``greedy_nms``, which ``test_nms.py`` checks against
a loop written after torchvision's kernel, and an unused ``transforms.functional``. The module
files are loaded under a private package name, so ``facenet_pytorch/__init__`` (which imports
more of torchvision) never runs, and ``sys.modules`` is restored afterwards.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gpen_core.face.detection.mtcnn import load_mtcnn_nets
from gpen_core.face.detection.mtcnn_pipeline import run_mtcnn
from gpen_core.face.detection.nms import greedy_nms


def _stand_in_batched_nms(
    boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float
) -> torch.Tensor:
    if idxs.numel() and not bool((idxs == idxs[0]).all()):
        raise AssertionError("stand-in batched_nms only supports one image")
    return greedy_nms(boxes, scores, iou_threshold)


@pytest.fixture(scope="module")
def facenet_mtcnn_class(mtcnn_weights_dir: Path) -> type:
    """facenet-pytorch's ``MTCNN`` class, imported from its files under a private package name
    (so that ``facenet_pytorch/__init__`` does not run), with its own P/R/O-Net classes."""
    package_dir = mtcnn_weights_dir.parent
    if not (package_dir / "models" / "mtcnn.py").is_file():
        pytest.skip(f"facenet-pytorch's models/mtcnn.py not found under {package_dir}")
    package_paths = {
        "facenet_reference": package_dir,
        "facenet_reference.models": package_dir / "models",
        "facenet_reference.models.utils": package_dir / "models" / "utils",
    }
    touched = (
        *_TORCHVISION_STAND_INS,
        *package_paths,
        "facenet_reference.models.mtcnn",
        "facenet_reference.models.utils.detect_face",
    )
    saved = {name: sys.modules.get(name) for name in touched}
    try:
        if importlib.util.find_spec("torchvision") is None:
            sys.modules.update(_torchvision_stand_ins())
        for name, path in package_paths.items():
            package = types.ModuleType(name)
            package.__path__ = [str(path)]  # type: ignore[attr-defined]
            sys.modules[name] = package
        module = importlib.import_module("facenet_reference.models.mtcnn")
    finally:
        for name, previous in saved.items():
            if previous is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous
    return module.MTCNN


_TORCHVISION_STAND_INS = (
    "torchvision",
    "torchvision.ops",
    "torchvision.ops.boxes",
    "torchvision.transforms",
    "torchvision.transforms.functional",
)


def _torchvision_stand_ins() -> dict[str, types.ModuleType]:
    modules = {name: types.ModuleType(name) for name in _TORCHVISION_STAND_INS}
    modules["torchvision.ops.boxes"].batched_nms = _stand_in_batched_nms  # type: ignore[attr-defined]
    modules["torchvision"].ops = modules["torchvision.ops"]  # type: ignore[attr-defined]
    modules["torchvision"].transforms = modules["torchvision.transforms"]  # type: ignore[attr-defined]
    modules["torchvision.ops"].boxes = modules["torchvision.ops.boxes"]  # type: ignore[attr-defined]
    modules["torchvision.transforms"].functional = modules["torchvision.transforms.functional"]  # type: ignore[attr-defined]
    return modules


@pytest.mark.parametrize("photo, min_faces", [("portrait-1947.png", 1), ("solvay-1927.png", 20)])
def test_same_faces_as_facenet_pytorch(
    facenet_mtcnn_class: type, mtcnn_weights_dir: Path, photos_dir: Path, photo: str, min_faces: int
) -> None:
    reference_mtcnn = facenet_mtcnn_class(select_largest=False, device=torch.device("cpu"))
    image = Image.open(photos_dir / photo).convert("RGB")
    reference_boxes, reference_scores, reference_points = reference_mtcnn.detect(image, landmarks=True)

    nets = load_mtcnn_nets(mtcnn_weights_dir)
    with torch.inference_mode():
        boxes, scores, points = run_mtcnn(nets, torch.from_numpy(np.array(image)).permute(2, 0, 1).float())
    assert len(reference_boxes) >= min_faces
    assert boxes.shape[0] == len(reference_boxes)
    np.testing.assert_allclose(
        scores.numpy(), np.asarray(reference_scores, dtype=np.float32), rtol=0, atol=1e-5
    )
    np.testing.assert_allclose(
        boxes.numpy(), np.asarray(reference_boxes, dtype=np.float32), rtol=0, atol=1e-2
    )
    np.testing.assert_allclose(
        points.numpy(), np.asarray(reference_points, dtype=np.float32), rtol=0, atol=1e-2
    )
