"""Faces followed over frames: tracks, bridged gaps, false detections, scene cuts, smoothing, and off = per frame."""
from __future__ import annotations

import pytest
import torch
from standins import IdentityGPEN, ReplayDetector

from gpen_core.face.detection.result import FaceDetections
from gpen_core.face.options import RestoreOptions, TrackOptions
from gpen_core.face.pipeline import FaceNetworks, restore_faces
from gpen_core.face.restore import align_faces, cut_crops, paste_back, restore_crops
from gpen_core.face.tracking import FaceTracker, frame_signature, landmark_distance

SIZE = (120, 160)
FACE = torch.tensor([[50.0, 40], [70, 40], [60, 52], [52, 64], [68, 64]])
"""Landmarks of a 40 px face whose box is (40, 30)-(80, 80)."""


def face(dx: float = 0.0, score: float = 0.999, dy: float = 0.0, scale: float = 1.0) -> tuple:
    box = torch.tensor([40.0, 30, 80, 80]) * scale + torch.tensor([dx, dy, dx, dy])
    return box, FACE * scale + torch.tensor([dx, dy]), score


def frame(*faces: tuple) -> FaceDetections:
    if not faces:
        return FaceDetections.empty(SIZE)
    return FaceDetections(torch.stack([f[0] for f in faces]), torch.tensor([f[2] for f in faces]),
                          torch.stack([f[1] for f in faces]), SIZE)


def run(frames: list[FaceDetections], options: TrackOptions, signatures: list | None = None) -> list[FaceDetections]:
    """Every frame through a tracker; checks each comes back once, in order."""
    tracker = FaceTracker(options)
    out = []
    for i, found in enumerate(frames):
        out += tracker.push(found, None if signatures is None else signatures[i])
    out += tracker.finish()
    assert len(out) == len(frames)
    assert [f.image_size for f in out] == [f.image_size for f in frames]
    return out


def test_off_hands_back_every_frame_at_once_as_detected():
    frames = [frame(face()), frame(), frame(face(2), face(60, 0.5))]
    tracker = FaceTracker(TrackOptions.off())
    for found in frames:
        assert tracker.push(found) == [found] and tracker.push.__self__ is tracker
    assert tracker.finish() == []
    assert not TrackOptions.off().active and TrackOptions.off(0.5).active and TrackOptions().active


def test_a_single_photo_keeps_every_face():
    """One frame is its whole clip: a low-score face is not a short false track there."""
    photo = frame(face(), face(70, 0.5, scale=0.5))
    out = run([photo], TrackOptions())
    assert out[0] is photo


def test_gap_is_bridged_by_interpolated_landmarks():
    frames = [frame(face(0, 0.99)), frame(face(4, 0.99)), frame(), frame(), frame(face(16, 0.99)),
              frame(face(20, 0.99))]
    tracker = FaceTracker(TrackOptions())
    held = [tracker.push(found) for found in frames[:4]]
    assert held == [[], [], [], []]  # frames 0-1: is the track real (3 frames or a score of 0.995)? 2-3: missing
    released = tracker.push(frames[4])
    assert len(released) == 5  # found again, for the third time: frames 0-4 are final
    out = released + tracker.push(frames[5]) + tracker.finish()
    assert [len(f) for f in out] == [1] * 6
    assert torch.equal(out[2].landmarks[0], FACE + torch.tensor([8.0, 0]))
    assert torch.equal(out[3].landmarks[0], FACE + torch.tensor([12.0, 0]))
    assert torch.equal(out[3].boxes[0], face(12)[0])
    assert out[0] is frames[0] and out[5] is frames[5]  # untouched frames come back as they were
    assert tracker.counts.bridged == 2 and tracker.counts.dropped == 0
    confident = FaceTracker(TrackOptions())
    assert len(confident.push(frame(face(0)))) == 1  # a score of 0.995 or more: final at once


def test_a_longer_gap_ends_the_track_and_the_clip_end_carries_it_forward():
    frames = [frame(face(0)), frame(face(1)), frame(face(2))] + [frame()] * 4 + [frame(face(7)), frame(face(8)),
                                                                                  frame(face(9)), frame(), frame()]
    out = run(frames, TrackOptions(bridge_frames=3))
    assert [len(f) for f in out] == [1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 1]  # 4 missing > 3: not bridged
    assert torch.equal(out[11].landmarks[0], FACE + torch.tensor([9.0, 0]))  # the last two: carried forward
    assert [len(f) for f in run(frames, TrackOptions(bridge_frames=4))] == [1] * 12


def test_short_low_score_detections_are_false():
    real = [face(i) for i in range(10)]
    frames = [frame(f) for f in real]
    frames[3] = frame(real[3], face(100, 0.98, scale=0.4))  # a small face for one frame, scoring 0.98
    frames[5] = frame(real[5], face(100, 0.999, dy=40, scale=0.4))  # ... one scoring above short_track_score
    out = run(frames, TrackOptions())
    assert [len(f) for f in out] == [1, 1, 1, 1, 1, 2, 1, 1, 1, 1]
    assert torch.equal(out[3].boxes, frames[3].boxes[:1])
    assert [len(f) for f in run(frames, TrackOptions(min_track_frames=1))] == [1, 1, 1, 2, 1, 2, 1, 1, 1, 1]
    # lasting min_track_frames frames keeps a low-score face
    frames[4] = frame(real[4], face(101, 0.98, scale=0.4))
    frames[5] = frame(real[5], face(102, 0.98, scale=0.4))
    assert [len(f) for f in run(frames, TrackOptions())] == [1, 1, 1, 2, 2, 2, 1, 1, 1, 1]


def test_a_clip_shorter_than_the_minimum_keeps_faces_found_throughout():
    frames = [frame(face(0, 0.9)), frame(face(1, 0.9))]
    assert [len(f) for f in run(frames, TrackOptions())] == [1, 1]
    frames = [frame(face(0, 0.9), face(80, 0.9, scale=0.5)), frame(face(1, 0.9))]
    assert [len(f) for f in run(frames, TrackOptions())] == [1, 1]  # the second face: 1 of 2 frames


def test_scene_cut_ends_every_track():
    """A cut between frames 2 and 3 (the thumbnails differ): the face is not bridged over the cut, each side
    is carried up to it; nothing is smoothed across it."""
    dark, bright = torch.zeros(3, 16, 16), torch.ones(3, 16, 16)
    frames = [frame(face(0)), frame(face(1)), frame(), frame(), frame(face(2)), frame(face(3))]
    signatures = [dark, dark, dark, bright, bright, bright]
    options = TrackOptions(bridge_frames=2, min_track_frames=1)
    out = run(frames, options, signatures)
    assert [len(f) for f in out] == [1, 1, 1, 0, 1, 1]  # frame 2 carried (end of scene 1), frame 3 not
    assert torch.equal(out[2].landmarks[0], FACE + torch.tensor([1.0, 0]))
    assert [len(f) for f in run(frames, options, [dark] * 6)] == [1] * 6  # no cut: bridged
    smoothed = run(frames, TrackOptions(0.5, bridge_frames=2, min_track_frames=1), signatures)
    assert torch.equal(smoothed[4].landmarks[0], FACE + torch.tensor([2.0, 0]))  # restarted after the cut
    assert torch.equal(smoothed[1].landmarks[0], FACE + torch.tensor([0.5, 0]))


def test_a_confident_face_continuing_no_track_is_a_cut_a_doubtful_one_is_not():
    other = face(70, 0.999, dy=-20, scale=0.8)  # no overlap with the first face
    frames = [frame(face(0)), frame(face(1)), frame(other), frame(face(2)), frame(face(3)), frame(face(4))]
    tracker = FaceTracker(TrackOptions(bridge_frames=2, min_track_frames=1))
    out = [f for found in frames for f in tracker.push(found)] + tracker.finish()
    assert [len(f) for f in out] == [1] * 6  # a cut before frame 2 ends the first track: not bridged over it; its
    assert torch.equal(out[2].landmarks[0], other[1])  # return in frame 3 is another cut (and a new track)
    assert tracker.counts.cuts == 2
    doubtful = face(70, 0.98, dy=-20, scale=0.8)
    frames[2] = frame(doubtful)
    out = run(frames, TrackOptions(bridge_frames=2, min_track_frames=1))
    assert [len(f) for f in out] == [1, 1, 2, 1, 1, 1]  # no cut: the first face is bridged over frame 2


def test_faces_are_matched_by_overlap_and_landmarks():
    boxes = torch.tensor([[40.0, 30, 80, 80]])
    assert landmark_distance(boxes, FACE[None], FACE[None] + torch.tensor([3.0, 4]))[0, 0] == pytest.approx(0.1)
    # the same box, the landmarks of another face (turned away, half a face off): not the same track
    flipped = frame((face()[0], FACE.flip(0) + torch.tensor([0.0, 30]), 0.999))
    out = run([frame(face()), flipped, frame(face())], TrackOptions(0.5, bridge_frames=0, min_track_frames=1))
    assert torch.equal(out[1].landmarks, flipped.landmarks)  # a new track: not smoothed with the first


def test_smoothing_runs_along_tracks_bridged_frames_included():
    frames = [frame(face(0)), frame(), frame(face(4))]
    out = run(frames, TrackOptions(0.5, min_track_frames=1))
    assert torch.equal(out[1].landmarks[0], FACE + torch.tensor([1.0, 0]))  # (0 + 2) / 2
    assert torch.equal(out[2].landmarks[0], FACE + torch.tensor([2.5, 0]))  # (1 + 4) / 2


def test_options_are_checked():
    with pytest.raises(ValueError, match=r"bridge_frames \(0: off\) must be in \[0, 100\]"):
        TrackOptions(bridge_frames=-1)
    with pytest.raises(ValueError, match=r"min_track_frames \(1: off\) must be an integer"):
        TrackOptions(min_track_frames=2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="scene_cut"):
        TrackOptions(scene_cut=1.5)
    with pytest.raises(ValueError, match="short_track_score"):
        TrackOptions(short_track_score=float("nan"))


def test_frame_signature_is_a_thumbnail():
    image = torch.rand(3, 64, 96)
    signature = frame_signature(image)
    assert signature.shape == (3, 16, 16)
    assert torch.allclose(signature[:, 0, 0], image[:, :4, :6].mean(dim=(1, 2)))


def test_off_is_the_per_frame_output_bit_for_bit():
    """With bridging 0, minimum 1, smoothing 0, Face Restore over a batch equals the steps run per frame with
    each frame's own detections; with the defaults the gap and the false face are handled."""
    real = [face(2 * i, 0.99) for i in range(6)]
    found = [frame(f) for f in real]
    found[2] = frame()  # missed
    found[4] = frame(real[4], face(100, 0.98, scale=0.4))  # a false face
    images = torch.rand(6, 3, *SIZE, generator=torch.Generator().manual_seed(1))
    model = IdentityGPEN(64)
    with torch.inference_mode():
        off = restore_faces(FaceNetworks(model, ReplayDetector(found)), images,
                            RestoreOptions(track=TrackOptions.off(), chunk_frames=4))
        faces = align_faces(found, 64)
        expected, masks = paste_back(images, restore_crops(model, cut_crops(images, faces)), faces)
        tracked = restore_faces(FaceNetworks(model, ReplayDetector(found)), images, RestoreOptions(chunk_frames=4))
    assert torch.equal(off.images, expected) and torch.equal(off.masks, masks)
    assert torch.equal(off.faces.landmarks, faces.landmarks)
    assert tracked.faces.image_index.tolist() == [0, 1, 2, 3, 4, 5]  # one face per frame: bridged, no false face
    assert torch.equal(tracked.faces.landmarks[2], (FACE + torch.tensor([4.0, 0])))
