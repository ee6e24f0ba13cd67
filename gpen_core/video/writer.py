"""Writing restored frames as an H.264 MP4 while they are produced, atomically, with the source's audio.

:class:`VideoWriter` encodes each frame as it comes (libx264, yuv420p, CRF :data:`CRF`), at the source's
timestamps (``pts`` in its ``time_base``: the frame rate, a variable one included, and the duration are the
source's), tagged with the source's colour space and range (the RGB <-> YUV conversions on the way in and
out use the same matrix). The audio packets are interleaved by time (:class:`.audio.AudioTrack`: copied,
or re-encoded as AAC when MP4 cannot hold the codec).

* **Odd sizes**: yuv420p needs an even width and height; a frame with an odd side is padded by repeating
  its last column and/or row (every source pixel is kept; the output is one pixel wider and/or taller).
* **Atomic**: the file is written under a temporary name beside the target
  (:func:`gpen_core.images.files.partial_path`) and renamed into place by :meth:`VideoWriter.close`; an
  error or an interrupt (leaving the ``with`` block by an exception) removes it: there is never a
  half-written file under the target's name.
* Memory: one frame in flight here, plus the encoder's own buffers (x264's look-ahead of
  ``rc-lookahead`` = 40 frames and its reference frames at the medium preset, in YUV: about 60 frames of
  ``1.5 * W * H`` bytes, 28 MB at 640x480, 190 MB at 1920x1080), constant over the clip.
"""
from __future__ import annotations

import logging
import os
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch

from ..images.files import partial_path
from .audio import AudioTrack
from .source import Colour

log = logging.getLogger(__name__)

__all__ = ["CRF", "PRESET", "VideoWriter", "pad_to_even"]

CRF = 18
"""x264's constant rate factor: 18 is visually lossless for most material (lower: larger files)."""
PRESET = "medium"
"""x264's speed / size trade-off."""
UNSPECIFIED = 2
"""FFmpeg's value for an unspecified colour space, primaries or transfer (and 0 for an unspecified range)."""


def pad_to_even(image: torch.Tensor) -> torch.Tensor:
    """``(3, H, W)`` padded to even sides by repeating the last row / column (unchanged when even)."""
    height, width = image.shape[-2:]
    if height % 2 == 0 and width % 2 == 0:
        return image
    return torch.nn.functional.pad(image[None], (0, width % 2, 0, height % 2), mode="replicate")[0]


class VideoWriter:
    """An MP4 written frame by frame (a context manager: see the module docstring).

    Args:
        target: the output file (``.mp4``); an existing file there is replaced only by :meth:`close`.
        frame_rate: the source's average frame rate (the stream's nominal rate).
        time_base: seconds per unit of the ``pts`` given to :meth:`write`.
        colour: the source's colour tags (None: unspecified, BT.601 limited range).
        audio: the source's audio stream to carry over (None: no audio).
        name: the source, for messages.
        crf: x264's quality (:data:`CRF`).
    """

    def __init__(self, target: str | Path, *, frame_rate: Fraction, time_base: Fraction, colour: Colour | None = None,
                 audio: Any = None, name: str = "", crf: int = CRF) -> None:
        self.target = Path(target)
        self.partial = partial_path(self.target)
        self.frame_rate, self.time_base = frame_rate, time_base
        self.colour, self.audio_source, self.name, self.crf = colour, audio, name, crf
        self.frames = 0
        self.size: tuple[int, int] | None = None
        self.video_time = float("-inf")
        """Source seconds up to which video packets are written (audio before it may follow)."""
        self.audio: AudioTrack | None = None
        self._container: Any = None
        self._video: Any = None
        self._finished = False

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _open(self, height: int, width: int) -> None:
        import av

        self._container = av.open(str(self.partial), mode="w", format="mp4",
                                  container_options={"movflags": "+faststart"})
        video = self._container.add_stream("libx264", rate=self.frame_rate)
        video.width, video.height = width, height
        video.pix_fmt = "yuv420p"
        video.time_base = self.time_base
        video.codec_context.time_base = self.time_base
        video.options = {"crf": str(self.crf), "preset": PRESET}
        if self.colour is not None:
            context = video.codec_context
            for name in ("colorspace", "color_primaries", "color_trc"):
                if getattr(self.colour, name) != UNSPECIFIED:
                    setattr(context, name, getattr(self.colour, name))
            if self.colour.color_range:
                context.color_range = self.colour.color_range
        self._video = video
        if self.audio_source is not None:
            self.audio = AudioTrack(self._container, self.audio_source, self.name)

    def write(self, image: torch.Tensor, pts: int) -> None:
        """Encode one ``(3, H, W)`` frame (float in [0, 1], any device) shown at ``pts`` (strictly increasing)."""
        import av

        given = tuple(image.shape[-2:])
        image = pad_to_even(image.detach())
        height, width = image.shape[-2:]
        if self._container is None:
            self._open(height, width)
            self.size = (height, width)
            if (height, width) != given:
                log.info("%s: %dx%d frames padded to %dx%d (yuv420p needs even sides)", self.name, given[1],
                         given[0], width, height)
        elif self.size is not None and (height, width) != self.size:
            first_h, first_w = self.size
            raise ValueError(f"{self.name}: frame {self.frames} is {given[1]}x{given[0]} but the first frame was "
                             f"{first_w}x{first_h} (padded to even): a video has one frame size")
        array = image.clamp(0, 1).mul(255).round_().to("cpu", torch.uint8).permute(1, 2, 0).contiguous().numpy()
        frame = av.VideoFrame.from_ndarray(array, format="rgb24")
        colour = self.colour
        frame = frame.reformat(
            format="yuv420p",
            dst_colorspace=None if colour is None or colour.colorspace == UNSPECIFIED else colour.colorspace,
            dst_color_range=None if colour is None or not colour.color_range else colour.color_range,
        )
        frame.pts = pts
        frame.time_base = self.time_base
        self._mux_video(self._video.encode(frame))
        self.frames += 1

    def _mux_video(self, packets: list[Any]) -> None:
        for packet in packets:
            self._container.mux(packet)
            stamp = packet.dts if packet.dts is not None else packet.pts
            if stamp is not None:
                self.video_time = max(self.video_time, float(stamp * packet.time_base))

    def mux_audio(self, packets: list[Any]) -> None:
        """Write source audio packets (those up to :attr:`video_time`, for an interleaved file)."""
        if self.audio is not None and packets:
            self.audio.mux(packets)

    def finish(self, remaining_audio: Any = ()) -> None:
        """Flush the encoder, then write the rest of the audio (an iterable of the source's packets)."""
        if self._container is None:
            raise ValueError(f"{self.name}: no frame was written")
        self._mux_video(self._video.encode(None))
        if self.audio is not None:
            self.audio.mux(remaining_audio)
            self.audio.flush()
        self._finished = True

    def close(self) -> None:
        """Close the file and rename it into place (:meth:`finish` first, if it was not called)."""
        if not self._finished:
            self.finish()
        self._container.close()
        self._container = None
        os.replace(self.partial, self.target)

    def abort(self) -> None:
        """Close and remove the temporary file (nothing is left under the target's name)."""
        try:
            if self._container is not None:
                self._container.close()
        except Exception as err:  # noqa: BLE001 -- closing a broken file; the partial file goes either way
            log.debug("closing the partial %s: %s", self.partial, err)
        finally:
            self._container = None
            self.partial.unlink(missing_ok=True)
