"""Counting the ATen operators a computation issues: on a GPU, each one is a kernel launch."""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


def _storages(tree: Any) -> set[int]:
    flat, _ = tree_flatten(tree)
    return {t.untyped_storage().data_ptr() for t in flat if isinstance(t, torch.Tensor)}


class OpCounter(TorchDispatchMode):
    """Counts the non-view ATen operators dispatched while the mode is active.

    An operator is skipped when it only makes a view or is a no-op: it is a view operator
    (``view``, ``slice``, ``expand``, ``permute``, ``.to`` and ``.contiguous`` that return
    their input...) and every output shares storage with an input. A ``.to`` or
    ``.contiguous`` that copies counts, as does every in-place operator.

    Under ``torch.inference_mode`` composite operators (``conv2d``, ``linear``) are seen
    before they decompose, as one operator each: count inside inference mode.

    Attributes:
        count: operators counted.
        by_name: count per operator name (``aten.mul`` ...).
    """

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.by_name: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: D105
        out = func(*args, **(kwargs or {}))
        if func.is_view and _storages(out) <= _storages((args, kwargs)):
            return out
        self.count += 1
        self.by_name[str(func.overloadpacket)] += 1
        return out


def count_ops(fn: Callable[[], Any]) -> tuple[Any, OpCounter]:
    """Run ``fn()`` once under :class:`OpCounter`; return its result and the counter."""
    counter = OpCounter()
    with counter:
        result = fn()
    return result, counter
