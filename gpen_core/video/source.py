"""Reading a video as a stream of upright float frames (PyAV), its audio packets kept for the writer.

:func:`probe_video` reads only the header (for planning: size, frame rate, frame count, audio codec).
:class:`VideoSource` demuxes the file once, in order: :meth:`VideoSource.frames` decodes video frames one
at a time, as ``(3, H, W)`` float tensors in [0, 1], while the audio packets met on the way wait in a queue
until the writer takes them (:meth:`VideoSource.audio_until`, :meth:`VideoSource.remaining_audio`), so
memory follows the frames in flight, never the length of the clip.

* **Rotation**: a display matrix (phone clips filmed upright store landscape pixels and a rotation) is
  applied to each frame, in multiples of 90 degrees, so faces are upright; the frames handed on, and the
  video written from them, carry no rotation. An angle off the quarter turns is rounded to the nearest one,
  and a mirror in the matrix is not applied (both logged as warnings).
* **Timestamps**: each frame's presentation time (``pts`` in the stream's ``time_base``) is kept, so a
  variable frame rate survives; a frame without one gets the previous frame's time plus one frame.
* **A damaged stream**: an error while decoding ends the stream there; the frames decoded before it are
  handed on and :attr:`VideoSource.problem` says what happened; so does a stream ending before the frame
  count its header declares (a cut-off file).
"""
from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import IO, Any

import torch

from ..images.files import MAX_FRAMES, MAX_PIXELS
from ..images.regular import NotRegularFileError, open_regular

log = logging.getLogger(__name__)

__all__ = ["VIDEO_SUFFIXES", "Colour", "DecodedFrame", "VideoInfo", "VideoReadError", "VideoSource", "display_rotation",
           "probe_video", "upright"]

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi")
"""Suffixes read as videos (by the command line, also in folders)."""
FRAME_COUNT_SLACK = 1
"""Frames a stream may fall short of its header's count before it counts as cut off."""

VideoInput = str | Path | IO[bytes]
"""A video file path, or an open binary stream (e.g. ComfyUI's ``VideoInput.get_stream_source()``)."""


class VideoReadError(ValueError):
    """A file or stream that cannot be read as a video; the message names it and says why."""


@dataclass(frozen=True)
class Colour:
    """The colour tags of the decoded frames (PyAV's integer enums), given back to the encoder so that the
    RGB <-> YUV conversions on the way in and out use the same matrix and range."""

    colorspace: int
    color_range: int
    color_primaries: int
    color_trc: int


@dataclass(frozen=True)
class VideoInfo:
    """What the header of a video says.

    Attributes:
        name: the file (or ``"<stream>"``), for messages.
        width, height: the coded frame size (before any rotation).
        frame_rate: the average frame rate (frames per second), else the guessed one.
        time_base: seconds per unit of the video stream's timestamps.
        frames: frames the header declares (from the video stream's duration when it only gives that); None:
            unknown (Matroska and WebM state no count).
        duration: seconds of the video stream, when known.
        estimated_frames: ``frames``, else the container's duration times the frame rate (for progress only: the
            audio may run longer); None when neither is known.
        audio: codec name of the first audio stream (None: no audio).
        container: the container format's name.
    """

    name: str
    width: int
    height: int
    frame_rate: Fraction
    time_base: Fraction
    frames: int | None
    duration: float | None
    audio: str | None
    container: str
    estimated_frames: int | None = None


@dataclass(frozen=True)
class DecodedFrame:
    """One decoded frame: ``image`` ``(3, H, W)`` float32 in [0, 1], upright; ``pts`` in the stream's time base."""

    image: torch.Tensor
    pts: int


def _name(source: VideoInput) -> str:
    return str(source) if isinstance(source, (str, Path)) else "<stream>"


def _open(source: VideoInput, name: str) -> tuple[Any, IO[bytes] | None]:
    """``(container, file we opened)``: a path is opened as a regular file only (a FIFO or device is refused)."""
    try:
        import av
    except ImportError as err:
        raise VideoReadError(f"{name}: reading videos needs PyAV, which is not installed: pip install av") from err

    handle: IO[bytes] | None = None
    if isinstance(source, (str, Path)):
        try:
            handle = open_regular(Path(source))
        except NotRegularFileError as err:
            raise VideoReadError(str(err)) from err
        except OSError as err:
            raise VideoReadError(f"{name}: cannot open ({err.strerror or err})") from err
    try:
        container = av.open(handle if handle is not None else source, mode="r", metadata_errors="ignore")
    except (av.FFmpegError, ValueError, OSError) as err:
        if handle is not None:
            handle.close()
        reason = getattr(err, "strerror", None) or err
        raise VideoReadError(f"{name}: not a video PyAV can read (unknown, truncated or corrupt: {reason})") from err
    return container, handle


def _info(container: Any, name: str, max_pixels: int, max_frames: int) -> VideoInfo:
    if not container.streams.video:
        raise VideoReadError(f"{name}: no video stream (streams: "
                             f"{', '.join(s.type for s in container.streams) or 'none'})")
    stream = container.streams.video[0]
    width, height = int(stream.codec_context.width), int(stream.codec_context.height)
    if width <= 0 or height <= 0:
        raise VideoReadError(f"{name}: the video stream has no frame size ({width}x{height})")
    if width * height > max_pixels:
        raise VideoReadError(f"{name}: {width}x{height} frames ({width * height / 1e6:.1f} megapixels), over the limit "
                             f"of {max_pixels / 1e6:g} megapixels: not decoded; raise the limit (max_pixels, command "
                             "line --max-pixels) on a machine with the memory")
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    rate = Fraction(rate) if rate else Fraction(25)
    time_base = Fraction(stream.time_base) if stream.time_base else 1 / rate
    duration = float(stream.duration * time_base) if stream.duration else None
    frames = int(stream.frames) if stream.frames else None
    if frames is None and duration is not None:
        frames = max(1, round(duration * rate))
    if frames is not None and frames > max_frames:
        raise VideoReadError(f"{name}: {frames} frames, more than the limit of {max_frames}; split the clip, or raise "
                             "the limit (max_frames, command line --max-frames)")
    audio = container.streams.audio[0].codec_context.name if container.streams.audio else None
    estimate = frames
    if estimate is None and container.duration:
        estimate = max(1, round(container.duration / 1_000_000 * rate))  # AV_TIME_BASE: microseconds
    return VideoInfo(name, width, height, rate, time_base, frames, duration, audio, container.format.name, estimate)


def probe_video(source: VideoInput, *, max_pixels: int = MAX_PIXELS, max_frames: int = MAX_FRAMES) -> VideoInfo:
    """The header of a video (nothing decoded), checked against the limits.

    Raises:
        VideoReadError: not a regular file, not a video PyAV can open, no video stream, frames over
            ``max_pixels`` or more than ``max_frames`` frames; the message names the file.
    """
    name = _name(source)
    container, handle = _open(source, name)
    try:
        return _info(container, name, max_pixels, max_frames)
    finally:
        container.close()
        if handle is not None:
            handle.close()


def upright(image: torch.Tensor, rotation: float) -> torch.Tensor:
    """``(3, H, W)`` turned by ``rotation`` degrees counter-clockwise (a display matrix's angle, a multiple of 90)."""
    turns = round(rotation / 90) % 4
    return torch.rot90(image, turns, dims=(1, 2)) if turns else image


class VideoSource:
    """A video opened for reading once, in order (a context manager; see the module docstring).

    Args:
        source: a path or a binary stream.
        max_pixels, max_frames: limits checked from the header (:func:`probe_video`).

    Attributes:
        info: the header (:class:`VideoInfo`).
        decoded: frames handed on so far.
        rotation: degrees counter-clockwise applied to the frames (from the first frame's display matrix).
        colour: the colour tags of the first frame (None before it).
        problem: why the stream ended early (a decoding error, or fewer frames than the header declares);
            None while none is known.
    """

    def __init__(self, source: VideoInput, *, max_pixels: int = MAX_PIXELS, max_frames: int = MAX_FRAMES) -> None:
        self.name = _name(source)
        self._container, self._handle = _open(source, self.name)
        try:
            self.info = _info(self._container, self.name, max_pixels, max_frames)
        except BaseException:
            self.close()
            raise
        self._max_frames = max_frames
        self._video = self._container.streams.video[0]
        self._video.thread_type = "AUTO"
        self.audio_stream = self._container.streams.audio[0] if self._container.streams.audio else None
        self._audio: deque[Any] = deque()
        self._demuxer = self._demux()
        self._finished = False
        self.decoded = 0
        self.rotation = 0
        self.colour: Colour | None = None
        self.problem: str | None = None

    def __enter__(self) -> VideoSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._container.close()
        if self._handle is not None:
            self._handle.close()

    def _demux(self) -> Iterator[Any]:
        """Video frames (PyAV's) and audio packets in file order; stops at the first error (``problem``)."""
        import av

        streams = [self._video] + ([self.audio_stream] if self.audio_stream is not None else [])
        try:
            for packet in self._container.demux(*streams):
                if packet.stream.type == "video":
                    yield from packet.decode()
                elif packet.dts is not None:
                    yield packet
        except av.FFmpegError as err:
            self.problem = f"the stream is damaged after frame {self.decoded}: {err}"
            log.warning("%s: %s; the frames before it are kept", self.name, self.problem)

    def frames(self) -> Iterator[DecodedFrame]:
        """The frames, upright, in order (audio packets met on the way are queued for the writer).

        Raises:
            VideoReadError: the stream has more frames than ``max_frames``.
        """
        import av

        step = max(1, round(1 / (self.info.frame_rate * self.info.time_base)))
        last_pts: int | None = None
        for item in self._demuxer:
            if not isinstance(item, av.VideoFrame):  # an audio packet
                self._audio.append(item)
                continue
            if self.decoded >= self._max_frames:
                raise VideoReadError(f"{self.name}: more than {self._max_frames} frames; split the clip, or raise the "
                                     "limit (max_frames, command line --max-frames)")
            if self.decoded == 0:
                self._first_frame(item)
            pts = item.pts if item.pts is not None else (0 if last_pts is None else last_pts + step)
            if last_pts is not None and pts <= last_pts:
                pts = last_pts + 1  # the encoder needs strictly increasing times
            last_pts = pts
            array = item.to_ndarray(format="rgb24")
            image = torch.from_numpy(array).permute(2, 0, 1).float().div_(255.0)
            self.decoded += 1
            yield DecodedFrame(upright(image, self.rotation), pts)
        self._finished = True
        declared = self.info.frames
        if self.problem is None and declared is not None and self.decoded + FRAME_COUNT_SLACK < declared:
            self.problem = (f"the stream ends after {self.decoded} of the {declared} frames its header declares "
                            "(the file is cut off or damaged)")
            log.warning("%s: %s; the frames before it are kept", self.name, self.problem)

    def _first_frame(self, frame: Any) -> None:
        """Read the rotation and colour tags from the first frame."""
        matrix = display_matrix(frame)
        if matrix is not None:
            rotation = display_rotation(matrix)
            quarter = 90 * round(rotation / 90)
            if abs(rotation - quarter) > 1:
                log.warning("%s: a display rotation of %.1f degrees is not a quarter turn: applied as %d degrees",
                            self.name, rotation, quarter)
            self.rotation = int(quarter) % 360
            if matrix[0] * matrix[4] - matrix[1] * matrix[3] < 0:
                log.warning("%s: the display matrix also mirrors the picture; the mirror is not applied", self.name)
        self.colour = Colour(int(frame.colorspace), int(frame.color_range), int(frame.color_primaries),
                             int(frame.color_trc))

    def audio_until(self, seconds: float) -> list[Any]:
        """The queued audio packets that start before ``seconds`` (source time), in order."""
        taken = []
        while self._audio and _seconds(self._audio[0]) <= seconds:
            taken.append(self._audio.popleft())
        return taken

    def remaining_audio(self) -> Iterator[Any]:
        """Every audio packet not taken yet, to the end of the file (after the last frame was read)."""
        import av

        while self._audio:
            yield self._audio.popleft()
        if not self._finished:
            for item in self._demuxer:
                if not isinstance(item, av.VideoFrame):
                    yield item


def _seconds(packet: Any) -> float:
    stamp = packet.pts if packet.pts is not None else packet.dts
    return float(stamp * packet.time_base) if stamp is not None and packet.time_base else -math.inf


def display_matrix(frame: Any) -> tuple[int, ...] | None:
    """The nine 16.16 fixed-point numbers of a frame's display matrix side data, or None."""
    import av.sidedata.sidedata as side_data

    for data in frame.side_data:
        if data.type == side_data.Type.DISPLAYMATRIX:
            return tuple(memoryview(bytes(data)).cast("i"))[:9]
    return None


def display_rotation(matrix: tuple[int, ...]) -> float:
    """Degrees counter-clockwise a display matrix turns the picture (FFmpeg's ``av_display_rotation_get``)."""
    scale_x = math.hypot(matrix[0], matrix[3])
    scale_y = math.hypot(matrix[1], matrix[4])
    if scale_x == 0 or scale_y == 0:
        return 0.0
    return -math.degrees(math.atan2(matrix[1] / scale_y, matrix[0] / scale_x))
