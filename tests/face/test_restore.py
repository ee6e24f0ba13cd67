"""Whole-photo restoration: detect (MTCNN), align, enhance, paste back."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import gpen_core as g
from gpen_core.face.detection.errors import DetectorWeightsNotFoundError
from gpen_core.face.detection.loader import load_detector
from gpen_core.face.detection.selection import FaceSelection
from gpen_core.face.options import DetectOptions, PasteOptions, RestoreOptions
from gpen_core.face.pipeline import FaceNetworks, restore_faces
from gpen_core.face.restore import face_batch_size
from gpen_core.images.files import read_image
from gpen_core.run_options import RunOptions
from gpen_core.runtime.memory import peak_memory
from gpen_core.runtime.strategy import Strategy, estimate_peak_bytes
from gpen_core.tools.cli import main
from helpers import psnr

CONFIG = g.GPENConfig(128, 2, 0.125)  # small: the pipeline, not the generator, is under test


@pytest.fixture(scope="module")
def model():
    return g.build_model(g.seeded_state_dict(CONFIG, 2))


@pytest.fixture(scope="module")
def detector(mtcnn_weights_dir):
    return load_detector(mtcnn_weights_dir)


@pytest.fixture(scope="module")
def group_photo(photos_dir):
    return read_image(photos_dir / "solvay-1927.png")[:3]


def test_identity_restore_keeps_the_photo(model, detector, group_photo):
    """fidelity 0 pastes the aligned originals back: only resampling changes the photo."""
    with torch.inference_mode():
        result = restore_faces(FaceNetworks(model, detector), group_photo[None],
                               RestoreOptions(paste=PasteOptions(fidelity=0.0)))
    assert len(result.faces) >= 20  # 29 people
    inside, outside = result.masks[0] > 0, result.masks[0] == 0
    image = result.images[0]
    assert psnr(image[:, inside], group_photo[:, inside]) >= 35
    assert torch.equal(image[:, outside], group_photo[:, outside])
    assert result.crops.shape == result.restored.shape == (len(result.faces), 3, 128, 128)
    assert 0.05 < float(inside.float().mean()) < 0.6


def test_restore_changes_faces_only(model, detector, group_photo):
    with torch.inference_mode():
        detect = DetectOptions(selection=FaceSelection("largest", max_faces=3))
        result = restore_faces(FaceNetworks(model, detector), group_photo[None], RestoreOptions(detect))
    assert len(result.faces) == 3
    outside = result.masks[0] == 0
    assert torch.equal(result.images[0][:, outside], group_photo[:, outside])
    assert not torch.allclose(result.images[0], group_photo)


def test_batch_of_frames_and_no_face(model, detector, photos_dir):
    portrait = read_image(photos_dir / "portrait-1947.png")
    blank = torch.full_like(portrait, 0.5)
    calls = []
    with torch.inference_mode():
        result = restore_faces(FaceNetworks(model, detector), torch.stack([portrait, blank, portrait]),
                               RestoreOptions(paste=PasteOptions(fidelity=0.5)),
                               progress=lambda d, t: calls.append((d, t)))
    assert result.faces.image_index.tolist() == [0, 2]
    assert torch.equal(result.images[1], blank) and float(result.masks[1].max()) == 0
    assert result.crops.shape == (2, 3, 128, 128)
    assert torch.equal(result.images[0], result.images[2])
    assert calls[-1] == (300, 300)  # 100 steps per frame
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_memory_follows_the_face_batch(model, detector, group_photo):
    """30 faces with room for 2 at a time: GPEN's peak is that of 2 faces, not 29."""
    two = estimate_peak_bytes(CONFIG, torch.float32, 2, Strategy())
    assert face_batch_size(model, 29, int(two / 0.8) + 1) == 2
    image = group_photo[None]
    faces = 29
    crops_bytes = 2 * faces * 3 * 128 * 128 * 4  # crops before and after are outputs
    with torch.inference_mode():
        options = RestoreOptions(run=RunOptions(memory_budget=int(two / 0.8) + 1))
        _, peak = peak_memory(lambda: restore_faces(FaceNetworks(model, detector), image, options),
                              torch.device("cpu"))
    all_at_once = estimate_peak_bytes(CONFIG, torch.float32, faces, Strategy())
    assert peak < crops_bytes + 2 * two + 64 * 2**20  # detector and image buffers: tens of MiB
    assert peak < all_at_once


def test_missing_detector_weights_say_what_to_put_where(tmp_path, monkeypatch):
    import gpen_core.face.detection.mtcnn as mtcnn

    monkeypatch.setattr(mtcnn, "find_facenet_pytorch_data_dir", lambda: None)
    with pytest.raises(DetectorWeightsNotFoundError) as info:
        load_detector("auto", [tmp_path])
    text = str(info.value)
    assert "detection_Resnet50_Final.pth" in text and "pnet.pt" in text and "--no-deps facenet-pytorch" in text
    assert str(tmp_path) in text


def test_cli_restores_photos(tmp_path, photos_dir, mtcnn_weights_dir):
    weights = tmp_path / "GPEN-BFR-128.pth"
    torch.save(g.seeded_state_dict(CONFIG, 2), weights)
    out = tmp_path / "out"
    src = photos_dir / "portrait-1947.png"
    code = main(["enhance", str(src), "--model", str(weights), "-o", str(out), "--detector", str(mtcnn_weights_dir),
                 "--fidelity", "0.7"])
    assert code == 0
    result = np.asarray(Image.open(out / "portrait-1947.png"))
    original = np.asarray(Image.open(src).convert("RGB"))
    assert result.shape == original.shape
    changed = np.any(result != original, axis=2)
    assert 0.01 < changed.mean() < 0.8  # the face region, not the whole photo
