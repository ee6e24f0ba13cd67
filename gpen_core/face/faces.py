"""The faces record passed between the steps of face restoration (detect + align -> restore -> paste).

:class:`AlignedFaces` says, for each aligned crop, which image it came from and how: the image -> crop
matrix, the detector's box and score, the landmarks the crop was aligned on, and the size of every
source image. Coordinates are pixels of the *source* images (the ones faces were detected in), in the
pixel-centre convention of :mod:`gpen_core.face.align`. To cut from or paste into the same images
at another scale (an upscaled copy), :func:`scale_matrices` composes the scale into the matrices.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["AlignedFaces", "image_scale", "scale_matrices", "size_of"]


def size_of(images: torch.Tensor) -> tuple[int, int]:
    """``(height, width)`` of ``(..., H, W)`` images."""
    return int(images.shape[-2]), int(images.shape[-1])


@dataclass(frozen=True)
class AlignedFaces:
    """Faces of a batch of images, one row per aligned crop, in crop order.

    Attributes:
        image_index: ``(N,)`` int64, the index of each face's source image in the batch.
        matrices: ``(N, 2, 3)`` float64, source image -> crop affine matrices.
        boxes: ``(N, 4)`` float32 ``[x1, y1, x2, y2]`` detector boxes, source pixels.
        landmarks: ``(N, 5, 2)`` float32, the landmarks the crops were aligned on (the detector's,
            or smoothed over frames when temporal smoothing is on), source pixels.
        scores: ``(N,)`` float32 detector confidences in [0, 1].
        source_sizes: ``(height, width)`` of every source image (also those without faces).
        crop_size: side ``S`` of the square crops.
    """

    image_index: torch.Tensor
    matrices: torch.Tensor
    boxes: torch.Tensor
    landmarks: torch.Tensor
    scores: torch.Tensor
    source_sizes: tuple[tuple[int, int], ...]
    crop_size: int

    def __post_init__(self) -> None:
        count = int(self.image_index.shape[0]) if self.image_index.ndim == 1 else -1
        expected = {
            "image_index": (count,),
            "matrices": (count, 2, 3),
            "boxes": (count, 4),
            "landmarks": (count, 5, 2),
            "scores": (count,),
        }
        for name, shape in expected.items():
            if tuple(getattr(self, name).shape) != shape:
                raise ValueError(f"AlignedFaces.{name} must have shape {shape}, got {tuple(getattr(self, name).shape)}")
        if count and (int(self.image_index.min()) < 0 or int(self.image_index.max()) >= len(self.source_sizes)):
            raise ValueError(
                f"AlignedFaces.image_index must be in [0, {len(self.source_sizes)}), got {self.image_index.tolist()}"
            )

    def __len__(self) -> int:
        return int(self.image_index.shape[0])

    @property
    def num_images(self) -> int:
        return len(self.source_sizes)

    def of_image(self, index: int) -> torch.Tensor:
        """``(K,)`` int64 rows of the faces of image ``index``, in crop order."""
        return (self.image_index == index).nonzero().flatten()

    def images(self, start: int, stop: int) -> tuple[AlignedFaces, torch.Tensor]:
        """The record of images ``start:stop`` alone (indices from 0), and the ``(K,)`` rows it takes."""
        if not 0 <= start <= stop <= self.num_images:
            raise ValueError(f"images {start}:{stop} out of the {self.num_images} of this record")
        rows = ((self.image_index >= start) & (self.image_index < stop)).nonzero().flatten()
        part = AlignedFaces(
            self.image_index[rows] - start, self.matrices[rows], self.boxes[rows], self.landmarks[rows],
            self.scores[rows], self.source_sizes[start:stop], self.crop_size,
        )
        return part, rows

    @classmethod
    def empty(cls, source_sizes: tuple[tuple[int, int], ...], crop_size: int) -> AlignedFaces:
        """No faces in any of the images."""
        return cls(
            torch.zeros(0, dtype=torch.int64), torch.zeros((0, 2, 3), dtype=torch.float64),
            torch.zeros((0, 4)), torch.zeros((0, 5, 2)), torch.zeros(0), tuple(source_sizes), crop_size,
        )

    @classmethod
    def concat(cls, parts: list[AlignedFaces]) -> AlignedFaces:
        """The records of consecutive image batches as one record (image indices offset)."""
        if not parts:
            raise ValueError("concat needs at least one AlignedFaces")
        sizes = {part.crop_size for part in parts}
        if len(sizes) != 1:
            raise ValueError(f"cannot join faces aligned to different crop sizes {sorted(sizes)}")
        offsets, total = [], 0
        for part in parts:
            offsets.append(total)
            total += part.num_images
        return cls(
            torch.cat([part.image_index + offset for part, offset in zip(parts, offsets, strict=True)]),
            torch.cat([part.matrices for part in parts]),
            torch.cat([part.boxes for part in parts]),
            torch.cat([part.landmarks for part in parts]),
            torch.cat([part.scores for part in parts]),
            tuple(size for part in parts for size in part.source_sizes),
            parts[0].crop_size,
        )


def image_scale(source: tuple[int, int], target: tuple[int, int], *, name: str = "target image") -> tuple[float, float]:
    """``(scale_y, scale_x)`` from a source image size to a resized copy's size, both ``(height, width)``.

    The two scales may differ only by the rounding of the sizes (at most half a pixel per side,
    as when an upscaler rounds ``W * factor``); a copy stretched more in one direction than the
    other cannot take faces aligned on the source.

    Raises:
        ValueError: the scales differ by more than the rounding allows (naming both sizes).
    """
    (height, width), (target_h, target_w) = source, target
    scale_y, scale_x = target_h / height, target_w / width
    tolerance = 0.5 / height + 0.5 / width + 1e-9
    if abs(scale_y - scale_x) > tolerance:
        raise ValueError(
            f"{name} is {target_w}x{target_h} but the faces were found in a {width}x{height} image: "
            f"scaled by {scale_x:.4g} in width and {scale_y:.4g} in height. Pass a copy scaled by the same "
            "factor in both directions (e.g. the output of an upscale model or of Upscale Image By)."
        )
    return scale_y, scale_x


def scale_matrices(matrices: torch.Tensor, scale_y: float, scale_x: float) -> torch.Tensor:
    """Source -> crop matrices turned into resized-copy -> crop matrices.

    A copy resized with half-pixel centres (``F.interpolate(align_corners=False)``, PIL, OpenCV)
    puts the source point ``p`` at ``(p + 0.5) * scale - 0.5``; the result is ``M`` composed with
    the inverse of that map. ``scale_y == scale_x == 1`` returns ``matrices`` itself.

    Args:
        matrices: ``(N, 2, 3)`` float source -> crop matrices.
        scale_y, scale_x: size of the copy over size of the source, per axis (> 0).

    Returns:
        ``(N, 2, 3)`` float64.
    """
    if scale_y == 1.0 and scale_x == 1.0:
        return matrices
    if not (scale_y > 0 and scale_x > 0):
        raise ValueError(f"scales must be > 0, got {scale_y}, {scale_x}")
    m64 = matrices.to(torch.float64)
    inverse_scale = torch.tensor([1.0 / scale_x, 1.0 / scale_y], dtype=torch.float64, device=m64.device)
    shift = 0.5 * inverse_scale - 0.5  # copy point q -> source point q / s + (0.5 / s - 0.5)
    linear = m64[:, :, :2] * inverse_scale
    translation = m64[:, :, 2] + (m64[:, :, :2] @ shift)
    return torch.cat([linear, translation.unsqueeze(2)], dim=2)
