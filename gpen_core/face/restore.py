"""The steps of whole-photo face restoration, each usable on its own.

1. :func:`detect_and_align`: detect the faces of each image (:func:`detect_frame`), follow them over
   the frames (:class:`~gpen_core.face.tracking.FaceTracker`), align them to GPEN's template
   (:func:`align_faces`) and cut the crops (:func:`cut_crops`) -> ``(N, 3, S, S)`` crops and an
   :class:`~gpen_core.face.faces.AlignedFaces` record.
2. :func:`restore_crops`: the crops through GPEN (:func:`gpen_core.enhance.enhance_images`) in
   face batches sized by the memory plan (:func:`face_batch_size`).
3. the paste masks (:func:`gpen_core.face.masks.paste_masks_for`: parse or box).
4. :func:`paste_back`: the restored crops pasted into the images (or into a resized copy: the
   scale is composed into the matrices) -> images and paste masks (:func:`paste_image_faces` per image).

:func:`gpen_core.face.pipeline.restore_faces` runs these steps a face batch at a time over chunks of
frames, so that memory follows one face batch and one chunk, not the number of faces or frames.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import torch

from ..arch.generator import GPEN
from ..checks import check_image, check_range, check_shape
from ..enhance import Enhanced, enhance_images
from ..run_options import RunOptions
from ..runtime.strategy import Strategy, estimate_peak_bytes, free_memory_bytes
from .align import _work_dtype, reference_points, similarity_transform, warp_faces
from .detection.api import find_faces
from .detection.detectors import FaceDetector
from .detection.result import FaceDetections
from .detection.selection import select_faces
from .faces import AlignedFaces, image_scale, scale_matrices, size_of
from .finish import finish_faces
from .masks import MaskParser, official_paste_mask
from .options import MAX_UPSCALE, DetectOptions, PasteOptions, TrackOptions
from .paste import paste_into
from .stats import RestoreStats
from .tracking import FaceTracker, frame_signature

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
"""``progress(done, total)``; may raise to interrupt (the caller's cancel check)."""

MAX_FACE_BATCH = 8
"""Most faces per GPEN forward, even when memory would allow more (little speed gain beyond)."""
CHECK_FRAMES = 8
"""Frames whose values are checked at a time (a long video is never copied whole for the check)."""


def check_frames(images: torch.Tensor, name: str) -> None:
    """Raise unless ``images`` is a ``(B, 3, H, W)`` float batch with finite values in [0, 1].

    uint8 is refused here: whole photos are read in place, chunk by chunk, never as a converted copy.
    """
    check_shape(images, ["B", "3", "H", "W"], name, "RGB float in [0, 1] (split off alpha first)")
    if images.shape[0] == 0:
        check_image(images, name, accepts_uint8=False)  # raises: empty
    for start in range(0, images.shape[0], CHECK_FRAMES):  # finite, in [0, 1]: the one rule (checks.py)
        check_image(images[start : start + CHECK_FRAMES], name, accepts_uint8=False)


# --------------------------------------------------------------------------------- 1. detect and align


def detect_frame(
    detector: FaceDetector,
    frame: torch.Tensor,
    detect: DetectOptions,
    *,
    progress: Progress | None = None,
    stats: RestoreStats | None = None,
) -> FaceDetections:
    """Every face of one ``(3, H, W)`` frame (float in [0, 1]) above the threshold, before the selection
    (the tracker sees them all; :func:`select_frame` follows), counted in ``stats``.

    ``progress(done, steps)`` runs between the detector's stages (a cancel point).
    """
    found = find_faces(detector, frame, score_threshold=detect.threshold,
                       min_face_size=detect.selection.min_face_size, progress=progress)
    if stats is not None:
        stats.faces_found += len(found)
    return found


def select_frame(found: FaceDetections, detect: DetectOptions, stats: RestoreStats | None = None) -> FaceDetections:
    """The faces of a final frame (the tracker's) that the selection keeps, counted in ``stats``."""
    selected = select_faces(found, detect.selection)
    if stats is not None:
        stats.faces_selected += len(selected)
    return selected


def track_frame(tracker: FaceTracker, frame: torch.Tensor, found: FaceDetections) -> list[FaceDetections]:
    """Push one frame's faces into ``tracker`` (with its thumbnail when the tracker compares them); returns
    the frames now final."""
    return tracker.push(found, frame_signature(frame) if tracker.wants_signature else None)


def align_faces(frames: list[FaceDetections], crop_size: int) -> AlignedFaces:
    """The record of the (final) faces of consecutive frames: the image -> crop matrices that align
    each face's landmarks to GPEN's template for ``crop_size`` crops. A frame without faces adds no row."""
    template = reference_points(crop_size, dtype=torch.float64)
    index, matrices = [], []
    for i, found in enumerate(frames):
        index.append(torch.full((len(found),), i, dtype=torch.int64))
        matrices.append(similarity_transform(found.landmarks.to(torch.float64), template))
    if not frames:
        return AlignedFaces.empty((), crop_size)
    return AlignedFaces(
        torch.cat(index), torch.cat(matrices), torch.cat([f.boxes for f in frames]).float(),
        torch.cat([f.landmarks for f in frames]).float(), torch.cat([f.scores for f in frames]).float(),
        tuple(f.image_size for f in frames), crop_size,
    )


def cut_crops(sources: Sequence[torch.Tensor] | torch.Tensor, faces: AlignedFaces,
              rows: torch.Tensor | None = None) -> torch.Tensor:
    """The aligned crops of ``faces`` (or of its ``rows``), each cut from the image it was found in.

    Args:
        sources: per image of the record, ``(3, H', W')`` float in [0, 1]: the image the faces were
            found in, or a copy of it at one uniform scale (the scale is composed into the matrices);
            a ``(B, 3, H', W')`` batch works too.
        faces: the record (``B`` images).
        rows: ``(K,)`` the faces to cut, in crop order (default: all).

    Returns:
        ``(K, 3, S, S)`` crops on the sources' device, in [0, 1].
    """
    rows = torch.arange(len(faces)) if rows is None else rows.cpu()
    size = faces.crop_size
    index = faces.image_index[rows]
    crops = torch.empty((len(rows), 3, size, size), device=sources[0].device if len(sources) else None)
    for image in index.unique().tolist():
        mine = (index == image).nonzero().flatten()
        source = sources[image]
        scale = image_scale(faces.source_sizes[image], size_of(source), name="the upscaled image")
        matrices = scale_matrices(faces.matrices[rows[mine]], *scale).to(source.device)
        crops[mine.to(crops.device)] = warp_faces(source.float(), matrices, size)
    return crops


def detect_and_align(
    detector: FaceDetector,
    images: torch.Tensor,
    crop_size: int,
    *,
    detect: DetectOptions | None = None,
    track: TrackOptions | None = None,
    crop_source: torch.Tensor | None = None,
    progress: Progress | None = None,
) -> tuple[torch.Tensor, AlignedFaces]:
    """Step 1: detect the faces of every image and cut them out aligned to GPEN's template.

    Args:
        detector: from :func:`gpen_core.face.detection.loader.load_detector`.
        images: ``(B, 3, H, W)`` RGB float in [0, 1]: the faces are detected and aligned here.
        crop_size: side ``S`` of the crops (the GPEN model's size).
        detect: detection and selection options.
        track: following faces over the frames of the batch (:class:`TrackOptions`: tracks, bridging, false
            detections, scene cuts, smoothing); default :class:`TrackOptions` (a single image is unchanged).
        crop_source: optional ``(B, 3, H', W')`` copy of ``images`` at another scale (an upscaled
            image): the crops are cut from it (more detail), with the scale composed into the
            matrices; the record keeps coordinates of ``images``.
        progress: ``progress(done, total)`` between the detector's stages, image after image (a
            cancel point); ``done == total`` after the last image.

    Returns:
        ``(crops, faces)``: ``(N, 3, S, S)`` crops on the crop source's device, in [0, 1]; the
        record of the ``N`` faces (matrices map ``images`` pixels to crop pixels). An image
        without faces adds no row (logged).
    """
    check_frames(images, "images")
    detect = detect or DetectOptions()
    count, _, height, width = images.shape
    source = images if crop_source is None else crop_source
    if crop_source is not None:
        check_frames(crop_source, "crop_source")
        if crop_source.shape[0] != count:
            raise ValueError(f"crop_source has {crop_source.shape[0]} image(s) but images has {count}")
        image_scale((height, width), size_of(source), name="the upscaled image")  # a stretched copy fails first
    tracker = FaceTracker(track or TrackOptions())
    final: list[FaceDetections] = []
    for i in range(count):

        def stage_done(done: int, steps: int, i: int = i) -> None:  # detector stages: cancel points too
            if progress is not None:
                progress(i * steps + done, count * steps)

        found = detect_frame(detector, images[i], detect, progress=None if progress is None else stage_done)
        if len(found) == 0:
            log.warning("no face found in image %d (%dx%d)", i, width, height)
        final += track_frame(tracker, images[i], found)
    final += tracker.finish()
    faces = align_faces([select_frame(found, detect) for found in final], crop_size)
    return cut_crops(source, faces), faces


# --------------------------------------------------------------------------------- 2. restore


def face_batch_size(model: GPEN, faces: int, budget_bytes: int, *, margin: float = 0.8,
                    parser: MaskParser | None = None) -> int:
    """The most faces (<= :data:`MAX_FACE_BATCH`) whose untiled GPEN forward, and parser forward
    when a parser is given (they run one after the other), fit ``margin * budget``; at least 1."""
    best = 1
    for batch in range(1, min(faces, MAX_FACE_BATCH) + 1):
        peak = estimate_peak_bytes(model.config, model.dtype, batch, Strategy())
        if parser is not None:
            peak = max(peak, parser.peak_bytes(batch))
        if peak <= margin * budget_bytes:
            best = batch
    return best


def faces_per_forward(model: GPEN, total: int, run: RunOptions, parser: MaskParser | None = None) -> int:
    """The faces per forward of both networks: ``run.batch_size`` when given, else one on the CPU
    (each face is a progress and cancel point), on a GPU the most that fit the budget."""
    if run.batch_size is not None:
        return run.batch_size
    if model.device.type == "cpu":
        return 1
    budget = run.memory_budget if run.memory_budget is not None else free_memory_bytes(model.device)
    return face_batch_size(model, max(total, 1), budget, parser=parser)


def restore_crops(
    model: GPEN,
    crops: torch.Tensor,
    run: RunOptions | None = None,
    *,
    progress: Progress | None = None,
    stats: RestoreStats | None = None,
) -> torch.Tensor:
    """Step 2: aligned crops through GPEN.

    Args:
        model: a loaded GPEN generator.
        crops: ``(N, 3, S, S)`` float in [0, 1] (any size is resized to the model's).
        run: tile size, overlap, recompute, memory budget and faces per forward (:class:`RunOptions`;
            ``batch_size`` None: :func:`faces_per_forward`).
        progress: ``progress(faces_done, N)``, per face batch (and per tile when tiled).
        stats: when given and ``stats.measure``, the run is measured (``enhance_images(measure=True)``)
            and its record kept in ``stats.records``.

    Returns:
        ``(N, 3, S_model, S_model)`` float in [0, 1] on the crops' device.
    """
    run = run or RunOptions()
    total = crops.shape[0]
    if total == 0:
        size = model.config.size
        return crops.new_zeros((0, 3, size, size))
    batch = faces_per_forward(model, total, run)

    def faces_done(done: int, steps: int) -> None:
        if progress is not None:
            progress(min(total, done * total // max(steps, 1)), total)

    measure = stats is not None and stats.measure
    out = enhance_images(
        model, crops, batch_size=batch, tile_size=run.core_tile_size, overlap=run.core_overlap,
        recompute=run.recompute, memory_budget=run.memory_budget, progress=faces_done, measure=measure,
    )
    if isinstance(out, Enhanced):
        if stats is not None:
            stats.records.append(out.record)
        return out.images
    return out


# --------------------------------------------------------------------------------- 4. paste back


def crop_masks(masks: torch.Tensor | None, size: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``(1, S, S)`` official mask, or the given ``(N, S, S)`` crop masks, on ``device`` in ``dtype``."""
    if masks is None:
        return official_paste_mask(size, device=device, dtype=dtype).unsqueeze(0)
    return masks.to(device=device, dtype=dtype)


def paste_image_faces(
    out: torch.Tensor,
    full_mask: torch.Tensor,
    target: torch.Tensor,
    restored: torch.Tensor,
    faces: AlignedFaces,
    rows: torch.Tensor,
    paste: PasteOptions,
    masks: torch.Tensor | None = None,
    originals: torch.Tensor | None = None,
) -> None:
    """Finish and paste some faces of one image into ``out`` (in place, the official overlap rule kept
    across calls: see :func:`gpen_core.face.paste.paste_into`).

    Args:
        out: ``(3, H', W')`` the image being pasted into (start: a copy of ``target``).
        full_mask: ``(H', W')`` running paste mask (start: zeros), float32 (float64 for a float64 target).
        target: ``(3, H', W')`` the paste target (the source image or a copy at a uniform scale).
        restored: ``(K, 3, S, S)`` the restored crops of ``rows``.
        faces: the record the rows index (coordinates of the source images).
        rows: ``(K,)`` faces of one image, in crop order.
        paste: finishing, fidelity and face interpolation.
        masks: ``(K, S, S)`` crop masks of these faces (None: the official box mask).
        originals: ``(K, 3, S, S)`` these faces' crops cut from ``target`` (:func:`cut_crops`), when the caller
            has them; None: cut here when the finishing compares with them (``paste.needs_originals``).
    """
    if len(rows) == 0:
        return
    image = int(faces.image_index[rows[0]])
    scale = image_scale(faces.source_sizes[image], size_of(target), name=f"image {image} to paste into")
    matrices = scale_matrices(faces.matrices[rows], *scale).to(target.device)
    face = restored.to(target.device, target.dtype)
    weights = crop_masks(masks, faces.crop_size, target.device, full_mask.dtype)
    if not paste.needs_originals:
        originals = face
    elif originals is None:
        originals = warp_faces(target.float(), matrices, faces.crop_size).to(target.dtype)
    else:
        originals = originals.to(target.device, target.dtype)
    boxes = faces.boxes[rows]
    sides = (boxes[:, 2:] - boxes[:, :2]).amin(dim=1)
    finished = finish_faces(face, originals, weights, paste, sides)
    paste_into(out, full_mask, target, finished, matrices, weights, fidelity=paste.fidelity, mode=paste.face_mode)


def paste_back(
    targets: torch.Tensor,
    restored: torch.Tensor,
    faces: AlignedFaces,
    paste: PasteOptions | None = None,
    *,
    face_masks: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
    out_masks: torch.Tensor | None = None,
    progress: Progress | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Step 4: paste restored crops into the images they were cut from, at any uniform scale.

    Args:
        targets: ``(B, 3, H', W')`` float in [0, 1]: the source images of ``faces``, or copies of
            them resized by the same factor in both directions (an upscaled image); the scale is
            read from the sizes and composed into the matrices, so masks and faces follow it.
        restored: ``(N, 3, S, S)`` restored crops, ``S = faces.crop_size``, in ``faces``' order.
        faces: from :func:`detect_and_align`.
        paste: finishing (grey kept grey, colour match, small-face smoothing by the detected box
            side in source pixels) and fidelity: in [0, 1], 1 pastes the restored faces (the official
            paste), 0 returns the targets exactly; in between, ``target * (1 - f m) + face * f m``.
            Grey and colour compare with the original crops, cut again from ``targets``.
        face_masks: optional ``(N, S, S)`` float masks in [0, 1], one per crop in crop pixels (e.g. a
            face-parsing mask), used as they are; default: the official feathered rectangle.
        out, out_masks: optional ``(B, 3, H', W')`` and ``(B, H', W')`` tensors to write into (any
            device, e.g. views of a preallocated output); new tensors on ``targets``' device otherwise.
        progress: ``progress(images_done, B)`` after each image.

    Returns:
        ``(images, masks)``: pasted images (pixels where every mask is 0 are the target's exactly)
        and float32 masks.

    Raises:
        ValueError: mismatched counts or sizes, or a target stretched non-uniformly.
    """
    check_frames(targets, "targets")
    paste = paste or PasteOptions()
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
    if face_masks is not None:
        check_shape(face_masks, [str(len(faces)), str(size), str(size)], "face_masks", "one mask per face, crop size")
        if face_masks.numel() and (not bool(torch.isfinite(face_masks).all()) or float(face_masks.min()) < 0
                                   or float(face_masks.max()) > 1):
            raise ValueError("face_masks values must be finite and in [0, 1]")
    if out is None:
        out = torch.empty_like(targets)
    if out_masks is None:
        out_masks = torch.empty((count, height, width), dtype=torch.float32, device=targets.device)
    for i in range(count):
        target = targets[i]
        rows = faces.of_image(i)
        pasted = target.clone()
        mask = torch.zeros((height, width), dtype=_work_dtype(target.dtype), device=target.device)
        own = None if face_masks is None else face_masks[rows.to(face_masks.device)]
        paste_image_faces(pasted, mask, target, restored[rows.to(restored.device)], faces, rows, paste, own)
        out[i] = pasted
        out_masks[i] = mask
        del pasted, mask
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
