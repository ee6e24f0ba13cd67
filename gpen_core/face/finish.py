"""Finishing the restored face crops before paste-back: grey kept grey, colour match, small-face smoothing.

* **Small faces** (official GPEN ``face_enhancement.py``): when the detected box's shorter side
  is under 100 px, the restored crop is filtered with ``[[1, 2, 1], [2, 4, 2], [1, 2, 1]] / 16``
  (``cv2.filter2D``, border reflect-101), after the paste mask is taken and before blending.
* **Grey stays grey**: a crop whose channels differ by at most ``10/255`` everywhere (the
  threshold CodeFormer uses) is a grey photo; its restored face is replaced by the luma
  (ITU-R BT.601 weights) of GPEN's output, so no colour cast is pasted into it.
* **Colour match** (off by default): per channel, the restored face's mean and standard
  deviation inside the paste mask are matched to the original crop's, in CIE Lab (D65,
  sRGB) or in YCbCr (BT.601, full range).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from .options import PasteOptions

__all__ = [
    "COLOR_SPACES",
    "GREY_THRESHOLD",
    "SMALL_FACE_SIDE",
    "finish_faces",
    "is_grey",
    "match_colour",
    "smooth_crops",
    "to_grey",
]

SMALL_FACE_SIDE = 100.0
"""Official threshold: faces whose detected box has a shorter side below this (px) are smoothed."""
GREY_THRESHOLD = 10.0 / 255.0
"""Largest channel difference of a crop still taken as grey."""
COLOR_SPACES = ("off", "lab", "ycbcr")
LUMA = (0.299, 0.587, 0.114)

_SMOOTH_KERNEL = ((1.0, 2.0, 1.0), (2.0, 4.0, 2.0), (1.0, 2.0, 1.0))


def smooth_crops(crops: torch.Tensor) -> torch.Tensor:
    """The official 3x3 smoothing ``[[1, 2, 1], [2, 4, 2], [1, 2, 1]] / 16`` with reflect-101 border.

    Args:
        crops: ``(N, C, S, S)`` float.

    Returns:
        Same shape and dtype (computed in float32, or float64 for float64 input).
    """
    work = torch.float64 if crops.dtype == torch.float64 else torch.float32
    n, c, h, w = crops.shape
    kernel = torch.tensor(_SMOOTH_KERNEL, dtype=work, device=crops.device) / 16.0
    planes = F.pad(crops.to(work).reshape(n * c, 1, h, w), (1, 1, 1, 1), mode="reflect")  # reflect = reflect-101
    return F.conv2d(planes, kernel[None, None]).reshape(n, c, h, w).to(crops.dtype)


def is_grey(crops: torch.Tensor, threshold: float = GREY_THRESHOLD) -> torch.Tensor:
    """``(N,)`` bool: every pixel's channels differ by at most ``threshold`` (crops ``(N, 3, S, S)``)."""
    spread = crops.amax(dim=1) - crops.amin(dim=1)
    return spread.flatten(1).amax(dim=1) <= threshold


def to_grey(crops: torch.Tensor) -> torch.Tensor:
    """BT.601 luma of RGB crops, repeated on the three channels (``(N, 3, S, S)``)."""
    weights = torch.tensor(LUMA, dtype=crops.dtype, device=crops.device).view(1, 3, 1, 1)
    return (crops * weights).sum(dim=1, keepdim=True).clamp(0.0, 1.0).expand_as(crops).contiguous()


# ----------------------------------------------------------------------------- colour spaces

_RGB_TO_XYZ = ((0.4124564, 0.3575761, 0.1804375), (0.2126729, 0.7151522, 0.0721750), (0.0193339, 0.1191920, 0.9503041))
_WHITE_D65 = (0.95047, 1.0, 1.08883)
_LAB_EPSILON = 216.0 / 24389.0
_LAB_KAPPA = 24389.0 / 27.0


def _mix(matrix: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,njhw->nihw", matrix, x)


def _rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    linear = torch.where(rgb <= 0.04045, rgb / 12.92, ((rgb.clamp(min=0) + 0.055) / 1.055) ** 2.4)
    matrix = torch.tensor(_RGB_TO_XYZ, dtype=rgb.dtype, device=rgb.device)
    white = torch.tensor(_WHITE_D65, dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
    xyz = _mix(matrix, linear) / white
    f = torch.where(xyz > _LAB_EPSILON, xyz.clamp(min=_LAB_EPSILON) ** (1.0 / 3.0), (_LAB_KAPPA * xyz + 16.0) / 116.0)
    return torch.stack([116.0 * f[:, 1] - 16.0, 500.0 * (f[:, 0] - f[:, 1]), 200.0 * (f[:, 1] - f[:, 2])], dim=1)


def _lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    fy = (lab[:, 0] + 16.0) / 116.0
    f = torch.stack([fy + lab[:, 1] / 500.0, fy, fy - lab[:, 2] / 200.0], dim=1)
    xyz = torch.where(f**3 > _LAB_EPSILON, f**3, (116.0 * f - 16.0) / _LAB_KAPPA)
    white = torch.tensor(_WHITE_D65, dtype=lab.dtype, device=lab.device).view(1, 3, 1, 1)
    matrix = torch.linalg.inv(torch.tensor(_RGB_TO_XYZ, dtype=torch.float64)).to(lab)
    linear = _mix(matrix, xyz * white).clamp(min=0.0)
    return torch.where(linear <= 0.0031308, linear * 12.92, 1.055 * linear ** (1.0 / 2.4) - 0.055)


def _rgb_to_ycbcr(rgb: torch.Tensor) -> torch.Tensor:
    r, g, b = rgb.unbind(dim=1)
    y = LUMA[0] * r + LUMA[1] * g + LUMA[2] * b
    return torch.stack([y, (b - y) / (2 * (1 - LUMA[2])), (r - y) / (2 * (1 - LUMA[0]))], dim=1)


def _ycbcr_to_rgb(ycc: torch.Tensor) -> torch.Tensor:
    y, cb, cr = ycc.unbind(dim=1)
    r = y + 2 * (1 - LUMA[0]) * cr
    b = y + 2 * (1 - LUMA[2]) * cb
    g = (y - LUMA[0] * r - LUMA[2] * b) / LUMA[1]
    return torch.stack([r, g, b], dim=1)


_SPACES = {"lab": (_rgb_to_lab, _lab_to_rgb), "ycbcr": (_rgb_to_ycbcr, _ycbcr_to_rgb)}


def match_colour(
    restored: torch.Tensor, originals: torch.Tensor, weights: torch.Tensor, space: str = "lab"
) -> torch.Tensor:
    """Match each restored crop's per-channel mean and std inside the mask to its original crop's.

    Args:
        restored: ``(N, 3, S, S)`` RGB float in [0, 1].
        originals: ``(N, 3, S, S)`` the aligned crops before restoration.
        weights: ``(S, S)`` or ``(N, S, S)`` paste mask in [0, 1]: the statistics are weighted by it.
        space: ``"lab"`` or ``"ycbcr"`` (``"off"`` returns ``restored``).

    Returns:
        ``(N, 3, S, S)`` in [0, 1], dtype of ``restored``. A channel with no spread in the
        restored face is only shifted.
    """
    if space == "off":
        return restored
    if space not in _SPACES:
        raise ValueError(f"color match space must be one of {COLOR_SPACES}, got {space!r}")
    forward, inverse = _SPACES[space]
    work = torch.float64 if restored.dtype == torch.float64 else torch.float32
    a, b = forward(restored.to(work)), forward(originals.to(work))
    w = weights.to(device=restored.device, dtype=work).expand(restored.shape[0], *restored.shape[-2:])[:, None]
    total = w.sum(dim=(2, 3), keepdim=True).clamp(min=1e-12)

    def stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = (x * w).sum(dim=(2, 3), keepdim=True) / total
        std = (((x - mean) ** 2 * w).sum(dim=(2, 3), keepdim=True) / total).sqrt()
        return mean, std

    mean_a, std_a = stats(a)
    mean_b, std_b = stats(b)
    gain = torch.where(std_a > 1e-6, std_b / std_a.clamp(min=1e-6), torch.ones_like(std_a))
    matched = inverse((a - mean_a) * gain + mean_b)
    return matched.clamp(0.0, 1.0).to(restored.dtype)


def finish_faces(
    restored: torch.Tensor,
    originals: torch.Tensor,
    masks: torch.Tensor,
    options: PasteOptions,
    face_sizes: torch.Tensor | None = None,
) -> torch.Tensor:
    """Grey kept grey, colour match, then small-face smoothing (in that order) of the restored crops.

    Args:
        restored, originals: ``(N, 3, S, S)`` crops after and before GPEN, float in [0, 1].
        masks: ``(S, S)`` or ``(N, S, S)`` paste masks (colour statistics are weighted by them).
        options: which steps run.
        face_sizes: ``(N,)`` shorter side of each detected box in image pixels; faces under
            100 px are smoothed. None: no smoothing.

    Returns:
        ``(N, 3, S, S)`` crops to paste, dtype of ``restored``.
    """
    faces = restored
    grey = torch.zeros(faces.shape[0], dtype=torch.bool, device=faces.device)
    if options.keep_grey and faces.shape[1] == 3:
        grey = is_grey(originals.to(faces.device))
        if bool(grey.any()):
            faces = torch.where(grey.view(-1, 1, 1, 1), to_grey(faces), faces)
    if options.color_match != "off" and faces.shape[1] == 3:
        matched = match_colour(faces, originals.to(faces), masks, options.color_match)
        faces = torch.where(grey.view(-1, 1, 1, 1), faces, matched)
    if options.smooth_small_faces and face_sizes is not None and faces.shape[0]:
        small = face_sizes.to(faces.device) < SMALL_FACE_SIDE
        if bool(small.any()):
            faces = torch.where(small.view(-1, 1, 1, 1), smooth_crops(faces), faces)
    return faces
