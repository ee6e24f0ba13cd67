"""Faces followed over frames that come in order: tracks, bridged gaps, false detections, scene cuts, smoothing.

:class:`FaceTracker` takes each frame's detections in order and hands frames back once their faces are
final (it holds a few frames back to decide):

* **tracks**: a face continues the track of an earlier frame when their boxes overlap (IoU at least
  :data:`DEFAULT_MATCH_IOU`) and their landmarks lie close (mean distance at most
  :data:`MAX_LANDMARK_DISTANCE` of the box side); pairs are taken greedily by highest IoU, one to one.
* **bridging**: a track missing for up to ``bridge_frames`` frames and found again is bridged: the missing
  frames get landmarks (and box, and the lower of the two scores) interpolated linearly from both sides.
  A track still missing at the end of the clip, or at a scene cut, is carried forward: its last landmarks
  fill its missing frames (at most ``bridge_frames``). A track missing for longer simply ends.
* **false detections**: a track detected in fewer than ``min_track_frames`` frames (or than its whole scene,
  when the scene is shorter: a single photo keeps its faces) whose best score is under
  ``short_track_score`` is a false detection: none of its faces is restored.
* **scene cuts** end every track (nothing is bridged or smoothed across a cut): a frame whose thumbnail
  (:func:`frame_signature`) differs from the previous one by more than ``scene_cut``, or a frame whose faces
  continue no track although tracks were alive and one of its faces is confident (scores at least
  ``short_track_score``; a lone low-score face is more likely a false detection than a new scene).
* **smoothing**: each track's landmarks go through a one-pole low-pass filter (:func:`one_pole`), frame
  after frame, bridged frames included::

      smoothed[t] = strength * smoothed[t - 1] + (1 - strength) * landmarks[t]

Frames are held back at most ``max(bridge_frames, min_track_frames - 1)`` frames past the frame that
decides them. With ``bridge_frames=0, min_track_frames=1, smoothing=0``
(:meth:`gpen_core.face.options.TrackOptions.off`) every frame comes back at once, as detected (the same
object). Faces come back detected ones first, in detection order, then bridged ones; the selection
(order, indices, size bounds, face limit) is applied afterwards, to each final frame.
"""
from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from .detection.result import FaceDetections

if TYPE_CHECKING:
    from .options import TrackOptions

__all__ = [
    "DEFAULT_MATCH_IOU",
    "MAX_LANDMARK_DISTANCE",
    "SIGNATURE_SIZE",
    "FaceTracker",
    "LandmarkSmoother",
    "TrackCounts",
    "box_iou",
    "frame_signature",
    "landmark_distance",
    "match_boxes",
    "one_pole",
    "signature_distance",
]

DEFAULT_MATCH_IOU = 0.3
"""Least box IoU for a face to continue a track."""
MAX_LANDMARK_DISTANCE = 0.5
"""Largest mean landmark distance, as a fraction of the track's box side, for a face to continue a track."""
SIGNATURE_SIZE = 16
"""Side of the thumbnail compared for scene cuts (:func:`frame_signature`)."""


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(N, M)`` intersection over union of ``(N, 4)`` and ``(M, 4)`` ``[x1, y1, x2, y2]`` boxes (float64)."""
    a, b = a.to(torch.float64), b.to(torch.float64)
    top_left = torch.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(dim=2)
    area_a = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(dim=1)
    area_b = (b[:, 2:] - b[:, :2]).clamp(min=0).prod(dim=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


def landmark_distance(boxes: torch.Tensor, landmarks: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """``(N, M)`` mean distance of the ``(N, K, 2)`` landmarks to the ``(M, K, 2)`` others, as a fraction of the
    side ``max(w, h)`` of each of the ``(N, 4)`` boxes (float64)."""
    a, b = landmarks.to(torch.float64), other.to(torch.float64)
    sides = (boxes[:, 2:] - boxes[:, :2]).to(torch.float64).amax(dim=1).clamp(min=1.0)
    return (a[:, None] - b[None]).norm(dim=-1).mean(dim=-1) / sides[:, None]


def match_boxes(previous: torch.Tensor, current: torch.Tensor, min_iou: float,
                allowed: torch.Tensor | None = None) -> list[int | None]:
    """For each current box, the index of its previous box (or ``None``): greedy by highest IoU, one to one.

    Args:
        previous: ``(P, 4)`` boxes of the previous frame (or of the tracks).
        current: ``(C, 4)`` boxes of this frame.
        min_iou: pairs below this IoU never match.
        allowed: optional ``(P, C)`` bool: pairs that may match at all.
    """
    matches: list[int | None] = [None] * current.shape[0]
    if previous.shape[0] == 0 or current.shape[0] == 0:
        return matches
    iou = box_iou(previous, current)
    if allowed is not None:
        iou[~allowed] = -1.0
    while True:
        best = int(torch.argmax(iou))
        prev_index, cur_index = divmod(best, iou.shape[1])
        if float(iou[prev_index, cur_index]) < min_iou:
            return matches
        matches[cur_index] = prev_index
        iou[prev_index, :] = -1.0
        iou[:, cur_index] = -1.0


def one_pole(previous: torch.Tensor, current: torch.Tensor, strength: float) -> torch.Tensor:
    """One step of the landmark filter: ``strength * previous + (1 - strength) * current``."""
    return strength * previous + (1.0 - strength) * current


def frame_signature(frame: torch.Tensor) -> torch.Tensor:
    """``(3, 16, 16)`` float32 thumbnail (area averages) of a ``(3, H, W)`` frame in [0, 1], on the CPU."""
    return F.adaptive_avg_pool2d(frame[None].float(), SIGNATURE_SIZE)[0].cpu()


def signature_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean absolute difference of two :func:`frame_signature` thumbnails, in [0, 1]."""
    return float((a - b).abs().mean())


class LandmarkSmoother:
    """Smooths the landmarks of the faces of consecutive frames (one call per frame, in order).

    Faces are matched to the previous frame's by box IoU alone; a face without a match starts afresh.
    (:class:`FaceTracker` smooths along its tracks with the same filter.)

    Args:
        strength: filter coefficient in [0, 1): 0 = off (landmarks returned as given), 0.5 halves
            the weight of each older frame, 0.9 smooths strongly (and lags behind fast motion).
        min_iou: least box IoU to continue a track (:data:`DEFAULT_MATCH_IOU`).
    """

    def __init__(self, strength: float, min_iou: float = DEFAULT_MATCH_IOU) -> None:
        if not 0.0 <= strength < 1.0:
            raise ValueError(f"landmark smoothing strength must be in [0, 1), got {strength}")
        if not 0.0 < min_iou <= 1.0:
            raise ValueError(f"min_iou must be in (0, 1], got {min_iou}")
        self.strength = float(strength)
        self.min_iou = float(min_iou)
        self._boxes = torch.zeros((0, 4))
        self._smoothed = torch.zeros((0, 5, 2), dtype=torch.float64)

    def reset(self) -> None:
        """Forget every track (the next frame starts afresh)."""
        self._boxes = torch.zeros((0, 4))
        self._smoothed = torch.zeros((0, 5, 2), dtype=torch.float64)

    def __call__(self, boxes: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
        """The landmarks of one frame's faces, smoothed along their tracks.

        Args:
            boxes: ``(N, 4)`` detector boxes of this frame (matched against the previous frame's).
            landmarks: ``(N, K, 2)`` detected landmarks.

        Returns:
            ``(N, K, 2)`` in ``landmarks``' dtype; ``landmarks`` itself when strength is 0.
        """
        if self.strength == 0.0:
            return landmarks
        detected = landmarks.detach().to("cpu", torch.float64)
        smoothed = detected.clone()
        for current, previous in enumerate(match_boxes(self._boxes, boxes.detach().cpu(), self.min_iou)):
            if previous is not None:
                smoothed[current] = one_pole(self._smoothed[previous], detected[current], self.strength)
        self._boxes = boxes.detach().cpu()
        self._smoothed = smoothed
        return smoothed.to(landmarks.device, landmarks.dtype)


@dataclass
class TrackCounts:
    """What the tracker changed, over the frames handed back so far.

    Attributes:
        bridged: faces added to frames where their track was not detected (interpolated or carried).
        dropped: detected faces not handed back (false detections: short, low-score tracks).
        cuts: scene cuts found.
    """

    bridged: int = 0
    dropped: int = 0
    cuts: int = 0


@dataclass(eq=False)
class _Track:
    """A face followed over frames; ``kept`` is its fate (None: undecided)."""

    id: int
    last: int
    box: torch.Tensor
    landmarks: torch.Tensor
    score: float
    count: int = 1
    best: float = 0.0
    live: bool = True
    kept: bool | None = None


@dataclass
class _Face:
    """A face of a held frame: detected (``row`` of the frame's detections) or bridged (``row`` None)."""

    track: _Track
    box: torch.Tensor
    landmarks: torch.Tensor
    score: float
    row: int | None


@dataclass
class _Held:
    index: int
    detections: FaceDetections
    faces: list[_Face] = field(default_factory=list)


class FaceTracker:
    """Follows the faces of frames that come in order; hands back each frame's faces once they are final.

    The pipeline pushes every frame's detections (before the selection) and the frame's
    :func:`frame_signature` (for scene cuts), and restores a frame only when the tracker has handed it back
    (see the module docstring for the rules).

    Args:
        options: the tracking options (:class:`gpen_core.face.options.TrackOptions`).
    """

    def __init__(self, options: TrackOptions) -> None:
        self.options = options
        self.counts = TrackCounts()
        self._held: deque[_Held] = deque()
        self._tracks: list[_Track] = []
        self._next_id = 0
        self._pushed = 0
        self._scene_frames = 0
        self._signature: torch.Tensor | None = None
        self._smoothed: dict[int, torch.Tensor] = {}

    @property
    def wants_signature(self) -> bool:
        """Whether :meth:`push` compares frame signatures (compute them only then)."""
        return self.options.active and self.options.scene_cut > 0

    def push(self, detections: FaceDetections, signature: torch.Tensor | None = None) -> list[FaceDetections]:
        """The faces of the next frame (and its :func:`frame_signature`); returns the frames now final, oldest
        first (each frame exactly once, in order, over :meth:`push` and :meth:`finish`)."""
        if not self.options.active:
            return [detections]
        index = self._pushed
        self._pushed += 1
        if self._is_cut(signature):
            self._end_scene(index - 1, cut=True)
        self._signature = signature
        live = [track for track in self._tracks if track.live]
        matches = self._match(live, detections)
        confident = bool((detections.scores >= self.options.short_track_score).any()) if len(detections) else False
        if live and confident and all(m is None for m in matches):
            self._end_scene(index - 1, cut=True)  # faces, and none continues a track: a new scene
        held = _Held(index, detections)
        self._held.append(held)
        self._scene_frames += 1
        for row, match in enumerate(matches):
            box, landmarks, score = detections.boxes[row], detections.landmarks[row], float(detections.scores[row])
            if match is None or not live[match].live:
                track = _Track(self._next_id, index, box, landmarks, score, best=score)
                self._next_id += 1
                self._tracks.append(track)
            else:
                track = live[match]
                self._bridge(track, index, box, landmarks, score)
                track.last, track.box, track.landmarks, track.score = index, box, landmarks, score
                track.count += 1
                track.best = max(track.best, score)
            held.faces.append(_Face(track, box, landmarks, score, row))
        for track in self._tracks:  # a track missing for longer than the bridge cannot come back: it ends here
            if track.live and index - track.last >= self.options.bridge_frames + 1:
                track.live = False
        self._decide(scene_over=False)
        return self._release()

    def finish(self) -> list[FaceDetections]:
        """The frames still held back, at the end of the clip (missing tracks carried forward)."""
        if not self.options.active:
            return []
        self._end_scene(self._pushed - 1, cut=False)
        return self._release()

    # ------------------------------------------------------------------------------------------ internals
    def _is_cut(self, signature: torch.Tensor | None) -> bool:
        threshold = self.options.scene_cut
        if threshold <= 0 or signature is None or self._signature is None:
            return False
        if signature.shape != self._signature.shape:
            return True
        return signature_distance(signature, self._signature) > threshold

    def _match(self, live: list[_Track], detections: FaceDetections) -> list[int | None]:
        if not live or not len(detections):
            return [None] * len(detections)
        boxes = torch.stack([track.box for track in live]).cpu()
        landmarks = torch.stack([track.landmarks for track in live]).cpu()
        close = landmark_distance(boxes, landmarks, detections.landmarks.cpu()) <= MAX_LANDMARK_DISTANCE
        return match_boxes(boxes, detections.boxes.cpu(), DEFAULT_MATCH_IOU, close)

    def _held_frame(self, index: int) -> _Held:
        held = self._held[index - self._held[0].index]
        assert held.index == index
        return held

    def _bridge(self, track: _Track, index: int, box: torch.Tensor, landmarks: torch.Tensor, score: float) -> None:
        """Fill the frames between the track's last detection and ``index`` by linear interpolation."""
        gap = index - track.last
        for step in range(1, gap):
            weight = step / gap
            self._held_frame(track.last + step).faces.append(_Face(
                track, _lerp(track.box, box, weight), _lerp(track.landmarks, landmarks, weight),
                min(track.score, score), None))

    def _end_scene(self, until: int, cut: bool) -> None:
        """A cut before frame ``until + 1``, or the end of the clip (``until``: its last frame): live tracks are
        carried forward over their missing frames up to ``until`` and end."""
        for track in self._tracks:
            if not track.live:
                continue
            for frame in range(track.last + 1, until + 1):
                self._held_frame(frame).faces.append(_Face(track, track.box, track.landmarks, track.score, None))
            track.live = False
        self.counts.cuts += cut
        self._decide(scene_over=True)
        self._scene_frames = 0

    def _decide(self, scene_over: bool) -> None:
        """Settle the fate of every undecided track that can be settled now."""
        need = self.options.min_track_frames
        for track in self._tracks:
            if track.kept is not None:
                continue
            if track.count >= need or track.best >= self.options.short_track_score:
                track.kept = True
            elif scene_over:  # a scene shorter than the minimum: a track over all of it is kept
                track.kept = track.count >= min(need, self._scene_frames)
            elif not track.live and self._scene_frames >= need:
                track.kept = False
        self._tracks = [t for t in self._tracks if t.live or t.kept is None]

    def _final(self, held: _Held) -> bool:
        if any(face.track.kept is None for face in held.faces):
            return False
        return not any(track.live and track.last < held.index for track in self._tracks)

    def _release(self) -> list[FaceDetections]:
        final = []
        while self._held and self._final(self._held[0]):
            final.append(self._emit(self._held.popleft()))
        return final

    def _emit(self, held: _Held) -> FaceDetections:
        kept = [face for face in held.faces if face.track.kept]
        detected = [face for face in kept if face.row is not None]
        bridged = [face for face in kept if face.row is None]
        self.counts.bridged += len(bridged)
        self.counts.dropped += len(held.detections) - len(detected)
        faces = detected + sorted(bridged, key=lambda face: face.track.id)
        strength = self.options.smoothing
        if len(detected) == len(held.detections) and not bridged and strength == 0:
            return held.detections
        if not faces:
            return FaceDetections.empty(held.detections.image_size, held.detections.boxes.device)
        boxes = torch.stack([face.box for face in faces]).float()
        scores = torch.tensor([face.score for face in faces], dtype=torch.float32)
        landmarks = torch.stack([face.landmarks for face in faces]).float()
        if strength > 0:
            landmarks = self._smooth(faces, landmarks, strength)
        self._forget_ended(held.index)
        device = held.detections.boxes.device
        return dataclasses.replace(held.detections, boxes=boxes.to(device), scores=scores.to(device),
                                   landmarks=landmarks.to(device))

    def _smooth(self, faces: list[_Face], landmarks: torch.Tensor, strength: float) -> torch.Tensor:
        detected = landmarks.to(torch.float64)
        smoothed = detected.clone()
        for i, face in enumerate(faces):
            previous = self._smoothed.get(face.track.id)
            if previous is not None:
                smoothed[i] = one_pole(previous, detected[i], strength)
            self._smoothed[face.track.id] = smoothed[i]
        return smoothed.to(landmarks.dtype)

    def _forget_ended(self, index: int) -> None:
        """Drop the smoothing state of tracks that can appear in no later frame."""
        alive = {track.id for track in self._tracks}
        alive |= {face.track.id for held in self._held for face in held.faces}
        for track_id in [k for k in self._smoothed if k not in alive]:
            del self._smoothed[track_id]


def _lerp(a: torch.Tensor, b: torch.Tensor, weight: float) -> torch.Tensor:
    """``a + weight * (b - a)`` computed in float64, returned in ``a``'s dtype."""
    a64 = a.to(torch.float64)
    return (a64 + weight * (b.to(torch.float64) - a64)).to(a.dtype)
