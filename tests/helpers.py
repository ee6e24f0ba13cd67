"""Paths and helpers shared by the tests (importable as ``helpers``: pyproject puts tests/ on the path)."""
from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType

import torch

import gpen_core as g

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent
DATA_DIR = TESTS_DIR / "data"
FACE_DATA_DIR = TESTS_DIR / "face" / "data"


PHOTOS_DIR = REPO_ROOT / "example_inputs"
"""Real photos for the face tests: the public-domain photos the pack ships for its templates (the suite stands
alone: nothing outside the repository is read)."""

TINY = g.GPENConfig(64, channel_multiplier=2, narrow=0.125)
"""A GPEN-64 with 64 channels at 4x4: every code path of the real models, milliseconds per forward."""


def run_cli(capsys, *argv) -> tuple[int, str]:
    """``python -m gpen_core *argv`` in this process: (exit status, stderr); stderr never holds a traceback."""
    from gpen_core.tools.cli import main

    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB of two images in [0, 1] (float64 arithmetic; inf when equal)."""
    mse = float((a.double() - b.double()).pow(2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def similarity_matrix(angle_deg: float, scale: float, tx: float, ty: float) -> torch.Tensor:
    """``(2, 3)`` float64 matrix: rotate by ``angle_deg``, scale, then translate by ``(tx, ty)``."""
    a = math.radians(angle_deg)
    c, s = math.cos(a) * scale, math.sin(a) * scale
    return torch.tensor([[c, -s, tx], [s, c, ty]], dtype=torch.float64)


def import_pack(name: str) -> ModuleType:
    """The repository imported as the package ``name``, as ComfyUI imports a custom node folder (so the
    nodes' relative imports ``..gpen_core`` work). Imported once per name; see :func:`forget_pack`."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, REPO_ROOT / "__init__.py", submodule_search_locations=[str(REPO_ROOT)]
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def forget_pack(name: str) -> None:
    """Drop the package ``name`` and its modules from ``sys.modules``."""
    for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
        del sys.modules[key]
