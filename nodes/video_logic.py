"""GPEN Restore Video logic without ComfyUI: a VIDEO's stream in, a restored MP4 written into a folder out.

The VIDEO is read through ``get_stream_source()`` (a file path, or a BytesIO for a video held in memory),
never through ``get_components()`` (which decodes the whole clip into one tensor): the core streams it
(:func:`gpen_core.video.restore_video`), so memory follows a chunk of frames, never the clip's length.
"""
from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Any

from ..gpen_core.face.options import RestoreOptions
from ..gpen_core.face.pipeline import FaceNetworks
from ..gpen_core.face.restore import Progress
from ..gpen_core.face.stats import RestoreStats
from ..gpen_core.video import VideoResult, restore_video

log = logging.getLogger(__name__)

OUTPUT_PREFIX = "gpen_video_"
"""Name of the files written: ``gpen_video_<random>.mp4``."""


def restore_comfy_video(networks: FaceNetworks, video: Any, options: RestoreOptions, folder: Path, *,
                        progress: Progress | None = None, stats: RestoreStats | None = None) -> VideoResult:
    """Restore the faces of a ComfyUI VIDEO into a new MP4 in ``folder`` (created if missing).

    Args:
        video: anything with ``get_stream_source()`` (ComfyUI's ``VideoInput``).
        progress: ComfyUI's progress bar and cancel point: an interrupt stops within a detector stage or a
            face batch and leaves no file behind.

    Returns:
        The :class:`gpen_core.video.VideoResult` (``target`` is the file). A damaged input is restored up to
        where it breaks, with a warning in the log (from the reader: what broke, and that the frames before it
        are kept).

    Raises:
        gpen_core.video.VideoReadError: the VIDEO cannot be read (nothing written).
    """
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{OUTPUT_PREFIX}{uuid.uuid4().hex[:12]}.mp4"
    return restore_video(networks, video.get_stream_source(), target, options, progress=progress, stats=stats)
