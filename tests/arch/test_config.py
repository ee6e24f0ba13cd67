"""Hyper-parameters are read from tensor shapes, never from file names."""
from __future__ import annotations

import pytest
import torch

import gpen_core as g


@pytest.mark.parametrize(
    "config",
    [
        g.GPENConfig(256, 1, 0.5),  # GPEN-BFR-256
        g.GPENConfig(512, 2, 1),  # GPEN-BFR-512, Seg2face-512
        g.GPENConfig(1024, 2, 1),  # GPEN-BFR-1024, colorization/inpainting-1024
        g.GPENConfig(2048, 2, 1),  # GPEN-BFR-2048
        g.GPENConfig(64, 2, 0.125),
        g.GPENConfig(128, 1, 0.25, style_dim=256, n_mlp=4),
    ],
)
def test_config_round_trips_through_shapes(config):
    with torch.device("meta"):
        state = g.GPEN(config).state_dict()
    assert g.config_from_state_dict(state) == config


def test_input_range_is_an_option_not_a_guess():
    with torch.device("meta"):
        state = g.GPEN(g.GPENConfig(64, 2, 0.125)).state_dict()
    assert g.config_from_state_dict(state).input_range == "[-1,1]"
    assert g.config_from_state_dict(state, input_range="[0,1]").input_range == "[0,1]"
    with pytest.raises(g.ConfigError):
        g.GPENConfig(64, input_range="[0,255]")


def test_inconsistent_channels_are_rejected():
    with torch.device("meta"):
        state = dict(g.GPEN(g.GPENConfig(64, 2, 0.125)).state_dict())
    state["generator.to_rgbs.2.conv.weight"] = torch.empty(1, 3, 999, 1, 1, device="meta")
    with pytest.raises(g.ConfigError, match="to_rgbs.2"):
        g.config_from_state_dict(state)
