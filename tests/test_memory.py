"""Live-tensor peak counting, and the memory report on a machine without CUDA."""
from __future__ import annotations

import torch

from gpen_core.enhance import enhance_images
from gpen_core.runtime.memory import LiveTensorPeak
from gpen_core.runtime.report import memory_report


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


def test_report_without_cuda_never_raises(tiny_model, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    report = memory_report()
    assert report.device == "cpu"
    assert report.rss_bytes and report.rss_bytes > 0
    assert report.free_bytes and report.total_bytes and report.free_bytes <= report.total_bytes
    with torch.inference_mode():
        enhance_images(tiny_model, torch.rand(1, 3, 80, 80), tile_size=32)
    text = memory_report("cuda").format()  # asked for CUDA on a machine without it
    assert "CUDA is not available" in text
    assert "Last GPEN run: peak" in text and "tiles of 32" in text
