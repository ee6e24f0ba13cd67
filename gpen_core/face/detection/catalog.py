"""The face detectors this package runs: one :class:`~gpen_core.network_entry.NetworkEntry` each.

:data:`DETECTORS` is the one list: its order is the order ``auto`` tries them in, and the node and
command-line option lists are its names (:data:`DETECTOR_NAMES`). Adding a detector is one new file
(the network, its weights file(s) as :class:`~gpen_core.network_entry.WeightsFile`, and a class with
the :class:`~.detectors.FaceDetector` interface) plus one entry here.
"""

from __future__ import annotations

from ...network_entry import NetworkEntry, WeightsFile
from .detectors import MTCNNDetector, RetinaFaceDetector
from .mtcnn import MTCNN_FILES, assemble_mtcnn, facenet_pytorch_folders
from .retinaface import RETINAFACE_FILES, RetinaFaceBackbone

FACENET_PYTORCH_INSTALL = "pip install --no-deps facenet-pytorch==2.6.0"


def _retinaface(backbone: RetinaFaceBackbone, aliases: tuple[str, ...]) -> NetworkEntry:
    return NetworkEntry(
        name=f"retinaface_{backbone}",
        task="detect",
        folder="facedetection",
        files=(RETINAFACE_FILES[backbone],),
        aliases=aliases,
        runner=RetinaFaceDetector,
        advice=f"Alternatively use the 'mtcnn' detector: `{FACENET_PYTORCH_INSTALL}` provides its weights.",
    )


RETINAFACE_RESNET50 = _retinaface("resnet50", ("retinaface", "retinaface_resnet"))
RETINAFACE_MOBILE = _retinaface("mobile0.25", ("retinaface_mobilenet0.25", "retinaface_mobilenet"))
MTCNN = NetworkEntry(
    name="mtcnn",
    task="detect",
    folder="facedetection",
    files=MTCNN_FILES,
    subfolder="mtcnn",
    assemble=assemble_mtcnn,
    runner=MTCNNDetector,
    more_folders=facenet_pytorch_folders,
    advice=(
        f"Or run `{FACENET_PYTORCH_INSTALL}` in ComfyUI's Python environment: its facenet_pytorch/data "
        "folder holds the three files (--no-deps keeps it from changing your torch); it is not installed now."
    ),
)

DETECTORS: tuple[NetworkEntry, ...] = (RETINAFACE_RESNET50, RETINAFACE_MOBILE, MTCNN)
"""Every detector, in the order ``auto`` tries them (the first whose weights are found is used)."""

DETECTOR_NAMES: tuple[str, ...] = tuple(entry.name for entry in DETECTORS)
"""The names the nodes and the command line offer (after ``auto``)."""

DETECTOR_FILES: tuple[WeightsFile, ...] = tuple(file for entry in DETECTORS for file in entry.files)
"""Every detector's weights files: what a file given by path may be."""
