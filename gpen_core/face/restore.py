"""Whole-photo face restoration in three steps, and the one function that chains them.

1. :func:`detect_and_align`: detect the faces of each image, align them to GPEN's template and cut
   the crops -> ``(N, 3, S, S)`` crops and an :class:`~gpen_core.face.faces.AlignedFaces` record.
2. :func:`restore_crops`: the crops through GPEN (:func:`gpen_core.enhance.enhance_images`) in
   face batches sized by the memory strategy.
3. :func:`paste_masks` (parse mask only): the restored crops through the face parser, in the same
   face batches -> ``(N, S, S)`` masks.
4. :func:`paste_back`: the restored crops pasted into the images (or into a resized copy: the
   scale is composed into the matrices) -> images and paste masks.

:func:`restore_faces` runs exactly these steps over chunks of frames, so that a long video needs
the memory of one chunk (plus its output), not of every frame's faces; it also carries the
temporal landmark smoothing (:mod:`gpen_core.face.tracking`) from chunk to chunk.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from ..arch.generator import GPEN
from ..checks import check_image, check_range, check_shape
from ..enhance import Enhanced, enhance_images
from ..images.tensors import resize
from ..runtime.report import RunRecord
from ..runtime.strategy import Strategy, estimate_peak_bytes, free_memory_bytes
from .align import reference_points, similarity_transform, warp_faces
from .detection.api import detect_faces
from .detection.detectors import FaceDetector
from .detection.selection import FaceSelection
from .faces import AlignedFaces, image_scale, scale_matrices, size_of
from .parsing import ParseNet, kept_classes, parse_paste_masks, parser_peak_bytes
from .paste import PasteOptions, paste_faces, resolve_mask_mode
from .tracking import LandmarkSmoother

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
"""``progress(done, total)``; may raise to interrupt (the caller's cancel check)."""

MAX_FACE_BATCH = 8
"""Most faces per GPEN forward, even when memory would allow more (little speed gain beyond)."""
MAX_UPSCALE = 8.0
"""Largest ``upscale_factor``."""
FRAME_STEPS = 100
"""Progress steps per frame of :func:`restore_faces` (finer steps follow the faces of a chunk)."""
CHUNK_BYTES = 256 * 2**20
"""Image bytes (source and output frames, float32) per chunk when :func:`restore_faces` sizes the chunks."""
MAX_CHUNK_FRAMES = 16


@dataclass
class DetectOptions:
    """Face detection options (see :func:`gpen_core.face.detection.api.detect_faces`); the last
    four are a :class:`gpen_core.face.detection.FaceSelection`: ``selection`` is its order ("all" =
    "score"), ``face_indices`` its index list ("0,2", "1-3", "" = all)."""

    score_threshold: float | None = None
    min_face_size: float = 0.0
    selection: str = "score"
    max_faces: int | None = None
    face_indices: str | Sequence[int] | None = ""
    max_face_size: float = 0.0

    def face_selection(self) -> FaceSelection:
        """The selection these options describe (ValueError if one is invalid)."""
        return FaceSelection(self.selection, self.face_indices, self.min_face_size, self.max_face_size, self.max_faces)


@dataclass
class RestoredBatch:
    """A batch of images after face restoration.

    Attributes:
        images: ``(B, 3, H', W')`` float in [0, 1]; ``H' x W'`` is the input size times the upscale.
            Pixels outside every face mask are those of the paste target (the input, its resized
            copy, or the upscaled image) exactly.
        masks: ``(B, H', W')`` float32 in [0, 1], the paste masks (maximum over faces).
        faces: where every face came from (source image index, matrix, box, landmarks, score).
        crops: ``(N, 3, S, S)`` aligned faces before restoration, or ``None`` when not kept.
        restored: ``(N, 3, S, S)`` the same faces after GPEN, or ``None`` when not kept.
    """

    images: torch.Tensor
    masks: torch.Tensor
    faces: AlignedFaces
    crops: torch.Tensor | None
    restored: torch.Tensor | None


CHECK_FRAMES = 8
"""Frames whose values are checked at a time (a long video is never copied whole for the check)."""


def _check_images(images: torch.Tensor, name: str) -> None:
    check_shape(images, ["B", "3", "H", "W"], name, "RGB float in [0, 1] (split off alpha first)")
    if images.dtype == torch.uint8:  # whole photos are read in place, chunk by chunk: no converted copy
        raise TypeError(f"{name} must be float in [0, 1] here; got torch.uint8 (pass images.float() / 255)")
    if images.shape[0] == 0:
        check_image(images, name)  # raises: empty
    for start in range(0, images.shape[0], CHECK_FRAMES):  # finite, in [0, 1]: the one rule (checks.py)
        check_image(images[start : start + CHECK_FRAMES], name)


def detect_and_align(
    detector: FaceDetector,
    images: torch.Tensor,
    crop_size: int,
    *,
    detect: DetectOptions | None = None,
    crop_source: torch.Tensor | None = None,
    smoother: LandmarkSmoother | None = None,
    progress: Progress | None = None,
) -> tuple[torch.Tensor, AlignedFaces]:
    """Step 1: detect the faces of every image and cut them out aligned to GPEN's template.

    Args:
        detector: from :func:`gpen_core.face.detection.loader.load_detector`.
        images: ``(B, 3, H, W)`` RGB float in [0, 1]: the faces are detected and aligned here.
        crop_size: side ``S`` of the crops (the GPEN model's size).
        detect: detection and selection options.
        crop_source: optional ``(B, 3, H', W')`` copy of ``images`` at another scale (an upscaled
            image): the crops are cut from it (more detail), with the scale composed into the
            matrices; the record keeps coordinates of ``images``.
        smoother: temporal landmark smoothing across calls (frames in order); ``None``: off.
        progress: ``progress(done, total)`` between the detector's stages, image after image (a
            cancel point); ``done == total`` after the last image.

    Returns:
        ``(crops, faces)``: ``(N, 3, S, S)`` crops on the crop source's device, in [0, 1]; the
        record of the ``N`` faces (matrices map ``images`` pixels to crop pixels). An image
        without faces adds no row (logged).
    """
    _check_images(images, "images")
    detect = detect or DetectOptions()
    count, _, height, width = images.shape
    source = images if crop_source is None else crop_source
    if crop_source is not None:
        _check_images(crop_source, "crop_source")
        if crop_source.shape[0] != count:
            raise ValueError(f"crop_source has {crop_source.shape[0]} image(s) but images has {count}")
    scale = image_scale((height, width), size_of(source), name="the upscaled image")
    template = reference_points(crop_size, dtype=torch.float64)
    selection = detect.face_selection()
    index, matrices, boxes, landmarks, scores = [], [], [], [], []
    for i in range(count):

        def stage_done(done: int, steps: int, i: int = i) -> None:  # detector stages: cancel points too
            if progress is not None:
                progress(i * steps + done, count * steps)

        found = detect_faces(
            detector, images[i], score_threshold=detect.score_threshold, selection=selection,
            progress=None if progress is None else stage_done,
        )
        if len(found) == 0:
            log.warning("no face found in image %d (%dx%d)", i, width, height)
        points = found.landmarks if smoother is None else smoother(found.boxes, found.landmarks)
        index.append(torch.full((len(found),), i, dtype=torch.int64))
        matrices.append(similarity_transform(points.to(torch.float64), template))
        boxes.append(found.boxes)
        landmarks.append(points)
        scores.append(found.scores)
    faces = AlignedFaces(
        torch.cat(index), torch.cat(matrices), torch.cat(boxes).float(), torch.cat(landmarks).float(),
        torch.cat(scores).float(), ((height, width),) * count, crop_size,
    )
    crop_matrices = scale_matrices(faces.matrices, *scale).to(source.device)
    crops = warp_faces(source.float(), crop_matrices, crop_size, image_index=faces.image_index)
    return crops, faces


def face_batch_size(model: GPEN, faces: int, budget_bytes: int, *, margin: float = 0.8,
                    parser: ParseNet | None = None) -> int:
    """The most faces (<= :data:`MAX_FACE_BATCH`) whose untiled GPEN forward, and parser forward
    when a parser is given (they run one after the other), fit ``margin * budget``; at least 1."""
    best = 1
    for batch in range(1, min(faces, MAX_FACE_BATCH) + 1):
        peak = estimate_peak_bytes(model.config, model.dtype, batch, Strategy())
        if parser is not None:
            peak = max(peak, parser_peak_bytes(parser.config, model.dtype, batch))
        if peak <= margin * budget_bytes:
            best = batch
    return best


def _face_batch(model: GPEN, total: int, budget: int, face_batch: int | None, parser: ParseNet | None) -> int:
    """The faces per forward of both networks: as given, else one on the CPU (each face is a
    progress and cancel point), on a GPU the most that fit the budget."""
    if face_batch is None:
        face_batch = 1 if model.device.type == "cpu" else face_batch_size(model, total, budget, parser=parser)
    if face_batch < 1:
        raise ValueError(f"face_batch must be >= 1 or None; got {face_batch}")
    return face_batch


def restore_crops(
    model: GPEN,
    crops: torch.Tensor,
    *,
    tile_size: int | None | str = "auto",
    overlap: int | None = None,
    recompute: bool = False,
    memory_budget: int | None = None,
    face_batch: int | None = None,
    progress: Progress | None = None,
    on_record: Callable[[RunRecord], None] | None = None,
    parser: ParseNet | None = None,
) -> torch.Tensor:
    """Step 2: aligned crops through GPEN.

    Args:
        model: a loaded GPEN generator.
        crops: ``(N, 3, S, S)`` float in [0, 1] (any size is resized to the model's).
        tile_size, overlap, recompute: see :func:`gpen_core.enhance.enhance_images`.
        memory_budget: bytes for GPEN activations (default: the device's free memory).
        face_batch: faces per forward; ``None``: one on the CPU (each face then moves the
            progress and can be cancelled), on a GPU the most that fit the budget (up to
            :data:`MAX_FACE_BATCH`).
        progress: ``progress(faces_done, N)``, per face batch (and per tile when tiled).
        on_record: when given, the run is measured (``enhance_images(measure=True)``) and its
            :class:`~gpen_core.runtime.report.RunRecord` handed to it (e.g. for the memory report).
        parser: the face parser that will run on the same batches (counted in the batch size).

    Returns:
        ``(N, 3, S_model, S_model)`` float in [0, 1] on the crops' device.
    """
    total = crops.shape[0]
    if total == 0:
        size = model.config.size
        return crops.new_zeros((0, 3, size, size))
    budget = memory_budget if memory_budget is not None else free_memory_bytes(model.device)
    face_batch = _face_batch(model, total, budget, face_batch, parser)
    log.info("restoring %d face(s) in batches of %d", total, face_batch)

    def faces_done(done: int, steps: int) -> None:
        if progress is not None:
            progress(min(total, done * total // max(steps, 1)), total)

    out = enhance_images(
        model, crops, batch_size=face_batch, tile_size=tile_size, overlap=overlap, recompute=recompute,
        memory_budget=budget, progress=faces_done, measure=on_record is not None,
    )
    if isinstance(out, Enhanced):
        if on_record is not None:
            on_record(out.record)
        return out.images
    return out


def paste_masks(
    model: GPEN,
    parser: ParseNet,
    restored: torch.Tensor,
    paste: PasteOptions | None = None,
    *,
    memory_budget: int | None = None,
    face_batch: int | None = None,
) -> torch.Tensor:
    """Step 3 (parse mask): GPEN's paste masks of the restored crops, parsed as the official code
    does, in the face batches of :func:`restore_crops` (same ``memory_budget`` and ``face_batch``).

    Args:
        model: the GPEN model (the parser runs in its device and dtype).
        parser: a loaded :class:`~gpen_core.face.parsing.ParseNet` (moved to the model's device and dtype).
        restored: ``(N, 3, S, S)`` crops after GPEN, float in [0, 1].
        paste: ``keep_hair`` / ``keep_neck`` choose the classes (default: GPEN's table).

    Returns:
        ``(N, S, S)`` float32 masks in [0, 1] on the crops' device.
    """
    paste = paste or PasteOptions()
    parser.to(device=model.device, dtype=model.dtype)
    total = restored.shape[0]
    budget = memory_budget if memory_budget is not None else free_memory_bytes(model.device)
    batch = _face_batch(model, max(total, 1), budget, face_batch, parser)
    kept = kept_classes(keep_hair=paste.keep_hair, keep_neck=paste.keep_neck)
    return parse_paste_masks(parser, restored, kept=kept, batch_size=batch)


def paste_back(
    targets: torch.Tensor,
    restored: torch.Tensor,
    faces: AlignedFaces,
    *,
    fidelity: float = 1.0,
    face_masks: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
    out_masks: torch.Tensor | None = None,
    progress: Progress | None = None,
    paste: PasteOptions | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Step 3: paste restored crops into the images they were cut from, at any uniform scale.

    Args:
        targets: ``(B, 3, H', W')`` float in [0, 1]: the source images of ``faces``, or copies of
            them resized by the same factor in both directions (an upscaled image); the scale is
            read from the sizes and composed into the matrices, so masks and faces follow it.
        restored: ``(N, 3, S, S)`` restored crops, ``S = faces.crop_size``, in ``faces``' order.
        faces: from :func:`detect_and_align`.
        fidelity: in [0, 1]: 1 pastes the restored faces (the official paste), 0 returns the targets
            exactly; in between, ``target * (1 - f m) + face * f m`` (image space).
        face_masks: optional ``(N, S, S)`` float masks in [0, 1], one per crop in crop pixels (e.g. a
            face-parsing mask), used as they are; default: the official feathered rectangle.
        out, out_masks: optional ``(B, 3, H', W')`` and ``(B, H', W')`` tensors to write into (any
            device, e.g. views of a preallocated output); new tensors on ``targets``' device otherwise.
        progress: ``progress(images_done, B)`` after each image.
        paste: finishing (grey kept grey, colour match, small-face smoothing by the detected box
            side in source pixels); default :class:`PasteOptions` (as :func:`restore_faces`). Grey
            and colour compare with the original crops, cut again from ``targets``.

    Returns:
        ``(images, masks)``: pasted images (pixels where every mask is 0 are the target's exactly)
        and float32 masks.

    Raises:
        ValueError: mismatched counts or sizes, or a target stretched non-uniformly.
    """
    _check_images(targets, "targets")
    count, _, height, width = targets.shape
    size = faces.crop_size
    if count != faces.num_images:
        raise ValueError(
            f"the faces were found in {faces.num_images} image(s) but {count} image(s) were given to paste into"
        )
    if restored.dim() != 4 or restored.shape[0] != len(faces) or restored.shape[1:] != (3, size, size):
        raise ValueError(
            f"restored crops must be ({len(faces)}, 3, {size}, {size}) (one per face, the crop size); "
            f"got {tuple(restored.shape)}"
        )
    check_range(fidelity, 0.0, 1.0, "fidelity")
    if face_masks is not None:
        check_shape(face_masks, [str(len(faces)), str(size), str(size)], "face_masks", "one mask per face, crop size")
    paste = paste or PasteOptions()
    if out is None:
        out = torch.empty_like(targets)
    if out_masks is None:
        out_masks = torch.empty((count, height, width), dtype=torch.float32, device=targets.device)
    for i in range(count):
        target = targets[i]
        rows = faces.of_image(i)
        if len(rows):
            scale = image_scale(faces.source_sizes[i], (height, width), name=f"image {i} to paste into")
            matrices = scale_matrices(faces.matrices[rows], *scale).to(target.device)
            face = restored[rows.to(restored.device)].to(target.device, target.dtype)
            needs_originals = paste.keep_grey or paste.color_match != "off"
            originals = warp_faces(target.float(), matrices, size).to(target.dtype) if needs_originals else face
            own = None if face_masks is None else face_masks[rows.to(face_masks.device)]
            boxes = faces.boxes[rows]
            sides = (boxes[:, 2:] - boxes[:, :2]).amin(dim=1)
            pasted, mask = paste_faces(target, face, originals, matrices, fidelity=fidelity, mask=own,
                                       options=paste, face_sizes=sides)
            out[i] = pasted
            out_masks[i] = mask
            del pasted, mask
        else:
            out[i] = target
            out_masks[i] = 0.0
        if progress is not None:
            progress(i + 1, count)
    return out, out_masks


def upscaled_size(height: int, width: int, factor: float) -> tuple[int, int]:
    """``(round(H * factor), round(W * factor))``, as ComfyUI's *Upscale Image By* rounds."""
    return round(height * factor), round(width * factor)


def paste_size(source: tuple[int, int], upscale_factor: float, upscaled: tuple[int, int] | None) -> tuple[int, int]:
    """``(height, width)`` faces found in a ``source``-sized image are pasted at.

    Without an upscaled image: the source size times ``upscale_factor`` (in [1, 8]). With one:
    its size, which must be a uniform scale of the source (:func:`~gpen_core.face.faces.image_scale`),
    and ``upscale_factor`` must be 1 or that scale (within a pixel of rounding; an upscaled image is
    never resized again).

    Raises:
        ValueError: a factor out of range, a non-uniform upscaled image, or a factor that contradicts it.
    """
    check_range(upscale_factor, 1.0, MAX_UPSCALE, "upscale_factor")
    if upscaled is None:
        return upscaled_size(*source, upscale_factor)
    target = (int(upscaled[0]), int(upscaled[1]))
    _, scale_x = image_scale(source, target, name="the upscaled image")
    expected = (source[0] * upscale_factor, source[1] * upscale_factor)
    if upscale_factor != 1.0 and max(abs(t - e) for t, e in zip(target, expected, strict=True)) > 1.0:
        raise ValueError(
            f"upscale_factor is {upscale_factor:g} but the upscaled image is {target[1]}x{target[0]}, "
            f"{scale_x:.4g} times the {source[1]}x{source[0]} image the faces are found in; set upscale_factor "
            "to 1 (the scale is read from the upscaled image) or connect an image upscaled by that factor"
        )
    return target


def chunk_frames_for(height: int, width: int, out_height: int, out_width: int) -> int:
    """Frames per chunk: as many as keep source and output frames under :data:`CHUNK_BYTES` (1..16)."""
    frame_bytes = 4 * 3 * (height * width + out_height * out_width)
    return max(1, min(MAX_CHUNK_FRAMES, CHUNK_BYTES // frame_bytes))


def restore_faces(
    model: GPEN,
    detector: FaceDetector,
    images: torch.Tensor,
    *,
    detect: DetectOptions | None = None,
    fidelity: float = 1.0,
    upscale_factor: float = 1.0,
    upscaled: torch.Tensor | None = None,
    landmark_smoothing: float = 0.0,
    keep_crops: bool = True,
    chunk_frames: int | None = None,
    tile_size: int | None | str = "auto",
    overlap: int | None = None,
    recompute: bool = False,
    memory_budget: int | None = None,
    face_batch: int | None = None,
    out: torch.Tensor | None = None,
    progress: Progress | None = None,
    on_record: Callable[[RunRecord], None] | None = None,
    parser: ParseNet | None = None,
    paste: PasteOptions | None = None,
) -> RestoredBatch:
    """Restore every face of every image: :func:`detect_and_align`, :func:`restore_crops`,
    :func:`paste_back`, chunk by chunk of frames.

    Args:
        model: a loaded GPEN generator (its size S sets the crop size). Each chunk is processed on
            its device.
        detector: from :func:`gpen_core.face.detection.loader.load_detector`.
        images: ``(B, 3, H, W)`` RGB float in [0, 1] (alpha, if any, must be split off first); any
            device (the output goes there).
        detect: detection and selection options.
        fidelity: in [0, 1]: 1 pastes the restored faces (official), 0 returns the paste target
            exactly; the mix is in image space.
        upscale_factor: in [1, 8]: without ``upscaled``, faces are pasted into ``images`` resized by
            this factor (bicubic, :func:`gpen_core.images.tensors.resize`; sizes rounded as
            :func:`upscaled_size`). With ``upscaled``: 1, or its scale (see :func:`paste_size`).
        upscaled: optional ``(B, 3, H', W')`` upscaled copy of ``images`` (e.g. an upscale model's
            output), uniformly scaled: faces are found in ``images``, cut from and pasted into it.
        landmark_smoothing: strength in [0, 1) of the temporal smoothing of landmarks across the
            frames of the batch (:class:`~gpen_core.face.tracking.LandmarkSmoother`); 0 = off.
        keep_crops: return the crops before and after GPEN (memory grows with the faces of every frame).
        chunk_frames: frames per chunk (``None``: :func:`chunk_frames_for`); memory follows the chunk.
        tile_size, overlap, recompute, memory_budget, face_batch: see :func:`restore_crops`.
        out: optional ``(B, 3, H', W')`` tensor to write the images into (e.g. a view of the
            caller's output buffer, saving a copy of the whole batch).
        progress: ``progress(done, B * FRAME_STEPS)``: every frame is :data:`FRAME_STEPS` steps, moved
            by detection (per frame), restoration (per face) and paste (per frame); may raise to interrupt,
            which stops between faces, frames and chunks.
        on_record: see :func:`restore_crops` (called once per chunk that has faces).
        parser: a :class:`~gpen_core.face.parsing.ParseNet` for the ``parse`` mask; it is moved to
            the model's device and dtype, and runs in the same face batches (:func:`paste_masks`).
        paste: mask mode and finishing (default :class:`PasteOptions`: parse mask when a parser
            is given, else box; grey kept grey; small faces smoothed).

    Returns:
        A :class:`RestoredBatch`. An image without faces comes back as its paste target with a zero mask.
    """
    _check_images(images, "images")
    check_range(fidelity, 0.0, 1.0, "fidelity")
    paste = paste or PasteOptions()
    if resolve_mask_mode(paste.mask, parser is not None) == "box":
        parser = None
    count, _, height, width = images.shape
    if upscaled is not None:
        _check_images(upscaled, "upscaled image")
        if upscaled.shape[0] != count:
            raise ValueError(
                f"the upscaled image batch has {upscaled.shape[0]} image(s) but the image batch has {count}"
            )
    out_h, out_w = paste_size((height, width), upscale_factor, None if upscaled is None else size_of(upscaled))
    if chunk_frames is None:
        chunk_frames = chunk_frames_for(height, width, out_h, out_w)
    if chunk_frames < 1:
        raise ValueError(f"chunk_frames must be >= 1 or None; got {chunk_frames}")
    if out is None:
        out = torch.empty((count, 3, out_h, out_w), dtype=images.dtype, device=images.device)
    elif tuple(out.shape) != (count, 3, out_h, out_w):
        raise ValueError(f"out must have shape {(count, 3, out_h, out_w)}; got {tuple(out.shape)}")
    masks = torch.empty((count, out_h, out_w), dtype=torch.float32, device=images.device)
    smoother = LandmarkSmoother(landmark_smoothing) if landmark_smoothing > 0 else None
    device, size = model.device, model.config.size
    records, kept_crops, kept_restored = [], [], []
    total_steps = count * FRAME_STEPS

    for start in range(0, count, chunk_frames):
        stop = min(count, start + chunk_frames)
        span = (stop - start) * FRAME_STEPS
        base = start * FRAME_STEPS

        def report(stage_start: float, stage_share: float, base: int = base, span: int = span) -> Progress | None:
            if progress is None:
                return None
            return lambda done, steps: progress(
                base + int(span * (stage_start + stage_share * done / max(steps, 1))), total_steps
            )

        frames = images[start:stop].to(device, torch.float32)
        sources = None if upscaled is None else upscaled[start:stop].to(device, torch.float32)
        crops, faces = detect_and_align(
            detector, frames, size, detect=detect, crop_source=sources, smoother=smoother, progress=report(0.0, 0.1)
        )
        restored = restore_crops(
            model, crops, tile_size=tile_size, overlap=overlap, recompute=recompute, memory_budget=memory_budget,
            face_batch=face_batch, progress=report(0.1, 0.8), on_record=on_record,
            parser=parser,
        )
        face_masks = None
        if parser is not None and len(faces):
            face_masks = paste_masks(model, parser, restored, paste, memory_budget=memory_budget, face_batch=face_batch)
        targets = sources if sources is not None else resize(frames, out_h, out_w)
        del frames, sources
        paste_back(
            targets, restored, faces, fidelity=fidelity, out=out[start:stop], out_masks=masks[start:stop],
            progress=report(0.9, 0.1), face_masks=face_masks, paste=paste,
        )
        del targets
        records.append(faces)
        if keep_crops:
            kept_crops.append(crops.to(images.device))
            kept_restored.append(restored.to(images.device))
        del crops, restored
    faces = AlignedFaces.concat(records) if records else AlignedFaces.empty((), size)
    crops_out = restored_out = None
    if keep_crops:
        empty = images.new_zeros((0, 3, size, size))
        crops_out = torch.cat(kept_crops) if kept_crops else empty
        restored_out = torch.cat(kept_restored) if kept_restored else empty
    return RestoredBatch(out, masks, faces, crops_out, restored_out)
