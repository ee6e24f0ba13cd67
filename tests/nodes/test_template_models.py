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
from gpen_core.official_files import AUTO_DETECTOR, AUTO_PARSER, OFFICIAL_FILES, require_official
from helpers import REPO_ROOT

UI_FILES = sorted((REPO_ROOT / "workflows").glob("*.json"))
GPEN_FILES = tuple(e.file_name for e in OFFICIAL_FILES if e.network == "gpen")
FACE_FILES = (require_official(AUTO_DETECTOR).file_name, require_official(AUTO_PARSER).file_name)
"""What a template with a face detector lists: the detector and the parser that ``auto`` fetches."""
ENTRY_KEYS = {"name", "url", "directory"}


def official_weights() -> dict[str, tuple[str, str]]:
    """file name -> (url, model folder): the one table the templates must agree with (the core's)."""
    return {e.file_name: (e.url, e.folder) for e in OFFICIAL_FILES}


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
