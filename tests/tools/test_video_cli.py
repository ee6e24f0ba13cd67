"""Video clips on the command line: found in folders beside images, written as MP4 with their audio, failures
listed by name, atomic outputs, --skip-existing resumes, progress per frame.

The detector is a stand-in that finds a template face in every frame with content (patched into the loader the
command line calls), the GPEN model a tiny seeded one.
"""
from __future__ import annotations

import pytest
import torch
from standins import TemplateFaceDetector

from helpers import run_cli as run

av = pytest.importorskip("av", reason="video clips need PyAV (pip install av)")

from video_clips import read_clip, write_clip  # noqa: E402

FRAMES = 5


@pytest.fixture(autouse=True)
def stand_in_detector(monkeypatch):
    monkeypatch.setattr("gpen_core.face.detection.loader.load_detector", lambda *a, **k: TemplateFaceDetector())


def content(count: int, seed: int = 0) -> torch.Tensor:
    """``(count, 3, 48, 64)`` smooth random frames (a face is 'found' in any frame with content)."""
    small = torch.rand(count, 3, 6, 8, generator=torch.Generator().manual_seed(seed))
    return torch.nn.functional.interpolate(small, size=(48, 64), mode="bilinear", align_corners=False)


@pytest.fixture()
def folder(tmp_path):
    """a_photo.png, b_clip.mp4 (5 frames, with audio), c_broken.mov (not a video)."""
    from gpen_core.images.files import write_image

    inputs = tmp_path / "in"
    inputs.mkdir()
    write_image(inputs / "a_photo.png", content(1, 1)[0])
    write_clip(inputs / "b_clip.mp4", content(FRAMES))
    (inputs / "c_broken.mov").write_bytes(b"\x00\x00\x00\x18ftypqt  " + bytes(500))
    return inputs


def test_a_folder_of_images_clips_and_a_broken_clip(folder, weights, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    args = ["enhance", folder, "--model", weights, "-o", out, "--device", "cpu", "--mask", "box"]

    from gpen_core.tools.progress import ProgressLine

    drawn = ProgressLine.draw

    def interrupt_in_the_clip(line, force=False):  # Ctrl-C once two of the clip's faces are restored
        drawn(line, force)
        if line.name == "b_clip.mp4" and line.stats is not None and line.stats.faces_restored >= 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(ProgressLine, "draw", interrupt_in_the_clip)
    code, err = run(capsys, *args)
    assert code == 130 and "interrupted" in err
    assert sorted(p.name for p in out.iterdir()) == ["a_photo.png"]  # the clip: nothing, not even half a file

    monkeypatch.setattr(ProgressLine, "draw", drawn)
    code, err = run(capsys, *args, "--skip-existing")
    assert code == 1 and "skipping 1 image(s) or clip(s) whose output exists" in err
    assert sorted(p.name for p in out.iterdir()) == ["a_photo.png", "b_clip.mp4"]
    assert "1 file(s) failed:" in err and f"{folder / 'c_broken.mov'}: not a video PyAV can read" in err
    assert "wrote 0 image(s) and 1 video(s)" in err
    assert f"{folder / 'b_clip.mp4'}: {FRAMES} frames 64x48 at 12 fps, audio: aac, copied; {FRAMES} frames (" in err
    clip, given = read_clip(out / "b_clip.mp4"), read_clip(folder / "b_clip.mp4")
    assert len(clip.frames) == FRAMES and clip.audio == given.audio and clip.times == pytest.approx(given.times)

    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    code, err = run(capsys, *args, "--skip-existing")
    assert code == 1 and "skipping 2 image(s) or clip(s) whose output exists" in err
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    code, err = run(capsys, *args)
    assert code == 2 and "2 of 2 output file(s) exist" in err


def test_a_cut_off_clip_is_written_up_to_its_end_and_listed(weights, tmp_path, capsys):
    whole = write_clip(tmp_path / "whole.mp4", content(20), faststart=True)
    data = whole.read_bytes()
    cut = tmp_path / "in" / "cut.mp4"
    cut.parent.mkdir()
    cut.write_bytes(data[: len(data) * 6 // 10])
    out = tmp_path / "out"
    code, err = run(capsys, "enhance", cut, "--model", weights, "-o", out, "--mask", "box", "--suffix", "_gpen")
    assert code == 1
    written = len(read_clip(out / "cut_gpen.mp4").frames)
    assert 0 < written < 20
    assert (f"{cut}: the stream ends after {written} of the 20 frames its header declares (the file is cut off or "
            f"damaged); the {written} frame(s) before it were restored and written to {out / 'cut_gpen.mp4'}") in err


def test_progress_shows_frames_and_their_rate(folder, weights, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("gpen_core.tools.progress.LOG_SECONDS", 0.0)  # every redraw a line of its own
    code, err = run(capsys, "enhance", folder / "b_clip.mp4", "--model", weights, "-o", tmp_path / "out",
                    "--mask", "box", "--smoothing", "0.5")
    assert code == 0
    frames = [line.split("b_clip.mp4: frame ")[1].split("/")[0] for line in err.splitlines() if ": frame " in line]
    assert frames == sorted(frames, key=int) and {"1", "2", "3", "4"} <= set(frames)  # frame by frame
    assert " fps | " in err and "ETA" in err


@pytest.mark.parametrize(("argv", "message"), [
    (["--bridge-frames", "-1"], "--bridge-frames (0: off) must be in [0, 100]"),
    (["--min-track-frames", "0"], "--min-track-frames (1: off) must be in [1, 100]"),
    (["--smoothing", "1"], "--smoothing (0: off) must be in [0, 0.95]"),
    (["--scene-cut", "2"], "--scene-cut (0: off) must be in [0, 1]"),
    (["--aligned", "--smoothing", "0.5"], "--smoothing: only for whole photos"),
])
def test_tracking_options_are_checked_first(folder, weights, tmp_path, capsys, no_model_load, argv, message):
    code, err = run(capsys, "enhance", folder, "--model", weights, "-o", tmp_path / "out", *argv)
    assert code == 2 and message in err


def test_aligned_crops_refuse_clips_by_name(folder, weights, tmp_path, capsys):
    code, err = run(capsys, "enhance", folder / "b_clip.mp4", folder / "a_photo.png", "--aligned", "--model", weights,
                    "-o", tmp_path / "out")
    assert code == 1 and f"{folder / 'b_clip.mp4'}: a video: --aligned takes aligned face crops" in err
