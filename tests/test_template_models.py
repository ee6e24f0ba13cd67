"""The templates' model links (``models`` entries of ComfyUI's workflow JSON: name, url, directory) agree with one
table of the official weight files, and name every file a template needs.

Where they sit: a loader node's ``properties.models`` for the GPEN weights (the frontend keeps an entry there only
when its name is one of the node's widget values, so it follows the chosen file), the workflow's top-level
``models`` for the face detector and parser, which the ``auto`` widgets do not name.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from e2e_support import model_entries
from gpen_core.face.detection.loader import RETINAFACE_DOWNLOAD_URL, RETINAFACE_WEIGHT_FILES
from gpen_core.face.parsing.load import PARSER_DOWNLOADS
from helpers import REPO_ROOT

UI_FILES = sorted((REPO_ROOT / "workflows").glob("*.json"))
GPEN_RELEASE_URL = "https://public-vigen-video.oss-cn-shanghai.aliyuncs.com/robin/models/{file_name}"
"""Where the official GPEN release publishes its weights (GPEN-BFR-512.pth ...)."""
GPEN_FILES = ("GPEN-BFR-256.pth", "GPEN-BFR-512.pth", "GPEN-BFR-1024.pth", "GPEN-BFR-2048.pth")
FACE_FILES = ("detection_Resnet50_Final.pth", "parsing_parsenet.pth")
"""What a template with a face detector lists: the detector and the parser that ``auto`` uses."""
ENTRY_KEYS = {"name", "url", "directory"}


def official_weights() -> dict[str, tuple[str, str]]:
    """file name -> (url, model folder): the one table the templates must agree with.

    Built from the loaders' constants until the table of official files exists in the core; then this returns
    that table's entries and nothing else here changes.
    """
    table = {name: (GPEN_RELEASE_URL.format(file_name=name), "gpen") for name in GPEN_FILES}
    for file_name in RETINAFACE_WEIGHT_FILES.values():
        table[file_name] = (RETINAFACE_DOWNLOAD_URL.format(file_name=file_name), "facedetection")
    for file_name, url in PARSER_DOWNLOADS.items():
        table[file_name] = (url, "facedetection")
    return table


@pytest.mark.parametrize("path", UI_FILES, ids=lambda p: p.stem)
def test_every_model_link_is_an_official_file(path: Path):
    table = official_weights()
    entries = model_entries(json.loads(path.read_text(encoding="utf-8")))
    assert entries, "no model links"
    for entry in entries:
        assert set(entry) == ENTRY_KEYS, entry
        assert entry["name"] in table, f"{entry['name']} is not an official file"
        assert (entry["url"], entry["directory"]) == table[entry["name"]], entry
    names = [e["name"] for e in entries]
    assert len(set(names)) == len(names), f"listed twice: {names}"


@pytest.mark.parametrize("path", UI_FILES, ids=lambda p: p.stem)
def test_every_file_a_template_needs_is_linked(path: Path):
    workflow = json.loads(path.read_text(encoding="utf-8"))
    types = {node["type"] for node in workflow["nodes"]}
    for node in workflow["nodes"]:
        if node["type"] == "GPENModelLoader":  # on the node itself, under the name its widget holds
            linked = [m["name"] for m in node["properties"].get("models", [])]
            assert linked == [node["widgets_values"][0]], f"node {node['id']}: {linked}"
    top = [m["name"] for m in workflow.get("models", [])]
    assert top == (list(FACE_FILES) if "GPENFaceDetectorLoader" in types else []), top


def test_the_table_covers_the_gpen_release_the_detectors_and_the_parsers():
    table = official_weights()
    assert set(table) == {*GPEN_FILES, *RETINAFACE_WEIGHT_FILES.values(), *PARSER_DOWNLOADS}
    assert all(url.startswith("https://") and url.endswith("/" + name) for name, (url, _) in table.items())
