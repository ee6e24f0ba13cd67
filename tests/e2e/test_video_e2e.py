"""End to end: the video template in a real ComfyUI, Load Video -> GPEN Restore Video -> Save Video, on a short clip
with a real face and an audio track, written by the test from the shared portrait.

Needs a ComfyUI (``COMFYUI_DIR``, ``COMFYUI_PYTHON``; see ``test_comfyui_e2e.py``) and PyAV here (run pytest with
ComfyUI's interpreter, which has it); else it skips. The GPEN weights are seeded (the faces come out as noise), the
detector is MTCNN: what is checked is the plumbing: the saved clip has the input's frames, frame times and audio
packets (bit for bit), and its faces were replaced.
"""
from __future__ import annotations

from collections.abc import Iterator

import pytest

import e2e_support as s
from helpers import PHOTOS_DIR

av = pytest.importorskip("av", reason="the video end-to-end test reads clips with PyAV: run it with ComfyUI's Python")

from video_clips import portrait_frames, read_clip, write_clip  # noqa: E402

MODEL_SIZE = 256
START_TIMEOUT = 120
RUN_TIMEOUT = 600
TEMPLATE = s.WORKFLOWS_DIR / "gpen_restore_video.json"
CLIP_NAME = "gpen_video_e2e.mp4"
FRAMES = 12


@pytest.fixture(scope="module")
def comfy(tmp_path_factory) -> Iterator[s.ComfyServer]:
    with s.running_comfy(tmp_path_factory.mktemp("comfyui-video"), MODEL_SIZE, START_TIMEOUT) as server:
        yield server


@pytest.fixture(scope="module")
def clip(comfy):
    """12 frames of the portrait moving over a 320x288 canvas at 12 fps, with an AAC tone, in ComfyUI's input folder."""
    from gpen_core.images.files import read_image

    photo = PHOTOS_DIR / "portrait-1947.png"
    if not photo.is_file():
        pytest.skip(f"test photo not available at {photo}")
    frames = portrait_frames(read_image(photo)[:3], FRAMES, 288, 320, scale=0.6, step=3)
    return write_clip(comfy.base / "input" / CLIP_NAME, frames, fps=12, audio="aac")


def test_the_template_and_its_api_twin_are_one_workflow():
    ui, api = s.load_json(TEMPLATE), s.load_json(s.API_DIR / TEMPLATE.name)
    assert s.check_ui_structure(ui) == []
    assert {n["type"] for n in ui["nodes"]} - s.UI_ONLY_TYPES == {n["class_type"] for n in api.values()} == {
        "LoadVideo", "GPENModelLoader", "GPENFaceDetectorLoader", "GPENRestoreVideo", "SaveVideo"}
    assert TEMPLATE.with_suffix(".jpg").is_file()


@pytest.mark.e2e
def test_the_node_is_registered_with_a_video_in_and_out(comfy):
    info = comfy.get("/object_info")["GPENRestoreVideo"]
    declared = {**info["input"]["required"], **info["input"].get("optional", {})}
    assert declared["video"][0] == "VIDEO" and info["output"] == ["VIDEO"]
    for name in ("bridge_frames", "min_track_frames", "short_track_score", "scene_cut", "landmark_smoothing"):
        assert declared[name][1].get("tooltip"), name
    face_restore = comfy.get("/object_info")["GPENFaceRestore"]["input"]["optional"]
    assert {"bridge_frames", "min_track_frames", "short_track_score", "scene_cut"} <= set(face_restore)


@pytest.mark.e2e
@pytest.mark.slow
def test_the_video_template_restores_a_clip_with_its_audio(comfy, clip):
    prompt = s.load_json(s.API_DIR / TEMPLATE.name)
    loader = next(k for k, n in prompt.items() if n["class_type"] == "LoadVideo")
    prompt[loader]["inputs"]["file"] = CLIP_NAME
    entry = comfy.run_prompt(prompt, RUN_TIMEOUT)
    assert entry["status"]["status_str"] == "success", s.execution_error(entry)
    saver = next(k for k, n in prompt.items() if n["class_type"] == "SaveVideo")
    (ref,) = entry["outputs"][saver]["images"]
    saved = comfy.base / ref["type"] / ref["subfolder"] / ref["filename"]
    given, out = read_clip(clip), read_clip(saved)
    assert len(out.frames) == FRAMES and out.frames.shape == given.frames.shape
    assert out.rate == given.rate and out.times == pytest.approx(given.times, abs=1e-3)
    assert out.codecs == [("video", "h264"), ("audio", "aac")] and out.audio == given.audio
    changed = (out.frames - given.frames).abs().amax(dim=1) > 0.2  # seeded weights: restored faces are noise
    assert all(bool(changed[i].any()) for i in range(FRAMES)), "a frame without a restored face"
    assert list((comfy.base / "temp" / "gpen").glob("gpen_video_*.mp4")), "the node's own file"
    assert not list((comfy.base / "temp").rglob("*.partial"))
