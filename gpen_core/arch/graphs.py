"""Optional graph capture of the plain forward: ``load_model(..., compile="cuda_graphs")``.

On a GPU a batch-1 GPEN forward is launch-bound (a few hundred small kernels); face batches
have fixed shapes, so the whole forward can be captured once per shape as a CUDA graph and
replayed with one launch. :class:`CudaGraphs` keeps one graph per ``(batch, dtype, device)``
with static input and output buffers:

* the first forward of a shape runs eagerly twice on a side stream (warm-up: kernel choice,
  the weight cache of :mod:`gpen_core.arch.prepared`), then is captured;
* later forwards copy the input into the static buffer, replay, and return a copy of the
  static output (the next replay overwrites it);
* when the weights change (``load_state_dict``, ``.to()``, in-place edits: the same key as
  the weight cache), every graph is dropped and recaptured on demand.

What a graph cannot serve runs eagerly, with the reason logged once per reason (see
:func:`graph_refusal`): a tensor not on CUDA (e.g. a model that ComfyUI offloaded to the
CPU), a tiled or recomputing forward, gradients, a progress callback, or more distinct
shapes than :data:`MAX_GRAPHS` (each graph keeps its own activation memory).

Only ``off`` and ``cuda_graphs`` exist: ``torch.compile`` was measured on the CPU and did
not pay (see the README's benchmark notes).
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

import torch

log = logging.getLogger(__name__)

COMPILE_MODES = ("off", "cuda_graphs")
"""Values of ``load_model(compile=...)`` and ``--compile``."""

MAX_GRAPHS = 4
"""Captured shapes kept per model at most; further shapes run eagerly."""

GraphKey = tuple[int, torch.dtype, torch.device]


def graph_key(x: torch.Tensor) -> GraphKey:
    """What a captured graph is specific to: batch size, dtype and device (the rest of the
    shape is the model's)."""
    return int(x.shape[0]), x.dtype, x.device


def graph_refusal(
    x: torch.Tensor, *, tiled: bool, grad_checkpoint: bool, progress: bool, grad_enabled: bool
) -> str | None:
    """Why the forward of ``x`` with these options cannot replay a CUDA graph, or None if it can."""
    if x.device.type != "cuda":
        return f"input on {x.device.type}, not CUDA"
    if tiled:
        return "tiled or recomputing forward"
    if grad_enabled:
        return "gradients enabled (graphs serve inference only)"
    if grad_checkpoint:
        return "grad_checkpoint"
    if progress:
        return "progress callback (a graph has no per-tile steps)"
    return None


@dataclass
class _Graph:
    graph: torch.cuda.CUDAGraph
    static_input: torch.Tensor
    static_output: torch.Tensor


@dataclass
class GraphStats:
    """What the runner did, for reports: captures, replays, and eager runs per reason."""

    captures: int = 0
    replays: int = 0
    eager: dict[str, int] = field(default_factory=dict)


class CudaGraphs:
    """One CUDA graph per input shape of a forward function; see the module docstring.

    Args:
        forward: the eager forward, ``forward(x) -> out`` (plain, whole image).
        weights_key: returns a value that changes whenever the weights do.
    """

    def __init__(self, forward: Callable[[torch.Tensor], torch.Tensor], weights_key: Callable[[], Hashable]) -> None:
        self.forward = forward
        self.weights_key = weights_key
        self.graphs: dict[GraphKey, _Graph] = {}
        self.stats = GraphStats()
        self._key: Hashable = None
        self._logged: set[str] = set()

    def clear(self) -> None:
        """Drop every captured graph (and its memory)."""
        self.graphs.clear()

    def captured_shapes(self) -> list[GraphKey]:
        """``(batch, dtype, device)`` of the graphs held now."""
        return list(self.graphs)

    def note_eager(self, reason: str) -> None:
        """Count an eager run, logging ``reason`` the first time it occurs."""
        self.stats.eager[reason] = self.stats.eager.get(reason, 0) + 1
        if reason not in self._logged:
            self._logged.add(reason)
            log.info("cuda_graphs: running eagerly (%s)", reason)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The forward of ``x`` through a graph for its shape (captured on first use)."""
        weights = self.weights_key()
        if weights != self._key:
            self.clear()
            self._key = weights
        key = graph_key(x)
        entry = self.graphs.get(key)
        if entry is None:
            if len(self.graphs) >= MAX_GRAPHS:
                self.note_eager(f"more than {MAX_GRAPHS} input shapes")
                return self.forward(x)
            entry = self._capture(x)
            self.graphs[key] = entry
        entry.static_input.copy_(x)
        entry.graph.replay()
        self.stats.replays += 1
        return entry.static_output.clone()

    def _capture(self, x: torch.Tensor) -> _Graph:
        static_input = x.clone()
        stream = torch.cuda.Stream(device=x.device)
        stream.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(stream):
            for _ in range(2):  # warm-up outside the graph: kernel selection, the weight cache
                self.forward(static_input)
        torch.cuda.current_stream(x.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_output = self.forward(static_input)
        self.stats.captures += 1
        log.info("cuda_graphs: captured batch %d, %s on %s", *graph_key(x))
        return _Graph(graph, static_input, static_output)
