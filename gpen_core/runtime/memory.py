"""Peak memory of a computation on any device: allocator statistics where torch keeps them
(CUDA, XPU ...), else live tensors counted as they are created and freed (CPU, MPS ...)."""
from __future__ import annotations

import functools
import weakref
from collections.abc import Callable
from types import ModuleType
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

MiB = 1024 * 1024


def _storage_ptr(tensor: torch.Tensor) -> int | None:
    """The address of ``tensor``'s storage; None on back-ends whose tensors have none (opaque tensors)."""
    try:
        return tensor.untyped_storage().data_ptr()
    except (RuntimeError, NotImplementedError):
        return None


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
        self.uncounted = 0
        """Tensors whose storage has no pointer to key on (opaque back-ends); not counted."""

    def _release(self, ptr: int) -> None:
        self._refs[ptr] -= 1
        if self._refs[ptr] == 0:
            del self._refs[ptr]
            self.current_bytes -= self._sizes.pop(ptr)

    def _track(self, tensor: torch.Tensor, input_ptrs: set[int]) -> None:
        ptr = _storage_ptr(tensor)
        if ptr is None:
            self.uncounted += 1
            return
        if ptr == 0:
            return
        storage = tensor.untyped_storage()
        if ptr not in self._refs:
            if ptr in input_ptrs:
                return  # a view of something allocated before the mode
            self._refs[ptr] = 0
            self._sizes[ptr] = storage.nbytes()
            self.current_bytes += storage.nbytes()
            self.peak_bytes = max(self.peak_bytes, self.current_bytes)
        self._refs[ptr] += 1
        weakref.finalize(tensor, self._release, ptr)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        flat_in, _ = tree_flatten((args, kwargs or {}))
        input_ptrs = {p for t in flat_in if isinstance(t, torch.Tensor) and (p := _storage_ptr(t)) is not None}
        out = func(*args, **(kwargs or {}))
        flat_out, _ = tree_flatten(out)
        for t in flat_out:
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                self._track(t, input_ptrs)
        return out


ALLOCATOR_FUNCTIONS = ("synchronize", "memory_allocated", "max_memory_allocated", "reset_peak_memory_stats")
"""What a ``torch.<device type>`` module must offer for allocator peaks (``torch.cuda``, ``torch.xpu`` ...)."""


def allocator_module(device: torch.device) -> ModuleType | None:
    """``torch.cuda``, ``torch.xpu`` ... when that module reports allocator peaks for ``device``; else None.

    ``torch.mps`` has no peak statistic (only the memory allocated now), and back-ends such as
    DirectML (``privateuseone``) have no module at all.
    """
    if device.type == "cpu":
        return None
    module = getattr(torch, device.type, None)
    if isinstance(module, ModuleType) and all(callable(getattr(module, f, None)) for f in ALLOCATOR_FUNCTIONS):
        return module
    return None


class PeakMeter:
    """Peak memory of the computation inside ``with PeakMeter(device) as meter:``, on any device.

    * CUDA, XPU and other devices whose ``torch.<type>`` module keeps allocator statistics:
      ``max_memory_allocated`` above what was allocated when the block began (cheap).
    * CPU, and devices without allocator statistics (MPS, DirectML ...): the peak of live
      tensors created inside the block (:class:`LiveTensorPeak`; it slows the block down,
      so time separately). ``method`` names the device when it is not the CPU.

    Attributes:
        peak_bytes: bytes (0 until the block ends).
        method: how the figure was obtained, in words (for reports).
    """

    _open: list[PeakMeter] = []
    """Allocator meters inside whose block we are: a nested meter resets the allocator's peak, so it first
    hands the peak so far to the meters around it."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak_bytes = 0
        self._seen = 0
        self._counter: LiveTensorPeak | None = None
        self._allocator = allocator_module(device)
        self._base = 0
        if self._allocator is not None:
            self.method = f"torch.{device.type}.max_memory_allocated"
        elif device.type == "cpu":
            self.method = "live tensors"
        else:
            self.method = f"live tensors (torch keeps no peak-memory statistic for {device.type})"

    def __enter__(self) -> PeakMeter:
        if self._allocator is not None:
            self._allocator.synchronize(self.device)
            self._base = self._allocator.memory_allocated(self.device)
            peak_so_far = self._allocator.max_memory_allocated(self.device)
            for outer in PeakMeter._open:
                if outer.device == self.device:
                    outer._seen = max(outer._seen, peak_so_far)
            self._allocator.reset_peak_memory_stats(self.device)
            PeakMeter._open.append(self)
        else:
            self._counter = LiveTensorPeak()
            self._counter.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._counter is not None:
            self._counter.__exit__(*exc)
            self.peak_bytes = self._counter.peak_bytes
            if self._counter.uncounted:
                self.method += f" ({self._counter.uncounted} tensors without a storage pointer not counted)"
            self._counter = None
        elif self._allocator is not None:
            self._allocator.synchronize(self.device)
            peak = max(self._seen, self._allocator.max_memory_allocated(self.device))
            self.peak_bytes = peak - self._base
            PeakMeter._open.remove(self)


def peak_memory(fn: Callable[[], Any], device: torch.device) -> tuple[Any, int]:
    """Run ``fn()`` once; return its result and the peak bytes it allocated on ``device`` (see
    :class:`PeakMeter`). On the CPU the counting slows the call down, so time it separately.
    """
    with PeakMeter(device) as meter:
        result = fn()
    return result, meter.peak_bytes


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where there is none (another C library, another system).

    Looked up on first use, not at import (``ctypes.util.find_library`` runs ``ldconfig``: ComfyUI's start-up
    would wait for it), then kept.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None
    return trim


def release_freed_host_memory() -> None:
    """Hand the process's freed heap memory back to the system (glibc's ``malloc_trim``; a no-op elsewhere).

    Two networks that take turns on the CPU (GPEN, then the face parser, face batch after face batch) free and
    allocate buffers of different sizes; glibc keeps the freed ones in its heap, where they fragment, so the
    resident set grows past what is alive. Called between them it keeps a photo's peak at what is alive (measured
    on the 29-face group photo with the parse mask: 1.24 GB instead of 1.28–1.44 GB, the same time).
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
