"""ParseNet, the PSFRGAN face-parsing network that GPEN and facexlib use for their paste masks.

One network, two official homes with the same 238 state-dict keys: GPEN's
``face_parse/parse_model.py`` (``weights/ParseNet-latest.pth``) and facexlib's
``facexlib/parsing/parsenet.py`` (``parsing_parsenet.pth``). Both build it with LeakyReLU(0.2),
BatchNorm and channels clipped to [32, 256]; that is the only variant written here.

Layout (module names are the state-dict names):

* ``encoder.0``: biased 3x3 conv, 3 -> ``base_ch``.
* ``encoder.1..D``: down blocks, channels doubling (clipped), each halving the size.
* ``body.0..R-1``: residual blocks with an identity shortcut, wrapped in a long skip
  (``x + body(x)``).
* ``decoder.0..U-1``: up blocks, channels halving (clipped), each doubling the size.
* ``out_mask_conv`` (parsing logits) and ``out_img_conv`` (an auxiliary RGB image): biased convs.

Every 3x3 conv pads by reflection (1 px); an up conv first upsamples by 2 (nearest).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ConvLayer", "NormLayer", "ParseNet", "ParseNetConfig", "ResidualBlock"]

LEAKY_SLOPE = 0.2
SCALES = ("none", "down", "up")


@dataclass(frozen=True)
class ParseNetConfig:
    """Constructor arguments of the official ``ParseNet`` (LeakyReLU, BatchNorm variant).

    Attributes:
        in_size: input side the network was built for; ``log2(in_size / min_feat_size)``
            down blocks. The network is fully convolutional: any side divisible by
            ``2 ** down_steps`` runs.
        out_size: output side; ``log2(out_size / min_feat_size)`` up blocks.
        min_feat_size: side at the bottleneck for an ``in_size`` input.
        base_ch: channels after ``encoder.0``.
        parsing_ch: parsing classes (19 for the CelebAMask-HQ table).
        res_depth: residual blocks in the body.
        ch_range: ``(min, max)`` channel clip.
    """

    in_size: int = 512
    out_size: int = 512
    min_feat_size: int = 32
    base_ch: int = 64
    parsing_ch: int = 19
    res_depth: int = 10
    ch_range: tuple[int, int] = (32, 256)

    def __post_init__(self) -> None:
        for name in ("in_size", "out_size", "min_feat_size", "base_ch", "parsing_ch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ParseNetConfig.{name} must be a positive int, got {value!r}")
        if self.res_depth < 0:
            raise ValueError(f"ParseNetConfig.res_depth must be >= 0, got {self.res_depth}")
        low, high = self.ch_range
        if not 1 <= low <= high:
            raise ValueError(f"ParseNetConfig.ch_range must be (min, max) with 1 <= min <= max, got {self.ch_range}")
        for name in ("in_size", "out_size"):
            ratio = max(getattr(self, name) // min(self.min_feat_size, getattr(self, name)), 1)
            if ratio & (ratio - 1):
                raise ValueError(
                    f"ParseNetConfig.{name} / min_feat_size must be a power of two, got "
                    f"{getattr(self, name)} / {self.min_feat_size}"
                )

    @property
    def down_steps(self) -> int:
        """Down blocks (``encoder.1..``), as the official ``int(log2(in_size // min_feat))``."""
        return int(math.log2(self.in_size // min(self.in_size, self.min_feat_size)))

    @property
    def up_steps(self) -> int:
        """Up blocks (``decoder.*``)."""
        return int(math.log2(self.out_size // min(self.in_size, self.min_feat_size)))

    def clip(self, channels: int) -> int:
        """``channels`` clipped to ``ch_range``."""
        return max(self.ch_range[0], min(channels, self.ch_range[1]))


class NormLayer(nn.Module):
    """BatchNorm2d under the official name ``norm`` (keys ``<conv>.norm.norm.*``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x)


class ConvLayer(nn.Module):
    """Optional nearest 2x upsample, reflection pad 1, 3x3 conv, optional BatchNorm, optional LeakyReLU.

    The conv has a bias only without BatchNorm. ``scale="down"`` uses stride 2.

    Args:
        cin, cout: channels in and out.
        scale: ``"none"``, ``"down"`` or ``"up"``.
        norm: BatchNorm after the conv (then no conv bias).
        act: LeakyReLU(0.2) last.
    """

    def __init__(self, cin: int, cout: int, scale: str = "none", *, norm: bool = False, act: bool = False) -> None:
        super().__init__()
        if scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
        self.scale = scale
        self.act = act
        self.conv2d = nn.Conv2d(cin, cout, 3, stride=2 if scale == "down" else 1, bias=not norm)
        self.norm = NormLayer(cout) if norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale == "up":
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = self.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"))
        if self.norm is not None:
            x = self.norm(x)
        if self.act:
            x = F.leaky_relu(x, LEAKY_SLOPE)
        return x


class ResidualBlock(nn.Module):
    """``shortcut(x) + conv2(conv1(x))``, no activation after the sum.

    ``conv1`` (BN + LeakyReLU) upsamples first in an up block; ``conv2`` (BN, no activation)
    is the stride-2 conv in a down block. The shortcut is the identity for ``scale="none"``
    with equal channels, else a biased conv that rescales (``shortcut_func``).
    """

    def __init__(self, cin: int, cout: int, scale: str = "none") -> None:
        super().__init__()
        if scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
        self.shortcut_func = None if scale == "none" and cin == cout else ConvLayer(cin, cout, scale)
        self.conv1 = ConvLayer(cin, cout, "up" if scale == "up" else "none", norm=True, act=True)
        self.conv2 = ConvLayer(cout, cout, "down" if scale == "down" else "none", norm=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.shortcut_func is None else self.shortcut_func(x)
        return shortcut + self.conv2(self.conv1(x))


class ParseNet(nn.Module):
    """The face-parsing network; state-dict compatible with GPEN's and facexlib's files.

    Args:
        config: architecture (default: the one both official pipelines build).

    Shape:
        input ``(B, 3, H, W)`` RGB in [-1, 1] (H, W divisible by ``2 ** config.down_steps``;
        the official pipelines use 512 x 512); output ``(logits, image)``:
        ``(B, parsing_ch, H', W')`` raw class scores and ``(B, 3, H', W')`` the auxiliary
        image head, with ``H' = H * out_size / in_size``.
    """

    def __init__(self, config: ParseNetConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or ParseNetConfig()
        clip = config.clip
        head = config.base_ch
        encoder: list[nn.Module] = [ConvLayer(3, config.base_ch)]
        for _ in range(config.down_steps):
            encoder.append(ResidualBlock(clip(head), clip(head * 2), "down"))
            head *= 2
        self.encoder = nn.Sequential(*encoder)
        self.body = nn.Sequential(*(ResidualBlock(clip(head), clip(head)) for _ in range(config.res_depth)))
        decoder: list[nn.Module] = []
        for _ in range(config.up_steps):
            decoder.append(ResidualBlock(clip(head), clip(head // 2), "up"))
            head //= 2
        self.decoder = nn.Sequential(*decoder)
        self.out_img_conv = ConvLayer(clip(head), 3)
        self.out_mask_conv = ConvLayer(clip(head), config.parsing_ch)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feat = self.encoder(x)
        x = feat + self.body(feat)
        x = self.decoder(x)
        return self.out_mask_conv(x), self.out_img_conv(x)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Only the parsing logits ``(B, parsing_ch, H', W')`` (skips the image head)."""
        feat = self.encoder(x)
        return self.out_mask_conv(self.decoder(feat + self.body(feat)))
