"""Whole-photo face restoration, one orchestrator for photos, frame batches and streamed video.

:class:`FaceRestorer` takes frames in order (a tensor batch or any iterator) and hands restored frames
back in order. Each frame is detected as it arrives and its faces are followed by the tracker
(:class:`~gpen_core.face.tracking.FaceTracker`, which may hold frames back to decide); once a chunk of
frames has final faces, its faces go through the steps of :mod:`gpen_core.face.restore` a *face batch*
at a time: cut the crops, GPEN, the paste masks, finish and paste into the frame's output. So memory
follows one chunk of frames (source, paste target, output) and one face batch, never the number of
faces in a photo or of frames in a clip. :func:`restore_faces` runs it over a batch tensor;
:func:`paste_restored` is the paste half for crops restored elsewhere (the Paste Faces node).

Results are those of the steps run on the whole batch, bit for bit: faces are processed in crop
order, each face's computations do not depend on which others share its batch, and the overlap rule
of the paste is carried from batch to batch (:func:`gpen_core.face.paste.paste_into`).
"""
from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

import torch

from ..arch.generator import GPEN
from ..checks import check_image
from ..images.tensors import resize
from ..runtime.memory import PeakMeter, release_freed_host_memory
from ..runtime.strategy import memory_needed
from .detection.detectors import FaceDetector
from .detection.result import FaceDetections
from .faces import AlignedFaces, size_of
from .masks import MaskParser, mask_mode, paste_masks_for
from .options import PasteOptions, RestoreOptions
from .restore import (
    MAX_FACE_BATCH,
    Progress,
    align_faces,
    check_frames,
    cut_crops,
    detect_frame,
    faces_per_forward,
    paste_back,
    paste_image_faces,
    paste_size,
    restore_crops,
    select_frame,
    track_frame,
)
from .stats import RestoreStats
from .tracking import FaceTracker

log = logging.getLogger(__name__)

__all__ = [
    "CHUNK_BYTES",
    "FRAME_STEPS",
    "MAX_CHUNK_FRAMES",
    "FaceNetworks",
    "FaceRestorer",
    "RestoredBatch",
    "RestoredFrame",
    "chunk_frames_for",
    "paste_restored",
    "paste_restored_size",
    "restore_faces",
    "restore_memory_bytes",
]

FRAME_STEPS = 100
"""Progress steps per frame: :data:`DETECT_STEPS` for its detection, the rest for its faces."""
DETECT_STEPS = 10
CHUNK_BYTES = 256 * 2**20
"""Image bytes (source and output frames, float32) per chunk when the chunks are sized automatically."""
MAX_CHUNK_FRAMES = 16


def chunk_frames_for(height: int, width: int, out_height: int, out_width: int) -> int:
    """Frames per chunk: as many as keep source and output frames under :data:`CHUNK_BYTES` (1..16)."""
    frame_bytes = 4 * 3 * (height * width + out_height * out_width)
    return max(1, min(MAX_CHUNK_FRAMES, CHUNK_BYTES // frame_bytes))


def restore_memory_bytes(model: GPEN, parser: MaskParser | None, source: tuple[int, int], out: tuple[int, int],
                         options: RestoreOptions, budget_bytes: int | None = None) -> int:
    """Estimated device bytes (weights excluded) of restoring frames of ``source`` size pasted at ``out`` size.

    The larger of one face batch's GPEN forward (:func:`gpen_core.runtime.strategy.memory_needed`) and
    parser forward, plus the image buffers of one chunk of frames (source, paste target and output,
    3 channels, and the paste mask, float32) and the face batch's crops before and after GPEN: what the
    memory plan makes room for, the same terms as :class:`FaceRestorer` holds.
    """
    run = options.run
    batch = faces_per_forward(model, MAX_FACE_BATCH, run, parser)
    forward = memory_needed(model, batch, run.core_tile_size, run.recompute, budget_bytes)
    if parser is not None and mask_mode(options.paste.mask).parses:
        forward = max(forward, parser.peak_bytes(batch))
    chunk = options.chunk_frames or chunk_frames_for(*source, *out)
    frames = chunk * 4 * (2 * 3 * source[0] * source[1] + (3 + 1) * out[0] * out[1])
    crops = 2 * batch * 3 * model.config.size**2 * 4
    return forward + frames + crops


@dataclass
class FaceNetworks:
    """The loaded networks of a run (a runtime: load once, restore many).

    Attributes:
        model: the GPEN generator (its size sets the crop size; frames are processed on its device).
        detector: a face detector (:func:`gpen_core.face.detection.load_detector`).
        parser: the face parser of the parse mask (:class:`gpen_core.face.parsing.FaceParser`), on the
            model's device; None when not loaded (the box mask).
    """

    model: GPEN
    detector: FaceDetector
    parser: MaskParser | None = None


@dataclass
class RestoredFrame:
    """One restored frame.

    Attributes:
        index: its position in the input, from 0.
        image: ``(3, H', W')`` float in [0, 1] (the output tensor's view when one was given).
        mask: ``(H', W')`` float32 paste mask in [0, 1] (maximum over its faces).
        faces: the record of its faces (one image).
        crops, restored: ``(K, 3, S, S)`` its faces before and after GPEN when kept, else None.
    """

    index: int
    image: torch.Tensor
    mask: torch.Tensor
    faces: AlignedFaces
    crops: torch.Tensor | None = None
    restored: torch.Tensor | None = None


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


@dataclass
class _Pending:
    """A frame detected and waiting for its faces to be final (and for its chunk)."""

    index: int
    image: torch.Tensor
    upscaled: torch.Tensor | None
    faces: FaceDetections | None = None


class FaceRestorer:
    """Restores the faces of frames that come in order (see the module docstring).

    Args:
        networks: the loaded networks.
        options: what to restore and how (:class:`RestoreOptions`).
        keep_crops: hand back each frame's crops before and after GPEN (memory grows with the faces).
        progress: ``progress(done, total)`` in steps of :data:`FRAME_STEPS` per frame, moved by the
            detector's stages and by each face batch; may raise to interrupt, which stops between a
            detector's stages and between face batches.
        stats: filled as the run goes (faces, seconds per stage; measured runs when ``stats.measure``).
    """

    def __init__(
        self,
        networks: FaceNetworks,
        options: RestoreOptions | None = None,
        *,
        keep_crops: bool = False,
        progress: Progress | None = None,
        stats: RestoreStats | None = None,
    ) -> None:
        self.networks = networks
        self.options = options or RestoreOptions()
        self.keep_crops = keep_crops
        self.progress = progress
        self.stats = stats if stats is not None else RestoreStats()
        self.tracker = FaceTracker(self.options.track)
        self.parser = networks.parser if mask_mode(self.options.paste.mask).parses else None
        self._detected = 0
        self._restored = 0
        self._total: int | None = None
        self._last_report = (-1, -1)

    def _report(self, partial: float = 0.0, *, always: bool = False) -> None:
        """``progress`` at the frames detected and restored so far plus ``partial`` steps of the work under way;
        a step already reported is skipped unless ``always`` (the detector's stages: each is a cancel point)."""
        if self.progress is None:
            return
        total = max(self._total or 0, self._detected) * FRAME_STEPS
        done = min(int(self._detected * DETECT_STEPS + self._restored * (FRAME_STEPS - DETECT_STEPS) + partial), total)
        if always or (done, total) != self._last_report:
            self._last_report = (done, total)
            self.progress(done, total)

    def restore(
        self,
        frames: Iterable[torch.Tensor],
        *,
        upscaled: Iterable[torch.Tensor] | None = None,
        total: int | None = None,
        out: torch.Tensor | None = None,
        out_masks: torch.Tensor | None = None,
        check: bool = True,
    ) -> Iterator[RestoredFrame]:
        """Restore ``frames`` and yield them, in order, as their chunks finish.

        Args:
            frames: ``(3, H, W)`` RGB float frames in [0, 1], all of one size, any device (each is
                processed on the model's device).
            upscaled: optional ``(3, H', W')`` upscaled copies, one per frame, uniformly scaled: faces
                are found in the frames, cut from and pasted into these.
            total: the number of frames, when known (for the progress total and the ETA).
            out, out_masks: optional ``(B, 3, H', W')`` / ``(B, H', W')`` tensors indexed by frame
                number to write the outputs into (e.g. the caller's output buffer); else new tensors.
            check: check each frame's values (skip only for frames checked already).

        Raises:
            ValueError, TypeError: a frame of another size, bad values, or a non-uniform upscaled copy.
        """
        self._total = self.stats.frames_total = total
        uppers = iter(upscaled) if upscaled is not None else None
        pending: deque[_Pending] = deque()
        layout: _Layout | None = None
        for index, frame in enumerate(frames):
            up = None if uppers is None else next(uppers, None)
            if uppers is not None and up is None:
                raise ValueError(f"there are fewer upscaled images than frames: none for frame {index}")
            if check:
                check_frames(frame[None], f"frame {index}")
                if up is not None:
                    check_frames(up[None], f"upscaled image {index}")
            layout = layout or _Layout.of(frame, up, self.options)
            layout.check(index, frame, up)
            device = self.networks.model.device
            pending.append(_Pending(index, frame.to(device, torch.float32),
                                    None if up is None else up.to(device, torch.float32)))
            for faces in self._detect(pending[-1]):
                _assign(pending, faces)
            while _final_count(pending) >= layout.chunk:
                yield from self._restore_chunk([pending.popleft() for _ in range(layout.chunk)], layout, out,
                                               out_masks)
        for faces in self._selected(self.tracker.finish()):
            _assign(pending, faces)
        while pending:
            assert layout is not None
            count = min(len(pending), layout.chunk)
            yield from self._restore_chunk([pending.popleft() for _ in range(count)], layout, out, out_masks)

    def _detect(self, item: _Pending) -> list[FaceDetections]:
        """Detect the faces of a frame; returns the frames the tracker now holds final."""

        def stage_done(done: int, steps: int) -> None:
            self._report(DETECT_STEPS * done / max(steps, 1), always=True)

        device = self.networks.model.device
        with self.stats.stage("detect", device), self._measured(device, "detect"):
            found = detect_frame(self.networks.detector, item.image, self.options.detect,
                                 progress=stage_done if self.progress is not None else None, stats=self.stats)
            final = track_frame(self.tracker, item.image, found)
        if len(found) == 0:
            log.info("no face found in frame %d (%dx%d)", item.index, item.image.shape[-1], item.image.shape[-2])
        self._detected += 1
        self._report()
        return self._selected(final)

    def _selected(self, final: list[FaceDetections]) -> list[FaceDetections]:
        """The tracker's final frames through the selection (and the tracker's counts into the stats)."""
        self.stats.track = self.tracker.counts
        return [select_frame(found, self.options.detect, self.stats) for found in final]

    def _restore_chunk(self, items: list[_Pending], layout: _Layout, out: torch.Tensor | None,
                       out_masks: torch.Tensor | None) -> list[RestoredFrame]:
        """Restore the faces of a chunk of frames (their faces final), measured when ``stats.measure``."""
        with self._measured(self.networks.model.device, "restore"):
            return self._paste_chunk(items, layout, out, out_masks)

    @contextmanager
    def _measured(self, device: torch.device, phase: str) -> Iterator[None]:
        """When ``stats.measure``: the block's peak (above what it found allocated) raises ``phase``'s peak."""
        if not self.stats.measure:
            yield
            return
        with PeakMeter(device) as meter:
            yield
        self.stats.phase_peaks[phase] = max(self.stats.phase_peaks.get(phase, 0), meter.peak_bytes)

    def _paste_chunk(self, items: list[_Pending], layout: _Layout, out: torch.Tensor | None,
                     out_masks: torch.Tensor | None) -> list[RestoredFrame]:
        model, stats, paste = self.networks.model, self.stats, self.options.paste
        device = model.device
        with stats.stage("align", device):
            faces = align_faces([item.faces for item in items if item.faces is not None], model.config.size)
        sources = [item.upscaled if item.upscaled is not None else item.image for item in items]
        targets = [item.upscaled if item.upscaled is not None else resize(item.image[None], *layout.out_size)[0]
                   for item in items]
        # where the crops were cut from the paste target itself, they are the finishing's originals too
        cut_from_target = [_same_pixels(source, target) for source, target in zip(sources, targets, strict=True)]
        images = [_buffer(out, item.index, device, target) for item, target in zip(items, targets, strict=True)]
        masks = [_buffer(out_masks, item.index, device, None, layout.out_size) for item in items]
        kept: list[tuple[torch.Tensor, torch.Tensor]] = []
        total = len(faces)
        run = replace(self.options.run, batch_size=faces_per_forward(model, total, self.options.run, self.parser))
        trim_heap = self.parser is not None and device.type == "cpu"  # the networks take turns in the host heap
        assert run.batch_size is not None
        for start in range(0, total, run.batch_size):
            rows = torch.arange(start, min(total, start + run.batch_size))
            with stats.stage("align", device):
                crops = cut_crops(sources, faces, rows)
            with stats.stage("restore", device):
                restored = restore_crops(model, crops, run, stats=stats,
                                         progress=self._face_progress(len(items), start, total))
            with stats.stage("parse", device):
                if trim_heap:  # hand back what GPEN freed before the parser allocates, and the reverse
                    release_freed_host_memory()
                crop_masks = paste_masks_for(restored, paste.mask, self.parser, keep_hair=paste.keep_hair,
                                             keep_neck=paste.keep_neck)
                if trim_heap:
                    release_freed_host_memory()
            with stats.stage("paste", device):
                for k in faces.image_index[rows].unique().tolist():
                    own = (faces.image_index[rows] == k).nonzero().flatten()
                    paste_image_faces(images[k], masks[k], targets[k], restored[own], faces, rows[own], paste,
                                      None if crop_masks is None else crop_masks[own],
                                      crops[own] if cut_from_target[k] else None)
            if self.keep_crops:
                kept.append((crops, restored))
            del crops, restored, crop_masks
            stats.faces_restored += len(rows)  # shown at once, though the step count is the one already reported
            self._face_progress(len(items), start, total, always=True)(len(rows), len(rows))
        self._restored += len(items)
        stats.frames_done += len(items)
        self._report()
        crops_kept = torch.cat([c for c, _ in kept]) if kept else None
        restored_kept = torch.cat([r for _, r in kept]) if kept else None
        frames = []
        for k, item in enumerate(items):
            rows = faces.of_image(k)
            frames.append(RestoredFrame(
                item.index, _hand_over(images[k], out, item.index), _hand_over(masks[k], out_masks, item.index),
                faces.images(k, k + 1)[0], None if crops_kept is None else crops_kept[rows],
                None if restored_kept is None else restored_kept[rows],
            ))
        return frames

    def _face_progress(self, frames: int, start: int, total: int, *, always: bool = False) -> Progress:
        """``progress(done, of)`` for the face batch starting at face ``start`` of a chunk of ``total``
        faces over ``frames`` frames: the chunk's face steps, moved by the fraction of the batch done."""

        def report(done: int, of: int) -> None:
            batch = min(total - start, max(1, of))
            self._report((FRAME_STEPS - DETECT_STEPS) * frames * (start + batch * done / max(of, 1)) / total,
                         always=always)

        return report


@dataclass(frozen=True)
class _Layout:
    """Sizes shared by every frame of a run."""

    source: tuple[int, int]
    upscaled: tuple[int, int] | None
    out_size: tuple[int, int]
    chunk: int

    @classmethod
    def of(cls, frame: torch.Tensor, up: torch.Tensor | None, options: RestoreOptions) -> _Layout:
        source, upscaled = size_of(frame), None if up is None else size_of(up)
        out_size = paste_size(source, options.paste.upscale_factor, upscaled)
        return cls(source, upscaled, out_size, options.chunk_frames or chunk_frames_for(*source, *out_size))

    def check(self, index: int, frame: torch.Tensor, up: torch.Tensor | None) -> None:
        if size_of(frame) != self.source or (up is not None and size_of(up) != self.upscaled):
            (h, w), (h0, w0) = size_of(frame), self.source
            raise ValueError(f"frame {index} is {w}x{h} but the first frame was {w0}x{h0}: restore frames of one "
                             "size (and upscaled images of one size) together")


def _same_pixels(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two frames are views of the same pixels (same memory, shape, strides and dtype)."""
    return a.data_ptr() == b.data_ptr() and a.shape == b.shape and a.stride() == b.stride() and a.dtype == b.dtype


def _final_count(pending: deque[_Pending]) -> int:
    """How many frames at the head of ``pending`` have final faces."""
    count = 0
    for item in pending:
        if item.faces is None:
            break
        count += 1
    return count


def _assign(pending: deque[_Pending], faces: FaceDetections) -> None:
    """Give the tracker's next final frame to the oldest frame still waiting for it."""
    waiting = next(item for item in pending if item.faces is None)
    waiting.faces = faces


def _buffer(out: torch.Tensor | None, index: int, device: torch.device, fill: torch.Tensor | None,
            size: tuple[int, int] | None = None) -> torch.Tensor:
    """A frame's output buffer on ``device``: the caller's ``out[index]`` when it lives there, else new;
    filled with a copy of ``fill``, or zeros (a ``size`` mask)."""
    if out is not None and out.device == device:
        buffer = out[index]
    elif fill is not None:
        return fill.clone()
    else:
        assert size is not None
        return torch.zeros(size, dtype=torch.float32, device=device)
    if fill is None:
        buffer.zero_()
    else:
        buffer.copy_(fill)
    return buffer


def _hand_over(buffer: torch.Tensor, out: torch.Tensor | None, index: int) -> torch.Tensor:
    """The frame's output as the caller's ``out[index]`` (copied there when it was computed elsewhere)."""
    if out is None or buffer.data_ptr() == out[index].data_ptr():
        return buffer
    out[index].copy_(buffer)
    return out[index]


def restore_faces(
    networks: FaceNetworks,
    images: torch.Tensor,
    options: RestoreOptions | None = None,
    *,
    upscaled: torch.Tensor | None = None,
    keep_crops: bool = True,
    out: torch.Tensor | None = None,
    progress: Progress | None = None,
    stats: RestoreStats | None = None,
) -> RestoredBatch:
    """Restore every face of every image of a batch (:class:`FaceRestorer` over its frames).

    Args:
        networks: the loaded networks (:class:`FaceNetworks`).
        images: ``(B, 3, H, W)`` RGB float in [0, 1] (alpha, if any, must be split off first); any
            device (the output goes there).
        options: detection, tracking, paste and run options (:class:`RestoreOptions`).
        upscaled: optional ``(B, 3, H', W')`` upscaled copy of ``images`` (e.g. an upscale model's
            output), uniformly scaled: faces are found in ``images``, cut from and pasted into it.
        keep_crops: return the crops before and after GPEN (memory grows with the faces of every frame).
        out: optional ``(B, 3, H', W')`` tensor to write the images into (e.g. a view of the
            caller's output buffer, saving a copy of the whole batch).
        progress: ``progress(done, B * FRAME_STEPS)`` (see :class:`FaceRestorer`).
        stats: filled as the run goes (:class:`RestoreStats`).

    Returns:
        A :class:`RestoredBatch`. An image without faces comes back as its paste target with a zero mask.
    """
    check_frames(images, "images")
    options = options or RestoreOptions()
    count = images.shape[0]
    if upscaled is not None:
        check_frames(upscaled, "upscaled image")
        if upscaled.shape[0] != count:
            raise ValueError(
                f"the upscaled image batch has {upscaled.shape[0]} image(s) but the image batch has {count}"
            )
    out_h, out_w = paste_size(size_of(images), options.paste.upscale_factor,
                              None if upscaled is None else size_of(upscaled))
    if out is None:
        out = torch.empty((count, 3, out_h, out_w), dtype=images.dtype, device=images.device)
    elif tuple(out.shape) != (count, 3, out_h, out_w):
        raise ValueError(f"out must have shape {(count, 3, out_h, out_w)}; got {tuple(out.shape)}")
    masks = torch.empty((count, out_h, out_w), dtype=torch.float32, device=images.device)
    restorer = FaceRestorer(networks, options, keep_crops=keep_crops, progress=progress, stats=stats)
    records, crops, restored = [], [], []
    for frame in restorer.restore(images, upscaled=upscaled, total=count, out=out, out_masks=masks, check=False):
        records.append(frame.faces)
        if keep_crops and frame.crops is not None and frame.restored is not None:
            crops.append(frame.crops.to(images.device))
            restored.append(frame.restored.to(images.device))
    size = networks.model.config.size
    faces = AlignedFaces.concat(records) if records else AlignedFaces.empty((), size)
    crops_out = restored_out = None
    if keep_crops:
        empty = images.new_zeros((0, 3, size, size))
        crops_out = torch.cat(crops) if crops else empty
        restored_out = torch.cat(restored) if restored else empty
    return RestoredBatch(out, masks, faces, crops_out, restored_out)


def paste_restored_size(given: tuple[int, int], faces: AlignedFaces, upscale_factor: float) -> tuple[int, int]:
    """``(H', W')`` of :func:`paste_restored`'s output for images of size ``given`` ``(H, W)``: the faces'
    source size times ``upscale_factor``, or ``given`` when it is an upscaled copy of the source."""
    source = faces.source_sizes[0] if faces.num_images else given
    return paste_size(source, upscale_factor, None if given == source else given)


def paste_restored(
    images: torch.Tensor,
    faces: AlignedFaces,
    restored: torch.Tensor,
    paste: PasteOptions | None = None,
    *,
    parser: MaskParser | None = None,
    face_masks: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
    progress: Progress | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Paste crops restored elsewhere back into their images (the Paste Faces step), chunk by chunk.

    Args:
        images: ``(B, 3, H, W)`` RGB float in [0, 1]: the images the faces were found in (then resized by
            ``paste.upscale_factor``), or an upscaled copy of them (the scale is read from the sizes;
            ``upscale_factor`` must then be 1 or that scale).
        faces: the record of :func:`gpen_core.face.restore.detect_and_align`.
        restored: ``(N, 3, s, s)`` one crop per face, in order, any size (resized to the crop size).
        paste: mask mode, finishing, fidelity and upscale factor.
        parser: the face parser for a parsing mask mode (None: the box mask, or an error for ``parse``).
        face_masks: optional ``(N, h, w)`` masks, one per crop, any size (resized): used as they are,
            instead of the mask mode.
        out: optional ``(B, 3, H', W')`` tensor to write into.
        progress: ``progress(images_done, B)``; may raise to interrupt.

    Returns:
        ``(images, masks)``: ``(B, 3, H', W')`` and ``(B, H', W')`` float32 (on ``images``' device).

    Raises:
        ValueError: a count or size that does not match the faces, values outside [0, 1].
    """
    paste = paste or PasteOptions()
    check_frames(images, "image")
    count = images.shape[0]
    if count != faces.num_images:
        raise ValueError(f"image has {count} frame(s) but the faces were found in {faces.num_images}: connect the "
                         "image (or its upscaled copy) that went into GPEN Detect & Align Faces")
    given = size_of(images)
    height, width = paste_restored_size(given, faces, paste.upscale_factor)
    size = faces.crop_size
    if len(faces) and (restored.dim() != 4 or restored.shape[0] != len(faces) or restored.shape[1] != 3):
        raise ValueError(f"restored_faces has {restored.shape[0] if restored.dim() else 0} crop(s) of shape "
                         f"{tuple(restored.shape[1:])} but {len(faces)} face(s) were detected: connect the crops of "
                         "GPEN Detect & Align Faces after your restoration node, one RGB crop per face, in order")
    if len(faces):
        check_frames(restored, "restored_faces")
    if len(faces) and face_masks is not None:
        if face_masks.dim() != 3 or face_masks.shape[0] != len(faces) or min(face_masks.shape[1:]) < 1:
            raise ValueError(f"face_masks must hold one mask per face ({len(faces)}, H, W) with H, W >= 1; "
                             f"got {tuple(face_masks.shape)}")
        check_image(face_masks, "face_masks")
    if out is None:
        out = torch.empty((count, 3, height, width), dtype=torch.float32, device=images.device)
    masks = torch.empty((count, height, width), dtype=torch.float32, device=images.device)
    chunk = chunk_frames_for(*given, height, width)
    crops = resize(restored, size, size) if len(faces) else restored.new_zeros((0, 3, size, size))
    own = None
    if face_masks is not None and len(faces):  # a MASK per crop wins over the mask mode
        own = resize(face_masks[:, None].float(), size, size)[:, 0].clamp(0.0, 1.0)
    elif len(faces) and mask_mode(paste.mask).parser != "never":
        parts = [paste_masks_for(crops[i : i + 1], paste.mask, parser, keep_hair=paste.keep_hair,
                                 keep_neck=paste.keep_neck) for i in range(len(faces))]  # one face per forward
        own = None if parts[0] is None else torch.cat([p for p in parts if p is not None])
    for start in range(0, count, chunk):
        stop = min(count, start + chunk)
        part, rows = faces.images(start, stop)
        done = None if progress is None else (lambda d, _t, start=start: progress(start + d, count))
        paste_back(resize(images[start:stop], height, width), crops[rows], part, paste,
                   face_masks=None if own is None else own[rows], out=out[start:stop], out_masks=masks[start:stop],
                   progress=done)
    return out, masks
