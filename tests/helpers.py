"""Constants shared by the tests (importable as ``helpers``: pyproject puts tests/ on the path)."""
from __future__ import annotations

from pathlib import Path

import gpen_core as g

DATA_DIR = Path(__file__).resolve().parent / "data"
REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / "shared"

TINY = g.GPENConfig(64, channel_multiplier=2, narrow=0.125)
"""A GPEN-64 with 64 channels at 4x4: every code path of the real models, milliseconds per forward."""
