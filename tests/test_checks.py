"""The one-line input checks: what passes, and the message of what does not."""
from __future__ import annotations

import pytest
import torch

from gpen_core.checks import check_choice, check_flag, check_image, check_range, check_shape, image_as_float


def test_shape_accepts_symbols_numbers_and_alternatives():
    check_shape(torch.zeros(2, 3, 4, 5), ["B", "3", "H", "W"], "x")
    check_shape(torch.zeros(1, 4, 2, 2), ["B", "1|2|3|4", "H", "W"], "x")


@pytest.mark.parametrize(
    ("value", "dims", "expected"),
    [
        (torch.zeros(3, 4, 5), ["B", "3", "H", "W"], r"images must have shape \(B, 3, H, W\), got \(3, 4, 5\)"),
        (torch.zeros(1, 5, 4, 4), ["B", "1|2|3|4", "H", "W"], r"got \(1, 5, 4, 4\)"),
        ([1, 2], ["B"], r"got list"),
    ],
)
def test_shape_message_names_input_and_shapes(value, dims, expected):
    with pytest.raises(ValueError, match=expected):
        check_shape(value, dims, "images")


def test_shape_hint_is_appended():
    with pytest.raises(ValueError, match="; use image.permute"):
        check_shape(torch.zeros(4, 4, 3), ["3", "H", "W"], "image", hint="use image.permute(2, 0, 1)")


def test_choice_lists_the_choices():
    check_choice("a", ("a", "b"), "mode")
    with pytest.raises(ValueError, match=r"mode must be one of 'a', 'b'; got 'c'"):
        check_choice("c", ("a", "b"), "mode")


@pytest.mark.parametrize(("value", "message"), [(1.5, r"\[0, 1\]; got 1.5"), (float("nan"), "a number"),
                                                 ("x", "a number"), (True, "a number")])
def test_range_rejects(value, message):
    with pytest.raises(ValueError, match=message):
        check_range(value, 0.0, 1.0, "fidelity")


def test_range_open_bounds_and_integers():
    check_range(10**9, 1, None, "repeat", integer=True)
    with pytest.raises(ValueError, match=r"repeat must be in \[1, inf\]; got 0"):
        check_range(0, 1, None, "repeat", integer=True)
    with pytest.raises(ValueError, match="repeat must be an integer; got 1.5"):
        check_range(1.5, 1, None, "repeat", integer=True)


def test_flag_check_refuses_anything_but_a_bool():
    check_flag(False, "keep_grey")
    with pytest.raises(ValueError, match=r"^keep_grey must be True or False; got 1$"):
        check_flag(1, "keep_grey")
    with pytest.raises(TypeError, match=r"^recompute must be True or False; got 'yes' \(str\)$"):
        check_flag("yes", "recompute", error=TypeError, show_type=True)


def test_image_checks():
    check_image(torch.rand(1, 3, 4, 4))
    check_image(torch.full((3, 4, 4), 255, dtype=torch.uint8))
    message = r"image must hold values in \[0, 1\]; got values in \[255, 255\] \(for 8-bit data divide by 255"
    with pytest.raises(ValueError, match=message):
        check_image(torch.full((3, 4, 4), 255.0))
    nan = torch.rand(3, 4, 4)
    nan[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="face contains 1 NaN or infinite value"):
        check_image(nan, "face")
    with pytest.raises(ValueError, match="is empty"):
        check_image(torch.zeros(0, 3, 4, 4))
    with pytest.raises(TypeError, match="float in \\[0, 1\\] or uint8, got torch.int32"):
        check_image(torch.zeros(3, 4, 4, dtype=torch.int32))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_every_non_finite_value_is_counted_whatever_else_is_wrong(dtype):
    """NaN and +-inf anywhere, beside values out of range, in every float dtype: the NaN/inf message, all counted."""
    images = torch.rand(2, 3, 5, 7).to(dtype)
    images[0, 0, 0, 0], images[1, 2, 4, 6], images[1, 1, 2, 3] = float("nan"), float("inf"), -float("inf")
    images[0, 1, 1, 1] = 255.0
    with pytest.raises(ValueError, match=r"^image contains 3 NaN or infinite value\(s\); fix the input"):
        check_image(images.permute(0, 2, 3, 1))  # not contiguous
    images[images != images] = 0.5
    with pytest.raises(ValueError, match=r"^image contains 2 NaN or infinite value\(s\)"):
        check_image(images)
    images[~torch.isfinite(images)] = -0.5
    with pytest.raises(ValueError, match=r"got values in \[-0.5, 255\]"):
        check_image(images)


def test_image_as_float_scales_uint8_and_clamps_overshoot():
    assert torch.equal(image_as_float(torch.tensor([0, 255], dtype=torch.uint8)), torch.tensor([0.0, 1.0]))
    assert torch.equal(image_as_float(torch.tensor([-0.01, 1.01])), torch.tensor([0.0, 1.0]))


@pytest.mark.parametrize(("images", "error", "message"), [
    (torch.zeros(1, 3, 4, 4, dtype=torch.uint8), TypeError,
     r"images must be float in \[0, 1\] here; got torch.uint8 \(pass images.float\(\) / 255 for 8-bit data"),
    (torch.zeros(1, 3, 4, 4, dtype=torch.int64), TypeError, r"must be float in \[0, 1\] here; got torch.int64"),
    (torch.full((1, 3, 4, 4), 255.0), ValueError, r"\(for 8-bit data divide by 255\)$"),
])
def test_image_checks_of_a_path_without_uint8_never_suggest_uint8(images, error, message):
    """Whole-photo restore reads its images in place and takes no uint8: its messages say so, never 'or uint8'."""
    with pytest.raises(error, match=message) as info:
        check_image(images, "images", accepts_uint8=False)
    assert "or uint8" not in str(info.value) and "pass a uint8" not in str(info.value)
