"""Typed options of whole-photo face restoration, checked once, in their constructors.

The nodes and the command line build them from their inputs (one meaning per value: 0 = the
detector's default threshold, no size bound, no face limit; see each field) and hand them to
:func:`gpen_core.face.pipeline.restore_faces` as a :class:`RestoreOptions`. A wrong value fails
here, with a message naming the input, before any model runs.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..checks import check_choice, check_flag, check_range
from ..run_options import RunOptions
from .detection.selection import FaceSelection
from .finish import COLOR_SPACES
from .masks import MASK_MODE_NAMES
from .parsing.precision import PARSER_PRECISIONS
from .paste import FACE_MODES

__all__ = ["MAX_TRACK_FRAMES", "MAX_SMOOTHING", "MAX_UPSCALE", "DetectOptions", "PasteOptions", "RestoreOptions",
           "TrackOptions"]

MAX_UPSCALE = 8.0
"""Largest ``upscale_factor``."""
MAX_SMOOTHING = 0.95
"""Strongest landmark smoothing (the face then lags ``k / (1 - k)`` = 19 frames behind its motion)."""
DEFAULT_BRIDGE_FRAMES = 3
"""Frames a track may miss and still be bridged (:class:`TrackOptions`)."""
DEFAULT_MIN_TRACK_FRAMES = 3
"""Frames a low-score track must last to be kept (:class:`TrackOptions`)."""
DEFAULT_SHORT_TRACK_SCORE = 0.995
"""Best score that keeps a track shorter than :data:`DEFAULT_MIN_TRACK_FRAMES`. Scores alone do not tell false faces
from real ones (on the moving portrait MTCNN scores the real face 0.94 to 0.99996 from frame to frame, its false
face 0.984): the length does; a brief face is kept only when the detector is very sure of it."""
DEFAULT_SCENE_CUT = 0.15
"""Thumbnail difference of two consecutive frames that makes a scene cut (:class:`TrackOptions`)."""
MAX_TRACK_FRAMES = 100
"""Largest ``bridge_frames`` and ``min_track_frames`` (frames held back grow with them)."""


@dataclass(frozen=True)
class DetectOptions:
    """Which faces to find and keep.

    Attributes:
        score_threshold: detector confidence a face must exceed, in [0, 1); 0 = the detector's
            default (RetinaFace 0.97, MTCNN 0.7).
        selection: order, index list, size bounds and face limit (:class:`FaceSelection`).
    """

    score_threshold: float = 0.0
    selection: FaceSelection = field(default_factory=FaceSelection)

    def __post_init__(self) -> None:
        check_range(self.score_threshold, 0.0, 0.999, "score_threshold (0: the detector's default)")
        if not isinstance(self.selection, FaceSelection):
            raise TypeError(f"selection must be a FaceSelection; got {type(self.selection).__name__}")

    @property
    def threshold(self) -> float | None:
        """The threshold as :func:`gpen_core.face.detection.detect_faces` takes it (None: the default)."""
        return self.score_threshold or None


@dataclass(frozen=True)
class TrackOptions:
    """How faces are followed over frames that come in sequence (a clip, a batch of frames).

    Faces are followed as tracks (:class:`gpen_core.face.tracking.FaceTracker`): matched from frame to
    frame by box overlap and landmark distance. The defaults are on; they change nothing for a single
    photo (a one-frame clip: its faces are its whole tracks). :meth:`off` gives each frame's own detections.

    Attributes:
        smoothing: strength in [0, :data:`MAX_SMOOTHING`] of the one-pole filter on each track's
            landmarks; 0 = off.
        bridge_frames: a track missing for up to this many frames is bridged: its landmarks are
            interpolated from both sides (carried forward from the last detection at the end of a clip or
            before a scene cut), so the face is restored in every frame; 0 = no bridging.
        min_track_frames: a track detected in fewer frames than this (or than its whole clip or scene,
            when shorter) whose best score is under ``short_track_score`` is a false detection: its faces
            are not restored; 1 = every detection is kept.
        short_track_score: the score that keeps a short track (see ``min_track_frames``), in [0, 1].
        scene_cut: a mean absolute difference of two consecutive frames' thumbnails (values in [0, 1])
            above this is a scene cut: every track ends there; 0 = never cut on the frame difference (a
            frame whose confident faces continue no track is a cut either way).
    """

    smoothing: float = 0.0
    bridge_frames: int = DEFAULT_BRIDGE_FRAMES
    min_track_frames: int = DEFAULT_MIN_TRACK_FRAMES
    short_track_score: float = DEFAULT_SHORT_TRACK_SCORE
    scene_cut: float = DEFAULT_SCENE_CUT

    def __post_init__(self) -> None:
        check_range(self.smoothing, 0.0, MAX_SMOOTHING, "landmark_smoothing (0: off)")
        check_range(self.bridge_frames, 0, MAX_TRACK_FRAMES, "bridge_frames (0: off)", integer=True)
        check_range(self.min_track_frames, 1, MAX_TRACK_FRAMES, "min_track_frames (1: off)", integer=True)
        check_range(self.short_track_score, 0.0, 1.0, "short_track_score")
        check_range(self.scene_cut, 0.0, 1.0, "scene_cut (0: off)")

    @classmethod
    def off(cls, smoothing: float = 0.0) -> TrackOptions:
        """No bridging, no false-detection filter (and no smoothing unless given): each frame's own faces."""
        return cls(smoothing, bridge_frames=0, min_track_frames=1)

    @property
    def active(self) -> bool:
        """Whether faces are followed at all (else every frame's detections are final as they are)."""
        return self.smoothing > 0 or self.bridge_frames > 0 or self.min_track_frames > 1


@dataclass(frozen=True)
class PasteOptions:
    """How restored faces are pasted back.

    Attributes:
        mask: a mode of :data:`gpen_core.face.masks.MASK_MODES`: ``"parse"`` (the official face-parsing
            mask: hair, hats, hands and background around the face keep the original pixels), ``"box"``
            (the blurred square of the crop), ``"auto"`` (parse when a parser is loaded, else box).
        keep_hair: parse mask: paste the restored hair (official: yes).
        keep_neck: parse mask: paste the restored neck and necklace (GPEN: yes; facexlib: no).
        smooth_small_faces: the official 3x3 smoothing of faces whose detected box has a shorter
            side under 100 px.
        keep_grey: a grey original crop gets a grey restored face (luma of GPEN's output).
        color_match: ``"off"``, ``"lab"`` or ``"ycbcr"``: match the restored face's per-channel
            mean and std inside the mask to the original crop's.
        fidelity: in [0, 1]: 1 pastes the restored faces (the official paste), 0 returns the paste
            target exactly; in between, ``target * (1 - f m) + face * f m`` (image space).
        upscale_factor: in [1, :data:`MAX_UPSCALE`]: faces are pasted into the image resized by this
            factor; with an upscaled image, 1 or its scale (see :func:`gpen_core.face.restore.paste_size`).
        face_mode: interpolation of the face when warped back (bicubic; bilinear is the official).
        parser_precision: what the parse mask's ParseNet computes in (:data:`PARSER_PRECISIONS`): ``model``
            (the generator's), or ``fp32`` (the official network bit for bit), ``bf16``, ``fp16``.
    """

    mask: str = "auto"
    keep_hair: bool = True
    keep_neck: bool = True
    smooth_small_faces: bool = True
    keep_grey: bool = True
    color_match: str = "off"
    fidelity: float = 1.0
    upscale_factor: float = 1.0
    face_mode: str = "bicubic"
    parser_precision: str = PARSER_PRECISIONS[0]

    def __post_init__(self) -> None:
        check_choice(self.mask, MASK_MODE_NAMES, "mask")
        check_choice(self.parser_precision, PARSER_PRECISIONS, "parser_precision")
        check_choice(self.color_match, COLOR_SPACES, "color_match")
        check_choice(self.face_mode, FACE_MODES, "face_mode")
        for name in ("keep_hair", "keep_neck", "smooth_small_faces", "keep_grey"):
            check_flag(getattr(self, name), name)
        check_range(self.fidelity, 0.0, 1.0, "fidelity")
        check_range(self.upscale_factor, 1.0, MAX_UPSCALE, "upscale_factor")

    @property
    def needs_originals(self) -> bool:
        """Whether finishing compares with the original crops (grey kept grey, colour match)."""
        return self.keep_grey or self.color_match != "off"


@dataclass(frozen=True)
class RestoreOptions:
    """Everything a whole-photo restoration run is told.

    Attributes:
        detect: which faces (:class:`DetectOptions`).
        track: following faces over frames (:class:`TrackOptions`).
        paste: how they go back (:class:`PasteOptions`).
        run: how GPEN runs (:class:`gpen_core.run_options.RunOptions`; its ``batch_size`` is the
            faces per forward of both networks).
        chunk_frames: frames restored together (their faces share face batches); None: as many as
            keep about 256 MiB of frames (:func:`gpen_core.face.pipeline.chunk_frames_for`), at most 16.
    """

    detect: DetectOptions = field(default_factory=DetectOptions)
    track: TrackOptions = field(default_factory=TrackOptions)
    paste: PasteOptions = field(default_factory=PasteOptions)
    run: RunOptions = field(default_factory=RunOptions)
    chunk_frames: int | None = None

    def __post_init__(self) -> None:
        for name, kind in (("detect", DetectOptions), ("track", TrackOptions), ("paste", PasteOptions),
                           ("run", RunOptions)):
            if not isinstance(getattr(self, name), kind):
                raise TypeError(f"{name} must be a {kind.__name__}; got {type(getattr(self, name)).__name__}")
        if self.chunk_frames is not None:
            check_range(self.chunk_frames, 1, None, "chunk_frames (None: automatic)", integer=True)
