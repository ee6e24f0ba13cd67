"""Every checkpoint container loads to the same model; every bad file gets a clear error."""
from __future__ import annotations

import os
import pickle

import pytest
import torch
from safetensors.torch import save_file

import gpen_core as g
from helpers import TINY


def output(model: g.GPEN) -> torch.Tensor:
    with torch.inference_mode():
        return model(g.seeded_input(TINY.size, 2))


@pytest.fixture(scope="module")
def expected(tiny_state):
    return output(g.build_model(tiny_state))


@pytest.mark.parametrize(
    "wrap",
    [
        lambda s: s,
        lambda s: {"g_ema": s},
        lambda s: {"params_ema": s, "iteration": 5},
        lambda s: {"state_dict": s},
        lambda s: {"module." + k: v for k, v in s.items()},
        lambda s: {"g_ema": {"module." + k: v for k, v in s.items()}},
    ],
    ids=["plain", "g_ema", "params_ema", "state_dict", "module-prefix", "g_ema-module"],
)
@pytest.mark.parametrize("suffix", [".pth", ".pt", "in-memory"])
def test_containers_load_identically(tmp_path, tiny_state, expected, wrap, suffix):
    obj = wrap(dict(tiny_state))
    if suffix == "in-memory":
        source = obj
    else:
        source = tmp_path / f"model{suffix}"
        torch.save(obj, source)
    model = g.load_model(source, device="cpu")
    assert model.config == TINY
    assert not model.training
    assert torch.equal(output(model), expected)


def test_safetensors_and_convert_round_trip(tmp_path, tiny_state, expected):
    pth = tmp_path / "GPEN-BFR-64.pth"
    torch.save({"g_ema": tiny_state}, pth)
    out = tmp_path / "converted.safetensors"
    from gpen_core.tools.cli import main

    assert main(["convert", str(pth), str(out)]) == 0
    assert torch.equal(output(g.load_model(out, device="cpu")), expected)
    assert main(["convert", str(pth), str(out)]) == 2  # refuses to overwrite
    direct = tmp_path / "direct.safetensors"
    save_file({k: v.contiguous() for k, v in tiny_state.items()}, direct)
    assert torch.equal(output(g.load_model(direct, device="cpu")), expected)


def test_settings_come_from_shapes_not_names(tmp_path, tiny_state):
    misleading = tmp_path / "GPEN-BFR-2048.pth"
    torch.save(tiny_state, misleading)
    assert g.load_model(misleading, device="cpu").config.size == 64


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="nowhere.pth.*models/gpen"):
        g.load_model("nowhere.pth")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.pth"
    path.write_bytes(b"")
    with pytest.raises(g.CheckpointError, match="empty.pth.*empty"):
        g.load_model(path)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_truncated_file(tmp_path, tiny_state, suffix):
    full = tmp_path / f"full{suffix}"
    if suffix == ".pth":
        torch.save(tiny_state, full)
    else:
        save_file({k: v.contiguous() for k, v in tiny_state.items()}, full)
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(g.CheckpointError, match=f"cut\\{suffix}.*(truncated|corrupt)"):
        g.load_model(cut)


@pytest.mark.parametrize("text", ["not a checkpoint at all", "this is not a checkpoint\n", "(((("])
def test_text_file_is_not_a_checkpoint(tmp_path, text):
    path = tmp_path / "notes.pth"
    path.write_text(text)
    with pytest.raises(g.CheckpointError, match="notes.pth"):
        g.load_model(path)


class _RunsCode:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_with_code_is_refused_and_not_run(tmp_path, tiny_state):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"g_ema": tiny_state, "payload": _RunsCode(str(marker))}, path)
    with pytest.raises(g.CheckpointError, match="evil.pth.*refused.*run code"):
        g.load_model(path)
    assert not marker.exists()
    raw = tmp_path / "evil-raw.pth"
    raw.write_bytes(pickle.dumps(_RunsCode(str(marker))))
    with pytest.raises(g.CheckpointError, match="evil-raw.pth"):
        g.load_model(raw)
    assert not marker.exists()


def discriminator_state() -> dict[str, torch.Tensor]:
    """Keys and shapes of the official GPEN Discriminator (GPEN-BFR-*-D.pth) at size 64."""
    state = {"convs.0.0.weight": torch.zeros(64, 3, 1, 1), "convs.0.1.bias": torch.zeros(64)}
    for i in range(1, 5):
        state[f"convs.{i}.conv1.0.weight"] = torch.zeros(64, 64, 3, 3)
        state[f"convs.{i}.conv2.0.kernel"] = torch.zeros(4, 4)
        state[f"convs.{i}.skip.1.weight"] = torch.zeros(64, 64, 1, 1)
    state["final_conv.0.weight"] = torch.zeros(64, 65, 3, 3)
    state["final_linear.0.weight"] = torch.zeros(64, 1024)
    state["final_linear.1.weight"] = torch.zeros(1, 64)
    return state


def test_discriminator_is_named(tmp_path):
    path = tmp_path / "GPEN-BFR-512-D.pth"
    torch.save(discriminator_state(), path)
    with pytest.raises(g.CheckpointError, match="GPEN-BFR-512-D.pth.*discriminator.*generator file"):
        g.load_model(path)


def test_other_architecture(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save(torch.nn.Conv2d(3, 8, 3).state_dict(), path)
    with pytest.raises(g.CheckpointError, match="resnet.pth.*not a GPEN generator.*weight"):
        g.load_model(path)


def test_missing_unexpected_and_misshaped_keys(tmp_path, tiny_state):
    state = dict(tiny_state)
    del state["generator.convs.1.noise.weight"]
    state["generator.extra.weight"] = torch.zeros(3)
    state["generator.to_rgbs.0.bias"] = torch.zeros(1, 4, 1, 1)
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(g.CheckpointError) as info:
        g.load_model(path)
    message = str(info.value)
    assert "broken.pth" in message
    assert "1 missing: generator.convs.1.noise.weight" in message
    assert "1 unexpected: generator.extra.weight" in message
    assert "generator.to_rgbs.0.bias (1, 4, 1, 1) (expected (1, 3, 1, 1))" in message


def test_nested_dict_without_tensors(tmp_path):
    path = tmp_path / "opt.pth"
    torch.save({"optimizer": {"lr": 0.1}, "epoch": 3}, path)
    with pytest.raises(g.CheckpointError, match="opt.pth.*no tensors.*epoch"):
        g.load_model(path)
