"""Exceptions raised by the face-detection package.

Every error this package raises on purpose derives from :class:`FaceDetectorError`, so a
caller (e.g. a ComfyUI node) can catch one class and show its message to the user.
"""

from __future__ import annotations

from ...weights import CheckpointError


class FaceDetectorError(Exception):
    """Base class of every error raised on purpose by ``gpen_core.face``."""


class DetectorWeightsNotFoundError(FaceDetectorError, FileNotFoundError):
    """The weight file(s) of a face detector could not be found.

    The message names the files that are needed and where to put them.
    """


class InvalidDetectorWeightsError(FaceDetectorError, CheckpointError):
    """A file was found but is not a usable checkpoint for the requested detector
    (not a ``torch.save`` file, not a state dict, wrong or missing keys, wrong shapes)."""
