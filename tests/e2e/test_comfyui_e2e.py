"""End to end: a real ComfyUI server loads the pack, lists the workflow templates and runs every API workflow.

Needs a ComfyUI checkout: ``COMFYUI_DIR=/path/to/ComfyUI`` (and ``COMFYUI_PYTHON``, the interpreter of its
environment; default: this one). Without it the server tests are skipped; the checks of the workflow files
themselves always run. The test talks HTTP only and never imports ComfyUI. The server runs with
``--base-directory`` in a temporary folder (the pack is symlinked into its custom_nodes/), on a free port,
with ``--cpu`` unless ``COMFYUI_ARGS`` says otherwise; seeded GPEN-BFR-256 weights (no download) are written
under every model name the workflows use, so the images are noise, but their sizes and the plumbing are real.
"""
from __future__ import annotations

import io
import time
from collections.abc import Iterator

import numpy as np
import pytest
from PIL import Image

import e2e_support as s

MODEL_SIZE = 256
"""The test weights: GPEN-BFR-256 layout (fast on a CPU), whatever the file is called."""
START_TIMEOUT = 120
RUN_TIMEOUT = 300
EXPECTED_INPUTS = {
    "GPENModelLoader": {"model_name": "COMBO", "precision": "COMBO", "device": "COMBO", "input_range": "COMBO"},
    "GPENEnhance": {"image": "IMAGE", "gpen_model": "GPEN_MODEL", "tile_size": "INT", "overlap": "INT",
                    "recompute": "BOOLEAN", "output_size": "COMBO", "batch_size": "INT"},
    "GPENVRAMReport": {"passthrough": "*"},
    "GPENFaceDetectorLoader": {"detector": "COMBO", "device": "COMBO"},
    "GPENFaceRestore": {"image": "IMAGE", "gpen_model": "GPEN_MODEL", "face_detector": "GPEN_FACE_DETECTOR",
                        "fidelity": "FLOAT", "score_threshold": "FLOAT", "min_face_size": "INT",
                        "selection": "COMBO", "max_faces": "INT", "tile_size": "INT", "upscale_factor": "FLOAT",
                        "landmark_smoothing": "FLOAT", "face_indices": "STRING", "max_face_size": "INT",
                        "upscaled_image": "IMAGE", "mask": "COMBO", "keep_hair": "BOOLEAN", "keep_neck": "BOOLEAN",
                        "smooth_small_faces": "BOOLEAN", "keep_grey": "BOOLEAN", "color_match": "COMBO"},
    "GPENDetectAlignFaces": {"image": "IMAGE", "face_detector": "GPEN_FACE_DETECTOR", "crop_size": "INT",
                             "landmark_smoothing": "FLOAT", "gpen_model": "GPEN_MODEL", "upscaled_image": "IMAGE"},
    "GPENPasteFaces": {"image": "IMAGE", "faces": "GPEN_FACES", "restored_faces": "IMAGE", "fidelity": "FLOAT",
                       "upscale_factor": "FLOAT", "face_masks": "MASK", "mask": "COMBO", "keep_hair": "BOOLEAN",
                       "keep_neck": "BOOLEAN", "smooth_small_faces": "BOOLEAN", "keep_grey": "BOOLEAN",
                       "color_match": "COMBO"},
    "GPENBenchmark": {"size": "COMBO", "precisions": "COMBO", "tile_size": "INT", "repeat": "INT",
                      "backward": "BOOLEAN"},
}
EXPECTED_OUTPUTS = {
    "GPENModelLoader": ["GPEN_MODEL"],
    "GPENEnhance": ["IMAGE"],
    "GPENVRAMReport": ["*", "STRING"],
    "GPENFaceDetectorLoader": ["GPEN_FACE_DETECTOR"],
    "GPENFaceRestore": ["IMAGE", "IMAGE", "IMAGE", "MASK"],
    "GPENDetectAlignFaces": ["IMAGE", "GPEN_FACES"],
    "GPENPasteFaces": ["IMAGE", "MASK"],
    "GPENBenchmark": ["STRING", "IMAGE"],
}
UI_FILES = s.ui_workflows()
API_FILES = s.api_workflows()


# ------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def comfy(tmp_path_factory) -> Iterator[s.ComfyServer]:
    with s.running_comfy(tmp_path_factory.mktemp("comfyui-base"), MODEL_SIZE, START_TIMEOUT) as server:
        yield server


@pytest.fixture(scope="module")
def object_info(comfy) -> dict:
    return comfy.get("/object_info")


# ------------------------------------------------------------------- the files (no server needed)
def test_workflow_files_are_paired():
    assert UI_FILES, "no workflows/*.json"
    ui = {p.stem for p in UI_FILES}
    assert ui == {p.stem for p in API_FILES}, "every workflows/X.json needs workflows/api/X.json and back"
    assert not list((s.WORKFLOWS_DIR / "api").glob("*.jpg"))
    for stem in sorted(ui):
        thumb = s.WORKFLOWS_DIR / f"{stem}.jpg"
        assert thumb.is_file(), f"no thumbnail {thumb.name}"
        with Image.open(thumb) as im:
            assert im.format == "JPEG" and min(im.size) >= 64


@pytest.mark.parametrize("path", UI_FILES, ids=lambda p: p.stem)
def test_ui_workflow_structure(path):
    workflow = s.load_json(path)
    assert workflow.get("version") == 0.4
    assert s.check_ui_structure(workflow) == []
    for node in workflow["nodes"]:
        assert node["properties"].get("Node name for S&R") in (None, node["type"]), node["id"]


@pytest.mark.parametrize("path", API_FILES, ids=lambda p: p.stem)
def test_api_workflow_structure(path):
    prompt = s.load_json(path)
    assert prompt and all(set(node) >= {"class_type", "inputs"} for node in prompt.values())
    for node_id, node in prompt.items():
        for name, value in node["inputs"].items():
            if isinstance(value, list):
                assert value[0] in prompt, f"node {node_id} input {name} links to a missing node {value[0]}"


# ------------------------------------------------------------------------------ against the server
@pytest.mark.e2e
def test_object_info_lists_the_nodes(object_info):
    for node_id, inputs in EXPECTED_INPUTS.items():
        assert node_id in object_info, f"{node_id} is not registered"
        info = object_info[node_id]
        assert info["python_module"] == f"custom_nodes.{s.PACK_NAME}"
        declared = {**info["input"].get("required", {}), **info["input"].get("optional", {})}
        got = {name: (spec[0] if isinstance(spec[0], str) else "COMBO") for name, spec in declared.items()}
        assert {k: got.get(k) for k in inputs} == inputs, f"{node_id} inputs: {got}"
        assert info["output"] == EXPECTED_OUTPUTS[node_id]
    loader = object_info["GPENModelLoader"]["input"]["required"]
    assert "GPEN-BFR-512.pth" in loader["model_name"][1]["options"]
    assert set(loader["precision"][1]["options"]) >= {"auto", "fp32", "fp16", "bf16"}
    assert object_info["GPENEnhance"]["input"]["required"]["output_size"][1]["options"] == ["model size", "input size"]


@pytest.mark.e2e
def test_workflow_templates_are_listed_and_served(comfy):
    listed = comfy.get("/workflow_templates")
    assert sorted(listed.get(s.PACK_NAME, [])) == sorted(p.stem for p in UI_FILES)
    for path in UI_FILES:
        assert comfy.get(f"/api/workflow_templates/{s.PACK_NAME}/{path.name}") == s.load_json(path)
        status, body, kind = s.http(f"{comfy.url}/api/workflow_templates/{s.PACK_NAME}/{path.stem}.jpg")
        assert status == 200 and kind.startswith("image/jpeg") and body == path.with_suffix(".jpg").read_bytes()


@pytest.mark.e2e
def test_the_pack_copied_the_example_inputs(comfy, object_info):
    """The test server's input folder starts empty: loading the pack put every file the workflows load there,
    and the server lists the images in Load Image's choices."""
    prompts = [s.load_json(p) for p in API_FILES]
    names = s.image_names(prompts) | s.video_names(prompts)
    assert names
    for name in sorted(names):
        shipped = (s.REPO_ROOT / "example_inputs" / name).read_bytes()
        assert (comfy.base / "input" / name).read_bytes() == shipped, name
    assert "copied the templates' example inputs" in comfy.log_tail(10**7)
    choices = object_info["LoadImage"]["input"]["required"]["image"][0]
    assert s.image_names(prompts) <= set(choices), choices


@pytest.mark.e2e
@pytest.mark.parametrize("path", UI_FILES, ids=lambda p: p.stem)
def test_ui_workflow_converts_to_its_api_twin(path, object_info):
    twin = s.load_json(s.API_DIR / path.name)
    converted, by = s.convert(s.load_json(path), object_info)
    assert s.class_types(converted) == s.class_types(twin), f"node types differ (converted by {by})"
    assert {k: (v["class_type"], v["inputs"]) for k, v in converted.items()} == \
        {k: (v["class_type"], v["inputs"]) for k, v in twin.items()}, f"inputs differ (converted by {by})"


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.parametrize("path", API_FILES, ids=lambda p: p.stem)
def test_api_workflow_runs(path, comfy, object_info):
    prompt = s.load_json(path)
    unknown = sorted({n["class_type"] for n in prompt.values()} - set(object_info))
    assert not unknown, f"node types not on the server: {unknown}"
    started = time.monotonic()
    entry = comfy.run_prompt(prompt, RUN_TIMEOUT)
    assert entry["status"]["status_str"] == "success", s.execution_error(entry)
    assert entry["status"]["completed"]
    outputs = entry["outputs"]

    image_nodes = [k for k, n in prompt.items() if n["class_type"] in ("SaveImage", "PreviewImage")]
    assert image_nodes or any(n["class_type"] in ("GPENVRAMReport", "SaveVideo") for n in prompt.values()), \
        "no output node"
    for node_id in image_nodes:
        images = outputs.get(node_id, {}).get("images", [])
        expected = s.expected_sizes(prompt, prompt[node_id]["inputs"]["images"], comfy.base / "input", MODEL_SIZE)
        if expected is not None:
            assert len(images) == len(expected), f"node {node_id}: {len(images)} images, expected {len(expected)}"
        assert images, f"node {node_id} ({prompt[node_id]['class_type']}) produced no image"
        for i, ref in enumerate(images):
            file = comfy.base / ref["type"] / ref["subfolder"] / ref["filename"]
            assert file.is_file(), f"{file} is missing"
            with Image.open(io.BytesIO(file.read_bytes())) as im:
                pixels = np.asarray(im.convert("RGB"))
                size = im.size
            if expected is not None:
                assert size == expected[i], f"node {node_id} image {i}: {size}, expected {expected[i]}"
            else:
                assert min(size) >= 16 and max(size) <= 8192, size
            assert pixels.std() > 0, f"{file.name} is a flat image"

    for node_id, node in prompt.items():  # whole photos: faces found and cropped at the model size
        if node["class_type"] != "GPENFaceRestore":
            continue
        photo = prompt[node["inputs"]["image"][0]]
        for reader_id, reader in prompt.items():
            if reader["class_type"] in ("SaveImage", "PreviewImage") and reader["inputs"]["images"] == [node_id, 2]:
                faces = outputs[reader_id]["images"]
                if photo["class_type"] == "LoadImage" and photo["inputs"]["image"] == "solvay-1927.png":
                    assert len(faces) >= 20, f"{len(faces)} faces found in the 29-person group photo"
                for ref in faces:
                    with Image.open(comfy.base / ref["type"] / ref["subfolder"] / ref["filename"]) as im:
                        assert im.size == (MODEL_SIZE, MODEL_SIZE)
        if node["inputs"].get("mask") in ("auto", "parse"):  # the parser file of prepare_base was used
            log = comfy.log_path.read_text(errors="replace")
            assert "parsing_parsenet.pth" in log, "the face parser was not loaded"

    for node_id, node in prompt.items():  # videos: the file was written
        if node["class_type"] == "SaveVideo":
            saved = outputs.get(node_id, {}).get("images", [])
            assert saved, f"node {node_id} (SaveVideo) saved nothing"
            for ref in saved:
                file = comfy.base / ref["type"] / ref["subfolder"] / ref["filename"]
                assert file.is_file() and file.stat().st_size > 0, f"{file} is missing or empty"

    for node_id, node in prompt.items():
        if node["class_type"] != "GPENVRAMReport":
            continue
        text = outputs.get(node_id, {}).get("text")
        assert isinstance(text, list) and text and isinstance(text[0], str) and text[0].strip(), outputs.get(node_id)
        for reader_id, reader in prompt.items():  # a PreviewAny showing the report gets the same text
            if reader["class_type"] == "PreviewAny" and reader["inputs"].get("source") == [node_id, 1]:
                assert outputs.get(reader_id, {}).get("text") == text
    print(f"{path.name}: {time.monotonic() - started:.1f} s")
