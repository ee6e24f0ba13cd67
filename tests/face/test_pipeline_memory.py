"""A whole photo at the cost of its faces: the restore phase holds one face batch and a few image-sized
buffers, whatever the number of faces (live tensors, the project's own counting)."""
from __future__ import annotations

import pytest
import torch
from standins import IdentityGPEN

from gpen_core.face import DetectOptions, FaceNetworks, FaceSelection, RestoreOptions, restore_faces
from gpen_core.face.detection.loader import load_detector
from gpen_core.face.pipeline import restore_memory_bytes
from gpen_core.face.stats import RestoreStats
from gpen_core.images.files import read_image


@pytest.fixture(scope="module")
def group_photo(photos_dir) -> torch.Tensor:
    return read_image(photos_dir / "solvay-1927.png")[:3]


@pytest.fixture(scope="module")
def measured(group_photo, mtcnn_weights_dir) -> dict[int, RestoreStats]:
    """The group photo's restoration measured with 4, 12 and all (29) faces; GPEN a 512 stand-in."""
    detector = load_detector(mtcnn_weights_dir)
    runs = {}
    for faces in (4, 12, 0):
        stats = RestoreStats(measure=True)
        options = RestoreOptions(DetectOptions(selection=FaceSelection(max_faces=faces)))
        with torch.inference_mode():
            restore_faces(FaceNetworks(IdentityGPEN(512), detector), group_photo[None], options, keep_crops=False,
                          stats=stats)
        runs[faces] = stats
    return runs


@pytest.mark.slow
def test_the_restore_phase_does_not_grow_with_the_faces(measured):
    assert [measured[n].faces_restored for n in (4, 12, 0)] == [4, 12, 29]
    crop_bytes = 3 * 512 * 512 * 4
    peaks = [measured[n].phase_peaks["restore"] for n in (4, 12, 0)]
    assert max(peaks) - min(peaks) < crop_bytes, peaks  # less than one face's crop apart
    assert measured[0].phase_peaks["detect"] == measured[4].phase_peaks["detect"]


@pytest.mark.slow
def test_the_restore_phase_is_one_face_batch_and_a_few_images(measured, group_photo):
    stats = measured[0]
    assert stats.record is not None and stats.record.whole_peak_bytes == stats.whole_peak_bytes
    gpen_peak = stats.record.peak_bytes
    image_bytes = group_photo.numel() * 4
    assert stats.phase_peaks["restore"] <= gpen_peak + 4 * image_bytes
    # the plan's estimate covers what was measured
    height, width = group_photo.shape[-2:]
    estimate = restore_memory_bytes(IdentityGPEN(512), None, (height, width), (height, width), RestoreOptions())
    assert stats.phase_peaks["restore"] <= estimate
