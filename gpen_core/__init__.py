"""gpen_core: an exact, fast, memory-lean GPEN face-restoration generator in plain PyTorch.

No ComfyUI import anywhere in this package. Main entry points::

    from gpen_core import load_model
    model = load_model("GPEN-BFR-512.pth", precision="auto")
    out = model(image)            # (B, 3, 512, 512) in [-1, 1] -> same shape, unclamped
    out = model(image, tile_size=256, recompute=True)   # same result, peak memory of a 256 tile
    faces = enhance_images(model, crops, tile_size="auto")  # (B, C, H, W) in [0, 1], any size

Whole photos: :func:`gpen_core.face.pipeline.restore_faces` (detect, align, enhance, paste back).
"""
from .arch.config import ConfigError, GPENConfig, config_from_state_dict
from .arch.generator import GPEN
from .arch.seeded import seeded_input, seeded_state_dict
from .enhance import enhance_images
from .loading import build_model, load_model, load_state_dict
from .runtime.precision import PRECISIONS, NonFiniteOutputError, resolve_device, resolve_dtype
from .runtime.report import memory_report
from .runtime.strategy import GPENOutOfMemoryError, Strategy
from .weights import CheckpointError, save_safetensors

__all__ = [
    "GPEN",
    "GPENConfig",
    "CheckpointError",
    "ConfigError",
    "GPENOutOfMemoryError",
    "Strategy",
    "enhance_images",
    "memory_report",
    "NonFiniteOutputError",
    "PRECISIONS",
    "build_model",
    "config_from_state_dict",
    "load_model",
    "load_state_dict",
    "resolve_device",
    "resolve_dtype",
    "save_safetensors",
    "seeded_input",
    "seeded_state_dict",
]
