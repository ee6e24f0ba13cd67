"""Face node logic without ComfyUI: IMAGE/MASK layouts in and out of the core's face steps.

ComfyUI IMAGE is ``(B, H, W, C)`` float in [0, 1]; MASK is ``(B, H, W)``. Alpha (a fourth channel)
is carried through, resized with the image when the faces are pasted at a larger scale. The options
are the core's typed options (built by the nodes from their widgets, checked in their constructors);
the work is the core's (:mod:`gpen_core.face.pipeline`): these functions only convert types.
"""
from __future__ import annotations

import logging
from typing import Any

import torch

from ..gpen_core.face.detection.selection import FaceSelection
from ..gpen_core.face.faces import AlignedFaces, size_of
from ..gpen_core.face.masks import MaskParser
from ..gpen_core.face.options import DetectOptions, PasteOptions, RestoreOptions, TrackOptions
from ..gpen_core.face.pipeline import (
    FaceNetworks,
    paste_restored,
    paste_restored_size,
    restore_faces,
    restore_memory_bytes,
)
from ..gpen_core.face.restore import Progress, detect_and_align, paste_size
from ..gpen_core.face.stats import RestoreStats
from ..gpen_core.images.tensors import resize, split_alpha
from .logic import bchw_to_comfy, comfy_to_bchw

log = logging.getLogger(__name__)


def restore_memory(networks: FaceNetworks, images: torch.Tensor, options: RestoreOptions,
                   upscaled: torch.Tensor | None = None, free_bytes: int | None = None) -> int:
    """Bytes Face Restore needs on the model's device for these IMAGE inputs (see
    :func:`gpen_core.face.pipeline.restore_memory_bytes`)."""
    source = size_of(comfy_to_bchw(images))
    given = None if upscaled is None else size_of(comfy_to_bchw(upscaled))
    out = paste_size(source, options.paste.upscale_factor, given)
    return restore_memory_bytes(networks.model, networks.parser, source, out, options, free_bytes)


def detect_options(score_threshold: float, min_face_size: float, selection: str, max_faces: int, face_indices: str,
                   max_face_size: float) -> DetectOptions:
    """Detection widgets (0 = detector default / no bound / no limit) -> the core's options (checked now)."""
    return DetectOptions(score_threshold, FaceSelection(selection, face_indices, min_face_size, max_face_size,
                                                        max_faces))


def _rgb(images: torch.Tensor) -> torch.Tensor:
    """ComfyUI IMAGE -> ``(B, 3, H, W)`` float RGB (a view when it can be)."""
    rgb, _ = split_alpha(comfy_to_bchw(images))
    return rgb.float()


def _output_buffer(images: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A ``(B, height, width, C)`` float32 ComfyUI IMAGE to fill, and its ``(B, 3, height, width)`` RGB view.

    Writing the RGB through the view fills the IMAGE in place: no copy of the whole batch at the end.
    Alpha, if ``images`` has it, is resized into the buffer now.
    """
    channels = images.shape[-1]
    if images.dim() == 3:
        images = images[None]
    buffer = torch.empty((images.shape[0], height, width, 4 if channels in (2, 4) else 3), dtype=torch.float32)
    _, alpha = split_alpha(comfy_to_bchw(images))
    if alpha is not None:
        buffer[..., 3] = resize(alpha.float(), height, width)[:, 0].cpu()
    return buffer, buffer.movedim(-1, 1)[:, :3]


def crops_or_placeholder(crops: torch.Tensor | None, size: int) -> torch.Tensor:
    """Crops ``(N, S, S, 3)`` as a ComfyUI IMAGE; when no face was found, one black ``S x S`` image.

    A ComfyUI IMAGE batch cannot be empty (Save Image and Preview Image fail on one), so a run without
    faces hands on a single black crop, with a warning; GPEN Paste Faces ignores it (the faces record
    says zero faces).
    """
    if crops is not None and crops.shape[0]:
        return bchw_to_comfy(crops)
    if crops is not None:
        log.warning("no face found: the crop output holds one black %dx%d image", size, size)
    return torch.zeros((1, size, size, 3))


def detect_comfy_images(
    detector,
    images: torch.Tensor,
    crop_size: int,
    detect: DetectOptions | None = None,
    track: TrackOptions | None = None,
    *,
    upscaled: torch.Tensor | None = None,
    progress: Progress | None = None,
) -> tuple[torch.Tensor, AlignedFaces]:
    """GPEN Detect & Align Faces: IMAGE in; aligned crops ``(N, S, S, 3)`` and the faces record out.

    Faces are found in ``images``; the crops are cut from ``upscaled`` when given (more detail).
    """
    with torch.inference_mode():
        crops, faces = detect_and_align(detector, _rgb(images), crop_size, detect=detect, track=track,
                                        crop_source=None if upscaled is None else _rgb(upscaled), progress=progress)
    return crops_or_placeholder(crops, crop_size), faces


def paste_comfy_images(
    images: torch.Tensor,
    faces: AlignedFaces,
    restored: torch.Tensor,
    paste: PasteOptions | None = None,
    *,
    face_masks: torch.Tensor | None = None,
    parser: MaskParser | None = None,
    progress: Progress | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """GPEN Paste Faces: (IMAGE, faces, restored crops IMAGE[, crop MASK]) in; (IMAGE, MASK) out.

    See :func:`gpen_core.face.pipeline.paste_restored` (crops and masks of any size, checked values,
    chunks of frames); alpha of ``images`` is carried through.
    """
    paste = paste or PasteOptions()
    rgb = _rgb(images)
    height, width = paste_restored_size(size_of(rgb), faces, paste.upscale_factor)
    buffer, out = _output_buffer(images, height, width)
    with torch.inference_mode():
        _, masks = paste_restored(rgb, faces, _rgb(restored), paste,
                                  parser=parser, face_masks=face_masks, out=out, progress=progress)
    return buffer, masks


def restore_comfy_images(
    networks: FaceNetworks,
    images: torch.Tensor,
    options: RestoreOptions | None = None,
    *,
    upscaled: torch.Tensor | None = None,
    keep_crops: bool = True,
    progress: Progress | None = None,
    stats: RestoreStats | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """GPEN Face Restore: IMAGE in; (IMAGE, crops before, crops after, MASK) out.

    The same steps as Detect & Align -> (GPEN) -> Paste, a face batch at a time over chunks of frames.
    Crops are ``(N, S, S, 3)`` over all faces of all images (a black placeholder when there is none), or
    one placeholder when ``keep_crops`` is off (long videos: nothing grows with the frame count but the
    output).
    """
    options = options or RestoreOptions()
    rgb = _rgb(images)
    up = None if upscaled is None else _rgb(upscaled)
    height, width = paste_size(size_of(rgb), options.paste.upscale_factor, None if up is None else size_of(up))
    buffer, out = _output_buffer(images, height, width)
    with torch.inference_mode():
        result = restore_faces(networks, rgb, options, upscaled=up, keep_crops=keep_crops, out=out,
                               progress=progress, stats=stats)
    size = networks.model.config.size
    before = crops_or_placeholder(result.crops, size)
    after = crops_or_placeholder(result.restored, size)
    return buffer, before, after, result.masks.float().cpu()


def linked_outputs(prompt: dict[str, Any] | None, node_id: str | None) -> set[int] | None:
    """Which outputs of node ``node_id`` some node of the API-format ``prompt`` takes as input.

    ``None`` when unknown (no prompt or id): the caller then computes every output.
    """
    if prompt is None or node_id is None:
        return None
    used: set[int] = set()
    for node in prompt.values():
        for value in (node.get("inputs") or {}).values() if isinstance(node, dict) else ():
            linked = isinstance(value, list) and len(value) == 2 and isinstance(value[1], int)
            if linked and str(value[0]) == str(node_id):
                used.add(value[1])
    return used
