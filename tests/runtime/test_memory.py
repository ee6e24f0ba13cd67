"""Peak memory on every device type (live tensors, allocator statistics), the opt-in run record, and
the memory report on a machine without CUDA."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import gpen_core.enhance as enhance_module
from gpen_core.enhance import Enhanced, enhance_images
from gpen_core.runtime.memory import LiveTensorPeak, PeakMeter, allocator_module, peak_memory
from gpen_core.runtime.report import RunRecord, memory_report
from helpers import REPO_ROOT


def test_live_tensor_peak_counts_only_new_storages():
    weights = torch.ones(1000, 1000)
    with LiveTensorPeak() as counter:
        view = weights[:10]  # a view of an old storage: free
        a = torch.ones(256, 256)  # 256 KiB
        b = a * 2  # another 256 KiB
        del a, b
        c = torch.ones(128, 128)  # 64 KiB, after both were freed
    assert counter.peak_bytes == 2 * 256 * 256 * 4
    assert counter.current_bytes == 128 * 128 * 4
    del view, c


def two_blocks() -> torch.Tensor:
    a = torch.ones(256, 256)
    return a * 2  # peak: both 256 KiB blocks


class FakeAllocator:
    """A ``torch.<type>`` memory API: 100 bytes allocated before, a peak of 1100 inside."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def synchronize(self, device=None) -> None:
        self.calls.append("synchronize")

    def memory_allocated(self, device=None) -> int:
        return 100

    def reset_peak_memory_stats(self, device=None) -> None:
        self.calls.append("reset")

    def max_memory_allocated(self, device=None) -> int:
        return 1100


def fake_allocator(monkeypatch, device_type: str) -> FakeAllocator:
    fake = FakeAllocator()
    module = getattr(torch, device_type)
    for name in ("synchronize", "memory_allocated", "reset_peak_memory_stats", "max_memory_allocated"):
        monkeypatch.setattr(module, name, getattr(fake, name))
    return fake


def test_cpu_counts_live_tensors():
    _, peak = peak_memory(two_blocks, torch.device("cpu"))
    assert peak == 2 * 256 * 256 * 4
    assert PeakMeter(torch.device("cpu")).method == "live tensors"


@pytest.mark.parametrize("device_type", ["mps", "privateuseone", "hpu"])
def test_devices_without_allocator_statistics_count_live_tensors(device_type):
    device = torch.device(device_type)
    assert allocator_module(device) is None  # torch.mps has no peak statistic; the others no module here
    with PeakMeter(device) as meter:
        two_blocks()
    assert meter.peak_bytes == 2 * 256 * 256 * 4
    assert meter.method == f"live tensors (torch keeps no peak-memory statistic for {device_type})"


@pytest.mark.parametrize("device_type", ["cuda", "xpu"])
def test_allocator_devices_use_the_allocator_peak(device_type, monkeypatch):
    fake = fake_allocator(monkeypatch, device_type)
    with PeakMeter(torch.device(device_type, 0)) as meter:
        pass
    assert meter.peak_bytes == 1000  # above what was allocated before
    assert meter.method == f"torch.{device_type}.max_memory_allocated"
    assert fake.calls == ["synchronize", "reset", "synchronize"]


def test_measure_is_opt_in(tiny_model, monkeypatch):
    def no_meter(device):
        raise AssertionError("measured without measure=True")

    monkeypatch.setattr(enhance_module, "PeakMeter", no_meter)
    with torch.inference_mode():
        out = enhance_images(tiny_model, torch.rand(1, 3, 64, 64))
    assert isinstance(out, torch.Tensor) and out.shape == (1, 3, 64, 64)


def test_measured_run_returns_a_record(tiny_model):
    images = torch.rand(2, 3, 64, 64)
    with torch.inference_mode():
        plain = enhance_images(tiny_model, images, batch_size=2)
        run = enhance_images(tiny_model, images, batch_size=2, measure=True)
        batch = images * 2 - 1
        _, forward_peak = peak_memory(lambda: tiny_model(batch), torch.device("cpu"))
    assert isinstance(run, Enhanced) and torch.equal(run.images, plain)
    record = run.record
    assert (record.device, record.peak_method, record.strategy, record.precision) == (
        "cpu", "live tensors", "whole image", "fp32")
    # the forward, plus the finiteness checks' boolean masks of the input and the output
    assert forward_peak <= record.peak_bytes <= forward_peak + 2 * images.numel()
    assert record.seconds > 0


@pytest.mark.parametrize("device_type", ["mps", "xpu"])
def test_enhance_runs_with_any_meter(tiny_model, monkeypatch, device_type):
    """The model runs on the CPU here; the meter is the one ``device_type`` gets (issue: AttributeError on mps)."""
    if device_type == "xpu":
        fake_allocator(monkeypatch, "xpu")
    monkeypatch.setattr(enhance_module, "PeakMeter", lambda device: PeakMeter(torch.device(device_type)))
    with torch.inference_mode():
        record = enhance_images(tiny_model, torch.rand(1, 3, 64, 64), tile_size=32, measure=True).record
    if device_type == "xpu":
        assert (record.peak_bytes, record.peak_method) == (1000, "torch.xpu.max_memory_allocated")
    else:
        assert record.peak_bytes > 0 and "no peak-memory statistic for mps" in record.peak_method


def test_report_without_cuda_never_raises(tiny_model, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    report = memory_report()
    assert report.device == "cpu"
    assert report.rss_bytes and report.rss_bytes > 0
    assert report.free_bytes and report.total_bytes and report.free_bytes <= report.total_bytes
    assert "Last GPEN run: none yet" in report.format()
    with torch.inference_mode():
        record = enhance_images(tiny_model, torch.rand(1, 3, 80, 80), tile_size=32, measure=True).record
    text = memory_report("cuda", last=record).format()  # asked for CUDA on a machine without it
    assert "CUDA is not available" in text
    assert "Last GPEN run: peak" in text and "(live tensors)" in text and "tiles of 32, fp32 on cpu" in text
    assert "no device memory figures for mps" in memory_report("mps").format()


def test_run_record_fields():
    assert list(RunRecord.__dataclass_fields__) == [
        "device", "peak_bytes", "peak_method", "seconds", "strategy", "precision", "whole_peak_bytes"]



def test_freed_host_memory_is_handed_back_through_malloc_trim(monkeypatch):
    from gpen_core.runtime import memory

    calls = []
    monkeypatch.setattr(memory, "_malloc_trim", lambda: lambda pad: calls.append(pad) or 1)
    memory.release_freed_host_memory()
    assert calls == [0]
    monkeypatch.setattr(memory, "_malloc_trim", lambda: None)  # another C library: nothing to call
    memory.release_freed_host_memory()
    assert calls == [0]


def test_malloc_trim_is_looked_up_on_first_use_not_at_import():
    """``find_library`` runs ``ldconfig``: importing the package (ComfyUI's start-up) must not wait for it."""
    script = (
        "import ctypes.util\n"
        "looked = []\n"
        "find = ctypes.util.find_library\n"
        "ctypes.util.find_library = lambda name: looked.append(name) or find(name)\n"
        "import gpen_core\n"
        "from gpen_core.runtime import memory\n"
        "assert looked == [], looked\n"
        "memory.release_freed_host_memory()\n"
        "memory.release_freed_host_memory()\n"
        "print(looked)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['c']"
