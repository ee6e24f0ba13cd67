"""RetinaFace (mobile0.25, seeded weights) against facexlib's recorded outputs.

Reference files: ``tests/face/data`` (copied from ``shared/reference/retinaface``; the README
there describes how facexlib produced them).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from gpen_core.face.detection.api import detect_faces
from gpen_core.face.detection.detectors import RetinaFaceDetector
from gpen_core.face.detection.retinaface import RetinaFaceNet, load_retinaface_net
from gpen_core.face.detection.retinaface_postprocess import postprocess_retinaface, prior_boxes

HEIGHT, WIDTH = 480, 640
BOX_TOLERANCE_PX = 1e-3  # README: torch exp may differ by 1 ulp between builds (<= 6.1e-5 px)
LANDMARK_TOLERANCE_PX = 1e-3
RAW_TOLERANCE = 1e-5

# Scores are compared bit for bit with facexlib's, computed under torch's default thread count (conftest.py
# runs the other tests on one thread).
pytestmark = pytest.mark.usefixtures("default_torch_threads")

LoadReference = Callable[[str], np.ndarray]


@pytest.fixture(scope="module")
def reference_weights(data_dir: Path) -> Path:
    return data_dir / "retinaface_mobile0.25_seed1000.pth"


@pytest.fixture(scope="module")
def net(reference_weights: Path) -> RetinaFaceNet:
    return load_retinaface_net(reference_weights)


@pytest.fixture(scope="module")
def raw_outputs(
    net: RetinaFaceNet, load_reference: LoadReference
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    network_input = torch.from_numpy(load_reference("input_seed5"))
    with torch.inference_mode():
        return net(network_input)


def reference_image_bgr() -> torch.Tensor:
    """The HWC-equivalent image facexlib received, as (3, H, W) BGR float in [0, 255)
    (README: "Input and preprocessing")."""
    generator = torch.Generator().manual_seed(5)
    return (torch.rand((1, 3, HEIGHT, WIDTH), generator=generator) * 255)[0]


def assert_rows_match(
    boxes: np.ndarray,
    scores: np.ndarray,
    landmarks: np.ndarray,
    reference_boxes: np.ndarray,
    reference_landmarks: np.ndarray,
) -> tuple[float, float]:
    """Rows equal the reference in order, except that rows with tied scores may come in any
    order (matched as sets). Returns the max box and landmark errors (px)."""
    assert boxes.shape == (reference_boxes.shape[0], 4)
    np.testing.assert_array_equal(scores, reference_boxes[:, 4])  # same scores, same order
    ours = np.concatenate([boxes, landmarks], axis=1).astype(np.float64)
    theirs = np.concatenate([reference_boxes[:, :4], reference_landmarks], axis=1).astype(np.float64)
    start = 0
    tie_groups = 0
    while start < len(scores):
        stop = start + 1
        while stop < len(scores) and scores[stop] == scores[start]:
            stop += 1
        if stop - start > 1:
            tie_groups += 1
            distances = np.abs(ours[start:stop, None, :] - theirs[None, start:stop, :]).max(axis=2)
            matched = distances.argmin(axis=0)
            assert sorted(matched.tolist()) == list(range(stop - start)), "tied rows are not a permutation"
            ours[start:stop] = ours[start:stop][matched]
        start = stop
    errors = np.abs(ours - theirs)
    box_error, landmark_error = float(errors[:, :4].max()), float(errors[:, 4:].max())
    assert box_error <= BOX_TOLERANCE_PX
    assert landmark_error <= LANDMARK_TOLERANCE_PX
    return box_error, landmark_error


def test_weights_follow_generation_rule_in_our_key_order(
    make_seeded_state_dict: Callable, reference_weights: Path
) -> None:
    """Our module tree has facexlib's state-dict keys, in facexlib's order: regenerating the
    seeded weights over our model's keys reproduces the reference file bit for bit."""
    stored = torch.load(reference_weights, map_location="cpu", weights_only=True)
    regenerated = make_seeded_state_dict(RetinaFaceNet("mobile0.25"), 1000, 1.0)
    assert list(regenerated) == list(stored)
    for key, value in stored.items():
        assert torch.equal(regenerated[key], value), key


@pytest.mark.parametrize("name, index", [("loc", 0), ("conf", 1), ("landmarks", 2)])
def test_raw_outputs_match_facexlib(
    raw_outputs: tuple[torch.Tensor, ...], load_reference: LoadReference, name: str, index: int
) -> None:
    reference = load_reference(f"raw_{name}")
    ours = raw_outputs[index].numpy()
    assert ours.shape == reference.shape == (1, 12600, reference.shape[2])
    np.testing.assert_allclose(ours, reference, rtol=0, atol=RAW_TOLERANCE)


def test_prior_boxes_examples() -> None:
    priors = prior_boxes(HEIGHT, WIDTH)
    assert priors.shape == (12600, 4) and priors.dtype == torch.float32
    expected = {
        0: [0.00625, 0.008333334, 0.025, 0.033333335],
        9600: [0.0125, 0.016666668, 0.1, 0.13333334],
        12599: [0.975, 0.96666664, 0.8, 1.0666667],
    }
    for index, values in expected.items():
        assert priors[index].tolist() == np.asarray(values, dtype=np.float32).tolist(), index


def test_controlled_postprocessing_case(load_reference: LoadReference) -> None:
    """Exact rows a0, b0, c0, a2, b1, f0 (strict float32 threshold, NMS, stride 16/32 decoding)."""
    loc = torch.from_numpy(load_reference("raw_loc"))[0]
    landmarks = torch.from_numpy(load_reference("raw_landmarks"))[0]
    conf = torch.from_numpy(load_reference("post_conf_modified"))[0]
    boxes, scores, points = postprocess_retinaface(loc, conf, landmarks, HEIGHT, WIDTH, 0.8, 0.4)
    reference_boxes = load_reference("post_boxes")
    reference_landmarks = load_reference("post_landmarks")
    assert boxes.shape == (6, 4)
    np.testing.assert_array_equal(scores.numpy(), reference_boxes[:, 4])
    np.testing.assert_allclose(boxes.numpy(), reference_boxes[:, :4], rtol=0, atol=BOX_TOLERANCE_PX)
    np.testing.assert_allclose(points.numpy(), reference_landmarks, rtol=0, atol=LANDMARK_TOLERANCE_PX)
    # The anchor with score == float32(0.8) must be dropped (strict >): 6 rows, not 7.
    chosen = load_reference("post_chosen_anchors")
    assert (chosen[:, 1].astype(np.float32) == np.float32(0.8)).sum() == 1


@pytest.mark.parametrize("threshold", ["0.80", "0.97"])
def test_detect_full_from_reference_raw_outputs(load_reference: LoadReference, threshold: str) -> None:
    loc = torch.from_numpy(load_reference("raw_loc"))[0]
    conf = torch.from_numpy(load_reference("raw_conf"))[0]
    landmarks = torch.from_numpy(load_reference("raw_landmarks"))[0]
    boxes, scores, points = postprocess_retinaface(loc, conf, landmarks, HEIGHT, WIDTH, float(threshold), 0.4)
    assert_rows_match(
        boxes.numpy(),
        scores.numpy(),
        points.numpy(),
        load_reference(f"detect_full_t{threshold}_boxes"),
        load_reference(f"detect_full_t{threshold}_landmarks"),
    )


@pytest.mark.parametrize("threshold", ["0.80", "0.97"])
def test_detector_end_to_end_matches_facexlib_detect_faces(
    net: RetinaFaceNet, load_reference: LoadReference, threshold: str
) -> None:
    """Preprocessing (RGB->BGR, mean subtraction), forward, decoding, threshold and NMS
    through the detector object, starting from the same image facexlib received."""
    detector = RetinaFaceDetector(net)
    captured: list[torch.Tensor] = []
    hook = net.register_forward_pre_hook(lambda module, args: captured.append(args[0].clone()))
    try:
        image_rgb = reference_image_bgr().flip(0)
        detections = detector.detect_rgb255(image_rgb, float(threshold), 0.0)
    finally:
        hook.remove()
    np.testing.assert_array_equal(captured[0].numpy(), load_reference("input_seed5"))
    assert detections.image_size == (HEIGHT, WIDTH)
    assert_rows_match(
        detections.boxes.numpy(),
        detections.scores.numpy(),
        detections.landmarks.reshape(-1, 10).numpy(),
        load_reference(f"detect_full_t{threshold}_boxes"),
        load_reference(f"detect_full_t{threshold}_landmarks"),
    )


def test_detect_faces_entry_point_with_float_image(net: RetinaFaceNet, load_reference: LoadReference) -> None:
    """The public entry point on a (3, H, W) float [0, 1] RGB image: the /255 round trip may move
    inputs by an ulp, so rows are matched by position with a loose tolerance; counts must agree."""
    image = reference_image_bgr().flip(0) / 255.0
    faces = detect_faces(RetinaFaceDetector(net), image, score_threshold=0.97)
    reference_boxes = load_reference("detect_full_t0.97_boxes")
    assert len(faces) == reference_boxes.shape[0]
    ours = faces.boxes.numpy()
    # match each reference box to its nearest box of ours (by corner distance)
    for row in reference_boxes[::50]:
        distance = np.abs(ours - row[:4]).max(axis=1).min()
        assert distance < 1e-2


def test_max_input_side_maps_coordinates_back(net: RetinaFaceNet, load_reference: LoadReference) -> None:
    """A 2x nearest-upscaled image, downscaled back by the detector (bilinear, factor 0.5, which
    averages two equal pixels: exact), must give the reference detections times 2."""
    image_rgb = reference_image_bgr().flip(0)
    upscaled = image_rgb.repeat_interleave(2, dim=1).repeat_interleave(2, dim=2)
    detector = RetinaFaceDetector(net, max_input_side=WIDTH)
    detections = detector.detect_rgb255(upscaled, 0.97, 0.0)
    assert detections.image_size == (2 * HEIGHT, 2 * WIDTH)
    reference_boxes = load_reference("detect_full_t0.97_boxes").copy()
    reference_boxes[:, :4] *= 2
    assert_rows_match(
        detections.boxes.numpy(),
        detections.scores.numpy(),
        detections.landmarks.reshape(-1, 10).numpy(),
        reference_boxes,
        load_reference("detect_full_t0.97_landmarks") * 2,
    )
