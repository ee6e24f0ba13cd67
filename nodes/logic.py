"""Node logic without ComfyUI: image layout, option mapping, and the enhance call."""
from __future__ import annotations

from collections.abc import Callable

import torch

from ..gpen_core.arch.generator import GPEN
from ..gpen_core.enhance import Enhanced, enhance_images
from ..gpen_core.runtime.report import RunRecord

OUTPUT_SIZES = ("model size", "input size")
EXACT_OVERLAP = -1
"""Node value of ``overlap`` meaning exact halos (the core's ``overlap=None``)."""
AUTO_TILE = 0
"""Node value of ``tile_size`` meaning: choose from the free memory."""


def comfy_to_bchw(images: torch.Tensor) -> torch.Tensor:
    """ComfyUI IMAGE ``(B, H, W, C)`` float [0, 1] -> ``(B, C, H, W)``; a single ``(H, W, C)`` gets a batch axis."""
    if images.dim() == 3:
        images = images[None]
    if images.dim() != 4 or images.shape[-1] not in (1, 2, 3, 4):
        raise ValueError(f"expected an IMAGE of shape (B, H, W, C) with C in 1..4; got {tuple(images.shape)}")
    return images.movedim(-1, 1)


def bchw_to_comfy(images: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` -> ComfyUI IMAGE ``(B, H, W, C)`` float32 on the CPU, contiguous."""
    return images.movedim(1, -1).float().cpu().contiguous()


def core_tile_size(tile_size: int) -> int | str:
    """The ``tile_size`` widget (0 = automatic) -> the core's ``tile_size``."""
    if tile_size < 0:
        raise ValueError(f"tile_size must be 0 (automatic) or a size in pixels; got {tile_size}")
    return "auto" if tile_size == AUTO_TILE else tile_size


def forward_options(tile_size: int, overlap: int, recompute: bool) -> dict:
    """Node widget values -> :func:`gpen_core.enhance.enhance_images` options."""
    if overlap < EXACT_OVERLAP:
        raise ValueError(f"overlap must be -1 (exact) or >= 0; got {overlap}")
    return {
        "tile_size": core_tile_size(tile_size),
        "overlap": None if overlap == EXACT_OVERLAP else overlap,
        "recompute": recompute,
    }


def enhance_comfy_images(
    model: GPEN,
    images: torch.Tensor,
    *,
    tile_size: int = AUTO_TILE,
    overlap: int = EXACT_OVERLAP,
    recompute: bool = False,
    output_size: str = "model size",
    batch_size: int = 1,
    memory_budget: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    on_record: Callable[[RunRecord], None] | None = None,
) -> torch.Tensor:
    """GPEN Enhance: ComfyUI IMAGE in, ComfyUI IMAGE out (3 channels, 4 when the input had alpha).

    ``on_record``: when given, the run is measured and its :class:`RunRecord` is handed to it.
    """
    if output_size not in OUTPUT_SIZES:
        raise ValueError(f"output_size must be one of {OUTPUT_SIZES}; got {output_size!r}")
    with torch.inference_mode():
        out = enhance_images(
            model,
            comfy_to_bchw(images),
            keep_size=output_size == "input size",
            batch_size=batch_size,
            memory_budget=memory_budget,
            progress=progress,
            measure=on_record is not None,
            **forward_options(tile_size, overlap, recompute),
        )
    if isinstance(out, Enhanced):
        if on_record is not None:
            on_record(out.record)
        out = out.images
    return bchw_to_comfy(out)


def restore_comfy_images(
    model: GPEN,
    detector,
    images: torch.Tensor,
    *,
    fidelity: float = 1.0,
    score_threshold: float = 0.0,
    min_face_size: float = 0.0,
    selection: str = "all",
    max_faces: int = 0,
    tile_size: int = AUTO_TILE,
    memory_budget: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """GPEN Face Restore: ComfyUI IMAGE in; (IMAGE, crops before, crops after, MASK) out.

    ``score_threshold`` 0 means the detector's default, ``max_faces`` 0 means no limit.
    Crops are ``(N, S, S, 3)`` over all faces of all images (``N`` may be 0); the mask is
    ``(B, H, W)``. Alpha (a fourth channel) is carried through unchanged.
    """
    from ..gpen_core.face.restore import DetectOptions, restore_faces
    from ..gpen_core.images.tensors import split_alpha

    rgb, alpha = split_alpha(comfy_to_bchw(images))
    detect = DetectOptions(score_threshold or None, min_face_size, selection, max_faces or None)
    with torch.inference_mode():
        results = restore_faces(
            model, detector, rgb.float(), detect=detect, fidelity=fidelity,
            tile_size=core_tile_size(tile_size), memory_budget=memory_budget,
            progress=progress,
        )
    out = torch.stack([r.image for r in results])
    if alpha is not None:
        out = torch.cat([out, alpha.to(out)], dim=1)
    before = torch.cat([r.crops for r in results])
    after = torch.cat([r.restored for r in results])
    masks = torch.stack([r.mask for r in results]).float().cpu()
    return bchw_to_comfy(out), bchw_to_comfy(before), bchw_to_comfy(after), masks
