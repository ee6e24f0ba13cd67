"""GPEN Restore Video against the ComfyUI stand-ins: a VIDEO in (a file or a BytesIO), a restored MP4 in the temp
folder out, progress per frame, an interrupt leaves nothing behind."""
from __future__ import annotations

import io

import comfy_stubs
import pytest
import torch

pytest.importorskip("av", reason="the video node needs PyAV (pip install av)")

from video_clips import portrait_frames, read_clip, write_clip  # noqa: E402

from helpers import PHOTOS_DIR  # noqa: E402

FRAMES = 6


@pytest.fixture()
def nodes(comfy):  # noqa: F811
    found = {n.define_schema().node_id: n for n in comfy.nodes}
    model = found["GPENModelLoader"].execute("GPEN-TINY-64.pth", "fp32", "cpu", "[-1,1]").args[0]
    return found, model


@pytest.fixture()
def clip(tmp_path):
    from gpen_core.images.files import read_image

    photo = PHOTOS_DIR / "portrait-1947.png"
    if not photo.is_file():
        pytest.skip(f"test photo not available at {photo}")
    return write_clip(tmp_path / "in.mp4", portrait_frames(read_image(photo)[:3], FRAMES, 120, 160, 0.25))


def restore(node, video, model):
    from standins import TemplateFaceDetector

    schema = node.define_schema()
    kwargs = {i.id: i.default if i.io_type != "COMBO" or i.default is not None else i.options[0]
              for i in schema.inputs if i.io_type in ("INT", "FLOAT", "BOOLEAN", "STRING", "COMBO")}
    kwargs.update(video=video, gpen_model=model, face_detector=TemplateFaceDetector(), mask="box")
    return node.execute(**kwargs)


@pytest.mark.parametrize("in_memory", [False, True])
def test_restore_video_writes_an_mp4_into_the_temp_folder(comfy, nodes, clip, in_memory):  # noqa: F811
    found, model = nodes
    source = io.BytesIO(clip.read_bytes()) if in_memory else str(clip)
    result = restore(found["GPENRestoreVideo"], comfy_stubs.VideoFromFile(source), model)
    (video,) = result.args
    written = video.get_stream_source()
    assert written.startswith(comfy.stubs.folder_paths.get_temp_directory())
    given, out = read_clip(clip), read_clip(written)
    assert len(out.frames) == FRAMES and out.audio == given.audio and out.times == pytest.approx(given.times)
    assert not torch.equal(out.frames, given.frames)  # faces were pasted (tiny GPEN: not the input)
    shown = comfy.stubs.progress
    assert shown[-1] == (FRAMES * 100, FRAMES * 100) and len({v for v, _ in shown}) > FRAMES  # per frame


def test_an_interrupt_stops_and_leaves_no_file(comfy, nodes, clip, tmp_path, monkeypatch):  # noqa: F811
    """Cancelled once frame 3 is restored (frames already encoded): no file, not even a partial one, is left."""
    found, model = nodes
    shown = comfy_stubs.ProgressBar.update_absolute

    def update(bar, value, total=None, preview=None):
        shown(bar, value, total, preview)
        comfy.stubs.mm.interrupted |= value >= 3 * 100

    monkeypatch.setattr(comfy_stubs.ProgressBar, "update_absolute", update)
    with pytest.raises(comfy_stubs.InterruptProcessingException):
        restore(found["GPENRestoreVideo"], comfy_stubs.VideoFromFile(str(clip)), model)
    assert max(v for v, _ in comfy.stubs.progress) >= 300
    temp = tmp_path / "temp"
    assert temp.is_dir() and not [p for p in temp.rglob("*") if p.is_file()]
