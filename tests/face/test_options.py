"""The typed options check every value in their constructors, with a message naming the input."""
from __future__ import annotations

import math

import pytest

from gpen_core.face.detection.selection import FaceSelection
from gpen_core.face.options import DetectOptions, PasteOptions, RestoreOptions, TrackOptions
from gpen_core.run_options import RunOptions

NAN = math.nan


@pytest.mark.parametrize("make, message", [
    (lambda: TrackOptions(NAN), "landmark_smoothing .* must be a number"),
    (lambda: TrackOptions(-0.1), r"landmark_smoothing .* must be in \[0, 0.95\]"),
    (lambda: TrackOptions(1.0), r"landmark_smoothing .* must be in \[0, 0.95\]"),
    (lambda: RunOptions(batch_size=0), r"batch_size .* must be in \[1, inf\]"),
    (lambda: RunOptions(batch_size=-1), r"batch_size .* must be in \[1, inf\]"),
    (lambda: RunOptions(tile_size=8), "tile_size must be 0 .* or at least 16"),
    (lambda: RunOptions(tile_size="64"), "tile_size .* must be an integer"),  # type: ignore[arg-type]
    (lambda: RunOptions(overlap=-2), r"overlap .* must be in \[-1, inf\]"),
    (lambda: RunOptions(tile_size=None, overlap=2), "overlap cuts the halos of tiles"),
    (lambda: RunOptions(memory_budget=0), r"memory_budget .* must be in \[1, inf\]"),
    (lambda: RunOptions(recompute="yes"), "recompute must be True or False"),  # type: ignore[arg-type]
    (lambda: PasteOptions(fidelity=NAN), "fidelity must be a number"),
    (lambda: PasteOptions(fidelity=1.5), r"fidelity must be in \[0, 1\]"),
    (lambda: PasteOptions(upscale_factor=0.5), r"upscale_factor must be in \[1, 8\]"),
    (lambda: PasteOptions(mask="ellipse"), "mask must be one of 'auto', 'parse', 'box'"),
    (lambda: PasteOptions(color_match="rgb"), "color_match must be one of"),
    (lambda: PasteOptions(parser_precision="fp64"), "parser_precision must be one of"),
    (lambda: PasteOptions(keep_grey=1), "keep_grey must be True or False"),  # type: ignore[arg-type]
    (lambda: DetectOptions(score_threshold=NAN), "score_threshold .* must be a number"),
    (lambda: DetectOptions(score_threshold=1.0), r"score_threshold .* must be in \[0, 0.999\]"),
    (lambda: FaceSelection(min_face_size=NAN), "min_face_size must be >= 0"),
    (lambda: FaceSelection(max_faces=-1), "max_faces must be >= 0"),
    (lambda: RestoreOptions(chunk_frames=0), r"chunk_frames .* must be in \[1, inf\]"),
])
def test_a_wrong_value_is_refused_naming_the_input(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_options_of_the_wrong_kind_are_refused():
    with pytest.raises(TypeError, match="paste must be a PasteOptions; got DetectOptions"):
        RestoreOptions(paste=DetectOptions())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="selection must be a FaceSelection"):
        DetectOptions(selection="largest")  # type: ignore[arg-type]


def test_one_meaning_per_value():
    assert RunOptions().core_tile_size == "auto" and RunOptions(tile_size=None).core_tile_size is None
    assert RunOptions().core_overlap is None and RunOptions(tile_size=64, overlap=0).core_overlap == 0
    assert RunOptions(overlap=2).core_overlap == 2  # automatic tiles may cut halos
    assert DetectOptions().threshold is None and DetectOptions(0.5).threshold == 0.5
