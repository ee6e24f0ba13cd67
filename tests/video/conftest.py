"""Fixtures of the video tests: PyAV (skip without it) and the shared portrait."""
from __future__ import annotations

import pytest
import torch

from helpers import PHOTOS_DIR


@pytest.fixture(scope="session", autouse=True)
def pyav():
    return pytest.importorskip("av", reason="the video tests need PyAV (pip install av)")


@pytest.fixture(scope="session")
def portrait() -> torch.Tensor:
    """``(3, 439, 328)`` the portrait of ``../shared/photos`` (skip when absent)."""
    from gpen_core.images.files import read_image

    path = PHOTOS_DIR / "portrait-1947.png"
    if not path.is_file():
        pytest.skip(f"test photo not available at {path}")
    return read_image(path)[:3]
