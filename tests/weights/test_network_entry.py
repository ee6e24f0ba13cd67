"""The one shape of every network: finding its files, refusing another network's file by name, the message
when nothing is found."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gpen_core.network_entry import NetworkEntry, WeightsFile, entry_named, find_named
from gpen_core.weight_checks import CheckpointError
from gpen_core.weights import build_checked


def _file(names: tuple[str, ...], key: str) -> WeightsFile:
    """A file holding ``{key}.weight`` and ``{key}.bias`` of a 2 -> 2 linear layer."""
    return WeightsFile(
        names=names, what=key, why_not=lambda state: None if f"{key}.weight" in state else f"no {key}.weight",
        build=lambda state, name: build_checked(lambda: torch.nn.ModuleDict({key: torch.nn.Linear(2, 2)}), state,
                                                name, f"layer {key}"),
    )


def _state(key: str, scale: float = 1.0) -> dict[str, torch.Tensor]:
    return {f"{key}.weight": torch.eye(2) * scale, f"{key}.bias": torch.ones(2)}


A = _file(("a.pth", "a_old.pth"), "a")
B = _file(("b.pt",), "b")
SINGLE = NetworkEntry(name="single", task="detect", folder="facedetection", files=(A,), aliases=("one",))
PAIR = NetworkEntry(name="pair", task="detect", folder="facedetection", files=(A, B), subfolder="pair",
                    assemble=tuple)


def _touch(folder: Path, *names: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"x")


def test_names_are_tried_in_order_with_safetensors_twins_case_insensitively(tmp_path):
    assert A.candidates() == ["a.pth", "a.safetensors", "a_old.pth", "a_old.safetensors"]
    _touch(tmp_path, "A_OLD.PTH")
    assert SINGLE.find([tmp_path]) == (tmp_path / "A_OLD.PTH",)
    _touch(tmp_path, "a.SafeTensors")
    assert SINGLE.find([tmp_path]) == (tmp_path / "a.SafeTensors",)


def test_find_named_prefers_the_exact_spelling_then_the_first_in_sorted_order(tmp_path):
    assert find_named(tmp_path / "nowhere", ["a.pth"]) is None
    _touch(tmp_path, "b.PT")
    if (tmp_path / "B.pt").exists():
        pytest.skip("case-insensitive file system: one file answers to every spelling")
    _touch(tmp_path, "B.pt")
    (tmp_path / "a.pth").mkdir()  # a folder is not a file
    assert find_named(tmp_path, ["a.pth", "b.pt"]) == tmp_path / "B.pt"
    _touch(tmp_path, "b.pt")
    assert find_named(tmp_path, ["a.pth", "b.pt"]) == tmp_path / "b.pt"
    assert find_named(str(tmp_path), ["B.PT"]) == tmp_path / "B.pt"


def test_folders_in_order_then_the_subfolder_and_every_file_in_one_folder(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    _touch(first, "a.pth")
    _touch(second / "pair", "a.pth", "b.pt")
    assert PAIR.find([first, second]) == (second / "pair" / "a.pth", second / "pair" / "b.pt")
    assert PAIR.folders([first]) == [first, first / "pair"]
    assert PAIR.find_in(first) is None and PAIR.find([tmp_path / "nowhere"]) is None
    _touch(first, "b.pt")
    assert PAIR.find([first, second]) == (first / "a.pth", first / "b.pt")


def test_more_folders_are_looked_in_last(tmp_path):
    extra = tmp_path / "package"
    _touch(extra, "a.pth")
    entry = NetworkEntry(name="x", task="parse", folder="gpen", files=(A,), more_folders=lambda: [extra])
    assert entry.find([tmp_path / "empty"]) == (extra / "a.pth",)
    _touch(tmp_path / "mine", "a.pth")
    assert entry.find([tmp_path / "mine"]) == (tmp_path / "mine" / "a.pth",)


def test_missing_message(tmp_path, monkeypatch):
    assert SINGLE.missing_message([tmp_path]) == (
        f"'single' needs the file 'a.pth', which was not found in: {tmp_path}. Copy a.pth into {tmp_path} "
        "(for ComfyUI: models/facedetection/)."
    )
    assert PAIR.missing_message([]) == (
        "'pair' needs the files a.pth, b.pt, which were not found in: (no folders were given). Copy a.pth, b.pt "
        "into ComfyUI/models/facedetection/pair (for ComfyUI: models/facedetection/pair/)."
    )
    monkeypatch.delenv("GPEN_WEIGHTS_BASE_URL", raising=False)
    published = NetworkEntry(name="r", task="detect", folder="facedetection",
                             files=(_file(("detection_Resnet50_Final.pth",), "r"),))
    assert published.missing_message([tmp_path]) == (
        f"'r' needs the file 'detection_Resnet50_Final.pth', which was not found in: {tmp_path}. Download it from "
        "https://github.com/xinntao/facexlib/releases/download/v0.1.0/detection_Resnet50_Final.pth and put it in "
        f"{tmp_path} (for ComfyUI: models/facedetection/), or run `gpen download retinaface_resnet50` (it fetches "
        "and verifies it; the nodes and the command line also fetch it when needed, unless GPEN_NO_DOWNLOAD=1)."
    )


def test_entry_named():
    assert entry_named([SINGLE, PAIR], " ONE ") is SINGLE and entry_named([SINGLE], "pair") is None


def test_another_networks_file_is_named(tmp_path):
    path = tmp_path / "a.pth"
    torch.save(_state("b"), path)
    with pytest.raises(CheckpointError, match=rf"{path} holds b weights, but 'a' was requested \(file named 'a.pth'\)"):
        A.load(path, others=[B])
    with pytest.raises(CheckpointError, match=rf"{path}: no a.weight$"):
        A.load(path)


def test_loading_checks_then_builds_each_file_and_assembles():
    with pytest.raises(CheckpointError, match=r"<state dict>: does not match layer a: 1 unexpected: extra"):
        A.load({**_state("a"), "extra": torch.zeros(1)})
    a, b = PAIR.load([_state("a", 2.0), _state("b", 3.0)])
    assert torch.equal(a.a.weight, torch.eye(2) * 2) and torch.equal(b.b.weight, torch.eye(2) * 3)
    assert not a.training and not a.a.weight.requires_grad
    with pytest.raises(ValueError, match="pair needs 2 file"):
        PAIR.load([_state("a")])
