"""Fixtures of the command-line tests."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture()
def weights(tmp_path, tiny_state):
    """A tiny seeded GPEN checkpoint file."""
    path = tmp_path / "tiny.pth"
    torch.save(tiny_state, path)
    return path
