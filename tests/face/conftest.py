"""Shared fixtures for the face-detection tests.

Data:
* ``tests/face/data/``: copies of the RetinaFace reference files (facexlib outputs for seeded
  weights; see ``data/README.md``), so the suite stands alone.
* ``../shared/photos`` (beside the repository): real photos for the MTCNN tests; those tests
  skip when the folder is absent.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import FACE_DATA_DIR as DATA_DIR
from helpers import PHOTOS_DIR


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA_DIR


@pytest.fixture(scope="session")
def load_reference() -> Callable[[str], np.ndarray]:
    """Load ``tests/face/data/mobile0.25_<name>.npy``."""

    def load(name: str) -> np.ndarray:
        return np.load(DATA_DIR / f"mobile0.25_{name}.npy")

    return load


def seeded_retinaface_state_dict(model: torch.nn.Module, seed: int, gain: float) -> dict[str, torch.Tensor]:
    """Weights by the generation rule of ``data/README.md`` ("Weights: keys and the generation
    rule"), over ``model.state_dict()`` in its key order."""
    generated: dict[str, torch.Tensor] = {}
    for index, (key, value) in enumerate(model.state_dict().items()):
        if key.endswith("num_batches_tracked"):
            generated[key] = torch.zeros_like(value)
            continue
        generator = torch.Generator().manual_seed(seed + index)
        shape = value.shape
        if key.endswith("running_mean"):
            tensor = torch.randn(shape, generator=generator) * 0.1
        elif key.endswith("running_var"):
            tensor = 0.5 + torch.rand(shape, generator=generator)
        elif key.endswith("weight") and value.ndim == 1:
            tensor = 1 + torch.randn(shape, generator=generator) * 0.1
        elif key.endswith("weight") and value.ndim == 4:
            fan_in = value.numel() // shape[0]
            # one Python scalar, gain / sqrt(fan_in): this grouping reproduces the reference file
            # bit for bit
            tensor = torch.randn(shape, generator=generator) * (gain / math.sqrt(fan_in))
        elif key.endswith("bias"):
            tensor = torch.randn(shape, generator=generator) * 0.05
        else:
            raise AssertionError(f"no generation rule for {key} {tuple(shape)}")
        generated[key] = tensor.contiguous()
    return generated


@pytest.fixture(scope="session")
def make_seeded_state_dict() -> Callable[[torch.nn.Module, int, float], dict[str, torch.Tensor]]:
    return seeded_retinaface_state_dict


@pytest.fixture(scope="session")
def photos_dir() -> Path:
    if not PHOTOS_DIR.is_dir():
        pytest.skip(f"test photos not available at {PHOTOS_DIR}")
    return PHOTOS_DIR


@pytest.fixture(scope="session")
def mtcnn_weights_dir() -> Path:
    """facenet-pytorch's data folder; skips when facenet-pytorch is not installed."""
    from gpen_core.face.detection.mtcnn import find_facenet_pytorch_data_dir

    found = find_facenet_pytorch_data_dir()
    if found is None:
        pytest.skip("facenet-pytorch not installed (pip install --no-deps facenet-pytorch==2.6.0)")
    return found
