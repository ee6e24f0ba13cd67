"""Shared fixtures: tiny seeded GPEN models (fast)."""
from __future__ import annotations

import pytest
import torch

import gpen_core as g
from helpers import TINY


@pytest.fixture(scope="session")
def tiny_state() -> dict[str, torch.Tensor]:
    return g.seeded_state_dict(TINY, 7)


@pytest.fixture()
def tiny_model(tiny_state) -> g.GPEN:
    return g.build_model(tiny_state)
