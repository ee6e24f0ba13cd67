"""Half precision really runs in half, stays close to fp32, and non-finite outputs are caught."""
from __future__ import annotations

import threading

import pytest
import torch

import gpen_core as g
import gpen_core.enhance as enhance_module
from gpen_core import loading
from gpen_core.arch.layers import EqualLinear
from gpen_core.enhance import CheckedRun, enhance_images, run_checked
from gpen_core.loading import safer_copy
from gpen_core.runtime.memory import peak_memory
from helpers import TINY


# fp16 on the CPU has no oneDNN in-place "conv + add" (float32 and bfloat16 do): one partial
# convolution output more is alive at its peak, hence the looser memory bound.
@pytest.mark.parametrize("precision,dtype,tolerance,memory", [("bf16", torch.bfloat16, 0.3, 0.55),
                                                              ("fp16", torch.float16, 0.05, 0.65)])
def test_half_precision_runs_in_half(precision, dtype, tolerance, memory):
    state = g.seeded_state_dict(g.GPENConfig(128, 2, 0.25), 3)  # activations dominate at this size
    x = g.seeded_input(128, 1)
    reference = g.load_model(state, device="cpu")
    model = g.load_model(state, device="cpu", precision=precision)
    assert model.dtype == dtype
    assert model.generator.convs[0].conv.weight.dtype == dtype
    assert all(p.dtype == torch.float32 for m in model.modules() if isinstance(m, EqualLinear) for p in m.parameters())
    with torch.inference_mode():
        reference(x), model(x)  # warm-up: the weight caches are not activations
        out_ref, peak_ref = peak_memory(lambda: reference(x), torch.device("cpu"))
        out, peak = peak_memory(lambda: model(x), torch.device("cpu"))
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    error = float((out - out_ref).abs().max())
    assert 0 < error < tolerance
    assert peak < memory * peak_ref  # activations are half-size


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


@pytest.fixture()
def auto_is_bf16(monkeypatch):
    """``auto`` resolves to bf16 here, as on a CUDA device of compute capability 8.0+ (bf16 is fast on
    this CPU, fp16 is not; the fallback is then bf16 -> fp32)."""
    real = loading.resolve_dtype
    monkeypatch.setattr(loading, "resolve_dtype", lambda p, d: torch.bfloat16 if p == "auto" else real(p, d))


def overflow_in_half(model: g.GPEN, only: torch.Tensor | None = None) -> None:
    """Make ``model``'s half-precision output NaN (for the input ``only``, else for every input), as an
    overflow would. The hook belongs to this model object: copies made by ``safer_copy`` are clean."""

    def hook(module, args, output):
        if module.dtype != torch.float32 and (only is None or args[0] is only):
            return torch.full_like(output, float("nan"))
        return None

    model.register_forward_hook(hook)


def test_auto_keeps_the_stored_values_of_the_rounded_tensors(tiny_state, auto_is_bf16):
    model = g.load_model(tiny_state, device="cpu", precision="auto")
    kept = model.fallback_weights
    assert model.dtype == torch.bfloat16 and kept is not None
    live = model.state_dict()
    assert {k for k, t in live.items() if t.dtype == torch.bfloat16} <= set(kept)
    assert all(torch.equal(t, tiny_state[k]) for k, t in live.items() if k not in kept)  # the others are exact
    assert all(kept[k].dtype == torch.float32 and torch.equal(kept[k], tiny_state[k]) for k in kept)
    assert g.load_model(tiny_state, device="cpu", precision="bf16").fallback_weights is None
    assert g.load_model(tiny_state, device="cpu", precision="fp32").fallback_weights is None


def test_auto_on_cpu_keeps_nothing(tiny_state):
    assert g.load_model(tiny_state, device="cpu", precision="auto").fallback_weights is None


def test_safer_copy_has_the_stored_weights(tiny_state, auto_is_bf16):
    model = g.load_model(tiny_state, device="cpu", precision="auto")
    before = {k: t.clone() for k, t in model.state_dict().items()}
    copy = safer_copy(model, torch.float32)
    assert copy is not model and copy.dtype == torch.float32 and model.dtype == torch.bfloat16
    assert copy.precision == "auto" and copy.fallback_weights is model.fallback_weights
    assert all(torch.equal(t, tiny_state[k]) for k, t in copy.state_dict().items())  # exact, not bf16-rounded
    assert all(torch.equal(t, before[k]) for k, t in model.state_dict().items())
    with pytest.raises(RuntimeError, match="precision 'auto'"):
        safer_copy(g.load_model(tiny_state, device="cpu", precision="bf16"), torch.float32)


@pytest.mark.parametrize("file_change", ["replaced", "deleted"])
def test_auto_fallback_never_reads_the_file_nor_changes_the_model(tiny_state, tmp_path, auto_is_bf16, file_change):
    path = tmp_path / "gpen.pth"
    torch.save(tiny_state, path)
    model = g.load_model(path, device="cpu", precision="auto")
    overflow_in_half(model)
    before = {k: t.clone() for k, t in model.state_dict().items()}
    if file_change == "replaced":
        torch.save(g.seeded_state_dict(TINY, 9), path)  # same layout, other values: loads strictly
    else:
        path.unlink()
    x = g.seeded_input(TINY.size, 1)
    runner = CheckedRun(model)
    with torch.inference_mode():
        out = runner(x)
        expected = g.load_model(tiny_state, device="cpu", precision="fp32")(x)
    assert runner.precision == "bf16 -> fp32" and runner.model is not model
    assert torch.equal(out, expected)  # the weights in memory, exactly; not the file's
    assert model.dtype == torch.bfloat16
    assert all(torch.equal(t, before[k]) for k, t in model.state_dict().items())


def test_nan_input_is_rejected_before_the_model_runs(tiny_state, auto_is_bf16):
    model = g.load_model(tiny_state, device="cpu", precision="auto")
    calls = []
    model.register_forward_pre_hook(lambda *_: calls.append(1))
    x = g.seeded_input(TINY.size, 1, batch=2)
    x[1, 0, 3, 4] = float("nan")
    with torch.inference_mode(), pytest.raises(ValueError, match=r"1 NaN/inf values \(batch item\(s\) 1\)"):
        run_checked(model, x)
    images = torch.rand(3, 3, 40, 40)
    images[2, :, 0, 0] = float("inf")
    with torch.inference_mode(), pytest.raises(ValueError, match=r"images contains 3 NaN or infinite"):
        enhance_images(model, images)
    assert calls == [] and model.dtype == torch.bfloat16


def test_a_concurrent_caller_of_the_shared_model_is_unaffected(tiny_state, auto_is_bf16, monkeypatch):
    model = g.load_model(tiny_state, device="cpu", precision="auto")
    poisoned, clean = g.seeded_input(TINY.size, 1), g.seeded_input(TINY.size, 2)
    overflow_in_half(model, only=poisoned)
    with torch.inference_mode():
        alone = model(clean)  # the shared bf16 model's output, before any fallback
    built, other_done = threading.Event(), threading.Event()
    seen = []
    real_copy = enhance_module.safer_copy

    def copy_while_another_caller_runs(m, dtype):
        copy = real_copy(m, dtype)
        built.set()
        assert other_done.wait(120)
        return copy

    def other_caller():
        assert built.wait(120)
        with torch.inference_mode():
            seen.append(model(clean))
        other_done.set()

    monkeypatch.setattr(enhance_module, "safer_copy", copy_while_another_caller_runs)
    thread = threading.Thread(target=other_caller)
    thread.start()
    with torch.inference_mode():
        out = run_checked(model, poisoned)
    thread.join()
    assert torch.isfinite(out).all()
    assert torch.equal(seen[0], alone)  # bf16 through and through, not a mixed or switched model
    assert model.dtype == torch.bfloat16


def test_enhance_records_the_fallback_and_keeps_no_cache(tiny_state, auto_is_bf16):
    model = g.load_model(tiny_state, device="cpu", precision="auto")
    overflow_in_half(model)
    images = torch.rand(1, 3, 64, 64)
    with torch.inference_mode():
        first = enhance_images(model, images, measure=True)
        second = enhance_images(model, images, measure=True)
    assert first.record.precision == second.record.precision == "bf16 -> fp32"
    assert torch.equal(first.images, second.images)
    assert model.dtype == torch.bfloat16
