"""Progress and cancel points inside detection: a callback that raises after N calls stops the
detector there (MTCNN between pyramid scales and stages, RetinaFace between network stages)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import gpen_core as g
from gpen_core.face.detection import mtcnn_pipeline
from gpen_core.face.detection.api import detect_faces
from gpen_core.face.detection.detectors import MTCNNDetector, RetinaFaceDetector
from gpen_core.face.detection.mtcnn import load_mtcnn_nets
from gpen_core.face.detection.mtcnn_pipeline import pyramid_scales
from gpen_core.face.detection.retinaface import RetinaFaceNet
from gpen_core.face.pipeline import FaceNetworks, restore_faces
from helpers import TINY


class Cancelled(Exception):
    pass


class CancelAfter:
    """A progress callback that records its calls and raises on call number ``limit`` (1-based)."""

    def __init__(self, limit: int | None = None) -> None:
        self.limit = limit
        self.calls: list[tuple[int, int]] = []

    def __call__(self, done: int, total: int) -> None:
        self.calls.append((done, total))
        if self.limit is not None and len(self.calls) >= self.limit:
            raise Cancelled(f"cancelled at call {len(self.calls)}")


@contextmanager
def count_forwards(*modules: torch.nn.Module) -> Iterator[list[int]]:
    """Counts forward calls of each module while the block runs."""
    counts = [0] * len(modules)

    def hook_for(index: int) -> Callable[..., None]:
        return lambda *_: counts.__setitem__(index, counts[index] + 1)

    handles = [module.register_forward_hook(hook_for(i)) for i, module in enumerate(modules)]
    try:
        yield counts
    finally:
        for handle in handles:
            handle.remove()


@pytest.fixture(scope="module")
def mtcnn(mtcnn_weights_dir: Path) -> MTCNNDetector:
    return MTCNNDetector(load_mtcnn_nets(mtcnn_weights_dir))


@pytest.fixture(scope="module")
def solvay(photos_dir: Path) -> torch.Tensor:
    return torch.from_numpy(np.array(Image.open(photos_dir / "solvay-1927.png").convert("RGB"))).permute(2, 0, 1)


def test_mtcnn_reports_every_scale_and_stage(mtcnn: MTCNNDetector, solvay: torch.Tensor) -> None:
    scales = len(pyramid_scales(568, 1328, 20.0, mtcnn.pyramid_factor))
    progress = CancelAfter()
    faces = detect_faces(mtcnn, solvay, progress=progress)
    total = scales + 2  # every scale, R-Net, O-Net
    assert progress.calls == [(done, total) for done in range(total + 1)]
    assert len(faces) == 29  # reporting changes nothing


@pytest.mark.parametrize("limit", [1, 2, 5])
def test_mtcnn_stops_between_pyramid_scales(mtcnn: MTCNNDetector, solvay: torch.Tensor, limit: int) -> None:
    with count_forwards(mtcnn.nets.pnet, mtcnn.nets.rnet) as runs, pytest.raises(Cancelled, match=f"call {limit}"):
        detect_faces(mtcnn, solvay, progress=CancelAfter(limit))
    assert runs == [limit - 1, 0]  # call 1 comes before the first scale, call k after scale k-1


def test_mtcnn_stops_before_onet(mtcnn: MTCNNDetector, solvay: torch.Tensor) -> None:
    scales = len(pyramid_scales(568, 1328, 20.0, mtcnn.pyramid_factor))
    with count_forwards(mtcnn.nets.rnet, mtcnn.nets.onet) as runs, pytest.raises(Cancelled):
        detect_faces(mtcnn, solvay, progress=CancelAfter(scales + 2))  # the call after R-Net
    assert runs[0] >= 1 and runs[1] == 0


@pytest.mark.parametrize("backbone", ["mobile0.25", "resnet50"])
def test_retinaface_reports_and_stops_between_network_stages(backbone: str) -> None:
    torch.manual_seed(0)
    net = RetinaFaceNet(backbone)  # type: ignore[arg-type]
    detector = RetinaFaceDetector(net)
    image = torch.rand((3, 64, 96))
    progress = CancelAfter()
    detect_faces(detector, image, score_threshold=0.5, progress=progress)
    total = net.body.stages + 4  # backbone stages, feature pyramid, context modules, heads, post-processing
    assert progress.calls == [(done, total) for done in range(total + 1)]

    with count_forwards(net.fpn, net.ClassHead[0]) as runs, pytest.raises(Cancelled):
        detect_faces(detector, image, progress=CancelAfter(2))  # after the first backbone stage
    assert runs == [0, 0]
    with count_forwards(net.fpn, net.ClassHead[0]) as runs, pytest.raises(Cancelled):
        detect_faces(detector, image, progress=CancelAfter(net.body.stages + 2))  # after the pyramid
    assert runs == [1, 0]


def test_large_scales_run_in_strips_with_a_cancel_point_after_each(
    mtcnn: MTCNNDetector, solvay: torch.Tensor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With strips of 40k pixels, the first scales (797x341, 565x242 ...) run in several strips:
    more progress steps, a cancel after the first strip, and the same faces."""
    whole = detect_faces(mtcnn, solvay)
    monkeypatch.setattr(mtcnn_pipeline, "PNET_STRIP_PIXELS", 40_000)
    sizes = [mtcnn_pipeline._scaled_size(568, 1328, s) for s in pyramid_scales(568, 1328, 20.0, mtcnn.pyramid_factor)]
    strips = [mtcnn_pipeline.pnet_strips(*size) for size in sizes]
    assert strips[0] >= 5 and strips[-1] == 1
    progress = CancelAfter()
    in_strips = detect_faces(mtcnn, solvay, progress=progress)
    total = sum(strips) + 2
    assert progress.calls == [(done, total) for done in range(total + 1)]
    assert len(in_strips) == len(whole) == 29
    torch.testing.assert_close(in_strips.boxes, whole.boxes, atol=1e-3, rtol=0)

    with count_forwards(mtcnn.nets.pnet) as runs, pytest.raises(Cancelled):
        detect_faces(mtcnn, solvay, progress=CancelAfter(2))  # after the first strip of the first scale
    assert runs == [1]


def test_restore_faces_cancels_during_detection_before_any_gpen_forward(mtcnn: MTCNNDetector,
                                                                        solvay: torch.Tensor) -> None:
    """restore_faces hands its progress callback to detection: a cancel there stops the run before GPEN."""
    model = g.build_model(g.seeded_state_dict(TINY, 7))
    progress = CancelAfter(3)
    with count_forwards(model, mtcnn.nets.pnet) as runs, pytest.raises(Cancelled):
        restore_faces(FaceNetworks(model, mtcnn), (solvay.float() / 255)[None], progress=progress)
    assert runs == [0, 2]  # two pyramid scales, then the cancel
