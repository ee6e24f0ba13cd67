"""Every hostile weights file (``make_hostile.py``), for every network kind, through its public loader and the
registry: a clear :class:`CheckpointError` (the network's subclass) naming the file and the key, raised before
the network is built (no more tensor memory than reading the file takes, plus :data:`SLACK`), zip records
refused before unpickling."""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from weights.make_hostile import expanded_views, hostile_key, hostile_makers, meta_shapes

import gpen_core as g
from gpen_core.face.detection.errors import InvalidDetectorWeightsError
from gpen_core.face.detection.loader import load_detector
from gpen_core.face.detection.mtcnn import MTCNN_WEIGHT_FILES, ONet, PNet, RNet
from gpen_core.face.detection.retinaface import RetinaFaceNet
from gpen_core.face.parsing import ParseNet, ParseNetConfig, load_parser, seeded_parsenet_state_dict
from gpen_core.runtime.memory import LiveTensorPeak
from gpen_core.zoo.registry import identify
from helpers import FACE_DATA_DIR

MiB = 1 << 20
SLACK = MiB // 4
"""Tensor memory allowed beyond the file's own size: the finite check's bool map of one weight."""
SMALL_GPEN = g.GPENConfig(32, 2, 0.125, style_dim=32, n_mlp=2)
SMALL_PARSENET = ParseNetConfig(
    in_size=64, out_size=64, min_feat_size=16, base_ch=8, parsing_ch=5, res_depth=2, ch_range=(4, 16)
)


def _seeded(make: Callable[[], torch.nn.Module]) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return dict(make().state_dict())


def _resnet50_part() -> dict[str, torch.Tensor]:
    """The keys a ResNet-50 RetinaFace file is recognised by (a full one is 109 MB), and a counter."""
    generator = torch.Generator().manual_seed(1)
    return {
        "body.conv1.weight": torch.randn(64, 3, 7, 7, generator=generator),
        "body.bn1.running_var": torch.rand(64, generator=generator) + 0.5,
        "body.bn1.num_batches_tracked": torch.tensor(0),
        "body.layer4.0.conv1.weight": torch.randn(512, 1024, 1, 1, generator=generator) * 0.01,
    }


def _one_key_huge(make: Callable[[], torch.nn.Module]) -> dict[str, tuple[int, ...]]:
    """A fixed network's shapes, its first weight declared as 1 GiB."""
    shapes = meta_shapes(make)
    return {**shapes, next(iter(shapes)): (65536, 4096)}


@dataclass(frozen=True)
class Kind:
    """A network kind: its files (the hostile one first), valid states, what ``huge.pth`` declares, its loader."""

    files: tuple[str, ...]
    states: Callable[[], list[dict[str, torch.Tensor]]]
    huge: Callable[[], dict[str, tuple[int, ...]]]
    load: Callable[[Path], object]
    error: type[g.CheckpointError] = g.CheckpointError


KINDS = {
    "gpen": Kind(
        ("GPEN-BFR-512.pth",), lambda: [g.seeded_state_dict(SMALL_GPEN, 3)],
        lambda: meta_shapes(lambda: g.GPEN(g.GPENConfig(512, 2, 2))),
        lambda folder: g.load_model(folder / "GPEN-BFR-512.pth", device="cpu"),
    ),
    "retinaface_resnet50": Kind(
        ("detection_Resnet50_Final.pth",), lambda: [_resnet50_part()],
        lambda: _one_key_huge(lambda: RetinaFaceNet("resnet50")),
        lambda folder: load_detector("retinaface_resnet50", [folder]), InvalidDetectorWeightsError,
    ),
    "retinaface_mobile0.25": Kind(
        ("detection_mobilenet0.25_Final.pth",),
        lambda: [torch.load(FACE_DATA_DIR / "retinaface_mobile0.25_seed1000.pth", weights_only=True)],
        lambda: _one_key_huge(lambda: RetinaFaceNet("mobile0.25")),
        lambda folder: load_detector("retinaface_mobile0.25", [folder]), InvalidDetectorWeightsError,
    ),
    "mtcnn": Kind(
        MTCNN_WEIGHT_FILES, lambda: [_seeded(PNet), _seeded(RNet), _seeded(ONet)],
        lambda: _one_key_huge(PNet),
        lambda folder: load_detector("mtcnn", [folder]), InvalidDetectorWeightsError,
    ),
    "parsenet": Kind(
        ("ParseNet-latest.pth",), lambda: [seeded_parsenet_state_dict(SMALL_PARSENET, base=11, gain=0.9)],
        lambda: meta_shapes(lambda: ParseNet(ParseNetConfig(base_ch=128, ch_range=(128, 1024)))),
        lambda folder: load_parser(folder / "ParseNet-latest.pth"),
    ),
}

DTYPE_MESSAGE = r"tensor '{key}' is {dtype}; weights must be float16, bfloat16, float32, float64"
REASONS = {
    "bool.pth": DTYPE_MESSAGE.replace("{dtype}", "bool"),
    "int64.pth": DTYPE_MESSAGE.replace("{dtype}", "int64"),
    "complex.pth": DTYPE_MESSAGE.replace("{dtype}", "complex64"),
    "fp8.pth": DTYPE_MESSAGE.replace("{dtype}", "float8_e4m3fn"),
    "nan.pth": r"tensor '{key}' holds 1 NaN or infinite value\(s\); the weights are corrupt",
    "inf.pth": r"tensor '{key}' holds 1 NaN or infinite value\(s\); the weights are corrupt",
    "deep.pth": r"nested more than 64 containers deep; no checkpoint of weights is",
    "bomb.pth": r"record '[^']+/data/0' is compressed \(\d+ bytes declared to inflate to 67108864\); torch\.save "
                r"stores records uncompressed.*Refused without inflating it",
    "oversized.pth": r"record '[^']+/data/0' declares 2147483648 bytes, more than the file's \d+ bytes could hold",
    "expanded.pth": r"tensor '[^']+' declares shape \(.*\) \(\d+ bytes\) but only 4 bytes of data stand behind it: "
                    r"an expanded view, not stored weights\. Refused before building the network",
    "huge.pth": r"tensor '[^']+' declares shape \(.*\) \(\d+ bytes\) but only 4 bytes of data stand behind it",
    "legacy_huge.pth": r"its storages declare 8\d{9} bytes, more than the file's \d+ bytes could hold; truncated or "
                       r"crafted\. Refused before reading them",
}
BEFORE_UNPICKLING = {"bomb.pth", "oversized.pth", "legacy_huge.pth"}
"""Refused from the archive's directory or the declared storages, before ``torch.load`` runs."""


def test_every_hostile_file_has_a_reason():
    assert set(hostile_makers({})) == set(REASONS)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> Callable[[str, str], Path]:
    """``hostile(kind, case)``: a folder with the kind's files, the first one hostile (made once)."""
    made: dict[tuple[str, str], Path] = {}
    root = tmp_path_factory.mktemp("hostile")
    states = {name: kind.states() for name, kind in KINDS.items()}

    def folder(kind_name: str, case: str) -> Path:
        if (kind_name, case) not in made:
            kind = KINDS[kind_name]
            target = root / kind_name / case
            target.mkdir(parents=True)
            first, *others = states[kind_name]
            hostile_makers(kind.huge())[case](target / kind.files[0], first)
            for name, state in zip(kind.files[1:], others, strict=True):
                torch.save(state, target / name)
            made[kind_name, case] = target
        return made[kind_name, case]

    return folder


@pytest.mark.parametrize("case", sorted(REASONS))
@pytest.mark.parametrize("kind_name", sorted(KINDS))
def test_hostile_file_is_refused_by_name_before_building(hostile, monkeypatch, kind_name, case):
    kind = KINDS[kind_name]
    folder = hostile(kind_name, case)
    path = folder / kind.files[0]
    key = hostile_key(kind.states()[0])
    if case in BEFORE_UNPICKLING:
        def refuse(*args, **kwargs):
            raise AssertionError("torch.load ran before the archive's directory or storages were checked")

        monkeypatch.setattr(torch, "load", refuse)
    with LiveTensorPeak() as counter, pytest.raises(kind.error) as info:
        kind.load(folder)
    message = str(info.value)
    assert re.search(re.escape(f"{path}") + ".*" + REASONS[case].replace("{key}", re.escape(key)), message), message
    allowed = path.stat().st_size + SLACK  # reading the file; building the network would take as much again
    assert counter.peak_bytes < allowed, f"{counter.peak_bytes} bytes of tensors allocated before the refusal"


@pytest.mark.parametrize("case", sorted(REASONS))
@pytest.mark.parametrize("kind_name", sorted(KINDS))
def test_hostile_file_is_refused_by_the_registry(hostile, kind_name, case):
    path = hostile(kind_name, case) / KINDS[kind_name].files[0]
    key = hostile_key(KINDS[kind_name].states()[0])
    with pytest.raises(g.CheckpointError, match=re.escape(str(path)) + ".*" + REASONS[case].replace("{key}", key)):
        identify(path)


@pytest.mark.parametrize("kind_name", sorted(KINDS))
def test_huge_declares_a_gigabyte_in_kilobytes(hostile, kind_name):
    """What ``huge.pth`` would cost to build, and what it costs on disk."""
    declared = sum(torch.Size(shape).numel() * 4 for shape in KINDS[kind_name].huge().values())
    size = (hostile(kind_name, "huge.pth") / KINDS[kind_name].files[0]).stat().st_size
    assert declared > 900 * MiB and size < 64 * 1024


@pytest.mark.parametrize("kind_name", sorted(set(KINDS) - {"retinaface_resnet50"}))
def test_the_valid_files_load(tmp_path, kind_name):
    """The control: the same states, saved plainly, load (so each refusal above is the hostile change's)."""
    kind = KINDS[kind_name]
    for name, state in zip(kind.files, kind.states(), strict=True):
        torch.save(state, tmp_path / name)
    assert kind.load(tmp_path) is not None


def test_shapes_are_compared_before_the_network_is_allocated(tmp_path):
    """A ResNet-50 file missing most keys: refused from the meta network, the 109 MB real one never built."""
    path = tmp_path / "detection_Resnet50_Final.pth"
    torch.save(_resnet50_part(), path)
    with LiveTensorPeak() as counter, pytest.raises(InvalidDetectorWeightsError, match=r"does not match "
                                                     r"RetinaFace-resnet50: \d+ missing: body\.bn1\.weight"):
        load_detector("retinaface_resnet50", [tmp_path])
    assert counter.peak_bytes < path.stat().st_size + SLACK


def test_an_in_memory_state_dict_is_checked_too():
    state = g.seeded_state_dict(SMALL_GPEN, 3)
    key = hostile_key(state)
    state[key] = state[key].clone().fill_(float("nan"))
    with pytest.raises(g.CheckpointError, match=rf"<state dict>: tensor '{re.escape(key)}' holds \d+ NaN"):
        g.load_model(state)
    views = expanded_views({k: tuple(v.shape) for k, v in state.items()})
    with pytest.raises(g.CheckpointError, match="an expanded view"):
        g.load_model(views)


@pytest.mark.parametrize(("dtype", "value", "reason"), [
    (torch.bool, None, "is bool; weights must be"),
    (torch.float8_e5m2, None, "is float8_e5m2; weights must be"),
    (torch.float32, float("nan"), r"holds 1 NaN or infinite value\(s\)"),
])
def test_safetensors_files_get_the_same_checks(tmp_path, dtype, value, reason):
    from safetensors.torch import save_file

    state = g.seeded_state_dict(SMALL_GPEN, 3)
    key = hostile_key(state)
    state[key] = state[key].clone()
    if value is not None:
        state[key].view(-1)[0] = value
    state[key] = state[key].to(dtype)
    path = tmp_path / "GPEN-BFR-512.safetensors"
    save_file(state, str(path))
    with pytest.raises(g.CheckpointError, match=rf"{re.escape(str(path))}: tensor '{re.escape(key)}' {reason}"):
        g.load_model(path)
