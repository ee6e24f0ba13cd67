"""ParseNet loading: both official file names, safetensors, key variants, config from shapes, bad files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from gpen_core.face.parsing import (
    ParseNet,
    ParseNetConfig,
    ParserWeightsNotFoundError,
    find_parser_weights,
    load_parser,
    parsenet_config_from_state_dict,
    require_parser_weights,
    seeded_parsenet_state_dict,
)
from gpen_core.weights import CheckpointError

SMALL = ParseNetConfig(
    in_size=64, out_size=64, min_feat_size=16, base_ch=8, parsing_ch=5, res_depth=2, ch_range=(4, 16)
)
"""A ParseNet with every kind of block (clipped channels, 2 down, 2 body, 2 up): milliseconds per forward."""


@pytest.fixture(scope="module")
def small_state() -> dict[str, torch.Tensor]:
    return seeded_parsenet_state_dict(SMALL, base=11, gain=0.9)


@pytest.fixture(scope="module")
def probe() -> torch.Tensor:
    return torch.rand((2, 3, 64, 64), generator=torch.Generator().manual_seed(3)) * 2 - 1


def outputs(model: ParseNet, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.inference_mode():
        return model(x)


def assert_same_network(a: ParseNet, b: ParseNet, x: torch.Tensor) -> None:
    for left, right in zip(outputs(a, x), outputs(b, x), strict=True):
        assert torch.equal(left, right)


@pytest.mark.parametrize(
    "config",
    [
        ParseNetConfig(),
        SMALL,
        ParseNetConfig(
            in_size=128, out_size=128, min_feat_size=32, base_ch=16, parsing_ch=3, res_depth=0, ch_range=(8, 32)
        ),
        ParseNetConfig(
            in_size=64, out_size=64, min_feat_size=8, base_ch=6, parsing_ch=19, res_depth=1, ch_range=(12, 24)
        ),
    ],
    ids=["official", "small", "no-body", "min-clip"],
)
def test_config_is_read_back_from_the_shapes(config: ParseNetConfig) -> None:
    with torch.device("meta"):
        state = ParseNet(config).state_dict()
    derived = parsenet_config_from_state_dict(state)
    # min_feat_size is not in the weights: 32 is assumed, and sizes scale with it
    with torch.device("meta"):
        rebuilt = ParseNet(derived).state_dict()
    assert [(k, v.shape) for k, v in rebuilt.items()] == [(k, v.shape) for k, v in state.items()]
    read_back = (derived.base_ch, derived.parsing_ch, derived.res_depth)
    assert read_back == (config.base_ch, config.parsing_ch, config.res_depth)
    assert derived.down_steps == config.down_steps and derived.up_steps == config.up_steps


def test_official_layout_counts() -> None:
    state = ParseNet().state_dict()
    assert len(state) == 238
    assert sum(v.numel() for k, v in state.items() if v.dtype == torch.float32) == 21_319_894
    assert parsenet_config_from_state_dict(state) == ParseNetConfig()


def test_shapes_and_logits_head(small_state, probe) -> None:
    model = load_parser(small_state)
    logits, image = outputs(model, probe)
    assert logits.shape == (2, 5, 64, 64) and image.shape == (2, 3, 64, 64)
    with torch.inference_mode():
        assert torch.equal(model.logits(probe), logits)
    # batch members are independent (eval-mode BatchNorm); the batch size may change the conv algorithm
    torch.testing.assert_close(outputs(model, probe[1:])[0], logits[1:], rtol=0, atol=1e-5)
    assert not model.training and not any(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("file_name", ["ParseNet-latest.pth", "parsing_parsenet.pth", "parsing_parsenet.safetensors"])
def test_files_round_trip(tmp_path: Path, small_state, probe, file_name: str) -> None:
    path = tmp_path / file_name
    if path.suffix == ".safetensors":
        save_file(small_state, str(path))
    else:
        torch.save(small_state, path)
    assert_same_network(load_parser(path), load_parser(small_state), probe)


@pytest.mark.parametrize("variant", ["module_prefix", "nested_params", "nested_state_dict", "no_num_batches_tracked"])
def test_key_variants(small_state, probe, variant: str) -> None:
    state: object
    if variant == "module_prefix":
        state = {f"module.{k}": v for k, v in small_state.items()}
    elif variant == "nested_params":
        state = {"params": dict(small_state)}
    elif variant == "nested_state_dict":
        state = {"state_dict": dict(small_state), "epoch": 3}
    else:
        state = {k: v for k, v in small_state.items() if not k.endswith("num_batches_tracked")}
    assert_same_network(load_parser(state), load_parser(small_state), probe)  # type: ignore[arg-type]


def test_dtype_and_device(small_state) -> None:
    model = load_parser(small_state, dtype=torch.bfloat16, device="cpu")
    assert model.dtype == torch.bfloat16 and model.device == torch.device("cpu")
    assert model.encoder[1].conv1.conv2d.weight.dtype == torch.bfloat16
    assert model.out_mask_conv.conv2d.weight.dtype == torch.float32  # the parsing head stays float32
    assert model.folded and model.encoder[1].conv1.norm is None  # BatchNorms folded at load
    exact = load_parser(small_state)
    assert exact.dtype == torch.float32 and not exact.folded
    assert exact.encoder[1].conv1.norm.norm.num_batches_tracked.dtype == torch.int64


def test_missing_and_misshaped_keys_name_the_file(tmp_path: Path, small_state) -> None:
    broken = dict(small_state)
    del broken["body.1.conv2.norm.norm.weight"]
    broken["out_img_conv.conv2d.bias"] = torch.zeros(4)
    path = tmp_path / "ParseNet-latest.pth"
    torch.save(broken, path)
    with pytest.raises(CheckpointError) as info:
        load_parser(path)
    message = str(info.value)
    assert str(path) in message and "body.1.conv2.norm.norm.weight" in message and "out_img_conv.conv2d.bias" in message


def test_code_in_a_pickle_is_refused(tmp_path: Path) -> None:
    class Payload:
        def __reduce__(self):  # would run os.getcwd() when unpickled without weights_only
            return (os.getcwd, ())

    path = tmp_path / "parsing_parsenet.pth"
    torch.save({"encoder.0.conv2d.weight": Payload()}, path)
    with pytest.raises(CheckpointError, match="refused"):
        load_parser(path)


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ({"cp.resnet.conv1.weight": torch.zeros(64, 3, 7, 7), "ffm.convblk.conv.weight": torch.zeros(1)}, "BiSeNet"),
        ({"generator.input.input": torch.zeros(1, 512, 4, 4)}, "GPEN generator"),
        ({"body.stage1.0.0.weight": torch.zeros(8, 3, 3, 3)}, "RetinaFace"),
        ({"conv.weight": torch.zeros(1)}, "not ParseNet weights"),
    ],
    ids=["bisenet", "gpen", "retinaface", "unknown"],
)
def test_other_networks_are_named(tmp_path: Path, state, expected: str) -> None:
    path = tmp_path / "parsing_parsenet.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=expected) as info:
        load_parser(path)
    assert str(path) in str(info.value)


def test_prelu_variant_is_refused(small_state) -> None:
    state = dict(small_state)
    state["body.0.conv1.relu.func.weight"] = torch.zeros(16)
    with pytest.raises(CheckpointError, match="PReLU"):
        load_parser(state)


def test_unreadable_files(tmp_path: Path) -> None:
    empty = tmp_path / "ParseNet-latest.pth"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_parser(empty)
    garbage = tmp_path / "parsing_parsenet.safetensors"
    garbage.write_bytes(b"not a safetensors file at all")
    with pytest.raises(CheckpointError, match=str(garbage.name)):
        load_parser(garbage)
    with pytest.raises(ParserWeightsNotFoundError, match="missing.pth"):
        load_parser(tmp_path / "missing.pth")


def test_finding_the_file(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    assert find_parser_weights([first, second]) is None
    (second / "PARSING_PARSENET.PTH").write_bytes(b"x")
    assert find_parser_weights([first, second]) == second / "PARSING_PARSENET.PTH"
    (second / "ParseNet-latest.pth").write_bytes(b"x")
    assert find_parser_weights([first, second]) == second / "ParseNet-latest.pth"  # GPEN's name first
    (first / "parsing_parsenet.safetensors").write_bytes(b"x")
    assert find_parser_weights([first, second]) == first / "parsing_parsenet.safetensors"  # folder order first
    assert find_parser_weights(tmp_path / "nowhere") is None


def test_not_found_message_says_what_to_download(tmp_path: Path) -> None:
    with pytest.raises(ParserWeightsNotFoundError) as info:
        require_parser_weights([tmp_path])
    message = str(info.value)
    for needed in ("ParseNet-latest.pth", "parsing_parsenet.pth", str(tmp_path), "https://", "box"):
        assert needed in message
