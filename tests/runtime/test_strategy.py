"""Automatic strategy from a memory budget, and the out-of-memory ladder (by injection)."""
from __future__ import annotations

import weakref

import pytest
import torch

import gpen_core as g
from gpen_core.enhance import enhance_images
from gpen_core.runtime.memory import peak_memory
from gpen_core.runtime.strategy import (
    GPENOutOfMemoryError,
    Strategy,
    candidate_strategies,
    choose_strategy,
    estimate_peak_bytes,
    free_memory_bytes,
    memory_needed,
    plan_strategy,
    run_with_ladder,
)
from helpers import TINY

ESTIMATE_CONFIG = g.GPENConfig(128, 2, 0.25)


@pytest.fixture(scope="module")
def estimate_models() -> dict[torch.dtype, g.GPEN]:
    """One model per dtype for the estimate tests (the seeded weights take longer than a forward)."""
    state = g.seeded_state_dict(ESTIMATE_CONFIG, 1)
    return {dtype: g.build_model(state).set_dtype(dtype) for dtype in (torch.float32, torch.bfloat16)}


@pytest.mark.parametrize(
    "strategy", [Strategy(), Strategy(64), Strategy(64, True), Strategy(32, True), Strategy(None, True)]
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_estimate_is_an_upper_bound(strategy, dtype, estimate_models):
    config = ESTIMATE_CONFIG
    model = estimate_models[dtype]
    x = g.seeded_input(128, 1, batch=2)
    with torch.inference_mode():
        _, measured = peak_memory(
            lambda: model(x, tile_size=strategy.tile_size, recompute=strategy.recompute), torch.device("cpu")
        )
    estimate = estimate_peak_bytes(config, dtype, 2, strategy)
    assert measured <= estimate <= 3 * measured, (measured, estimate)


def test_choice_follows_the_budget():
    config = g.GPENConfig(512, 2, 0.0625)
    with torch.device("meta"):
        model = g.GPEN(config)
    plain = estimate_peak_bytes(config, torch.float32, 1, Strategy())
    assert choose_strategy(model, 1, 10 * plain) == Strategy()
    lean = choose_strategy(model, 1, plain)
    assert lean.tile_size is not None
    assert estimate_peak_bytes(config, torch.float32, 1, lean) <= 0.8 * plain
    leanest = candidate_strategies(512)[-1]
    assert leanest == Strategy(64, True)
    assert choose_strategy(model, 1, 1) == leanest  # nothing fits: the leanest


def test_ladder_goes_to_smaller_tiles_then_recompute():
    tried = []

    def run(strategy):
        tried.append(strategy)
        if strategy != Strategy(64, True):
            raise torch.OutOfMemoryError("injected")
        return torch.zeros(1)

    result = run_with_ladder(run, Strategy(), 512)
    assert tried == [Strategy(), Strategy(256), Strategy(128), Strategy(64), Strategy(64, True)]
    assert result.tried == tried


def test_ladder_floor_raises_with_what_was_tried():
    def run(strategy):
        raise torch.OutOfMemoryError("injected")

    with pytest.raises(GPENOutOfMemoryError, match=r"whole image, tiles of 128, tiles of 64, tiles of 64 \+ recompute"):
        run_with_ladder(run, Strategy(), 256)


def test_other_errors_are_not_swallowed():
    def run(strategy):
        raise RuntimeError("not memory")

    with pytest.raises(RuntimeError, match="not memory"):
        run_with_ladder(run, Strategy(), 256)


def test_enhance_recovers_from_injected_oom(tiny_model, monkeypatch):
    original = type(tiny_model).forward
    calls = []

    def flaky(self, image, **options):
        calls.append(options.get("tile_size"))
        if options.get("tile_size") is None:
            raise torch.OutOfMemoryError("injected")
        return original(self, image, **options)

    monkeypatch.setattr(type(tiny_model), "forward", flaky)
    images = torch.rand(2, 3, 64, 64)
    with torch.inference_mode():
        out = enhance_images(tiny_model, images, batch_size=2)
    assert out.shape == (2, 3, 64, 64)
    assert calls[0] is None and calls[1] == 32  # tile halved below the 64-px model size


def test_memory_needed_is_the_estimate_of_the_strategy_that_runs(tiny_model):
    config, dtype = tiny_model.config, tiny_model.dtype
    assert memory_needed(tiny_model, 2, None) == estimate_peak_bytes(config, dtype, 2, Strategy())
    assert memory_needed(tiny_model, 2, 32, True) == estimate_peak_bytes(config, dtype, 2, Strategy(32, True))
    budget = estimate_peak_bytes(config, dtype, 2, Strategy())  # the whole image does not fit 80% of it
    chosen = choose_strategy(tiny_model, 2, budget)
    assert chosen != Strategy()
    for auto in ("auto", 0):
        assert plan_strategy(tiny_model, 2, auto, budget_bytes=budget) == chosen
        assert memory_needed(tiny_model, 2, auto, budget_bytes=budget) == estimate_peak_bytes(config, dtype, 2, chosen)
    with torch.inference_mode():
        record = enhance_images(tiny_model, torch.rand(2, 3, 64, 64), batch_size=2, tile_size=0,
                                memory_budget=budget, measure=True).record
    assert record.strategy == chosen.describe()  # what the estimate was for is what ran


@pytest.mark.parametrize("bad", [8, -1, "big", 2.5, True])
def test_bad_tile_sizes_are_refused(tiny_model, bad):
    with pytest.raises(ValueError, match="tile_size must be None"):
        plan_strategy(tiny_model, 1, bad)


def test_free_memory_respects_the_per_process_fraction(monkeypatch):
    gib = 2**30
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (6 * gib, 16 * gib))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 3 * gib)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 2 * gib)
    monkeypatch.setattr(torch.cuda, "get_per_process_memory_fraction", lambda device=None: 1.0)
    cuda = torch.device("cuda", 0)
    assert free_memory_bytes(cuda) == 7 * gib  # free + cached
    monkeypatch.setattr(torch.cuda, "get_per_process_memory_fraction", lambda device=None: 0.25)
    assert free_memory_bytes(cuda) == 2 * gib  # 4 GiB allowed, 2 GiB allocated


def test_a_failed_rung_frees_its_tensors_before_the_next():
    """On a GPU the next, leaner rung needs the memory the failed one held: nothing may keep it alive."""
    held = []

    def run(strategy):
        if strategy == Strategy():
            activations = torch.ones(1000)
            held.append(weakref.ref(activations))
            raise torch.OutOfMemoryError("injected")
        assert held[0]() is None, "the failed attempt's tensors are still alive"
        return torch.zeros(1)

    assert run_with_ladder(run, Strategy(), 256).tried == [Strategy(), Strategy(128)]


def test_auto_tiling_that_chooses_the_whole_image_ignores_overlap(tiny_model):
    """Under ``"auto"`` with room for the whole image, an overlap (a tile-edge setting) must not fail the run."""
    images = torch.rand(1, 3, TINY.size, TINY.size)
    with torch.inference_mode():
        whole = g.enhance_images(tiny_model, images, tile_size=None)
        auto = g.enhance_images(tiny_model, images, tile_size="auto", overlap=4, memory_budget=2**40)
    assert torch.equal(auto, whole)


def test_overlap_without_tiles_is_refused_before_running(tiny_model):
    with pytest.raises(ValueError, match="overlap only applies to a tiled forward"):
        g.enhance_images(tiny_model, torch.rand(1, 3, 8, 8), tile_size=None, overlap=4)
