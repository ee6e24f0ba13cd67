"""The tensor checks every state dict goes through: dense and backed by its data, float dtypes (integers only in
a network's counters), finite values; each refusal names the file and the key."""
from __future__ import annotations

import pytest
import torch

from gpen_core.weight_checks import COUNTER_DTYPES, FLOAT_DTYPES, CheckpointError, check_storage, check_values


class NetworkError(CheckpointError):
    """A network's own subclass (as the detectors have)."""


def test_views_backed_by_their_data_pass():
    base = torch.arange(24.0)
    check_storage({"slice": base[4:10], "transposed": base.view(4, 6).t(), "strided": base[::3], "scalar": base[5]},
                  "f.pth")


@pytest.mark.parametrize(
    ("tensor", "message"),
    [
        (torch.zeros(1).expand(1000, 1000), r"f\.pth: tensor 'w' declares shape \(1000, 1000\) \(4000000 bytes\) but "
                                            r"only 4 bytes of data stand behind it: an expanded view"),
        (torch.arange(5.0).as_strided((3, 3), (1, 1)), r"declares shape \(3, 3\) \(36 bytes\) but only 20 bytes"),
        (torch.arange(8.0)[6:].as_strided((4,), (0,), 6), r"declares shape \(4,\) \(16 bytes\) but only 8 bytes"),
        (torch.empty(10, device="meta"), r"tensor 'w' is a meta tensor \(no data\)"),
        (torch.eye(3).to_sparse(), r"tensor 'w' is a torch\.sparse_coo tensor; weights must be dense"),
    ],
    ids=["expanded", "overlapping", "offset-expanded", "meta", "sparse"],
)
def test_tensors_without_their_data_are_refused(tensor, message):
    with pytest.raises(NetworkError, match=message):
        check_storage({"ok": torch.zeros(3), "w": tensor}, "f.pth", NetworkError)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_float_dtypes_pass(dtype):
    check_values({"w": torch.ones(3, dtype=dtype), "empty": torch.ones(0, dtype=dtype)}, "f.pth")


@pytest.mark.parametrize(
    "dtype", [torch.bool, torch.int64, torch.uint8, torch.complex64, torch.float8_e4m3fn, torch.float8_e5m2]
)
def test_other_dtypes_are_refused_with_the_key(dtype):
    name = str(dtype).removeprefix("torch.")
    with pytest.raises(CheckpointError, match=rf"f\.pth: tensor 'a\.weight' is {name}; weights must be float16, "
                                              r"bfloat16, float32, float64\. The file is not usable weights"):
        check_values({"a.bias": torch.zeros(2), "a.weight": torch.ones(2).to(dtype)}, "f.pth")


@pytest.mark.parametrize("dtype", COUNTER_DTYPES)
def test_integers_only_in_the_counters(dtype):
    counters = ("num_batches_tracked",)
    check_values({"bn.num_batches_tracked": torch.tensor(7, dtype=dtype)}, "f.pth", counters)
    with pytest.raises(CheckpointError, match=r"tensor 'bn\.running_mean' is .*; integers only in "
                                              r"num_batches_tracked"):
        check_values({"bn.running_mean": torch.zeros(4, dtype=dtype)}, "f.pth", counters)
    with pytest.raises(CheckpointError, match=r"tensor 'bn\.num_batches_tracked' is"):  # a network without counters
        check_values({"bn.num_batches_tracked": torch.tensor(7, dtype=dtype)}, "f.pth")


def test_a_bool_counter_is_refused():
    with pytest.raises(CheckpointError, match="tensor 'bn.num_batches_tracked' is bool"):
        check_values({"bn.num_batches_tracked": torch.tensor(True)}, "f.pth", ("num_batches_tracked",))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_the_first_non_finite_key_is_named_with_its_count(dtype, bad):
    values = torch.ones(1000, dtype=dtype)
    values[[3, 500, 999]] = bad
    later = torch.full((4,), bad, dtype=dtype)
    with pytest.raises(NetworkError, match=r"f\.pth: tensor 'b' holds 3 NaN or infinite value\(s\); the weights are "
                                           r"corrupt"):
        check_values({"a": torch.ones(5, dtype=dtype), "b": values, "c": later}, "f.pth", error=NetworkError)


def test_non_contiguous_non_finite_is_found():
    values = torch.ones(40, 30)
    values[17, 29] = float("nan")
    with pytest.raises(CheckpointError, match="holds 1 NaN"):
        check_values({"w": values.t()}, "f.pth")
