"""The model-zoo registry: one entry per network, all of one shape; files recognised from their keys and
shapes, never their names; the option lists and the ``auto`` order read from it."""
from __future__ import annotations

import re

import pytest
import torch

import gpen_core as g
from gpen_core.arch.config import OFFICIAL_CONFIGS
from gpen_core.face.detection import DETECTOR_NAMES, DETECTORS
from gpen_core.face.detection.mtcnn import ONet, PNet, RNet
from gpen_core.face.detection.retinaface import RetinaFaceNet
from gpen_core.face.parsing import ParseNet, ParseNetConfig, seeded_parsenet_state_dict
from gpen_core.official_files import OFFICIAL_FILES
from gpen_core.zoo.registry import NETWORKS, identify, network_named
from helpers import FACE_DATA_DIR, REPO_ROOT, TINY


def test_one_entry_per_network_in_a_fixed_order():
    assert [e.name for e in NETWORKS] == ["gpen", "retinaface_resnet50", "retinaface_mobile0.25", "mtcnn", "parsenet"]
    assert [e.task for e in NETWORKS] == ["restore", "detect", "detect", "detect", "parse"]
    assert [e.folder for e in NETWORKS] == ["gpen", "facedetection", "facedetection", "facedetection", "facedetection"]
    names = [n for e in NETWORKS for n in (e.name, *e.aliases)]
    assert len(names) == len(set(names)) and all(n == n.lower() for n in names)


def test_the_detectors_and_their_order_come_from_the_registry(pack):
    detectors = tuple(e.name for e in NETWORKS if e.task == "detect")
    assert DETECTOR_NAMES == detectors == tuple(e.name for e in DETECTORS)
    assert ("auto", *detectors) == pack.nodes.logic.DETECTOR_OPTIONS


def test_capabilities():
    gpen, resnet50, mobile, mtcnn, parsenet = NETWORKS
    assert gpen.sizes == tuple(OFFICIAL_CONFIGS) == (256, 512, 1024, 2048)
    assert parsenet.sizes == (512,)
    assert all(e.sizes == () for e in (resnet50, mobile, mtcnn))  # any image size
    assert [(e.supports_half, e.supports_bfloat16) for e in NETWORKS] == [(True, True), *[(False, False)] * 3,
                                                                          (True, True)]


def test_published_files():
    assert [[f.names for f in e.files] for e in NETWORKS] == [
        [("GPEN-BFR-512.pth", "GPEN-BFR-256.pth", "GPEN-BFR-1024.pth", "GPEN-BFR-2048.pth")],
        [("detection_Resnet50_Final.pth",)],
        [("detection_mobilenet0.25_Final.pth",)],
        [("pnet.pt",), ("rnet.pt",), ("onet.pt",)],
        [("ParseNet-latest.pth", "parsing_parsenet.pth")],
    ]
    assert NETWORKS[3].subfolder == "mtcnn"
    # the official files' table and the registry agree: each published file is a name of its network's file
    for official in OFFICIAL_FILES:
        (file,) = network_named(official.network).files
        assert official.file_name in file.names and official.folder == network_named(official.network).folder
        assert re.fullmatch(rf"https://[\w./-]+/{re.escape(official.file_name)}", official.url)


@pytest.mark.parametrize(
    ("name", "expected"),
    [("GPEN", "gpen"), ("retinaface", "retinaface_resnet50"), (" RetinaFace_MobileNet ", "retinaface_mobile0.25"),
     ("mtcnn", "mtcnn"), ("parsenet", "parsenet")],
)
def test_names_and_aliases(name, expected):
    assert network_named(name).name == expected


def test_an_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown network 'yolo'; known: gpen, retinaface_resnet50, "
                                         "retinaface_mobile0.25, mtcnn, parsenet"):
        network_named("yolo")


def _seeded(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return dict(module.state_dict())


SMALL_PARSENET = ParseNetConfig(in_size=64, out_size=64, min_feat_size=16, base_ch=8, parsing_ch=5, res_depth=2,
                                ch_range=(4, 16))
FILES = {
    "gpen": lambda: g.seeded_state_dict(TINY, 7),
    "retinaface_mobile0.25": lambda: torch.load(FACE_DATA_DIR / "retinaface_mobile0.25_seed1000.pth",
                                                weights_only=True),
    "retinaface_resnet50": lambda: {f"module.{k}": v for k, v in _seeded(RetinaFaceNet("resnet50")).items()},
    "pnet.pt": lambda: _seeded(PNet()),
    "rnet.pt": lambda: _seeded(RNet()),
    "onet.pt": lambda: _seeded(ONet()),
    "parsenet": lambda: {"params": seeded_parsenet_state_dict(SMALL_PARSENET, base=11, gain=0.9)},
}
EXPECTED = {"pnet.pt": ("mtcnn", "MTCNN PNet"), "rnet.pt": ("mtcnn", "MTCNN RNet"), "onet.pt": ("mtcnn", "MTCNN ONet"),
            "gpen": ("gpen", "GPEN generator"), "parsenet": ("parsenet", "ParseNet"),
            "retinaface_mobile0.25": ("retinaface_mobile0.25", "retinaface_mobile0.25"),
            "retinaface_resnet50": ("retinaface_resnet50", "retinaface_resnet50")}


@pytest.mark.parametrize("kind", sorted(FILES))
def test_a_file_is_recognised_from_its_contents(tmp_path, kind):
    path = tmp_path / "misleading_name_GPEN-BFR-512.safetensors.pth"
    torch.save(FILES[kind](), path)
    entry, file = identify(path)
    assert (entry.name, file.what) == EXPECTED[kind]


@pytest.mark.parametrize(
    ("state", "reason"),
    [
        ({"final_conv.0.weight": torch.zeros(1), "convs.0.conv1.weight": torch.zeros(1)}, "none of gpen, "),
        ({"conv.weight": torch.zeros(2)}, r"none of gpen, retinaface_resnet50, retinaface_mobile0\.25, mtcnn, "
                                          r"parsenet \(1 tensors like conv\.weight\)"),
    ],
    ids=["discriminator", "unknown"],
)
def test_a_file_of_no_network_is_refused(tmp_path, state, reason):
    path = tmp_path / "x.pth"
    torch.save(state, path)
    with pytest.raises(g.CheckpointError, match=re.escape(str(path)) + ": the weights of " + reason):
        identify(path)


def _integer_keys(module: torch.nn.Module) -> set[str]:
    return {k for k, v in module.state_dict().items() if not v.is_floating_point()}


@pytest.mark.parametrize(
    ("entry_name", "modules"),
    [("gpen", lambda: [g.GPEN(TINY)]), ("retinaface_resnet50", lambda: [RetinaFaceNet("resnet50")]),
     ("retinaface_mobile0.25", lambda: [RetinaFaceNet("mobile0.25")]), ("mtcnn", lambda: [PNet(), RNet(), ONet()]),
     ("parsenet", lambda: [ParseNet()])],
)
def test_counters_are_exactly_the_integer_buffers(entry_name, modules):
    """Integers are accepted only where the network has integer buffers (BatchNorm's num_batches_tracked)."""
    with torch.device("meta"):
        built = modules()
    for file, module in zip(network_named(entry_name).files, built, strict=True):
        integers = _integer_keys(module)
        assert all(key.endswith(file.counters) for key in integers) if file.counters else not integers
        assert bool(integers) == bool(file.counters)


def test_nodes_take_the_model_zoo_facts_from_the_architecture_not_the_benchmark():
    logic = (REPO_ROOT / "nodes" / "logic.py").read_text()
    assert "tools.bench" not in logic and "OFFICIAL_CONFIGS" in logic
