"""Our generator reproduces the official GPEN outputs (shared/reference) and its state-dict layout."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import gpen_core as g
from helpers import DATA_DIR


def manifest(size: int) -> dict:
    return json.loads((DATA_DIR / f"manifest-GPEN-BFR-{size}.json").read_text())


@pytest.mark.parametrize("size", [256, 512])
def test_state_dict_layout_matches_official(size):
    m = manifest(size)
    c = m["config"]
    config = g.GPENConfig(size, c["channel_multiplier"], c["narrow"], c["style_dim"], c["n_mlp"])
    with torch.device("meta"):
        model = g.GPEN(config)
    state = model.state_dict()
    assert list(state) == list(m["keys"])  # same keys, same order
    for key, entry in m["keys"].items():
        assert list(state[key].shape) == entry["shape"], key
    buffers = {k for k, _ in model.named_buffers()}
    assert buffers == {k for k, e in m["keys"].items() if e["kind"] == "buffer"}


@pytest.mark.parametrize("size", [256, 512])
def test_seeded_weights_follow_the_manifest_rule(size):
    m = manifest(size)
    c = m["config"]
    state = g.seeded_state_dict(g.GPENConfig(size, c["channel_multiplier"], c["narrow"]), 1)
    kernel = m["keys"]["ecd1.0.0.kernel"]
    assert kernel["upsample_factor"] == 1
    assert torch.allclose(state["ecd1.0.0.kernel"].sum(), torch.tensor(1.0))
    assert torch.allclose(state["generator.convs.0.conv.blur.kernel"].sum(), torch.tensor(4.0))
    assert float(state["generator.conv1.conv.modulation.bias"].mean()) == pytest.approx(1.0, abs=0.02)


@pytest.mark.parametrize("size", [256, 512])
def test_forward_equals_official_reference(size):
    reference = np.load(DATA_DIR / f"GPEN-BFR-{size}-seed1-b1-output.npy")
    m = manifest(size)
    config = g.config_from_state_dict(g.seeded_state_dict(g.GPENConfig(size, m["config"]["channel_multiplier"],
                                                                       m["config"]["narrow"]), 1))
    model = g.load_model(g.seeded_state_dict(config, 1), device="cpu")
    with torch.inference_mode():
        out = model(g.seeded_input(size, 1))
    assert out.shape == (1, 3, size, size) and out.dtype == torch.float32
    error = float(np.abs(out.numpy() - reference).max())
    assert error < 1e-4, error
    assert float(np.abs(reference).max()) > 1.0  # unclamped output, as the official one


def test_batch_equals_single_samples(tiny_model):
    """The batched path (input scaling + output demodulation) equals the folded-weight path."""
    x = g.seeded_input(64, 3, batch=3)
    with torch.inference_mode():
        batched = tiny_model(x)
        singles = torch.cat([tiny_model(x[i : i + 1]) for i in range(3)])
    assert torch.allclose(batched, singles, atol=1e-5, rtol=0)
    assert not torch.allclose(batched[0], batched[1])


def test_input_shape_is_checked(tiny_model):
    with pytest.raises(ValueError, match=r"\(B, 3, 64, 64\).*\(1, 3, 32, 32\)"):
        tiny_model(torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match="got"):
        tiny_model(torch.zeros(1, 4, 64, 64))
