"""Reading and writing image files as float tensors (Pillow)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


def read_image(path: str | Path) -> torch.Tensor:
    """``(C, H, W)`` float32 in [0, 1]; C is 1 (grey), 2 (grey+alpha), 3 (RGB) or 4 (RGBA)."""
    with Image.open(path) as img:
        if img.mode in ("1", "I", "I;16", "F"):
            img = img.convert("L")
        elif img.mode == "P":
            img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        elif img.mode not in ("L", "LA", "RGB", "RGBA"):
            img = img.convert("RGB")
        array = np.asarray(img, dtype=np.float32) / 255.0
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


def write_image(path: str | Path, image: torch.Tensor) -> None:
    """Write ``(C, H, W)`` float in [0, 1] (C in 1..4) as 8-bit; the suffix picks the format."""
    array = (image.detach().float().clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    if array.shape[2] == 1:
        array = array[:, :, 0]
    path = Path(path)
    if path.suffix.lower() in (".jpg", ".jpeg") and array.ndim == 3 and array.shape[2] in (2, 4):
        array = array[:, :, :-1] if array.shape[2] == 4 else array[:, :, 0]  # JPEG has no alpha
    Image.fromarray(array).save(path)
