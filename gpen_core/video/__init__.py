"""Video files: streamed decoding (PyAV), restoration in chunks, atomic H.264 MP4 output with the source's audio.

PyAV (``av``) is imported only when a video is opened; ComfyUI already requires it.
"""
from .restore import VideoResult, restore_video
from .source import VIDEO_SUFFIXES, DecodedFrame, VideoInfo, VideoReadError, VideoSource, probe_video
from .writer import CRF, VideoWriter

__all__ = [
    "CRF",
    "VIDEO_SUFFIXES",
    "DecodedFrame",
    "VideoInfo",
    "VideoReadError",
    "VideoResult",
    "VideoSource",
    "VideoWriter",
    "probe_video",
    "restore_video",
]
