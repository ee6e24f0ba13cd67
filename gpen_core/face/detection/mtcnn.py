"""MTCNN networks (P-Net, R-Net, O-Net) that load the weights facenet-pytorch ships.

facenet-pytorch (``pip install --no-deps facenet-pytorch==2.6.0``) ships
``facenet_pytorch/data/{pnet,rnet,onet}.pt``: plain state dicts whose key names are the
child names used here (``conv1``, ``prelu1``, ..., ``dense6_3``). This module never imports
facenet-pytorch; :func:`find_facenet_pytorch_data_dir` only locates its data folder.

All three networks take images normalised as ``(rgb_0_255 - 127.5) * 0.0078125`` (RGB order,
values in about [-1, 1]). The dense layers of R-Net and O-Net read the feature map in
(N, W, H, C) order, as the original Caffe/TF weights require.

The detection pipeline (pyramid, stages, NMS) is in :mod:`.mtcnn_pipeline`.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ...network_entry import WeightsFile
from ...weights import StateDict, build_checked
from .errors import InvalidDetectorWeightsError

logger = logging.getLogger(__name__)

MTCNN_WEIGHT_FILES: tuple[str, str, str] = ("pnet.pt", "rnet.pt", "onet.pt")


class PNet(nn.Module):
    """Proposal network: fully convolutional, 12x12 receptive field, stride 2.

    Input (N, 3, H, W) normalised RGB; outputs box offsets (N, 4, h, w) and face
    probabilities (N, 2, h, w) ``[background, face]`` with h = ceil((H - 2) / 2) - 4.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 10, kernel_size=3)
        self.prelu1 = nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(10, 16, kernel_size=3)
        self.prelu2 = nn.PReLU(16)
        self.conv3 = nn.Conv2d(16, 32, kernel_size=3)
        self.prelu3 = nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, kernel_size=1)
        self.conv4_2 = nn.Conv2d(32, 4, kernel_size=1)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.pool1(self.prelu1(self.conv1(images)))
        features = self.prelu3(self.conv3(self.prelu2(self.conv2(features))))
        return self.conv4_2(features), torch.softmax(self.conv4_1(features), dim=1)


class RNet(nn.Module):
    """Refinement network on 24x24 crops.

    Input (N, 3, 24, 24) normalised RGB; outputs box offsets (N, 4) and face probabilities
    (N, 2).
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 28, kernel_size=3)
        self.prelu1 = nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(28, 48, kernel_size=3)
        self.prelu2 = nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(48, 64, kernel_size=2)
        self.prelu3 = nn.PReLU(64)
        self.dense4 = nn.Linear(576, 128)
        self.prelu4 = nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, crops: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.pool1(self.prelu1(self.conv1(crops)))
        features = self.pool2(self.prelu2(self.conv2(features)))
        features = self.prelu3(self.conv3(features))
        flat = features.permute(0, 3, 2, 1).reshape(features.shape[0], -1)  # (N, W, H, C) order
        hidden = self.prelu4(self.dense4(flat))
        return self.dense5_2(hidden), torch.softmax(self.dense5_1(hidden), dim=1)


class ONet(nn.Module):
    """Output network on 48x48 crops.

    Input (N, 3, 48, 48) normalised RGB; outputs box offsets (N, 4), landmarks (N, 10)
    ``[x0..x4, y0..y4]`` as fractions of the crop, and face probabilities (N, 2).
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, kernel_size=3)
        self.prelu1 = nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3)
        self.prelu2 = nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(64, 64, kernel_size=3)
        self.prelu3 = nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4 = nn.Conv2d(64, 128, kernel_size=2)
        self.prelu4 = nn.PReLU(128)
        self.dense5 = nn.Linear(1152, 256)
        self.prelu5 = nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, crops: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        features = self.pool1(self.prelu1(self.conv1(crops)))
        features = self.pool2(self.prelu2(self.conv2(features)))
        features = self.pool3(self.prelu3(self.conv3(features)))
        features = self.prelu4(self.conv4(features))
        flat = features.permute(0, 3, 2, 1).reshape(features.shape[0], -1)  # (N, W, H, C) order
        hidden = self.prelu5(self.dense5(flat))
        return self.dense6_2(hidden), self.dense6_3(hidden), torch.softmax(self.dense6_1(hidden), dim=1)


@dataclass
class MTCNNNets:
    """The three MTCNN networks, in eval mode, on one device."""

    pnet: PNet
    rnet: RNet
    onet: ONet

    def to(self, device: torch.device | str) -> MTCNNNets:
        """Move all three networks to ``device`` (in place) and return self."""
        self.pnet.to(device)
        self.rnet.to(device)
        self.onet.to(device)
        return self


def find_facenet_pytorch_data_dir() -> Path | None:
    """Locate ``facenet_pytorch/data`` without importing facenet-pytorch.

    Returns:
        The folder if the package is installed and the folder holds all of
        :data:`MTCNN_WEIGHT_FILES`, else ``None``.
    """
    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is None or not spec.submodule_search_locations:
        return None
    for package_dir in spec.submodule_search_locations:
        data_dir = Path(package_dir) / "data"
        if all((data_dir / name).is_file() for name in MTCNN_WEIGHT_FILES):
            return data_dir
    return None


def _weights_file(network: type[nn.Module], file_name: str, marker: str, shape: tuple[int, ...]) -> WeightsFile:
    """The file of one MTCNN stage, recognised by its last layer's key and shape."""
    what = f"MTCNN {network.__name__}"

    def why_not(state: Mapping[str, torch.Tensor]) -> str | None:
        if marker in state and tuple(state[marker].shape) == shape:
            return None
        return f"not {what} weights: expected {marker!r} of shape {shape}; first keys found: {list(state)[:5]}"

    def build(state: StateDict, source: str) -> nn.Module:
        return build_checked(network, state, source, what, error=InvalidDetectorWeightsError)

    return WeightsFile(names=(file_name,), what=what, why_not=why_not, build=build)


MTCNN_FILES: tuple[WeightsFile, WeightsFile, WeightsFile] = (
    _weights_file(PNet, MTCNN_WEIGHT_FILES[0], "conv4_2.weight", (4, 32, 1, 1)),
    _weights_file(RNet, MTCNN_WEIGHT_FILES[1], "dense5_2.weight", (4, 128)),
    _weights_file(ONet, MTCNN_WEIGHT_FILES[2], "dense6_3.weight", (10, 256)),
)
"""P-Net, R-Net and O-Net, as facenet-pytorch ships them (all three are needed, in one folder)."""


def assemble_mtcnn(modules: tuple[nn.Module, ...]) -> MTCNNNets:
    """The built P-Net, R-Net and O-Net (in :data:`MTCNN_FILES` order) as one :class:`MTCNNNets`."""
    pnet, rnet, onet = modules
    if not (isinstance(pnet, PNet) and isinstance(rnet, RNet) and isinstance(onet, ONet)):
        raise TypeError(f"expected PNet, RNet, ONet; got {[type(m).__name__ for m in modules]}")
    return MTCNNNets(pnet, rnet, onet)


def facenet_pytorch_folders() -> list[Path]:
    """An installed facenet-pytorch's data folder when it holds the three files, else nothing."""
    found = find_facenet_pytorch_data_dir()
    return [] if found is None else [found]


def load_mtcnn_nets(weights_dir: str | Path) -> MTCNNNets:
    """Load ``pnet.pt``, ``rnet.pt`` and ``onet.pt`` from ``weights_dir`` (CPU, eval mode), each through
    the checks every weights file goes through (:mod:`gpen_core.weight_checks`).

    Raises:
        FileNotFoundError: one of the three files is missing.
        InvalidDetectorWeightsError: a file is not a matching state dict.
    """
    weights_dir = Path(weights_dir)
    nets = assemble_mtcnn(tuple(
        file.load(weights_dir / file.names[0], InvalidDetectorWeightsError, MTCNN_FILES) for file in MTCNN_FILES
    ))
    logger.info("loaded MTCNN weights from %s", weights_dir)
    return nets
