"""Find and load face-detector weights: RetinaFace (facexlib files) or MTCNN (facenet-pytorch files).

Which detectors exist, their files, aliases and the ``auto`` order come from :mod:`.catalog`; every
file goes through the checks of :mod:`gpen_core.weight_checks`. Nothing is ever downloaded. Weights
are looked up in the folders the caller passes (the node layer passes ComfyUI's
``models/facedetection``), their ``mtcnn/`` subfolder for MTCNN, and, for MTCNN, in the data folder
of an installed facenet-pytorch package (located without importing it).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from ...network_entry import NetworkEntry, entry_named, recognise
from ...weights import read_state
from .catalog import DETECTOR_FILES, DETECTOR_NAMES, DETECTORS
from .detectors import FaceDetector
from .errors import DetectorWeightsNotFoundError, InvalidDetectorWeightsError

logger = logging.getLogger(__name__)

__all__ = ["load_detector"]


def _normalise_dirs(search_dirs: Iterable[str | Path] | str | Path) -> list[Path]:
    if isinstance(search_dirs, (str, Path)):
        search_dirs = [search_dirs]
    return [Path(d) for d in search_dirs]


def load_detector(
    name_or_path: str | Path,
    search_dirs: Iterable[str | Path] | str | Path = (),
    device: torch.device | str = "cpu",
    **detector_options: object,
) -> FaceDetector:
    """Find weights and build a ready-to-use face detector.

    Args:
        name_or_path: a detector name — ``"retinaface_resnet50"``, ``"retinaface_mobile0.25"``
            or ``"mtcnn"`` (case-insensitive; ``"retinaface"`` means ResNet-50; ``"auto"``: the
            first of :data:`.catalog.DETECTORS` whose weights are found) — or a path: a weights
            file of a detector (which one is recognised from its contents) or a folder with
            MTCNN's ``pnet.pt``, ``rnet.pt``, ``onet.pt``.
        search_dirs: folders searched for the named detector's files (e.g. ComfyUI's
            ``models/facedetection``).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ... where the detector runs.
        **detector_options: passed to :class:`.detectors.RetinaFaceDetector` (``nms_threshold``,
            ``max_input_side``) or :class:`.detectors.MTCNNDetector` (``pyramid_min_face_size``,
            ``stage_thresholds``, ``pyramid_factor``).

    Returns:
        A :class:`.detectors.FaceDetector`, to pass to :func:`.detection.detect_faces`.

    Raises:
        DetectorWeightsNotFoundError: the weights are nowhere to be found (message says what to
            put where).
        InvalidDetectorWeightsError: a file was found but is not usable.
    """
    dirs = _normalise_dirs(search_dirs)
    if str(name_or_path).strip().lower() == "auto":
        return _first_available_detector(dirs, device, detector_options)
    entry = entry_named(DETECTORS, str(name_or_path))
    if entry is not None:
        paths = entry.find(dirs)
        if paths is None:
            raise DetectorWeightsNotFoundError(f"Face detector {entry.missing_message(dirs)}")
        return _ready(entry, entry.load(paths, InvalidDetectorWeightsError, DETECTOR_FILES), paths, device,
                      detector_options)

    path = Path(name_or_path)
    if path.is_file():
        return _detector_in_file(path, device, detector_options)
    if path.is_dir():
        for entry in DETECTORS:
            paths = entry.find_in(path) if len(entry.files) > 1 else None
            if paths is not None:
                return _ready(entry, entry.load(paths, InvalidDetectorWeightsError), paths, device, detector_options)
        needs = "; ".join(
            f"{e.name} needs {', '.join(f.names[0] for f in e.files)}" for e in DETECTORS if len(e.files) > 1
        )
        raise DetectorWeightsNotFoundError(f"{path} is a folder but does not hold a face detector's files: {needs}")
    raise DetectorWeightsNotFoundError(
        f"'{name_or_path}' is neither a known face detector ({', '.join(DETECTOR_NAMES)}) nor an "
        "existing weight file or detector folder"
    )


def _detector_in_file(path: Path, device: torch.device | str, options: dict[str, Any]) -> FaceDetector:
    """The single-file detector whose weights ``path`` holds, recognised from its keys and shapes."""
    single = [entry for entry in DETECTORS if len(entry.files) == 1]
    state = read_state(path, InvalidDetectorWeightsError)
    found = recognise(single, state)
    if found is None:
        expected = "; ".join(dict.fromkeys(entry.files[0].why_not(state) or entry.name for entry in single))
        raise InvalidDetectorWeightsError(
            f"{path}: not the weights of a face detector this package runs "
            f"({', '.join(e.name for e in single)}): {expected}"
        )
    entry, file = found
    network = entry.assemble((file.load_state(state, str(path), InvalidDetectorWeightsError),))
    return _ready(entry, network, (path,), device, options)


def _ready(
    entry: NetworkEntry, network: object, paths: tuple[Path, ...], device: torch.device | str,
    options: dict[str, Any],
) -> FaceDetector:
    assert entry.runner is not None, f"{entry.name} is a detector without a runner"
    detector: FaceDetector = entry.runner(network, device=device, **options)
    logger.info("face detector %s from %s on %s", detector.name, ", ".join(map(str, paths)), detector.device)
    return detector


def _first_available_detector(
    search_dirs: list[Path], device: torch.device | str, options: dict[str, Any]
) -> FaceDetector:
    """``"auto"``: the first detector of :data:`.catalog.DETECTORS` whose weights are found."""
    reasons = []
    for entry in DETECTORS:
        try:
            return load_detector(entry.name, search_dirs, device, **options)
        except DetectorWeightsNotFoundError as err:
            reasons.append(str(err))
    raise DetectorWeightsNotFoundError("No face detector weights were found.\n" + "\n".join(reasons))
