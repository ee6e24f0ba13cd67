"""greedy_nms against a plain loop written after torchvision's CPU kernel, and against a
brute-force (one row of overlaps per kept box) version of it on thousands of boxes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gpen_core.face.detection import nms
from gpen_core.face.detection.nms import greedy_nms, strict_threshold_in_dtype
from gpen_core.tools.bench_nms import nms_boxes


def loop_nms(
    boxes: np.ndarray, scores: np.ndarray, threshold: float, overlap: str = "iou", offset: float = 0.0
) -> list[int]:
    """Unvectorised greedy NMS in float32 with a float64 threshold comparison, stable order."""
    boxes = boxes.astype(np.float32)
    order = sorted(range(len(scores)), key=lambda i: -float(scores[i]))  # sorted() is stable
    one = np.float32(offset)
    areas = [(b[2] - b[0] + one) * (b[3] - b[1] + one) for b in boxes]
    suppressed = [False] * len(boxes)
    keep: list[int] = []
    for rank, i in enumerate(order):
        if suppressed[i]:
            continue
        keep.append(i)
        for j in order[rank + 1 :]:
            if suppressed[j]:
                continue
            w = max(np.float32(0), min(boxes[i, 2], boxes[j, 2]) - max(boxes[i, 0], boxes[j, 0]) + one)
            h = max(np.float32(0), min(boxes[i, 3], boxes[j, 3]) - max(boxes[i, 1], boxes[j, 1]) + one)
            inter = np.float32(w * h)
            if overlap == "iou":
                value = inter / np.float32(areas[i] + areas[j] - inter)
            else:
                value = inter / min(areas[i], areas[j])
            if float(value) > threshold:
                suppressed[j] = True
    return keep


def brute_force_nms(
    boxes: np.ndarray, scores: np.ndarray, threshold: float, overlap: str = "iou", offset: float = 0.0
) -> list[int]:
    """The greedy loop with the inner loop as one numpy row: each kept box against every later
    box, in the boxes' dtype and torchvision's operation order; no pruning of any kind."""
    order = sorted(range(len(scores)), key=lambda i: -float(scores[i]))  # stable
    ranked = boxes[order]
    one = ranked.dtype.type(offset)
    areas = (ranked[:, 2] - ranked[:, 0] + one) * (ranked[:, 3] - ranked[:, 1] + one)
    suppressed = np.zeros(len(order), dtype=bool)
    keep: list[int] = []
    with np.errstate(invalid="ignore", divide="ignore"):
        for rank in range(len(order)):
            if suppressed[rank]:
                continue
            keep.append(order[rank])
            rest = ranked[rank + 1 :]
            w = np.maximum(np.minimum(ranked[rank, 2], rest[:, 2]) - np.maximum(ranked[rank, 0], rest[:, 0]) + one, 0)
            h = np.maximum(np.minimum(ranked[rank, 3], rest[:, 3]) - np.maximum(ranked[rank, 1], rest[:, 1]) + one, 0)
            inter = w * h
            if overlap == "iou":
                value = inter / (areas[rank] + areas[rank + 1 :] - inter)
            else:
                value = inter / np.minimum(areas[rank], areas[rank + 1 :])
            suppressed[rank + 1 :] |= value.astype(np.float64) > threshold
    return keep


def random_boxes(
    count: int, seed: int, tie_fraction: float = 0.2, canvas: float = 200.0
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, canvas, size=(count, 2))
    sizes = rng.uniform(5, 60, size=(count, 2))
    boxes = np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=1).astype(np.float32)
    scores = rng.uniform(0, 1, size=count).astype(np.float32)
    tied = rng.random(count) < tie_fraction
    scores[tied] = np.float32(0.5)
    return boxes, scores


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_iou_nms_matches_loop(seed: int, threshold: float) -> None:
    boxes, scores = random_boxes(300, seed)
    expected = loop_nms(boxes, scores, threshold)
    kept = greedy_nms(torch.from_numpy(boxes), torch.from_numpy(scores), threshold, block_size=64)
    assert kept.tolist() == expected
    assert 0 < len(expected) < 300  # the case is not trivial


@pytest.mark.parametrize("seed", [3, 4])
def test_min_overlap_with_pixel_offset_matches_loop(seed: int) -> None:
    boxes, scores = random_boxes(200, seed)
    expected = loop_nms(boxes, scores, 0.7, overlap="min", offset=1.0)
    kept = greedy_nms(torch.from_numpy(boxes), torch.from_numpy(scores), 0.7, overlap="min", pixel_offset=1.0)
    assert kept.tolist() == expected
    plain = greedy_nms(torch.from_numpy(boxes), torch.from_numpy(scores), 0.7)
    assert kept.tolist() != plain.tolist()  # the flavour actually changes the result here


def test_block_size_does_not_change_result() -> None:
    boxes, scores = random_boxes(700, 7)
    reference = greedy_nms(torch.from_numpy(boxes), torch.from_numpy(scores), 0.4, block_size=4096)
    for block_size in (1, 37, 512):
        assert torch.equal(
            greedy_nms(torch.from_numpy(boxes), torch.from_numpy(scores), 0.4, block_size=block_size),
            reference,
        )


def test_suppressed_box_does_not_suppress() -> None:
    # a overlaps b (IoU 0.6), b overlaps c (IoU 0.6), a and c barely overlap: keep a and c.
    boxes = torch.tensor([[0, 0, 10, 10], [2.5, 0, 12.5, 10], [5, 0, 15, 10]], dtype=torch.float32)
    scores = torch.tensor([0.9, 0.8, 0.7])
    assert greedy_nms(boxes, scores, 0.4).tolist() == [0, 2]


def test_threshold_is_strict_and_compared_in_float64() -> None:
    # IoU = 40 / 100 = float32(0.4) = 0.4000000059604645 > 0.4 (float64): suppressed, as in
    # torchvision, whose kernel compares the float overlap with a double threshold.
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 4]], dtype=torch.float32)
    scores = torch.tensor([0.9, 0.8])
    assert greedy_nms(boxes, scores, 0.4).tolist() == [0]
    # IoU = 50 / 100 = 0.5 exactly: not strictly greater, kept.
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 5]], dtype=torch.float32)
    assert greedy_nms(boxes, scores, 0.5).tolist() == [0, 1]


def test_strict_threshold_in_dtype() -> None:
    for threshold in (0.4, 0.5, 0.7, 1 / 3):
        value = strict_threshold_in_dtype(threshold, torch.float32, torch.device("cpu"))
        assert float(value) <= threshold
        above = torch.nextafter(value, torch.tensor(1.0))
        assert float(above) > threshold


def test_empty_and_bad_input() -> None:
    assert greedy_nms(torch.zeros((0, 4)), torch.zeros(0), 0.5).numel() == 0
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        greedy_nms(torch.zeros((3, 5)), torch.zeros(3), 0.5)
    with pytest.raises(ValueError, match="scores"):
        greedy_nms(torch.zeros((3, 4)), torch.zeros(2), 0.5)


def test_brute_force_reference_matches_the_loop() -> None:
    boxes, scores = random_boxes(300, 5)
    assert brute_force_nms(boxes, scores, 0.4) == loop_nms(boxes, scores, 0.4)
    assert brute_force_nms(boxes, scores, 0.7, "min", 1.0) == loop_nms(boxes, scores, 0.7, "min", 1.0)


@pytest.mark.parametrize(
    "canvas, threshold, overlap, offset",
    [
        (2000.0, 0.4, "iou", 0.0),  # spread out: most boxes survive (the worst case of the old NMS)
        (200.0, 0.4, "iou", 0.0),  # crowded: most are suppressed, many pairs intersect
        (600.0, 0.7, "min", 1.0),  # MTCNN's O-Net flavour
    ],
)
def test_thousands_of_boxes_match_brute_force(
    canvas: float, threshold: float, overlap: str, offset: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    boxes, scores = random_boxes(5000, 11, tie_fraction=0.05, canvas=canvas)
    expected = brute_force_nms(boxes, scores, threshold, overlap, offset)
    assert 100 < len(expected) < 4900

    def run() -> list[int]:
        kept = greedy_nms(torch.from_numpy(boxes), torch.from_numpy(scores), threshold,
                          overlap=overlap, pixel_offset=offset)  # type: ignore[arg-type]
        return kept.tolist()

    assert run() == expected  # as it chooses between its two passes
    # one box at a time all the way, and (almost) all boxes by the all-pairs pass
    monkeypatch.setattr(nms, "_LOOP_OVERHEAD", -math.inf)
    assert run() == expected
    monkeypatch.setattr(nms, "_LOOP_OVERHEAD", math.inf)
    monkeypatch.setattr(nms, "_CHECK_EVERY", 1)
    assert run() == expected


def test_clustered_boxes_match_brute_force() -> None:
    """Jittered copies of a few face boxes, like a detector's raw output."""
    boxes, scores = nms_boxes(3000, "clustered", seed=3)
    expected = brute_force_nms(boxes.numpy(), scores.numpy(), 0.4)
    assert greedy_nms(boxes, scores, 0.4).tolist() == expected
    assert 20 < len(expected) < 200


def test_boxes_in_a_column_are_swept_along_y() -> None:
    """All boxes share their x range, so the sweep goes along y; decisions are unchanged."""
    boxes, scores = random_boxes(2000, 12, canvas=2000.0)
    boxes[:, [0, 2]] = np.array([10.0, 50.0], dtype=np.float32)
    order = nms._Sweep.build(boxes, 0.0).order
    assert np.array_equal(order, np.argsort(boxes[:, 1], kind="stable"))
    expected = brute_force_nms(boxes, scores, 0.4)
    assert greedy_nms(torch.from_numpy(boxes), torch.from_numpy(scores), 0.4).tolist() == expected


def test_wide_windows_are_split_into_column_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    boxes, scores = random_boxes(400, 13, canvas=100.0)
    expected = loop_nms(boxes, scores, 0.5)
    monkeypatch.setattr(nms, "_COLUMN_CHUNK", 7)
    for block_size in (1, 5, 64):
        kept = greedy_nms(torch.from_numpy(boxes), torch.from_numpy(scores), 0.5, block_size=block_size)
        assert kept.tolist() == expected


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_other_dtypes_decide_in_their_own_precision(dtype: torch.dtype) -> None:
    boxes, scores = random_boxes(1500, 14, canvas=500.0)
    typed = torch.from_numpy(boxes).to(dtype)
    expected = brute_force_nms(typed.numpy(), scores, 0.4)
    assert greedy_nms(typed, torch.from_numpy(scores), 0.4).tolist() == expected


def test_touching_and_degenerate_boxes() -> None:
    # touching edges (no overlap), a zero-area box, an inverted box, a NaN box, identical boxes
    boxes = torch.tensor(
        [[0, 0, 10, 10], [10, 0, 20, 10], [5, 5, 5, 5], [8, 8, 2, 2], [0, 0, float("nan"), 10], [0, 0, 10, 10]],
        dtype=torch.float32,
    )
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    expected = loop_nms(boxes.numpy(), scores.numpy(), 0.0)
    assert greedy_nms(boxes, scores, 0.0).tolist() == expected == [0, 1, 2, 3, 4]


def test_bad_threshold_and_block_size() -> None:
    with pytest.raises(ValueError, match="threshold must be >= 0"):
        greedy_nms(torch.zeros((2, 4)), torch.zeros(2), -0.1)
    with pytest.raises(ValueError, match="block_size"):
        greedy_nms(torch.zeros((2, 4)), torch.zeros(2), 0.5, block_size=0)
