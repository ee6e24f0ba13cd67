"""Long videos through Face Restore: chunks bound the memory, tracks keep every frame's face, landmark
smoothing steadies them.

The clip: the portrait from ``../shared/photos`` on a black 640x480 canvas, moved along a smooth path
with a random jitter of up to 2 px per frame; a stub detector finds it as the bounding box of its lit
pixels and adds 1 px of noise to its landmarks (a real detector's answers wobble too), or MTCNN's own
answers on the 48-frame clip of seed 2 are replayed (``data/mtcnn_moving_portrait.npz``, made by
``data/make_mtcnn_moving_portrait.py``, checked against MTCNN by a slow test); the generator is a stand-in
that returns its input.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from standins import BrightRegionDetector, IdentityGPEN, ReplayDetector

from gpen_core.face.align import reference_points
from gpen_core.face.detection.result import FaceDetections
from gpen_core.face.faces import AlignedFaces
from gpen_core.face.options import RestoreOptions, TrackOptions
from gpen_core.face.pipeline import FaceNetworks, restore_faces
from gpen_core.face.restore import detect_and_align, paste_back, restore_crops
from gpen_core.face.tracking import LandmarkSmoother, match_boxes
from gpen_core.images.files import read_image
from gpen_core.runtime.memory import LiveTensorPeak
from helpers import FACE_DATA_DIR

HEIGHT, WIDTH = 480, 640
MTCNN_CLIP = FACE_DATA_DIR / "mtcnn_moving_portrait.npz"
"""MTCNN's faces (default threshold) in each frame of ``clip(portrait, 48, seed=2)``."""
MTCNN_SEED = 2
FACE = reference_points(64, dtype=torch.float32) * (160 / 64) + torch.tensor([80.0, 110.0])
"""Landmarks relative to the portrait's top-left corner (a 160 px face)."""


@pytest.fixture(scope="module")
def portrait(photos_dir) -> torch.Tensor:
    return read_image(photos_dir / "portrait-1947.png")[:3]  # (3, 439, 328)


def clip(portrait: torch.Tensor, count: int, seed: int = 3) -> torch.Tensor:
    """``(count, 3, 480, 640)`` frames: the portrait along a smooth path, jittered by up to 2 px."""
    generator = torch.Generator().manual_seed(seed)
    t = torch.arange(count, dtype=torch.float64)
    xs = 156 + 120 * torch.sin(2 * math.pi * t / 200) + torch.randint(-2, 3, (count,), generator=generator)
    ys = 20 + 15 * torch.sin(2 * math.pi * t / 150) + torch.randint(-2, 3, (count,), generator=generator)
    frames = torch.zeros(count, 3, HEIGHT, WIDTH)
    h, w = portrait.shape[-2:]
    for i in range(count):
        x, y = round(float(xs[i])), round(float(ys[i]))
        frames[i, :, y : y + h, x : x + w] = portrait
    return frames


def detector(seed: int = 0) -> BrightRegionDetector:
    return BrightRegionDetector(FACE, jitter=1.0, seed=seed)


def jitter(landmarks: torch.Tensor) -> torch.Tensor:
    """``(10,)`` std of the second difference of each landmark coordinate's track over ``(T, 5, 2)``."""
    second = landmarks[2:] - 2 * landmarks[1:-1] + landmarks[:-2]
    return second.reshape(len(second), -1).double().std(dim=0)


def smooth_along(faces: AlignedFaces, strength: float) -> torch.Tensor:
    """The landmarks of ``faces`` through a :class:`LandmarkSmoother`, frame after frame."""
    smoother = LandmarkSmoother(strength)
    rows = [faces.of_image(i) for i in range(faces.num_images)]
    return torch.cat([smoother(faces.boxes[r], faces.landmarks[r]) for r in rows])


def test_smoothing_steadies_the_landmarks_of_300_frames(portrait):
    """Face Restore aligns on the detector's landmarks smoothed frame after frame (the next test checks
    that restore_faces does exactly this across its chunks)."""
    frames = clip(portrait, 300)
    with torch.inference_mode():
        _, raw = detect_and_align(detector(), frames, 64)
    assert raw.image_index.tolist() == list(range(300))
    smoothed = smooth_along(raw, 0.6)
    before, after = jitter(raw.landmarks), jitter(smoothed)
    ratio = before / after
    assert float(ratio.min()) >= 2.0, ratio
    # the crop still follows the face: a one-pole filter lags by strength / (1 - strength) frames of motion
    # (1.5 frames of at most 4 px here), plus the noise it removes
    assert float((smoothed - raw.landmarks).abs().max()) < 1.5 * 4 + 4
    assert torch.equal(smooth_along(raw, 0.0), raw.landmarks)


def test_chunks_bound_the_memory_and_smoothing_off_is_the_plain_steps(portrait):
    """30 frames in chunks of 3: beyond its outputs, the run holds less than 2 chunks' worth of frames,
    and with smoothing off every frame equals the three steps run on the whole clip at once."""
    frames = clip(portrait, 30, seed=5)
    model = IdentityGPEN(64)
    chunk = 3
    chunk_bytes = chunk * frames[0].numel() * 4
    live_at_chunk_ends: dict[int, int] = {}  # a step may be reported again (the face count moved): keep the last
    counter = LiveTensorPeak()

    def progress(done: int, total: int) -> None:
        if done % (chunk * 100) == 0:
            live_at_chunk_ends[done] = counter.current_bytes

    with torch.inference_mode(), counter:
        result = restore_faces(FaceNetworks(model, detector()), frames, RestoreOptions(chunk_frames=chunk),
                               keep_crops=False, progress=progress)
    outputs = result.images.numel() * 4 + result.masks.numel() * 4
    assert counter.peak_bytes - outputs < 2 * chunk_bytes, (counter.peak_bytes - outputs) / chunk_bytes
    assert len(live_at_chunk_ends) == 10
    assert max(live_at_chunk_ends.values()) - min(live_at_chunk_ends.values()) < 2 * chunk_bytes

    with torch.inference_mode():
        crops, faces = detect_and_align(detector(), frames, 64)
        restored = restore_crops(model, crops)
        images, masks = paste_back(frames, restored, faces)
    assert torch.equal(result.images, images) and torch.equal(result.masks, masks)
    assert torch.equal(result.faces.landmarks, faces.landmarks)
    with torch.inference_mode():
        smoothed = restore_faces(FaceNetworks(model, detector()), frames,
                                 RestoreOptions(track=TrackOptions(0.5), chunk_frames=chunk))
    assert torch.equal(smoothed.faces.landmarks, smooth_along(faces, 0.5))  # one smoother across the chunks
    assert torch.equal(smoothed.faces.boxes, faces.boxes)
    assert not torch.equal(smoothed.images, images)


def test_tracks_follow_box_overlap_and_restart_without_a_match():
    boxes = torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30]])
    assert match_boxes(boxes, torch.tensor([[21.0, 21, 31, 31], [50, 50, 60, 60], [1, 0, 11, 10]]), 0.3) == [1, None, 0]
    smoother = LandmarkSmoother(0.5)
    points = torch.zeros(2, 5, 2)
    assert torch.equal(smoother(boxes, points), points)  # first frame: tracks start at the detection
    moved = smoother(boxes[[1]], torch.full((1, 5, 2), 4.0))  # face 1 continues: halfway
    assert torch.equal(moved, torch.full((1, 5, 2), 2.0))
    far = smoother(torch.tensor([[100.0, 100, 110, 110]]), torch.full((1, 5, 2), 8.0))  # a cut: no match
    assert torch.equal(far, torch.full((1, 5, 2), 8.0))
    assert LandmarkSmoother(0.0)(boxes, points) is points
    with pytest.raises(ValueError, match=r"strength must be in \[0, 1\)"):
        LandmarkSmoother(1.0)


def stored_mtcnn_faces() -> list[FaceDetections]:
    """The replayed MTCNN answers, one :class:`FaceDetections` per frame of the 48-frame clip."""
    data = np.load(MTCNN_CLIP)
    frames = []
    for i in range(48):
        rows = data["frame"] == i
        frames.append(FaceDetections(torch.from_numpy(data["boxes"][rows]), torch.from_numpy(data["scores"][rows]),
                                     torch.from_numpy(data["landmarks"][rows]), (HEIGHT, WIDTH)))
    return frames


def test_tracks_restore_the_real_face_in_every_frame_of_the_moving_portrait(portrait):
    """MTCNN finds the real face in 46 of the 48 frames and a 28x34 px false face (score 0.98) in the two others;
    with the default tracking the real face is restored in all 48 (bridged over the two), the false face in
    none; per frame (tracking off), the false faces are restored instead."""
    frames = clip(portrait, 48, seed=MTCNN_SEED)
    found = stored_mtcnn_faces()
    real = [bool((f.box_sizes > 100).any()) for f in found]
    assert sum(real) == 46 and sum(len(f) for f in found) == 48
    model = IdentityGPEN(64)
    with torch.inference_mode():
        tracked = restore_faces(FaceNetworks(model, ReplayDetector(found)), frames, keep_crops=False)
        per_frame = restore_faces(FaceNetworks(model, ReplayDetector(found)), frames,
                                  RestoreOptions(track=TrackOptions.off()), keep_crops=False)
    sides = (tracked.faces.boxes[:, 2:] - tracked.faces.boxes[:, :2]).amax(dim=1)
    assert tracked.faces.image_index.tolist() == list(range(48)) and bool((sides > 100).all())
    per_frame_sides = (per_frame.faces.boxes[:, 2:] - per_frame.faces.boxes[:, :2]).amax(dim=1)
    assert int((per_frame_sides < 50).sum()) == 2 and len(per_frame.faces) == 48
    missed = [i for i, ok in enumerate(real) if not ok]
    for i in missed:  # a bridged frame: the face pasted where the neighbours put it
        assert float(tracked.masks[i].max()) == 1.0 and float(per_frame.masks[i].max()) == 1.0
        assert tracked.masks[i].sum() > 20 * per_frame.masks[i].sum()


def test_smoothing_on_tracks_cuts_the_jitter_of_mtcnn_landmarks_3x():
    from gpen_core.face.tracking import FaceTracker

    def tracked(options: TrackOptions) -> torch.Tensor:
        tracker = FaceTracker(options)
        out = [f for found in stored_mtcnn_faces() for f in tracker.push(found)] + tracker.finish()
        assert [len(f) for f in out] == [1] * 48
        return torch.stack([f.landmarks[0] for f in out])

    ratio = jitter(tracked(TrackOptions())) / jitter(tracked(TrackOptions(smoothing=0.6)))
    assert float(ratio.min()) >= 3.0, ratio


@pytest.mark.slow
def test_stored_mtcnn_faces_are_mtcnns(portrait, mtcnn_weights_dir):
    """The replayed answers are MTCNN's (run again here; float sums may differ in the last bits)."""
    from gpen_core.face.detection.api import find_faces
    from gpen_core.face.detection.loader import load_detector

    detector = load_detector("mtcnn", [str(mtcnn_weights_dir)])
    frames = clip(portrait, 48, seed=MTCNN_SEED)
    with torch.inference_mode():
        for i, stored in enumerate(stored_mtcnn_faces()):
            found = find_faces(detector, frames[i])
            assert len(found) == len(stored), i
            assert torch.allclose(found.boxes, stored.boxes, atol=0.05) and torch.allclose(found.scores, stored.scores,
                                                                                           atol=1e-4)
