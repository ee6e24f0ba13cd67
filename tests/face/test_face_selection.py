"""Face selection: orders, index lists, size bounds and counts (unit cases, then the 1927 Solvay
photo with MTCNN: 29 faces)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from gpen_core.face.detection.api import detect_faces
from gpen_core.face.detection.detectors import MTCNNDetector
from gpen_core.face.detection.mtcnn import load_mtcnn_nets
from gpen_core.face.detection.result import FaceDetections
from gpen_core.face.detection.selection import (
    FACE_ORDERS,
    MAX_FACE_INDEX,
    FaceIndices,
    FaceSelection,
    order_faces,
    parse_face_indices,
    select_face_indices,
    select_faces,
)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", None),
        ("   ", None),
        (None, None),
        ("0", (0,)),
        ("0,2", (0, 2)),
        ("1-3", (1, 2, 3)),
        (" 4 , 0-1, 1 ", (0, 1, 4)),
        ("2-2", (2,)),
        ([3, 1, 3], (1, 3)),
        ([], None),
    ],
)
def test_parse_face_indices(text: str | list[int] | None, expected: tuple[int, ...] | None) -> None:
    assert expanded(parse_face_indices(text)) == expected


def expanded(indices: FaceIndices | None) -> tuple[int, ...] | None:
    """The indices one by one (small lists only): the meaning the ranges stand for."""
    return None if indices is None else tuple(i for first, last in indices.ranges for i in range(first, last + 1))


@pytest.mark.parametrize("text, message", [("a", "'a'"), ("0,,1", "''"), ("-1", "'-1'"), ("3-1", "reversed"),
                                           ("1.5", "'1.5'")])
def test_malformed_indices_name_the_item(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_face_indices(text)
    with pytest.raises(ValueError, match=message):
        FaceSelection(indices=text)


def test_selection_options_are_checked_and_normalised() -> None:
    assert FaceSelection("all").order == "score"  # saved workflows use "all"
    assert FaceSelection(indices="1-2").indices == FaceIndices(((1, 2),))
    with pytest.raises(ValueError, match="face order must be one of score, largest"):
        FaceSelection("biggest")
    with pytest.raises(ValueError, match="min_face_size"):
        FaceSelection(min_face_size=-1)
    with pytest.raises(ValueError, match="max_face_size"):
        FaceSelection(max_face_size=float("nan"))
    with pytest.raises(ValueError, match="below min_face_size"):
        FaceSelection(min_face_size=50, max_face_size=40)
    with pytest.raises(ValueError, match="max_faces"):
        FaceSelection(max_faces=-1)
    FaceSelection(min_face_size=50, max_face_size=0)  # 0 = no upper bound


def scripted(boxes: list[list[float]], scores: list[float], size: tuple[int, int] = (100, 200)) -> FaceDetections:
    box_tensor = torch.tensor(boxes, dtype=torch.float32)
    centres = (box_tensor[:, :2] + box_tensor[:, 2:]) / 2
    return FaceDetections(box_tensor, torch.tensor(scores), centres[:, None, :].repeat(1, 5, 1), size)


def test_orders_on_a_small_case_with_ties() -> None:
    # image 100 x 200 (H x W), centre (100, 50); faces 1 and 3 share centre x (ties keep score order)
    faces = scripted(
        [[0, 0, 20, 20], [90, 40, 110, 60], [120, 10, 180, 90], [95, 70, 105, 80]],
        [0.9, 0.8, 0.7, 0.95],
    )
    expected = {
        "score": [3, 0, 1, 2],
        "largest": [2, 0, 1, 3],
        "left_to_right": [0, 3, 1, 2],
        "right_to_left": [2, 3, 1, 0],
        "top_to_bottom": [0, 1, 2, 3],
        "center": [1, 3, 2, 0],
    }
    assert set(expected) == set(FACE_ORDERS)
    for order, indices in expected.items():
        assert order_faces(faces, order).tolist() == indices, order
    assert order_faces(FaceDetections.empty((10, 20)), "center").numel() == 0


def test_steps_apply_in_documented_order(caplog: pytest.LogCaptureFixture) -> None:
    # box sides 20, 20, 80, 10: size bounds first, then order, then indices, then max_faces
    faces = scripted(
        [[0, 0, 20, 20], [90, 40, 110, 60], [120, 10, 180, 90], [95, 70, 105, 80]],
        [0.9, 0.8, 0.7, 0.95],
    )
    assert select_face_indices(faces, FaceSelection(min_face_size=20, max_face_size=20)).tolist() == [0, 1]
    assert select_face_indices(faces, FaceSelection("largest", indices="1-2")).tolist() == [0, 1]
    assert select_face_indices(faces, FaceSelection("largest", indices="1-2", max_faces=1)).tolist() == [0]
    assert select_face_indices(faces, FaceSelection("largest", indices="0", min_face_size=15)).tolist() == [2]
    assert select_face_indices(faces, FaceSelection(max_faces=0)).tolist() == [3, 0, 1, 2]  # 0 = no limit
    with caplog.at_level(logging.WARNING, logger="gpen_core.face.detection.selection"):
        picked = select_faces(faces, FaceSelection("score", indices="2,5,9-10"))
    assert picked.scores.tolist() == pytest.approx([0.8])
    assert "5,9,10 skipped" in caplog.text and "only 4 face(s)" in caplog.text
    assert len(select_faces(FaceDetections.empty((10, 10)), FaceSelection(indices="0"))) == 0


# ---- index lists are ranges: bounded cost, bounded messages, the same selection as the expanded set ----


def test_huge_ranges_cost_nothing_and_the_warning_stays_short(caplog: pytest.LogCaptureFixture) -> None:
    faces = scripted([[0, 0, 20, 20], [90, 40, 110, 60], [120, 10, 180, 90]], [0.9, 0.8, 0.7])
    selection = FaceSelection(indices="1-1000000000")
    assert selection.indices == FaceIndices(((1, 1_000_000_000),))
    with caplog.at_level(logging.WARNING, logger="gpen_core.face.detection.selection"):
        assert select_face_indices(faces, selection).tolist() == [1, 2]
    assert caplog.messages == ["face indices 3-1000000000 skipped: only 3 face(s) in score order after the size bounds"]
    caplog.clear()
    many = ",".join(f"{10 * i}-{10 * i + 5}" for i in range(1, 999))  # 998 ranges past the faces
    with caplog.at_level(logging.WARNING, logger="gpen_core.face.detection.selection"):
        assert select_face_indices(faces, FaceSelection(indices="0," + many)).tolist() == [0]
    assert caplog.messages == [
        "face indices 10-15,20-25,30-35,40-45,50-55,60-65,70-75,80-85 and 990 more range(s) skipped: "
        "only 3 face(s) in score order after the size bounds"
    ]
    assert FaceSelection(indices=f"0-{MAX_FACE_INDEX}").indices == FaceIndices(((0, MAX_FACE_INDEX),))


@pytest.mark.parametrize("indices, message", [
    (f"0-{MAX_FACE_INDEX + 1}", f"'0-{MAX_FACE_INDEX + 1}' is above the largest index {MAX_FACE_INDEX}"),
    ("1" * 5000, r"'11111.*\(5002 characters\) is above the largest index"),  # never int() of 5000 digits
    (",".join(["0"] * 1001), "1001 items, more than 1000"),
    ([0, MAX_FACE_INDEX + 1], f"must be in \\[0, {MAX_FACE_INDEX}\\]; got \\[{MAX_FACE_INDEX + 1}\\]"),
    ([-1], r"must be in \[0, .*got \[-1\]"),
])
def test_index_lists_beyond_the_documented_maximum_are_refused(indices: str | list[int], message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        FaceSelection(indices=indices)
    assert len(str(info.value)) < 200  # the message is one short line, whatever the input's length


def test_leading_zeros_are_not_a_large_number() -> None:
    assert FaceSelection(indices="0000000000002-003").indices == FaceIndices(((2, 3),))


def test_face_indices_refuses_ranges_that_are_not_merged() -> None:
    with pytest.raises(ValueError, match="build them with FaceIndices.merged"):
        FaceIndices(((3, 5), (1, 2)))
    with pytest.raises(ValueError, match="build them with FaceIndices.merged"):
        FaceIndices(((1, 2), (3, 5)))  # touching: one range
    assert FaceIndices.merged([(3, 5), (1, 2), (4, 9)]) == FaceIndices(((1, 9),))


small_ranges = st.lists(st.tuples(st.integers(0, 30), st.integers(0, 6)), min_size=1, max_size=6)
"""Index lists as (first, length - 1) pairs: every range ends at most at index 36."""


def range_text(pairs: list[tuple[int, int]], spaces: bool) -> str:
    items = [str(first) if extra == 0 else f"{first}-{first + extra}" for first, extra in pairs]
    return (" , " if spaces else ",").join(items)


@settings(deadline=None)
@given(pairs=small_ranges, spaces=st.booleans())
def test_parsed_ranges_hold_exactly_the_expanded_set(pairs: list[tuple[int, int]], spaces: bool) -> None:
    parsed = parse_face_indices(range_text(pairs, spaces))
    wanted = sorted({i for first, extra in pairs for i in range(first, first + extra + 1)})
    assert expanded(parsed) == tuple(wanted)
    assert parse_face_indices(wanted) == parsed == parse_face_indices(parsed)  # ints and ranges: one value
    for count in range(0, 40, 3):
        assert parsed is not None
        assert parsed.below(count) == [i for i in wanted if i < count]
        rest = parsed.at_or_above(count)
        assert expanded(rest) == (tuple(i for i in wanted if i >= count) or None)


@settings(max_examples=150, deadline=None)
@given(
    pairs=small_ranges,
    scores=st.lists(st.floats(0.01, 1.0), min_size=0, max_size=12),
    order=st.sampled_from(FACE_ORDERS),
    max_faces=st.integers(0, 5),
    min_side=st.sampled_from([0.0, 12.0]),
)
def test_selection_by_ranges_equals_selection_by_the_expanded_set(
    pairs: list[tuple[int, int]], scores: list[float], order: str, max_faces: int, min_side: float
) -> None:
    """The old semantics, written out with a set: kept in the order's sequence, ascending index."""
    boxes = [[37.0 * i % 180, 13.0 * i % 80, 37.0 * i % 180 + 5 + 3 * i, 13.0 * i % 80 + 8 + i] for i in
             range(len(scores))]
    faces = scripted(boxes, scores) if scores else FaceDetections.empty((100, 200))
    selection = FaceSelection(order, range_text(pairs, False), min_face_size=min_side, max_faces=max_faces)
    chosen = {i for first, extra in pairs for i in range(first, first + extra + 1)}
    ordered = select_face_indices(faces, FaceSelection(order, min_face_size=min_side)).tolist()
    expected = [face for position, face in enumerate(ordered) if position in chosen]
    assert select_face_indices(faces, selection).tolist() == (expected[:max_faces] if max_faces else expected)


# ---- the 1927 Solvay conference photo: 29 faces ----


@pytest.fixture(scope="module")
def solvay(photos_dir: Path, mtcnn_weights_dir: Path) -> tuple[MTCNNDetector, torch.Tensor, FaceDetections]:
    detector = MTCNNDetector(load_mtcnn_nets(mtcnn_weights_dir))
    image = torch.from_numpy(np.array(Image.open(photos_dir / "solvay-1927.png").convert("RGB"))).permute(2, 0, 1)
    faces = detect_faces(detector, image)
    assert len(faces) == 29
    return detector, image, faces


def rows(faces: FaceDetections) -> list[tuple[float, ...]]:
    return [tuple(row) for row in torch.cat([faces.boxes, faces.scores[:, None]], dim=1).tolist()]


def is_sorted(values: torch.Tensor, descending: bool = False) -> bool:
    steps = values[1:] - values[:-1]
    return bool((steps <= 0).all()) if descending else bool((steps >= 0).all())


def test_each_order_is_a_permutation_consistent_with_the_boxes(solvay) -> None:
    _, _, faces = solvay
    height, width = faces.image_size
    for order in FACE_ORDERS:
        ordered = select_faces(faces, FaceSelection(order))
        assert sorted(rows(ordered)) == sorted(rows(faces)), order  # every face exactly once
        centres = (ordered.boxes[:, :2] + ordered.boxes[:, 2:]) / 2
        key, descending = {
            "score": (ordered.scores, True),
            "largest": (ordered.box_areas, True),
            "left_to_right": (centres[:, 0], False),
            "right_to_left": (centres[:, 0], True),
            "top_to_bottom": (centres[:, 1], False),
            "center": (torch.hypot(centres[:, 0] - width / 2, centres[:, 1] - height / 2), False),
        }[order]
        assert is_sorted(key, descending), order
    # the orders really differ on this photo (no order is the identity of another)
    sequences = {tuple(order_faces(faces, order).tolist()) for order in FACE_ORDERS}
    assert len(sequences) == len(FACE_ORDERS)
    assert torch.equal(order_faces(faces, "all"), order_faces(faces, "score"))


@pytest.mark.parametrize("order", ["largest", "left_to_right", "center"])
@pytest.mark.parametrize("text, positions", [("0", [0]), ("0,2", [0, 2]), ("1-3", [1, 2, 3]), ("28", [28]),
                                             ("5, 10-11, 27", [5, 10, 11, 27])])
def test_index_lists_pick_exactly_those_faces(solvay, order: str, text: str, positions: list[int]) -> None:
    _, _, faces = solvay
    ordered = rows(select_faces(faces, FaceSelection(order)))
    picked = rows(select_faces(faces, FaceSelection(order, indices=text)))
    assert picked == [ordered[p] for p in positions]


def test_index_beyond_the_faces_is_skipped_and_logged(solvay, caplog: pytest.LogCaptureFixture) -> None:
    _, _, faces = solvay
    with caplog.at_level(logging.WARNING, logger="gpen_core.face.detection.selection"):
        picked = select_faces(faces, FaceSelection("left_to_right", indices="27-31"))
    ordered = rows(select_faces(faces, FaceSelection("left_to_right")))
    assert rows(picked) == ordered[27:29]
    assert "29,30,31 skipped" in caplog.text


def test_size_bounds_filter_by_box_side(solvay) -> None:
    detector, image, faces = solvay
    sides = torch.maximum(faces.boxes[:, 2] - faces.boxes[:, 0], faces.boxes[:, 3] - faces.boxes[:, 1])
    low, high = float(sides.quantile(0.25)), float(sides.quantile(0.75))
    for bounds in [(low, 0.0), (0.0, high), (low, high), (float(sides.max()), 0.0), (0.0, float(sides.min()))]:
        kept = select_faces(faces, FaceSelection(min_face_size=bounds[0], max_face_size=bounds[1]))
        expected = [
            r for r, side in zip(rows(faces), sides.tolist(), strict=True)
            if side >= bounds[0] and (bounds[1] == 0 or side <= bounds[1])
        ]
        assert rows(kept) == expected, bounds
        assert 0 < len(kept) < len(faces), bounds
    assert len(select_faces(faces, FaceSelection(min_face_size=low, max_face_size=high))) >= 14
    # through detect_faces (where MTCNN also starts its pyramid at half the minimum): the bounds hold
    bounded = FaceSelection("largest", min_face_size=low, max_face_size=high)
    through_api = detect_faces(detector, image, selection=bounded)
    api_sides = through_api.box_sizes
    assert len(through_api) >= 5 and bool((api_sides >= low).all()) and bool((api_sides <= high).all())
    assert is_sorted(through_api.box_areas, descending=True)
