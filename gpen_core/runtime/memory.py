"""Peak memory of a computation: CUDA allocator statistics, or live tensors counted on the CPU."""
from __future__ import annotations

import weakref
from typing import Any, Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

MiB = 1024 * 1024


class LiveTensorPeak(TorchDispatchMode):
    """Counts the bytes of tensor storages allocated while the mode is active, and their peak.

    A storage counts from the first op that returns it (and that did not receive it as an
    input) until the last Python tensor viewing it is freed. Storages that existed before
    (weights, the input image) are never counted, nor are their views. Buffers an operator
    allocates and frees internally are invisible here: the figure is the peak of live
    tensors, the quantity the official figures in the README use.

    Example:
        >>> with LiveTensorPeak() as counter:
        ...     y = torch.ones(256, 256) * 2
        >>> counter.peak_bytes >= 256 * 256 * 4
        True
    """

    def __init__(self) -> None:
        super().__init__()
        self.current_bytes = 0
        self.peak_bytes = 0
        self._refs: dict[int, int] = {}
        self._sizes: dict[int, int] = {}

    def _release(self, ptr: int) -> None:
        self._refs[ptr] -= 1
        if self._refs[ptr] == 0:
            del self._refs[ptr]
            self.current_bytes -= self._sizes.pop(ptr)

    def _track(self, tensor: torch.Tensor, input_ptrs: set[int]) -> None:
        storage = tensor.untyped_storage()
        ptr = storage.data_ptr()
        if ptr == 0:
            return
        if ptr not in self._refs:
            if ptr in input_ptrs:
                return  # a view of something allocated before the mode
            self._refs[ptr] = 0
            self._sizes[ptr] = storage.nbytes()
            self.current_bytes += storage.nbytes()
            self.peak_bytes = max(self.peak_bytes, self.current_bytes)
        self._refs[ptr] += 1
        weakref.finalize(tensor, self._release, ptr)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: D105
        flat_in, _ = tree_flatten((args, kwargs or {}))
        input_ptrs = {t.untyped_storage().data_ptr() for t in flat_in if isinstance(t, torch.Tensor)}
        out = func(*args, **(kwargs or {}))
        flat_out, _ = tree_flatten(out)
        for t in flat_out:
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                self._track(t, input_ptrs)
        return out


def peak_memory(fn: Callable[[], Any], device: torch.device) -> tuple[Any, int]:
    """Run ``fn()`` once; return its result and the peak bytes it allocated on ``device``.

    CUDA: ``torch.cuda.max_memory_allocated`` above what was allocated before the call.
    CPU: the peak of live tensors created during the call (:class:`LiveTensorPeak`); the
    mode slows the call down, so time it separately.
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        result = fn()
        torch.cuda.synchronize(device)
        return result, torch.cuda.max_memory_allocated(device) - base
    counter = LiveTensorPeak()
    with counter:
        result = fn()
    return result, counter.peak_bytes
