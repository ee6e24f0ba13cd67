"""Short synthetic video clips for the tests (importable as ``video_clips``; needs PyAV).

:func:`write_clip` encodes ``(T, 3, H, W)`` frames (or any iterable of them) with optional audio, display
rotation, odd sizes (lossless FFV1 in Matroska) and explicit frame times (a variable frame rate);
:func:`read_clip` decodes one back the way the pipeline does; :func:`portrait_frames` moves the shared portrait
over a canvas.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

AUDIO_RATE = 16000


@dataclass
class Clip:
    """A decoded clip: ``frames`` ``(T, 3, H, W)`` float in [0, 1] (as coded: no rotation applied), frame times in
    seconds, the frame rate and duration the container states, the audio packets' bytes, the streams' codecs."""

    frames: torch.Tensor
    times: list[float]
    rate: Fraction
    duration: float | None
    audio: list[bytes]
    codecs: list[tuple[str, str]]
    rotations: list[float]


def write_clip(path: Path, frames: Iterable[torch.Tensor], *, fps: int = 12, audio: str | None = "aac",
               rotation: int = 0, times_ms: list[int] | None = None, codec: str = "libx264",
               container: str | None = None, audio_layout: str = "mono", faststart: bool = False) -> Path:
    """Encode ``(3, H, W)`` float frames into ``path``; audio: a codec (a 440 Hz tone over the clip) or None.

    Args:
        rotation: a display matrix turning the picture this many degrees counter-clockwise.
        times_ms: each frame's time in milliseconds (a variable frame rate); default ``i / fps``.
        codec: the video codec (``ffv1`` takes odd sizes; it is stored as yuv444p).
        faststart: an MP4's index first (a cut-off file then still opens, with the frame count in its header).
    """
    import av

    frames = list(frames)
    height, width = frames[0].shape[-2:]
    time_base = Fraction(1, 1000) if times_ms is not None else Fraction(1, fps)
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), mode="w", format=container, container_options=options) as out:
        video = out.add_stream(codec, rate=fps)
        video.width, video.height = width, height
        video.pix_fmt = "yuv444p" if codec == "ffv1" else "yuv420p"
        video.codec_context.time_base = time_base
        if rotation:
            video.set_display_rotation(rotation)
        sound = None
        if audio is not None:
            sound = out.add_stream(audio, rate=AUDIO_RATE)
            sound.layout = audio_layout
        for i, frame in enumerate(frames):
            array = (frame.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
            picture = av.VideoFrame.from_ndarray(array, format="rgb24").reformat(format=video.pix_fmt)
            picture.pts = times_ms[i] if times_ms is not None else i
            picture.time_base = time_base
            for packet in video.encode(picture):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
        if sound is not None:
            seconds = (times_ms[-1] / 1000 + 1 / fps) if times_ms is not None else len(frames) / fps
            samples = int(AUDIO_RATE * seconds)
            tone = (0.3 * np.sin(2 * math.pi * 440 * np.arange(samples) / AUDIO_RATE)).astype(np.float32)
            channels = 2 if audio_layout == "stereo" else 1
            chunk = AUDIO_RATE // 10
            for start in range(0, samples, chunk):
                part = np.ascontiguousarray(np.repeat(tone[None, start : start + chunk], channels, 0))
                wave = av.AudioFrame.from_ndarray(part, format="fltp", layout=audio_layout)
                wave.sample_rate, wave.pts = AUDIO_RATE, start
                for packet in sound.encode(wave):
                    out.mux(packet)
            for packet in sound.encode(None):
                out.mux(packet)
    return path


def read_clip(path: Path) -> Clip:
    """Decode every frame (RGB as the pipeline reads it) and collect the audio packets."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        rate = Fraction(stream.average_rate)
        duration = float(stream.duration * stream.time_base) if stream.duration else None
        codecs = [(s.type, s.codec_context.name) for s in container.streams]
        frames, times, rotations = [], [], []
        for frame in container.decode(video=0):
            frames.append(torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1).float() / 255)
            times.append(float(frame.time))
            rotations.append(float(frame.rotation))
    audio = []
    with av.open(str(path)) as container:
        if container.streams.audio:
            audio = [bytes(p) for p in container.demux(container.streams.audio[0]) if p.dts is not None]
    return Clip(torch.stack(frames), times, rate, duration, audio, codecs, rotations)


def portrait_frames(portrait: torch.Tensor, count: int, height: int, width: int, scale: float = 1.0,
                    step: int = 4) -> torch.Tensor:
    """``(count, 3, height, width)``: the portrait (resized by ``scale``) moving ``step`` px a frame on grey."""
    if scale != 1.0:
        portrait = torch.nn.functional.interpolate(portrait[None], scale_factor=scale, mode="area")[0]
    h, w = portrait.shape[-2:]
    frames = torch.full((count, 3, height, width), 0.25)
    for i in range(count):
        x = min(width - w, 4 + step * i)
        y = min(height - h, 4 + (i % 3))
        frames[i, :, y : y + h, x : x + w] = portrait
    return frames
