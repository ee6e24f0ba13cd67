"""Tiling inside the network equals the untiled forward; recompute changes memory, not values."""
from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gpen_core as g
from gpen_core.arch.regions import Interval, modulated_upsample_needs, rgb_upsample_needs
from gpen_core.arch.tiled import plan_tile, tile_grid
from gpen_core.runtime.memory import peak_memory
from helpers import TINY

CONFIGS = {
    32: g.GPENConfig(32, 2, 0.0625),
    64: g.GPENConfig(64, 2, 0.125),
    128: g.GPENConfig(128, 1, 0.0625),
}
MODELS: dict[int, g.GPEN] = {}


def model_of(size: int) -> g.GPEN:
    if size not in MODELS:
        MODELS[size] = g.build_model(g.seeded_state_dict(CONFIGS[size], size))
    return MODELS[size]


def untiled(size: int, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model_of(size)(x)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    size=st.sampled_from([32, 64, 128]),
    tile=st.integers(16, 160),
    batch=st.integers(1, 2),
    recompute=st.booleans(),
    overlap=st.one_of(st.none(), st.integers(8, 24)),
    seed=st.integers(0, 2**16),
)
def test_tiled_equals_untiled(size, tile, batch, recompute, overlap, seed):
    """Exact at the default overlap (None), and at any overlap at least the receptive-field halo (8)."""
    tile = max(tile, size // 4)  # at most 4 x 4 tiles (16-pixel tiles at 32 and 64): every halo case, in seconds
    x = g.seeded_input(size, seed, batch=batch)
    with torch.inference_mode():
        out = model_of(size)(x, tile_size=tile, overlap=overlap, recompute=recompute)
    assert out.shape == (batch, 3, size, size)
    assert torch.allclose(out, untiled(size, x), atol=2e-5, rtol=0)


def test_small_overlap_trades_exactness():
    x = g.seeded_input(128, 3)
    reference = untiled(128, x)
    errors = []
    for overlap in (0, 1, 2, 8):
        with torch.inference_mode():
            out = model_of(128)(x, tile_size=32, overlap=overlap)
        errors.append(float((out - reference).abs().max()))
    assert errors[0] > 1e-2  # cutting the halo shows
    assert errors[0] >= errors[1] >= errors[2]
    assert errors[-1] < 2e-5


def test_tiles_that_do_not_divide_the_image():
    assert tile_grid(100, 48) == [Interval(0, 48), Interval(48, 96), Interval(96, 100)]
    x = g.seeded_input(128, 9)
    with torch.inference_mode():
        out = model_of(128)(x, tile_size=48)
    assert torch.allclose(out, untiled(128, x), atol=2e-5, rtol=0)


def test_receptive_fields():
    # upsampling modulated conv: output rows 10..20 read input rows 4..11 (transposed conv + blur)
    assert modulated_upsample_needs(Interval(10, 20)) == Interval(4, 11)
    assert rgb_upsample_needs(Interval(10, 20)) == Interval(4, 11)
    plan = plan_tile(g_region(64, 128), 128, 16, None)
    assert plan.levels[128].h == g_region(64, 128)
    assert plan.levels[64].h.rows.lo < 32 and plan.levels[64].h.rows.hi > 64  # a halo at every tiled level


def g_region(lo, hi):
    from gpen_core.arch.regions import Region

    return Region(Interval(lo, hi), Interval(lo, hi))


def test_recompute_peak_follows_tile_size():
    config = g.GPENConfig(256, 1, 0.125)  # GPEN-BFR-256's levels at a quarter of its width: the same ratios
    model = g.build_model(g.seeded_state_dict(config, 1))
    x = g.seeded_input(256, 1)
    cpu = torch.device("cpu")
    with torch.inference_mode():
        plain, plain_peak = peak_memory(lambda: model(x), cpu)
        tiled, tiled_peak = peak_memory(lambda: model(x, tile_size=64, recompute=True), cpu)
        smaller, smaller_peak = peak_memory(lambda: model(x, tile_size=32, recompute=True), cpu)
    assert torch.allclose(plain, tiled, atol=2e-5, rtol=0)
    assert torch.allclose(plain, smaller, atol=2e-5, rtol=0)
    assert tiled_peak < 0.6 * plain_peak
    assert smaller_peak < tiled_peak


def test_progress_is_reported_per_tile(tiny_model):
    calls = []
    with torch.inference_mode():
        tiny_model(g.seeded_input(64, 1), tile_size=32, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_progress_can_interrupt(tiny_model):
    class Stop(Exception):
        pass

    def stop(done, total):
        raise Stop

    with torch.inference_mode(), pytest.raises(Stop):
        tiny_model(g.seeded_input(64, 1), tile_size=32, progress=stop)


def test_bad_options(tiny_model):
    x = g.seeded_input(64, 1)
    with pytest.raises(ValueError, match="tile_size must be at least 16"):
        tiny_model(x, tile_size=8)
    with pytest.raises(ValueError, match="overlap"):
        tiny_model(x, tile_size=32, overlap=-1)
    with pytest.raises(ValueError, match="overlap only applies"):
        tiny_model(x, overlap=4)


@pytest.mark.parametrize(("tile", "recompute"), [(None, False), (16, False), (32, False), (16, True)])
def test_output_does_not_depend_on_the_input_layout(tiny_model, tile, recompute):
    """A contiguous and a channels-last copy of one image give the same bits (ComfyUI hands channels-last views)."""
    x = torch.rand(1, 3, TINY.size, TINY.size, generator=torch.Generator().manual_seed(3)) * 2 - 1
    with torch.inference_mode():
        plain = tiny_model(x, tile_size=tile, recompute=recompute)
        last = tiny_model(x.contiguous(memory_format=torch.channels_last), tile_size=tile, recompute=recompute)
    assert torch.equal(plain, last)
