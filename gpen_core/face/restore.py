"""Whole-photo face restoration: detect, align, enhance with GPEN, paste back.

Faces of every image of a batch are cut out first, then go through GPEN together in
batches sized by the memory strategy (a 30-face group photo never needs more than a few
faces' activations at a time), then are pasted back image by image.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from ..arch.generator import GPEN
from ..enhance import enhance_images
from ..runtime.strategy import Strategy, estimate_peak_bytes, free_memory_bytes
from .align import reference_points, similarity_transform, warp_faces
from .detection.api import detect_faces
from .detection.detectors import FaceDetector
from .detection.result import FaceDetections
from .detection.selection import FaceSelection
from .paste import paste_faces

log = logging.getLogger(__name__)

MAX_FACE_BATCH = 8
"""Most faces per GPEN forward, even when memory would allow more (little speed gain beyond)."""


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
class RestoredImage:
    """One image after face restoration.

    Attributes:
        image: ``(3, H, W)`` float in [0, 1]; pixels outside every face mask are the input's.
        mask: ``(H, W)`` float in [0, 1], the paste mask (max over faces).
        crops: ``(N, 3, S, S)`` aligned faces before restoration.
        restored: ``(N, 3, S, S)`` the same faces after GPEN (before the fidelity blend).
        detections: the faces found, in selection order.
    """

    image: torch.Tensor
    mask: torch.Tensor
    crops: torch.Tensor
    restored: torch.Tensor
    detections: FaceDetections


def face_batch_size(model: GPEN, faces: int, budget_bytes: int, *, margin: float = 0.8) -> int:
    """The most faces (<= :data:`MAX_FACE_BATCH`) whose untiled forward fits ``margin * budget``; at least 1."""
    best = 1
    for batch in range(1, min(faces, MAX_FACE_BATCH) + 1):
        if estimate_peak_bytes(model.config, model.dtype, batch, Strategy()) <= margin * budget_bytes:
            best = batch
    return best


def restore_faces(
    model: GPEN,
    detector: FaceDetector,
    images: torch.Tensor,
    *,
    detect: DetectOptions | None = None,
    fidelity: float = 1.0,
    tile_size: int | None | str = "auto",
    overlap: int | None = None,
    recompute: bool = False,
    memory_budget: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[RestoredImage]:
    """Restore every face of every image.

    Args:
        model: a loaded GPEN generator (its size S sets the crop size).
        detector: from :func:`gpen_core.face.detection.loader.load_detector`.
        images: ``(B, 3, H, W)`` RGB float in [0, 1] (alpha, if any, must be split off first).
        detect: detection options.
        fidelity: official ``alpha`` in [0, 1]: 1 pastes the restored faces, 0 the originals.
        tile_size, overlap, recompute: GPEN tiling for each face batch (see
            :func:`gpen_core.enhance.enhance_images`).
        memory_budget: bytes for GPEN activations (default: the device's free memory).
        progress: ``progress(faces_done, faces_total)``; may raise to interrupt.

    Returns:
        One :class:`RestoredImage` per input image. An image without faces comes back
        unchanged with an empty crop batch and a zero mask (logged).
    """
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W) RGB; got {tuple(images.shape)}")
    if not 0.0 <= fidelity <= 1.0:
        raise ValueError(f"fidelity must be in [0, 1]; got {fidelity}")
    detect = detect or DetectOptions()
    size = model.config.size
    template = reference_points(size, dtype=torch.float64)
    selection = detect.face_selection()
    # Detection reports no faces done yet; calling progress between detector stages makes each
    # stage a cancel point (the node's callback raises on a cancelled prompt).
    detect_progress = None if progress is None else (lambda _done, _steps: progress(0, 1))
    found: list[tuple[FaceDetections, torch.Tensor, torch.Tensor]] = []
    for index in range(images.shape[0]):
        image = images[index]
        faces = detect_faces(
            detector, image, score_threshold=detect.score_threshold, selection=selection, progress=detect_progress
        )
        if len(faces) == 0:
            log.warning("no face found in image %d (%dx%d)", index, image.shape[2], image.shape[1])
        matrices = similarity_transform(faces.landmarks.to(torch.float64), template)
        crops = warp_faces(image.float(), matrices.to(image.device), size) if len(faces) else images.new_zeros(
            (0, 3, size, size)
        )
        found.append((faces, matrices, crops))
    all_crops = torch.cat([crops for _, _, crops in found])
    total = all_crops.shape[0]
    if total:
        budget = memory_budget if memory_budget is not None else free_memory_bytes(model.device)
        batch = face_batch_size(model, total, budget)
        log.info("restoring %d face(s) in batches of %d", total, batch)

        def faces_done(done: int, steps: int) -> None:
            if progress is not None:
                progress(min(total, done * total // max(steps, 1)), total)

        restored_all = enhance_images(
            model, all_crops, batch_size=batch, tile_size=tile_size, overlap=overlap, recompute=recompute,
            memory_budget=budget, progress=faces_done,
        )
    else:
        restored_all = all_crops
    results = []
    start = 0
    for index, (faces, matrices, crops) in enumerate(found):
        image = images[index]
        count = crops.shape[0]
        restored = restored_all[start : start + count].to(image.device, image.dtype)
        start += count
        if count:
            pasted, mask = paste_faces(
                image, restored, crops.to(image.dtype), matrices.to(image.device), fidelity=fidelity
            )
        else:
            pasted, mask = image, torch.zeros(image.shape[1:], dtype=torch.float32, device=image.device)
        results.append(RestoredImage(pasted, mask.float(), crops, restored, faces))
    return results
