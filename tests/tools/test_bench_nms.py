"""The NMS benchmark table (``bench --nms``): its layouts and rows."""
from __future__ import annotations

import pytest
import torch

from gpen_core.face.detection.nms import greedy_nms
from gpen_core.tools.bench_nms import HEADER, LAYOUTS, nms_boxes, nms_rows


def test_layouts_differ_as_documented() -> None:
    kept = {}
    for layout in LAYOUTS:
        boxes, scores = nms_boxes(1000, layout)
        assert boxes.shape == (1000, 4) and scores.shape == (1000,) and boxes.dtype == torch.float32
        assert bool((boxes[:, 2:] > boxes[:, :2]).all())
        kept[layout] = greedy_nms(boxes, scores, 0.4).numel()
    assert kept["spread"] > 800 > kept["crowded"] > 100 > kept["clustered"]
    with pytest.raises(ValueError, match="layout"):
        nms_boxes(10, "diagonal")


def test_rows_report_what_nms_keeps() -> None:
    rows = nms_rows((300,), repeat=1)
    assert len(rows) == len(LAYOUTS) and HEADER.split()[:4] == ["boxes", "layout", "threshold", "kept"]
    for row, layout in zip(rows, LAYOUTS, strict=True):
        count, name, threshold, kept, wall_ms, cpu_ms = row.split()
        boxes, scores = nms_boxes(300, layout)
        assert (int(count), name, float(threshold)) == (300, layout, 0.4)
        assert int(kept) == greedy_nms(boxes, scores, 0.4).numel()
        assert float(wall_ms) >= 0 and float(cpu_ms) >= 0
