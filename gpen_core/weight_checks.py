"""The checks every state dict goes through, whatever the network (GPEN, detectors, parser), and their error.

The file itself is checked before it is unpickled (:mod:`gpen_core.file_checks`). Then, on the tensors
read (:func:`gpen_core.weights.read_state`, :meth:`gpen_core.network_entry.WeightsFile.load`):

1. :func:`check_storage`: every tensor is dense and its storage holds every element its shape declares.
   An expanded view (one number "expanded" to a 13 GB shape, 5 KB on disk) is refused before any code
   computes with it or builds a network of its shapes.
2. :func:`check_values`: floating dtypes only, integers only in the network's counters; finite values.
   Checked once, at load; never on each forward.
3. the network's shapes against the file's, on the ``meta`` device (no memory), before the real network
   is allocated (:func:`gpen_core.weights.build_checked`).

Every check raises :class:`CheckpointError` (or the subclass the caller passes) naming the file and the key.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch


class CheckpointError(ValueError):
    """A weights file cannot be used; the message names the file, the cause and, for a tensor, its key."""


FLOAT_DTYPES: tuple[torch.dtype, ...] = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
"""Dtypes a weight may have. bool, integers, complex and the float8 formats are refused: loaded into a
float network they become other numbers (a bool generator turns every face white)."""

BATCHNORM_COUNTER = "num_batches_tracked"
"""BatchNorm's step count: an int64 buffer that eval mode never reads, absent from some files (RetinaFace, ParseNet)."""

COUNTER_DTYPES: tuple[torch.dtype, ...] = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)
"""Dtypes also accepted in a network's counters: the keys it declares integer (BatchNorm's
``num_batches_tracked``, an int64 step count that eval mode never reads)."""

def check_storage(state: Mapping[str, torch.Tensor], name: str, error: type[CheckpointError] = CheckpointError) -> None:
    """Refuse tensors that are not dense, or whose storage holds fewer bytes than their shape declares
    (expanded views: e.g. one number viewed as a (65536, 65536) weight with stride 0). Reads shapes,
    strides and storage sizes only: nothing is allocated.

    Raises:
        CheckpointError (``error``): naming the first such key, its shape and the bytes behind it.
    """
    for key, tensor in state.items():
        if tensor.layout != torch.strided or tensor.is_meta:
            kind = "a meta tensor (no data)" if tensor.is_meta else f"a {tensor.layout} tensor"
            raise error(f"{name}: tensor {key!r} is {kind}; weights must be dense tensors. Refused")
        declared = tensor.numel() * tensor.element_size()
        held = tensor.untyped_storage().nbytes() - tensor.storage_offset() * tensor.element_size()
        if declared > held:
            raise error(
                f"{name}: tensor {key!r} declares shape {tuple(tensor.shape)} ({declared} bytes) but only {held} "
                "bytes of data stand behind it: an expanded view, not stored weights. Refused before building "
                "the network"
            )


def check_values(
    state: Mapping[str, torch.Tensor],
    name: str,
    counters: Sequence[str] = (),
    error: type[CheckpointError] = CheckpointError,
) -> None:
    """Refuse non-float weights and non-finite values.

    Args:
        state: tensors already through :func:`check_storage`.
        name: the file (for the message).
        counters: key suffixes whose tensors may also be integers (:data:`COUNTER_DTYPES`), e.g.
            ``("num_batches_tracked",)`` for networks with BatchNorm.
        error: the :class:`CheckpointError` subclass to raise.

    Raises:
        CheckpointError (``error``): the first key with a refused dtype; the first key holding NaN or inf,
            with the count of such values in it.
    """
    for key, tensor in state.items():
        if tensor.dtype in FLOAT_DTYPES or (tensor.dtype in COUNTER_DTYPES and key.endswith(tuple(counters))):
            continue
        allowed = ", ".join(str(d).removeprefix("torch.") for d in FLOAT_DTYPES)
        integers = f"; integers only in {', '.join(counters)}" if counters else ""
        raise error(
            f"{name}: tensor {key!r} is {str(tensor.dtype).removeprefix('torch.')}; weights must be {allowed}"
            f"{integers}. The file is not usable weights (converted wrongly or crafted); refused"
        )
    for key, tensor in state.items():
        if not tensor.is_floating_point() or tensor.numel() == 0:
            continue
        low, high = torch.aminmax(tensor)  # NaN propagates, inf is an extreme: no tensor-sized temporary
        if not bool(torch.isfinite(low) & torch.isfinite(high)):
            bad = int((~torch.isfinite(tensor)).sum())
            raise error(
                f"{name}: tensor {key!r} holds {bad} NaN or infinite value(s); the weights are corrupt (or were "
                "saved from a diverged training run). Download the file again"
            )
