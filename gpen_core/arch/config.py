"""GPEN hyper-parameters, and reading them from the shapes of a state dict."""
from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from ..official_files import GPEN_RELEASES

BASE_CHANNELS = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32, 1024: 16, 2048: 8}
"""Official channel table before ``channel_multiplier`` (levels >= 64) and ``narrow``."""

OFFICIAL_CONFIGS: dict[int, tuple[float, float]] = GPEN_RELEASES
"""``size: (channel_multiplier, narrow)`` of the official GPEN-BFR releases (yangxy/GPEN), declared once with
their files (:data:`gpen_core.official_files.GPEN_RELEASES`)."""

INPUT_RANGES = {"[-1,1]": (-1.0, 1.0), "[0,1]": (0.0, 1.0)}
"""Value ranges a model may expect: BFR, colorization, inpainting use [-1, 1]; Seg2face uses [0, 1]."""


class ConfigError(ValueError):
    """The tensors do not describe a GPEN ``FullGenerator``."""


@dataclass(frozen=True)
class GPENConfig:
    """Constructor arguments of the official ``FullGenerator`` (``isconcat=True``, ``lr_mlp=0.01``).

    Attributes:
        size: square input/output size S (a power of two, 16 to 2048).
        channel_multiplier: 1 for GPEN-BFR-256, 2 for the larger releases.
        narrow: 0.5 for GPEN-BFR-256, 1 for the larger releases.
        style_dim: width of the latent (512 in every release).
        n_mlp: layers of the mapping network (8 in every release).
        input_range: value range of the images the model was trained on, a key of
            :data:`INPUT_RANGES`; not stored in checkpoints, so the caller says it.
    """

    size: int
    channel_multiplier: float = 2
    narrow: float = 1.0
    style_dim: int = 512
    n_mlp: int = 8
    input_range: str = "[-1,1]"

    def __post_init__(self) -> None:
        if self.size not in BASE_CHANNELS or self.size < 16:
            raise ConfigError(f"size must be a power of two from 16 to 2048, got {self.size}")
        if self.input_range not in INPUT_RANGES:
            raise ConfigError(f"input_range must be one of {sorted(INPUT_RANGES)}, got {self.input_range!r}")

    @property
    def log_size(self) -> int:
        return int(math.log2(self.size))

    def channels(self, resolution: int) -> int:
        """Feature channels at ``resolution`` (official ``channels`` table)."""
        multiplier = self.channel_multiplier if resolution >= 64 else 1
        return int(BASE_CHANNELS[resolution] * multiplier * self.narrow)

    @property
    def resolutions(self) -> list[int]:
        """Decoder resolutions from 4 to ``size``."""
        return [2**i for i in range(2, self.log_size + 1)]


def _count_indexed(state_dict: Mapping[str, torch.Tensor], pattern: str) -> int:
    rx = re.compile(pattern)
    indices = {int(m.group(1)) for k in state_dict if (m := rx.fullmatch(k))}
    if indices != set(range(len(indices))) and indices != set(range(1, len(indices) + 1)):
        raise ConfigError(f"non-contiguous indices for {pattern}: {sorted(indices)}")
    return len(indices)


def config_from_state_dict(state_dict: Mapping[str, torch.Tensor], *, input_range: str = "[-1,1]") -> GPENConfig:
    """Read size, channel_multiplier, narrow, style_dim and n_mlp from tensor shapes.

    Args:
        state_dict: official ``FullGenerator`` keys (``generator.*``, ``ecdN.*``, ``final_linear.*``).
        input_range: see :class:`GPENConfig`.

    Raises:
        ConfigError: a key the inference needs is missing, or the channel table does not
            match any ``(channel_multiplier, narrow)`` of the official formula.
    """
    needed = ["generator.input.input", "generator.style.1.weight", "ecd0.0.0.weight", "final_linear.0.weight"]
    missing = [k for k in needed if k not in state_dict]
    if missing:
        raise ConfigError(f"not a GPEN FullGenerator state dict: missing {missing}")
    n_stages = _count_indexed(state_dict, r"ecd(\d+)\.0\.\d+\.(?:weight|kernel|bias)")
    size = 2 ** (n_stages + 1)
    if size not in BASE_CHANNELS:
        raise ConfigError(f"{n_stages} encoder stages give size {size}, which no GPEN model has")
    n_mlp = _count_indexed(state_dict, r"generator\.style\.(\d+)\.weight")
    style_dim = int(state_dict["generator.style.1.weight"].shape[0])
    c4 = int(state_dict["generator.input.input"].shape[1])
    narrow = c4 / 512
    c_top = int(state_dict["ecd0.0.0.weight"].shape[0])
    top_base = BASE_CHANNELS[size] * narrow
    channel_multiplier = c_top / top_base if size >= 64 else 1
    if channel_multiplier == int(channel_multiplier):
        channel_multiplier = int(channel_multiplier)
    if narrow == int(narrow):
        narrow = int(narrow)
    config = GPENConfig(size, channel_multiplier, narrow, style_dim, n_mlp, input_range)
    # Every level must match the formula, not only the two we solved from.
    for r in config.resolutions[1:]:
        key = f"generator.to_rgbs.{int(math.log2(r)) - 3}.conv.weight"
        if key in state_dict and int(state_dict[key].shape[2]) != 2 * config.channels(r):
            raise ConfigError(
                f"{key} has {state_dict[key].shape[2]} input channels; channel_multiplier="
                f"{channel_multiplier} narrow={narrow} predicts {2 * config.channels(r)}"
            )
    return config
