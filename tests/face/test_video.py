"""Long videos through Face Restore: chunks bound the memory, landmark smoothing steadies the faces.

The clip: the portrait from ``../shared/photos`` on a black 640x480 canvas, moved along a smooth path
with a random jitter of up to 2 px per frame; a stub detector finds it as the bounding box of its lit
pixels and adds 1 px of noise to its landmarks (a real detector's answers wobble too); the generator is a
stand-in that returns its input.
"""
from __future__ import annotations

import math

import pytest
import torch
from standins import BrightRegionDetector, IdentityGPEN

from gpen_core.face.align import reference_points
from gpen_core.face.faces import AlignedFaces
from gpen_core.face.options import RestoreOptions, TrackOptions
from gpen_core.face.pipeline import FaceNetworks, restore_faces
from gpen_core.face.restore import detect_and_align, paste_back, restore_crops
from gpen_core.face.tracking import LandmarkSmoother, match_boxes
from gpen_core.images.files import read_image
from gpen_core.runtime.memory import LiveTensorPeak

HEIGHT, WIDTH = 480, 640
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
    live_at_chunk_ends = []
    counter = LiveTensorPeak()

    def progress(done: int, total: int) -> None:
        if done % (chunk * 100) == 0:
            live_at_chunk_ends.append(counter.current_bytes)

    with torch.inference_mode(), counter:
        result = restore_faces(FaceNetworks(model, detector()), frames, RestoreOptions(chunk_frames=chunk),
                               keep_crops=False, progress=progress)
    outputs = result.images.numel() * 4 + result.masks.numel() * 4
    assert counter.peak_bytes - outputs < 2 * chunk_bytes, (counter.peak_bytes - outputs) / chunk_bytes
    assert len(live_at_chunk_ends) == 10
    assert max(live_at_chunk_ends) - min(live_at_chunk_ends) < 2 * chunk_bytes

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
