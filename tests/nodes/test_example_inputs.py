"""The templates' example inputs: shipped in ``example_inputs/``, copied into ComfyUI's input folder when the pack
loads (``nodes/example_inputs.py``), never replacing a user's file."""
from __future__ import annotations

import asyncio
import importlib
import json
import logging

import comfy_stubs

from helpers import REPO_ROOT, forget_pack, import_pack
from nodes.example_inputs import EXAMPLE_INPUTS, EXAMPLE_INPUTS_DIR, install_example_inputs

PACK = "gpen_pack_example_inputs"
LOADERS = {"LoadImage", "LoadVideo"}
"""Core nodes whose first widget names a file of the input folder."""


def template_inputs() -> set[str]:
    """File names the UI templates (``workflows/*.json``) load from the input folder."""
    names = set()
    for path in sorted((REPO_ROOT / "workflows").glob("*.json")):
        for node in json.loads(path.read_text(encoding="utf-8"))["nodes"]:
            if node["type"] in LOADERS:
                names.add(node["widgets_values"][0])
    return names


def test_every_file_the_templates_load_is_shipped():
    assert set(EXAMPLE_INPUTS) == template_inputs()
    assert EXAMPLE_INPUTS_DIR == REPO_ROOT / "example_inputs"
    for name in EXAMPLE_INPUTS:
        size = (EXAMPLE_INPUTS_DIR / name).stat().st_size
        assert 0 < size < 2**20, f"{name}: {size} bytes"


def test_loading_the_pack_copies_them_into_the_input_folder(monkeypatch, tmp_path):
    comfy_stubs.install(monkeypatch, tmp_path / "models")
    forget_pack(PACK)
    try:
        pack = import_pack(PACK)
        asyncio.run(pack.comfy_entrypoint())
    finally:
        forget_pack(PACK)
    input_dir = tmp_path / "input"
    assert sorted(p.name for p in input_dir.iterdir()) == sorted(EXAMPLE_INPUTS)
    for name in EXAMPLE_INPUTS:
        assert (input_dir / name).read_bytes() == (EXAMPLE_INPUTS_DIR / name).read_bytes()


def test_a_users_file_of_the_same_name_stays(tmp_path, caplog):
    input_dir = tmp_path / "input"
    input_dir.mkdir()
    (input_dir / "portrait-1947.png").write_bytes(b"my own portrait")
    (input_dir / "gpen_clip.mp4").write_bytes((EXAMPLE_INPUTS_DIR / "gpen_clip.mp4").read_bytes())
    with caplog.at_level(logging.INFO):
        report = install_example_inputs(input_dir)
    assert report.copied == ("solvay-1927.png",)
    assert report.present == ("gpen_clip.mp4",)
    assert report.kept == ("portrait-1947.png",)
    assert report.failed == ()
    assert (input_dir / "portrait-1947.png").read_bytes() == b"my own portrait"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "portrait-1947.png" in warnings[0] and "kept" in warnings[0]

    again = install_example_inputs(input_dir)
    assert again.copied == () and again.kept == ("portrait-1947.png",)
    assert sorted(again.present) == ["gpen_clip.mp4", "solvay-1927.png"]


def test_a_file_that_cannot_be_copied_is_logged_and_the_others_are_copied(tmp_path, caplog):
    source = tmp_path / "source"
    source.mkdir()
    (source / "a.png").write_bytes(b"a")
    (source / "c.png").write_bytes(b"c")
    input_dir = tmp_path / "input"
    with caplog.at_level(logging.WARNING):
        report = install_example_inputs(input_dir, source, ("a.png", "b.png", "c.png"))
    assert report.copied == ("a.png", "c.png") and report.failed == ("b.png",)
    assert sorted(p.name for p in input_dir.iterdir()) == ["a.png", "c.png"]
    (message,) = [r.getMessage() for r in caplog.records]
    assert "b.png" in message and str(source / "b.png") in message and "by hand" in message


def test_an_input_folder_that_cannot_be_made_fails_every_file_without_raising(tmp_path):
    blocker = tmp_path / "input"
    blocker.write_bytes(b"a file where the folder should be")
    report = install_example_inputs(blocker)
    assert report.failed == EXAMPLE_INPUTS and report.copied == ()
    assert blocker.read_bytes() == b"a file where the folder should be"


def test_a_copy_that_fails_halfway_leaves_nothing(tmp_path, monkeypatch):
    module = importlib.import_module("nodes.example_inputs")

    def broken_copy(src, out) -> None:
        out.write(src.read(10))
        raise OSError("disk full")

    monkeypatch.setattr(module.shutil, "copyfileobj", broken_copy)
    input_dir = tmp_path / "input"
    report = install_example_inputs(input_dir)
    assert report.failed == EXAMPLE_INPUTS
    assert list(input_dir.iterdir()) == []
