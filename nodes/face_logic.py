"""Face node logic without ComfyUI: Detect & Align, Paste, Face Restore (the first two composed).

ComfyUI IMAGE is ``(B, H, W, C)`` float in [0, 1]; MASK is ``(B, H, W)``. Alpha (a fourth channel)
is carried through, resized with the image when the faces are pasted at a larger scale.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..gpen_core.arch.generator import GPEN
from ..gpen_core.face.faces import AlignedFaces, size_of
from ..gpen_core.face.parsing import kept_classes, load_parser_for_mask, parse_paste_masks
from ..gpen_core.face.paste import PasteOptions, resolve_mask_mode
from ..gpen_core.face.restore import (
    DetectOptions,
    chunk_frames_for,
    detect_and_align,
    paste_back,
    paste_size,
    restore_faces,
)
from ..gpen_core.face.tracking import LandmarkSmoother
from ..gpen_core.images.tensors import resize, split_alpha
from ..gpen_core.runtime.report import RunRecord
from .logic import AUTO_TILE, bchw_to_comfy, comfy_to_bchw, core_tile_size

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


def detect_options(
    score_threshold: float, min_face_size: float, selection: str, max_faces: int, face_indices: str,
    max_face_size: float,
) -> DetectOptions:
    """Widget values (0 = detector default / no bound / no limit) -> core detection options (checked now)."""
    options = DetectOptions(
        score_threshold or None, min_face_size, selection, max_faces or None, face_indices, max_face_size
    )
    options.face_selection()  # a bad index list or order fails here, before any model runs
    return options


def _rgb(images: torch.Tensor) -> torch.Tensor:
    """ComfyUI IMAGE -> ``(B, 3, H, W)`` float RGB (a view when it can be)."""
    rgb, _ = split_alpha(comfy_to_bchw(images))
    return rgb.float()


def _output_buffer(
    images: torch.Tensor, height: int, width: int
) -> tuple[torch.Tensor, torch.Tensor]:
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
    *,
    score_threshold: float = 0.0,
    min_face_size: float = 0.0,
    selection: str = "score",
    max_faces: int = 0,
    face_indices: str = "",
    max_face_size: float = 0.0,
    landmark_smoothing: float = 0.0,
    upscaled: torch.Tensor | None = None,
    progress: Progress | None = None,
) -> tuple[torch.Tensor, AlignedFaces]:
    """GPEN Detect & Align Faces: IMAGE in; aligned crops ``(N, S, S, 3)`` and the faces record out.

    Faces are found in ``images``; the crops are cut from ``upscaled`` when given (more detail).
    ``landmark_smoothing`` smooths landmarks across the frames of the batch (0 = off).
    """
    smoother = LandmarkSmoother(landmark_smoothing) if landmark_smoothing > 0 else None
    with torch.inference_mode():
        crops, faces = detect_and_align(
            detector, _rgb(images), crop_size,
            detect=detect_options(score_threshold, min_face_size, selection, max_faces, face_indices, max_face_size),
            crop_source=None if upscaled is None else _rgb(upscaled), smoother=smoother, progress=progress,
        )
    return crops_or_placeholder(crops, crop_size), faces


def paste_comfy_images(
    images: torch.Tensor,
    faces: AlignedFaces,
    restored: torch.Tensor,
    *,
    fidelity: float = 1.0,
    upscale_factor: float = 1.0,
    face_masks: torch.Tensor | None = None,
    chunk_frames: int | None = None,
    progress: Progress | None = None,
    paste: PasteOptions | None = None,
    parser_dirs: Sequence[str] = (),
    parser_device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """GPEN Paste Faces: (IMAGE, faces, restored crops IMAGE[, crop MASK]) in; (IMAGE, MASK) out.

    ``paste``: mask mode and finishing, as Face Restore; the parser (from ``parser_dirs``) runs on
    ``parser_device`` in float32, one face at a time (Face Restore on a CPU does the same).

    ``images`` are the images the faces were found in (then resized by ``upscale_factor``), or an
    upscaled copy of them (the scale is read from the sizes; ``upscale_factor`` must then be 1 or that
    scale). Restored crops (and ``face_masks``, a MASK per crop) of any size are resized to the faces' crop
    size; there must be one per face. Frames are resized and pasted a chunk at a time, as Face Restore does.
    """
    rgb = _rgb(images)
    if rgb.shape[0] != faces.num_images:
        raise ValueError(
            f"image has {rgb.shape[0]} frame(s) but the faces were found in {faces.num_images}: connect the "
            "image (or its upscaled copy) that went into GPEN Detect & Align Faces"
        )
    given = size_of(rgb)
    source = faces.source_sizes[0] if faces.num_images else given
    height, width = paste_size(source, upscale_factor, None if given == source else given)
    size = faces.crop_size
    crops = _rgb(restored)
    if len(faces) and crops.shape[0] != len(faces):  # without faces: the placeholder crop, ignored
        raise ValueError(
            f"restored_faces has {crops.shape[0]} crop(s) but {len(faces)} face(s) were detected: connect the crops "
            "of GPEN Detect & Align Faces after your restoration node, one per face, in the same order"
        )
    if len(faces) and face_masks is not None and (face_masks.dim() != 3 or face_masks.shape[0] != len(faces)):
        raise ValueError(
            f"face_masks must be a MASK with one mask per face ({len(faces)}, H, W); got {tuple(face_masks.shape)}"
        )
    count = rgb.shape[0]
    chunk = chunk_frames or chunk_frames_for(*given, height, width)
    buffer, out = _output_buffer(images, height, width)
    masks = torch.empty((count, height, width), dtype=torch.float32)
    paste = paste or PasteOptions()
    parser = None
    if face_masks is None:  # a MASK given per crop wins over the parser
        parser = load_parser_for_mask(paste.mask, list(parser_dirs), device=parser_device or crops.device)
        if resolve_mask_mode(paste.mask, parser is not None) == "box":
            parser = None
    with torch.inference_mode():
        crops = resize(crops, size, size)
        own = None if face_masks is None else resize(face_masks[:, None].float(), size, size)[:, 0]
        if parser is not None and len(faces):
            kept = kept_classes(keep_hair=paste.keep_hair, keep_neck=paste.keep_neck)
            own = parse_paste_masks(parser, crops, kept=kept, batch_size=1)
        for start in range(0, count, chunk):
            stop = min(count, start + chunk)
            part, rows = faces.images(start, stop)
            done = None if progress is None else (lambda d, _t, start=start: progress(start + d, count))
            paste_back(
                resize(rgb[start:stop], height, width), crops[rows], part, fidelity=fidelity,
                face_masks=None if own is None else own[rows], out=out[start:stop], out_masks=masks[start:stop],
                progress=done, paste=paste,
            )
    return buffer, masks


def restore_comfy_images(
    model: GPEN,
    detector,
    images: torch.Tensor,
    *,
    fidelity: float = 1.0,
    score_threshold: float = 0.0,
    min_face_size: float = 0.0,
    selection: str = "score",
    max_faces: int = 0,
    face_indices: str = "",
    max_face_size: float = 0.0,
    upscale_factor: float = 1.0,
    upscaled: torch.Tensor | None = None,
    landmark_smoothing: float = 0.0,
    keep_crops: bool = True,
    tile_size: int = AUTO_TILE,
    memory_budget: int | None = None,
    face_batch: int | None = None,
    chunk_frames: int | None = None,
    progress: Progress | None = None,
    on_record: Callable[[RunRecord], None] | None = None,
    paste: PasteOptions | None = None,
    parser_dirs: Sequence[str] = (),
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """GPEN Face Restore: IMAGE in; (IMAGE, crops before, crops after, MASK) out.

    ``paste`` holds the mask mode and the finishing switches; the parser (mask parse or auto) is
    looked up in ``parser_dirs`` and loaded, on the model's device and dtype, for this run only.

    The same steps as Detect & Align -> (GPEN) -> Paste, chunk by chunk of frames. Crops are
    ``(N, S, S, 3)`` over all faces of all images (``N`` may be 0), or ``(0, S, S, 3)`` when
    ``keep_crops`` is off (long videos: nothing grows with the frame count but the output).
    """
    rgb = _rgb(images)
    up = None if upscaled is None else _rgb(upscaled)
    height, width = paste_size(size_of(rgb), upscale_factor, None if up is None else size_of(up))
    buffer, out = _output_buffer(images, height, width)
    paste = paste or PasteOptions()
    parser = load_parser_for_mask(paste.mask, list(parser_dirs), device=model.device, dtype=model.dtype)
    with torch.inference_mode():
        result = restore_faces(
            model, detector, rgb, parser=parser, paste=paste,
            detect=detect_options(score_threshold, min_face_size, selection, max_faces, face_indices, max_face_size),
            fidelity=fidelity, upscale_factor=upscale_factor, upscaled=up, landmark_smoothing=landmark_smoothing,
            keep_crops=keep_crops, chunk_frames=chunk_frames, tile_size=core_tile_size(tile_size),
            memory_budget=memory_budget, face_batch=face_batch, out=out, progress=progress, on_record=on_record,
        )
    size = model.config.size
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
