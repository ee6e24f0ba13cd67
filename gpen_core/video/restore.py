"""Face restoration of a video file, streamed: decode, restore in chunks, encode, with the audio carried over.

:func:`restore_video` wires :class:`.source.VideoSource` -> :class:`gpen_core.face.pipeline.FaceRestorer`
-> :class:`.writer.VideoWriter`: frames are decoded one at a time, restored a chunk at a time (the tracker
holding a few back), and encoded as they come out, so memory follows the chunk (and the encoder's
buffers), never the length of the clip. The output is written atomically: an error or an interrupt
(an exception from ``progress``) leaves no file under the target's name.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from ..face.options import RestoreOptions
from ..face.pipeline import FaceNetworks, FaceRestorer, chunk_frames_for
from ..face.restore import MAX_FACE_BATCH, Progress, paste_size
from ..face.stats import RestoreStats
from ..images.files import MAX_FRAMES, MAX_PIXELS
from .source import VideoInfo, VideoInput, VideoReadError, VideoSource
from .writer import CRF, VideoWriter

__all__ = ["VideoResult", "restore_video", "video_chunk_frames"]


def video_chunk_frames(height: int, width: int, upscale_factor: float) -> int:
    """Frames per chunk of a streamed clip: the automatic chunk (:func:`chunk_frames_for`), at most
    :data:`MAX_FACE_BATCH`: a chunk that size fills a face batch with one face per frame; more frames would
    only hold more memory (a clip's frames need not be restored together, unlike an IMAGE batch held whole)."""
    out_height, out_width = paste_size((height, width), upscale_factor, None)
    return min(MAX_FACE_BATCH, chunk_frames_for(height, width, out_height, out_width))


@dataclass(frozen=True)
class VideoResult:
    """What :func:`restore_video` wrote.

    Attributes:
        target: the output file.
        frames: frames written (those decoded).
        info: the source's header.
        size: ``(height, width)`` written (upright; odd sides padded to even).
        rotation: degrees counter-clockwise applied from the source's display matrix.
        audio: what became of the audio: ``"none"``, ``"aac, copied"``, ``"pcm_s16le re-encoded as AAC ..."``.
        problem: why the stream ended early (a damaged or cut-off file: the frames before it were restored
            and written); None for a complete stream.
    """

    target: Path
    frames: int
    info: VideoInfo
    size: tuple[int, int]
    rotation: int
    audio: str
    problem: str | None

    def describe(self) -> str:
        """One line: frames, size, frame rate, audio."""
        height, width = self.size
        return (f"{self.frames} frames {width}x{height} at {float(self.info.frame_rate):.3g} fps"
                + (f", rotated {self.rotation} degrees" if self.rotation else "") + f", audio: {self.audio}")


def restore_video(
    networks: FaceNetworks,
    source: VideoInput,
    target: str | Path,
    options: RestoreOptions | None = None,
    *,
    progress: Progress | None = None,
    stats: RestoreStats | None = None,
    max_pixels: int = MAX_PIXELS,
    max_frames: int = MAX_FRAMES,
    crf: int = CRF,
) -> VideoResult:
    """Restore every face of a video and write it as an H.264 MP4 with the source's audio.

    Args:
        networks: the loaded networks (frames are processed on the model's device).
        source: a video file path or an open binary stream (:data:`.source.VideoInput`).
        target: the output ``.mp4``.
        options: detection, tracking, paste and run options (tracking on by default: the frames come in
            sequence); ``chunk_frames`` None: :func:`video_chunk_frames`.
        progress: ``progress(done, total)`` per :data:`gpen_core.face.pipeline.FRAME_STEPS` steps per frame
            (the total from the header's frame count, or its duration); an exception from it stops the run (within one
            detector stage or face batch) and removes the partial output.
        stats: live figures (frames done and total, faces, seconds per stage, ``decode`` and ``encode`` included).
        max_pixels, max_frames: limits checked from the header (and the frame count while decoding).
        crf: x264's quality (:data:`.writer.CRF`).

    Returns:
        A :class:`VideoResult`; a damaged or cut-off stream is restored up to where it breaks and says so
        in ``problem`` (the file is complete and playable).

    Raises:
        VideoReadError: the file cannot be opened as a video, is over the limits, or has no decodable frame
            (nothing is written).
    """
    stats = stats if stats is not None else RestoreStats()
    options = options or RestoreOptions()
    with VideoSource(source, max_pixels=max_pixels, max_frames=max_frames) as video:
        if options.chunk_frames is None:
            chunk = video_chunk_frames(video.info.height, video.info.width, options.paste.upscale_factor)
            options = replace(options, chunk_frames=chunk)
        writer = VideoWriter(target, frame_rate=video.info.frame_rate, time_base=video.info.time_base,
                             audio=video.audio_stream, name=video.name, crf=crf)
        with writer:
            times: deque[int] = deque()

            def frames() -> Iterator[torch.Tensor]:
                decoded = video.frames()
                while True:
                    with stats.stage("decode"):
                        frame = next(decoded, None)
                    if frame is None:
                        return
                    if writer.colour is None:
                        writer.colour = video.colour
                    times.append(frame.pts)
                    yield frame.image

            restorer = FaceRestorer(networks, options, keep_crops=False, progress=progress, stats=stats)
            with torch.inference_mode():
                # decoded 8-bit frames divided by 255: in [0, 1] by construction, so their values go unchecked
                for restored in restorer.restore(frames(), total=video.info.estimated_frames, check=False):
                    with stats.stage("encode"):
                        writer.write(restored.image, times.popleft())
                        writer.mux_audio(video.audio_until(writer.video_time))
            if video.decoded == 0:
                raise VideoReadError(f"{video.name}: no frame could be decoded"
                                     + (f" ({video.problem})" if video.problem else ""))
            with stats.stage("encode"):
                writer.finish(video.remaining_audio())
        assert writer.size is not None
        return VideoResult(Path(target), writer.frames, video.info, writer.size, video.rotation,
                           "none" if writer.audio is None else writer.audio.description, video.problem)
