"""Find and load face-detector weights: RetinaFace (facexlib files) or MTCNN (facenet-pytorch files).

Nothing is downloaded here (:func:`gpen_core.zoo.locate.fetch_detector_weights` fetches the
RetinaFace files beforehand). Weights are looked up in the folders the caller passes (the node
layer passes ComfyUI's ``models/facedetection``) and, for MTCNN, in the data folder of an
installed facenet-pytorch package (located without importing it).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import torch

from ...official_files import OFFICIAL_FILES, download_url, require_official
from .detectors import FaceDetector, MTCNNDetector, RetinaFaceDetector
from .errors import DetectorWeightsNotFoundError, InvalidDetectorWeightsError
from .mtcnn import MTCNN_WEIGHT_FILES, find_facenet_pytorch_data_dir, load_mtcnn_nets
from .retinaface import load_retinaface_net

logger = logging.getLogger(__name__)

RETINAFACE_WEIGHT_FILES: dict[str, str] = {e.name: e.file_name for e in OFFICIAL_FILES if e.network == "retinaface"}
"""Detector name -> file name (``retinaface_resnet50``, then ``retinaface_mobile0.25``), from the official table."""
DETECTOR_NAMES: tuple[str, ...] = (*RETINAFACE_WEIGHT_FILES, "mtcnn")
_NAME_ALIASES: dict[str, str] = {
    "retinaface": "retinaface_resnet50",
    "retinaface_resnet": "retinaface_resnet50",
    "retinaface_mobilenet0.25": "retinaface_mobile0.25",
    "retinaface_mobilenet": "retinaface_mobile0.25",
}
MTCNN_SUBFOLDER = "mtcnn"
FACENET_PYTORCH_INSTALL = "pip install --no-deps facenet-pytorch==2.6.0"


def canonical_detector_name(name: str | Path) -> str:
    """The detector name ``name`` stands for (``"retinaface"`` -> ``"retinaface_resnet50"``, lowercase);
    anything else (``auto``, ``mtcnn``, a path) comes back stripped and lowercased."""
    key = str(name).strip().lower()
    return _NAME_ALIASES.get(key, key)


def _normalise_dirs(search_dirs: Iterable[str | Path] | str | Path) -> list[Path]:
    if isinstance(search_dirs, (str, Path)):
        search_dirs = [search_dirs]
    return [Path(d) for d in search_dirs]


def _find_file(directory: Path, file_name: str) -> Path | None:
    """``directory / file_name``, else a case-insensitive match in ``directory``, else None."""
    exact = directory / file_name
    if exact.is_file():
        return exact
    if not directory.is_dir():
        return None
    wanted = file_name.lower()
    for candidate in sorted(directory.iterdir()):
        if candidate.name.lower() == wanted and candidate.is_file():
            return candidate
    return None


def _is_mtcnn_dir(directory: Path) -> bool:
    return all((directory / name).is_file() for name in MTCNN_WEIGHT_FILES)


def find_retinaface_weights(name: str, search_dirs: Iterable[str | Path]) -> Path:
    """Path of the weight file of RetinaFace ``name`` in the first folder that has it.

    Args:
        name: ``"retinaface_resnet50"`` or ``"retinaface_mobile0.25"``.
        search_dirs: folders to look in, in order.

    Raises:
        DetectorWeightsNotFoundError: with the file name, the download URL and the folders.
    """
    file_name = RETINAFACE_WEIGHT_FILES[name]
    dirs = _normalise_dirs(search_dirs)
    for directory in dirs:
        found = _find_file(directory, file_name)
        if found is not None:
            return found
    where = ", ".join(str(d) for d in dirs) if dirs else "(no folders were given)"
    raise DetectorWeightsNotFoundError(
        f"Face detector '{name}' needs the file '{file_name}', which was not found in: {where}. "
        f"Download it from {download_url(require_official(name))} and put it in "
        f"{dirs[0] if dirs else 'ComfyUI/models/facedetection'} (for ComfyUI: models/facedetection/), or run "
        f"`gpen download {name}` (it fetches and verifies it). Alternatively use the 'mtcnn' detector: "
        f"`{FACENET_PYTORCH_INSTALL}` provides its weights."
    )


def find_mtcnn_weights_dir(search_dirs: Iterable[str | Path]) -> Path:
    """Folder holding ``pnet.pt``, ``rnet.pt`` and ``onet.pt``.

    Looked up, in order: each search folder, its ``mtcnn/`` subfolder, then the data folder of
    an installed facenet-pytorch.

    Raises:
        DetectorWeightsNotFoundError: naming the three files, the folders and the pip command.
    """
    dirs = _normalise_dirs(search_dirs)
    candidates = [c for d in dirs for c in (d, d / MTCNN_SUBFOLDER)]
    for directory in candidates:
        if _is_mtcnn_dir(directory):
            return directory
    package_dir = find_facenet_pytorch_data_dir()
    if package_dir is not None:
        return package_dir
    files = ", ".join(MTCNN_WEIGHT_FILES)
    where = ", ".join(str(c) for c in candidates) if candidates else "(no folders were given)"
    target = dirs[0] / MTCNN_SUBFOLDER if dirs else Path("ComfyUI/models/facedetection/mtcnn")
    raise DetectorWeightsNotFoundError(
        f"Face detector 'mtcnn' needs the files {files}, which were not found in: {where}, and the "
        f"facenet-pytorch package is not installed. Either run `{FACENET_PYTORCH_INSTALL}` in "
        f"ComfyUI's Python environment (its facenet_pytorch/data folder holds the three files; "
        f"--no-deps keeps it from changing your torch), or copy {files} into {target}. "
        f"Nothing is downloaded automatically."
    )


def load_detector(
    name_or_path: str | Path,
    search_dirs: Iterable[str | Path] | str | Path = (),
    device: torch.device | str = "cpu",
    **detector_options: object,
) -> FaceDetector:
    """Find weights and build a ready-to-use face detector.

    Args:
        name_or_path: a detector name — ``"retinaface_resnet50"``, ``"retinaface_mobile0.25"``
            or ``"mtcnn"`` (case-insensitive; ``"retinaface"`` means ResNet-50) — or a path: a
            RetinaFace ``.pth`` file (backbone detected from its contents) or a folder with
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
    name = canonical_detector_name(name_or_path)
    if name == "auto":
        return _first_available_detector(search_dirs, device, detector_options)
    if name in RETINAFACE_WEIGHT_FILES:
        path = find_retinaface_weights(name, _normalise_dirs(search_dirs))
        return _retinaface_from_file(path, device, detector_options, expected_name=name)
    if name == "mtcnn":
        weights_dir = find_mtcnn_weights_dir(_normalise_dirs(search_dirs))
        return MTCNNDetector(load_mtcnn_nets(weights_dir), device=device, **detector_options)  # type: ignore[arg-type]

    path = Path(name_or_path)
    if path.is_file():
        return _retinaface_from_file(path, device, detector_options, expected_name=None)
    if path.is_dir():
        if not _is_mtcnn_dir(path):
            raise DetectorWeightsNotFoundError(
                f"{path} is a folder but does not hold MTCNN's {', '.join(MTCNN_WEIGHT_FILES)}"
            )
        return MTCNNDetector(load_mtcnn_nets(path), device=device, **detector_options)  # type: ignore[arg-type]
    raise DetectorWeightsNotFoundError(
        f"'{name_or_path}' is neither a known face detector ({', '.join(DETECTOR_NAMES)}) nor an "
        "existing weight file or MTCNN folder"
    )


def _first_available_detector(
    search_dirs: Iterable[str | Path] | str | Path, device: torch.device | str, options: dict
) -> FaceDetector:
    """``"auto"``: RetinaFace ResNet-50, then MobileNet-0.25, then MTCNN, whichever has weights."""
    reasons = []
    for name in DETECTOR_NAMES:
        try:
            return load_detector(name, search_dirs, device, **options)
        except DetectorWeightsNotFoundError as err:
            reasons.append(str(err))
    raise DetectorWeightsNotFoundError("No face detector weights were found.\n" + "\n".join(reasons))


def _retinaface_from_file(
    path: Path, device: torch.device | str, options: dict[str, object], expected_name: str | None
) -> RetinaFaceDetector:
    net = load_retinaface_net(path)
    detector = RetinaFaceDetector(net, device=device, **options)  # type: ignore[arg-type]
    if expected_name is not None and detector.name != expected_name:
        raise InvalidDetectorWeightsError(
            f"{path} holds {detector.name} weights, but '{expected_name}' was requested "
            f"(file named {RETINAFACE_WEIGHT_FILES[expected_name]!r})"
        )
    logger.info("face detector %s from %s on %s", detector.name, path, detector.device)
    return detector
