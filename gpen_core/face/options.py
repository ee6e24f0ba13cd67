"""Typed options of whole-photo face restoration, checked once, in their constructors.

The nodes and the command line build them from their inputs (one meaning per value: 0 = the
detector's default threshold, no size bound, no face limit; see each field) and hand them to
:func:`gpen_core.face.pipeline.restore_faces` as a :class:`RestoreOptions`. A wrong value fails
here, with a message naming the input, before any model runs.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..checks import check_choice, check_range
from ..run_options import RunOptions
from .detection.selection import FaceSelection
from .finish import COLOR_SPACES
from .masks import MASK_MODE_NAMES
from .parsing.precision import PARSER_PRECISIONS
from .paste import FACE_MODES

__all__ = ["MAX_UPSCALE", "DetectOptions", "PasteOptions", "RestoreOptions", "TrackOptions"]

MAX_UPSCALE = 8.0
"""Largest ``upscale_factor``."""
MAX_SMOOTHING = 0.95
"""Strongest landmark smoothing (the face then lags ``k / (1 - k)`` = 19 frames behind its motion)."""


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
    """How faces are followed over frames that come in sequence (a video; a single photo has no track).

    Attributes:
        smoothing: strength in [0, :data:`MAX_SMOOTHING`] of the one-pole filter on each track's
            landmarks (:class:`gpen_core.face.tracking.LandmarkSmoother`); 0 = off.
    """

    smoothing: float = 0.0

    def __post_init__(self) -> None:
        check_range(self.smoothing, 0.0, MAX_SMOOTHING, "landmark_smoothing (0: off)")


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
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False; got {getattr(self, name)!r}")
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
