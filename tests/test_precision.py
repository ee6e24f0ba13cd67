"""Half precision really runs in half, stays close to fp32, and non-finite outputs are caught."""
from __future__ import annotations

import pytest
import torch

import gpen_core as g
from gpen_core.enhance import run_checked
from gpen_core.arch.layers import EqualLinear
from gpen_core.runtime.memory import peak_memory
from helpers import TINY


@pytest.mark.parametrize("precision,dtype,tolerance", [("bf16", torch.bfloat16, 0.3), ("fp16", torch.float16, 0.05)])
def test_half_precision_runs_in_half(precision, dtype, tolerance):
    state = g.seeded_state_dict(g.GPENConfig(128, 2, 0.25), 3)  # activations dominate at this size
    x = g.seeded_input(128, 1)
    reference = g.load_model(state, device="cpu")
    model = g.load_model(state, device="cpu", precision=precision)
    assert model.dtype == dtype
    assert model.generator.convs[0].conv.weight.dtype == dtype
    assert all(p.dtype == torch.float32 for m in model.modules() if isinstance(m, EqualLinear) for p in m.parameters())
    with torch.inference_mode():
        out_ref, peak_ref = peak_memory(lambda: reference(x), torch.device("cpu"))
        out, peak = peak_memory(lambda: model(x), torch.device("cpu"))
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    error = float((out - out_ref).abs().max())
    assert 0 < error < tolerance
    assert peak < 0.55 * peak_ref  # activations are half-size


def test_auto_is_fp32_on_cpu(tiny_state):
    assert g.load_model(tiny_state, device="cpu", precision="auto").dtype == torch.float32
    with pytest.raises(ValueError, match="precision must be one of"):
        g.load_model(tiny_state, device="cpu", precision="fp8")


def overflowing(state):
    """Weights that fit float16 but whose last RGB layer overflows it (not bfloat16 or float32)."""
    state = dict(state)
    key = "generator.to_rgbs.3.conv.weight"
    state[key] = state[key] / state[key].abs().max() * 6e4
    return state


def test_nan_in_explicit_fp16_is_reported(tiny_state):
    model = g.load_model(overflowing(tiny_state), device="cpu", precision="fp16")
    with torch.inference_mode(), pytest.raises(g.NonFiniteOutputError, match="fp16.*bf16"):
        run_checked(model, g.seeded_input(TINY.size, 1))


def test_auto_retries_in_a_safer_precision(tiny_state, tmp_path):
    path = tmp_path / "overflows.pth"
    torch.save(overflowing(tiny_state), path)
    model = g.load_model(path, device="cpu", precision="auto")
    model.set_dtype(torch.float16)  # what auto picks on a CUDA device of compute capability 7.x
    with torch.inference_mode():
        out = run_checked(model, g.seeded_input(TINY.size, 1))
    assert torch.isfinite(out).all()
    assert model.dtype == torch.bfloat16
    # the retry re-read the file: weights are the stored ones rounded to bf16, not fp16-rounded twice
    stored = overflowing(tiny_state)["generator.convs.0.conv.weight"]
    assert torch.equal(model.generator.convs[0].conv.weight[0].float(), stored[0].to(torch.bfloat16).float())
