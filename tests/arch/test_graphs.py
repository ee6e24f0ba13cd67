"""compile="cuda_graphs": option checks, the eager fallbacks with their reasons, and the runner's
shape keying and invalidation (with a fake graph on the CPU; the real capture is run by gpu-check)."""
from __future__ import annotations

import pytest
import torch

import gpen_core as g
from gpen_core.arch import graphs
from gpen_core.arch.graphs import CudaGraphs, _Graph, graph_key, graph_refusal
from helpers import TINY


class FakeGraph:
    """Stands in for torch.cuda.CUDAGraph: replay reruns the captured function on the static buffers."""

    def __init__(self, fn, static_input, static_output):
        self.fn, self.static_input, self.static_output = fn, static_input, static_output

    def replay(self):
        self.static_output.copy_(self.fn(self.static_input))


class FakeCudaGraphs(CudaGraphs):
    def _capture(self, x):
        static_input = x.clone()
        static_output = self.forward(static_input)
        self.stats.captures += 1
        return _Graph(FakeGraph(self.forward, static_input, static_output), static_input, static_output)


def refusal(x, **options):
    defaults = {"tiled": False, "grad_checkpoint": False, "progress": False, "grad_enabled": False}
    return graph_refusal(x, **(defaults | options))


def test_refusal_reasons():
    cpu = torch.zeros(1, 3, 4, 4)
    assert refusal(cpu) == "input on cpu, not CUDA"
    cuda = torch.empty(1, 3, 4, 4, device="meta")  # only .device.type is read
    cuda_like = type("T", (), {"device": torch.device("cuda", 0)})()
    assert refusal(cuda_like) is None
    assert refusal(cuda_like, tiled=True) == "tiled or recomputing forward"
    assert "gradients" in refusal(cuda_like, grad_enabled=True)
    assert refusal(cuda_like, grad_checkpoint=True) == "grad_checkpoint"
    assert "progress" in refusal(cuda_like, progress=True)
    assert graph_key(cuda) == (1, torch.float32, torch.device("meta"))


def test_load_model_checks_the_mode(tiny_state):
    with pytest.raises(ValueError, match="needs a CUDA device.*cpu.*compile='off'"):
        g.load_model(tiny_state, device="cpu", compile="cuda_graphs")
    with pytest.raises(ValueError, match="compile"):
        g.load_model(tiny_state, device="cpu", compile="torch_compile")
    assert g.load_model(tiny_state, device="cpu").compile_mode == "off"


def test_cpu_input_runs_eagerly_with_the_reason_counted(tiny_model):
    x = g.seeded_input(TINY.size, 1)
    with torch.inference_mode():
        eager = tiny_model(x)
        tiny_model.set_compile("cuda_graphs")
        out = tiny_model(x)
        tiny_model(x, tile_size=32)
    assert torch.equal(out, eager)
    assert tiny_model.graphs is not None
    assert tiny_model.graphs.stats.eager == {"input on cpu, not CUDA": 2}
    assert tiny_model.graphs.stats.captures == 0
    assert tiny_model.set_compile("off").graphs is None


def test_runner_keys_by_shape_replays_and_recaptures_when_weights_change(tiny_model, monkeypatch):
    runner = FakeCudaGraphs(tiny_model._forward_plain, lambda: g.arch.prepared.weights_key(tiny_model))
    x1, x2 = g.seeded_input(TINY.size, 1), g.seeded_input(TINY.size, 2, batch=2)
    with torch.inference_mode():
        eager1, eager2 = tiny_model(x1), tiny_model(x2)
        out1 = runner(x1)
        again = runner(x1)
        out2 = runner(x2)
        assert runner.stats.captures == 2 and runner.stats.replays == 3
        assert torch.equal(out1, eager1) and torch.equal(again, eager1) and torch.equal(out2, eager2)
        assert out1.data_ptr() != again.data_ptr()  # a copy, not the static buffer the next replay overwrites
        assert sorted(k[0] for k in runner.captured_shapes()) == [1, 2]
        with torch.no_grad():
            tiny_model.generator.to_rgbs[-1].bias.add_(0.5)  # in place: the same storage, a new version
        changed = runner(x1)
        assert runner.stats.captures == 3 and len(runner.captured_shapes()) == 1
        assert torch.allclose(changed, tiny_model(x1), atol=1e-6, rtol=0)
        assert not torch.allclose(changed, eager1)
        monkeypatch.setattr(graphs, "MAX_GRAPHS", 1)
        runner(x2)
    assert runner.stats.eager == {"more than 1 input shapes": 1}
