"""RetinaFace face detector (network + weight loading), compatible with facexlib.

This is an independent implementation of the network that facexlib (xinntao/facexlib,
``facexlib/detection/retinaface.py``) builds, with the same module tree, so that the released
files ``detection_mobilenet0.25_Final.pth`` and ``detection_Resnet50_Final.pth`` load into it
with ``load_state_dict(strict=True)`` (after removing an optional ``module.`` prefix and
tolerating absent ``num_batches_tracked`` buffers).

Network input: (N, 3, H, W) float32, **BGR** channel order, values in [0, 255] minus the
per-channel mean (104, 117, 123) (B, G, R). Outputs, with A anchors (A = 2 * sum over strides
8/16/32 of ceil(H/s) * ceil(W/s)):

* ``loc`` (N, A, 4): encoded box offsets ``[dcx, dcy, dw, dh]``;
* ``conf`` (N, A, 2): softmax ``[background, face]``;
* ``landmarks`` (N, A, 10): encoded 5 points ``[x0, y0, ..., x4, y4]``.

Post-processing (priors, decoding, threshold, NMS) lives in :mod:`.retinaface_postprocess`;
the detector wrapper that ties both together is :class:`.detectors.RetinaFaceDetector`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ...network_entry import WeightsFile
from ...weight_checks import BATCHNORM_COUNTER
from ...weights import build_checked, read_state, strip_module_prefix
from .errors import InvalidDetectorWeightsError

logger = logging.getLogger(__name__)

RetinaFaceBackbone = Literal["mobile0.25", "resnet50"]

StageDone = Callable[[], None]
"""Called after each stage of a forward; may raise to cancel it (see :attr:`RetinaFaceNet.stages`)."""


def _no_op() -> None:
    pass

BGR_MEAN: tuple[float, float, float] = (104.0, 117.0, 123.0)
"""Per-channel mean (B, G, R) subtracted from [0, 255] pixels before the network."""


# --------------------------------------------------------------------------------------------
# Building blocks (module indices match facexlib's nn.Sequential layouts)
# --------------------------------------------------------------------------------------------


def _conv_bn(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    stride: int = 1,
    negative_slope: float | None = None,
    groups: int = 1,
) -> nn.Sequential:
    """Conv (no bias) + BatchNorm [+ LeakyReLU]; children ``0`` = conv, ``1`` = BN."""
    layers: list[nn.Module] = [
        nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding=kernel_size // 2,
            groups=groups,
            bias=False,
        ),
        nn.BatchNorm2d(out_channels),
    ]
    if negative_slope is not None:
        layers.append(nn.LeakyReLU(negative_slope=negative_slope, inplace=True))
    return nn.Sequential(*layers)


def _depthwise_separable(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    """MobileNetV1 block: children 0/1/2 = depthwise 3x3, BN, LeakyReLU(0.1);
    3/4/5 = pointwise 1x1, BN, LeakyReLU(0.1)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, in_channels, 3, stride, 1, groups=in_channels, bias=False),
        nn.BatchNorm2d(in_channels),
        nn.LeakyReLU(negative_slope=0.1, inplace=True),
        nn.Conv2d(in_channels, out_channels, 1, 1, 0, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.LeakyReLU(negative_slope=0.1, inplace=True),
    )


class MobileNetV1Body(nn.Module):
    """MobileNetV1 with width multiplier 0.25, truncated after ``stage3``.

    Input (N, 3, H, W); returns feature maps at strides 8, 16, 32 with 64, 128, 256 channels.
    """

    def __init__(self) -> None:
        super().__init__()
        self.stage1 = nn.Sequential(
            _conv_bn(3, 8, 3, stride=2, negative_slope=0.1),
            _depthwise_separable(8, 16, 1),
            _depthwise_separable(16, 32, 2),
            _depthwise_separable(32, 32, 1),
            _depthwise_separable(32, 64, 2),
            _depthwise_separable(64, 64, 1),
        )
        self.stage2 = nn.Sequential(
            _depthwise_separable(64, 128, 2),
            *[_depthwise_separable(128, 128, 1) for _ in range(5)],
        )
        self.stage3 = nn.Sequential(
            _depthwise_separable(128, 256, 2),
            _depthwise_separable(256, 256, 1),
        )

    stages = 3
    """Calls of ``stage_done`` per forward."""

    def forward(self, images: torch.Tensor, stage_done: StageDone = _no_op) -> list[torch.Tensor]:
        """(N, 3, H, W) -> [(N, 64, H/8, W/8), (N, 128, H/16, W/16), (N, 256, H/32, W/32)]
        (sizes rounded up); ``stage_done()`` after each stage."""
        stride8 = self.stage1(images)
        stage_done()
        stride16 = self.stage2(stride8)
        stage_done()
        stride32 = self.stage3(stride16)
        stage_done()
        return [stride8, stride16, stride32]


class _Bottleneck(nn.Module):
    """torchvision's ResNet bottleneck (stride on the 3x3 conv), same child names."""

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int, with_downsample: bool) -> None:
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if with_downsample:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        identity = features if self.downsample is None else self.downsample(features)
        out = self.relu(self.bn1(self.conv1(features)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet50Body(nn.Module):
    """ResNet-50 (torchvision layout and names) truncated after ``layer4``.

    Input (N, 3, H, W); returns feature maps at strides 8, 16, 32 with 512, 1024, 2048
    channels (outputs of layer2, layer3, layer4).
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, 64, blocks=3, stride=1)
        self.layer2 = self._make_layer(256, 128, blocks=4, stride=2)
        self.layer3 = self._make_layer(512, 256, blocks=6, stride=2)
        self.layer4 = self._make_layer(1024, 512, blocks=3, stride=2)

    @staticmethod
    def _make_layer(in_channels: int, width: int, blocks: int, stride: int) -> nn.Sequential:
        layers = [_Bottleneck(in_channels, width, stride, with_downsample=True)]
        layers += [_Bottleneck(width * 4, width, 1, with_downsample=False) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    stages = 4
    """Calls of ``stage_done`` per forward."""

    def forward(self, images: torch.Tensor, stage_done: StageDone = _no_op) -> list[torch.Tensor]:
        """(N, 3, H, W) -> [stride-8 (512 ch), stride-16 (1024 ch), stride-32 (2048 ch)];
        ``stage_done()`` after layer1 (with the stem), layer2, layer3 and layer4."""
        features = self.maxpool(self.relu(self.bn1(self.conv1(images))))
        features = self.layer1(features)
        stage_done()
        stride8 = self.layer2(features)
        stage_done()
        stride16 = self.layer3(stride8)
        stage_done()
        stride32 = self.layer4(stride16)
        stage_done()
        return [stride8, stride16, stride32]


class FeaturePyramid(nn.Module):
    """RetinaFace FPN: 1x1 lateral convs, top-down nearest upsampling, 3x3 merge convs."""

    def __init__(self, in_channels: tuple[int, int, int], out_channels: int) -> None:
        super().__init__()
        slope = 0.1 if out_channels <= 64 else 0.0
        self.output1 = _conv_bn(in_channels[0], out_channels, 1, negative_slope=slope)
        self.output2 = _conv_bn(in_channels[1], out_channels, 1, negative_slope=slope)
        self.output3 = _conv_bn(in_channels[2], out_channels, 1, negative_slope=slope)
        self.merge1 = _conv_bn(out_channels, out_channels, 3, negative_slope=slope)
        self.merge2 = _conv_bn(out_channels, out_channels, 3, negative_slope=slope)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """Three maps (strides 8/16/32) -> three maps with ``out_channels`` channels each."""
        level1 = self.output1(features[0])
        level2 = self.output2(features[1])
        level3 = self.output3(features[2])
        level2 = level2 + F.interpolate(level3, size=list(level2.shape[2:]), mode="nearest")
        level2 = self.merge2(level2)
        level1 = level1 + F.interpolate(level2, size=list(level1.shape[2:]), mode="nearest")
        level1 = self.merge1(level1)
        return [level1, level2, level3]


class ContextModule(nn.Module):
    """SSH context module: 3x3 branch (C/2) and 5x5 / 7x7 branches (C/4 each) built from
    stacked 3x3 convs; concatenated, then ReLU. Child names match facexlib (note ``conv7x7_3``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        if channels % 4 != 0:
            raise ValueError(f"SSH channels must be divisible by 4, got {channels}")
        slope = 0.1 if channels <= 64 else 0.0
        self.conv3X3 = _conv_bn(channels, channels // 2, 3)
        self.conv5X5_1 = _conv_bn(channels, channels // 4, 3, negative_slope=slope)
        self.conv5X5_2 = _conv_bn(channels // 4, channels // 4, 3)
        self.conv7X7_2 = _conv_bn(channels // 4, channels // 4, 3, negative_slope=slope)
        self.conv7x7_3 = _conv_bn(channels // 4, channels // 4, 3)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        branch3 = self.conv3X3(features)
        shared = self.conv5X5_1(features)
        branch5 = self.conv5X5_2(shared)
        branch7 = self.conv7x7_3(self.conv7X7_2(shared))
        return F.relu(torch.cat([branch3, branch5, branch7], dim=1))


class _AnchorHead(nn.Module):
    """1x1 conv predicting ``values_per_anchor`` numbers for each of 2 anchors per cell."""

    def __init__(self, in_channels: int, values_per_anchor: int, anchors_per_cell: int = 2) -> None:
        super().__init__()
        self.values_per_anchor = values_per_anchor
        self.conv1x1 = nn.Conv2d(in_channels, anchors_per_cell * values_per_anchor, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(N, C, h, w) -> (N, h * w * anchors, values_per_anchor), anchors ordered row, column,
        anchor size."""
        out = self.conv1x1(features).permute(0, 2, 3, 1)
        return out.reshape(out.shape[0], -1, self.values_per_anchor)


_BACKBONE_CONFIG: dict[str, dict[str, object]] = {
    "mobile0.25": {"in_channels": (64, 128, 256), "out_channels": 64},
    "resnet50": {"in_channels": (512, 1024, 2048), "out_channels": 256},
}


class RetinaFaceNet(nn.Module):
    """RetinaFace network with facexlib's module names (``body``, ``fpn``, ``ssh1..3``,
    ``ClassHead``, ``BboxHead``, ``LandmarkHead``).

    Args:
        backbone: ``"mobile0.25"`` (MobileNetV1-0.25) or ``"resnet50"``.
    """

    def __init__(self, backbone: RetinaFaceBackbone) -> None:
        super().__init__()
        if backbone not in _BACKBONE_CONFIG:
            raise ValueError(f"backbone must be one of {sorted(_BACKBONE_CONFIG)}, got {backbone!r}")
        self.backbone_name: RetinaFaceBackbone = backbone
        config = _BACKBONE_CONFIG[backbone]
        in_channels: tuple[int, int, int] = config["in_channels"]  # type: ignore[assignment]
        out_channels: int = config["out_channels"]  # type: ignore[assignment]
        self.body: MobileNetV1Body | ResNet50Body = MobileNetV1Body() if backbone == "mobile0.25" else ResNet50Body()
        self.fpn = FeaturePyramid(in_channels, out_channels)
        self.ssh1 = ContextModule(out_channels)
        self.ssh2 = ContextModule(out_channels)
        self.ssh3 = ContextModule(out_channels)
        self.ClassHead = nn.ModuleList([_AnchorHead(out_channels, 2) for _ in range(3)])
        self.BboxHead = nn.ModuleList([_AnchorHead(out_channels, 4) for _ in range(3)])
        self.LandmarkHead = nn.ModuleList([_AnchorHead(out_channels, 10) for _ in range(3)])
        self.eval()

    @property
    def stages(self) -> int:
        """Calls of ``stage_done`` per forward: the backbone's stages, the feature pyramid, the
        context modules (the heads follow, then the forward returns)."""
        return self.body.stages + 2

    def forward(
        self, images: torch.Tensor, stage_done: StageDone = _no_op
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Run the network.

        Args:
            images: (N, 3, H, W) float, BGR, [0, 255] minus :data:`BGR_MEAN`.
            stage_done: called :attr:`stages` times, after each stage; may raise to cancel.

        Returns:
            ``(loc (N, A, 4), conf (N, A, 2) softmax [background, face], landmarks (N, A, 10))``.
        """
        pyramid = self.fpn(self.body(images, stage_done))
        stage_done()
        features = [self.ssh1(pyramid[0]), self.ssh2(pyramid[1]), self.ssh3(pyramid[2])]
        stage_done()
        loc = torch.cat([head(f) for head, f in zip(self.BboxHead, features, strict=True)], dim=1)
        logits = torch.cat([head(f) for head, f in zip(self.ClassHead, features, strict=True)], dim=1)
        landmarks = torch.cat([head(f) for head, f in zip(self.LandmarkHead, features, strict=True)], dim=1)
        return loc, F.softmax(logits, dim=-1), landmarks


# --------------------------------------------------------------------------------------------
# Checkpoint loading
# --------------------------------------------------------------------------------------------


def _backbone(state_dict: Mapping[str, torch.Tensor]) -> RetinaFaceBackbone | None:
    """The backbone whose signature keys and shapes ``state_dict`` has, or None."""
    mobile_first_conv = state_dict.get("body.stage1.0.0.weight")
    resnet_first_conv = state_dict.get("body.conv1.weight")
    if mobile_first_conv is not None and tuple(mobile_first_conv.shape) == (8, 3, 3, 3):
        return "mobile0.25"
    if (
        resnet_first_conv is not None
        and tuple(resnet_first_conv.shape) == (64, 3, 7, 7)
        and "body.layer4.0.conv1.weight" in state_dict
    ):
        return "resnet50"
    return None


def _not_retinaface(state_dict: Mapping[str, torch.Tensor]) -> str:
    sample = list(state_dict)[:5]
    return (
        "not a RetinaFace checkpoint: expected 'body.stage1.0.0.weight' of shape (8, 3, 3, 3) "
        "(MobileNet-0.25) or 'body.conv1.weight' of shape (64, 3, 7, 7) plus 'body.layer4.*' "
        f"(ResNet-50), with or without a 'module.' prefix; first keys found: {sample}"
    )


def detect_retinaface_backbone(state_dict: Mapping[str, torch.Tensor]) -> RetinaFaceBackbone:
    """Tell which RetinaFace backbone a state dict belongs to, from its keys and shapes.

    Args:
        state_dict: keys without the ``module.`` prefix.

    Returns:
        ``"mobile0.25"`` or ``"resnet50"``.

    Raises:
        InvalidDetectorWeightsError: neither backbone's signature keys are present.
    """
    backbone = _backbone(state_dict)
    if backbone is None:
        raise InvalidDetectorWeightsError(_not_retinaface(state_dict))
    return backbone


def build_retinaface_from_state_dict(
    state_dict: Mapping[str, torch.Tensor], source: str = "state dict"
) -> RetinaFaceNet:
    """Build a :class:`RetinaFaceNet` with the backbone the weights imply, and load them.

    The network of that backbone is compared with the weights on the meta device before it is
    built (:func:`gpen_core.weights.build_checked`).

    Args:
        state_dict: facexlib / Pytorch_Retinaface state dict, with or without ``module.``,
            with or without ``num_batches_tracked`` buffers.
        source: a description for error messages (e.g. the file path).

    Returns:
        The network in eval mode, on the CPU, float32.

    Raises:
        InvalidDetectorWeightsError: unknown layout, missing/unexpected keys, wrong shapes.
    """
    cleaned = strip_module_prefix(state_dict)
    return _build(detect_retinaface_backbone(cleaned), cleaned, source)


def _build(backbone: RetinaFaceBackbone, state: Mapping[str, torch.Tensor], source: str) -> RetinaFaceNet:
    """The :class:`RetinaFaceNet` of ``backbone`` holding ``state`` (prefix-stripped), compared on the meta
    device first (:func:`gpen_core.weights.build_checked`)."""
    model = build_checked(
        lambda: RetinaFaceNet(backbone), state, source, f"RetinaFace-{backbone}",
        optional_key_suffix=BATCHNORM_COUNTER, error=InvalidDetectorWeightsError,
    )
    logger.info("loaded RetinaFace-%s weights from %s", backbone, source)
    return model


def _weights_file(backbone: RetinaFaceBackbone, file_name: str) -> WeightsFile:
    """The file of ``backbone``: recognised from its signature keys and shapes, built as that backbone (its state
    already read and prefix-stripped by :func:`gpen_core.weights.read_state`)."""
    def why_not(state: Mapping[str, torch.Tensor]) -> str | None:
        return None if _backbone(state) == backbone else _not_retinaface(state)

    return WeightsFile(
        names=(file_name,),
        what=f"retinaface_{backbone}",
        why_not=why_not,
        build=partial(_build, backbone),
        counters=(BATCHNORM_COUNTER,),
    )


RETINAFACE_FILES: dict[RetinaFaceBackbone, WeightsFile] = {
    "resnet50": _weights_file("resnet50", "detection_Resnet50_Final.pth"),
    "mobile0.25": _weights_file("mobile0.25", "detection_mobilenet0.25_Final.pth"),
}
"""facexlib's released files, by backbone (recognised from the keys and shapes, never the file name)."""


def load_retinaface_net(path: str | Path) -> RetinaFaceNet:
    """Read ``detection_Resnet50_Final.pth`` / ``detection_mobilenet0.25_Final.pth`` (or any
    compatible state dict) and return the loaded network (CPU, eval mode).

    The backbone is detected from the keys and shapes, never from the file name. The file goes
    through the checks every weights file does (:mod:`gpen_core.weight_checks`).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        InvalidDetectorWeightsError: the file is not a usable RetinaFace checkpoint.
    """
    state = read_state(path, InvalidDetectorWeightsError)
    backbone = _backbone(state)
    if backbone is None:
        raise InvalidDetectorWeightsError(f"{path}: {_not_retinaface(state)}")
    net = RETINAFACE_FILES[backbone].load_state(state, str(path), InvalidDetectorWeightsError)
    assert isinstance(net, RetinaFaceNet)
    return net
