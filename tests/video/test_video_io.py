"""Video files through the core: streamed decoding, restoration, H.264 output with the source's times and audio.

Clips are short and small (tens of frames, 160x120); the generator is a stand-in that returns its input and
the detector a stand-in that finds a template face in any frame with content, so what is checked is the
plumbing: frame counts, frame times, the audio packets, the pixels (PSNR against the input), the odd sizes,
rotation, damaged files, interrupts.
"""
from __future__ import annotations

from fractions import Fraction

import pytest
import torch
from standins import IdentityGPEN, TemplateFaceDetector
from video_clips import portrait_frames, read_clip, write_clip

from gpen_core.face.options import PasteOptions, RestoreOptions, TrackOptions
from gpen_core.face.pipeline import FaceNetworks, restore_faces
from gpen_core.face.stats import RestoreStats
from gpen_core.runtime.memory import LiveTensorPeak
from gpen_core.video import VideoReadError, probe_video, restore_video
from helpers import psnr

HEIGHT, WIDTH = 120, 160


def networks(size: int = 256) -> FaceNetworks:
    """A stand-in GPEN larger than the faces (crops are upsampled, so the identity paste loses almost nothing)."""
    return FaceNetworks(IdentityGPEN(size), TemplateFaceDetector(0.5))


def masked_psnr(a: torch.Tensor, b: torch.Tensor, masks: torch.Tensor) -> float:
    """PSNR of ``(T, 3, H, W)`` frames over the pixels where ``(T, H, W)`` masks are above 0.5."""
    inside = (masks > 0.5)[:, None].expand_as(a)
    return psnr(a[inside], b[inside])


@pytest.fixture(scope="module")
def frames(portrait) -> torch.Tensor:
    return portrait_frames(portrait, 24, HEIGHT, WIDTH, scale=0.25)


def test_output_has_the_inputs_frames_times_and_audio(frames, tmp_path):
    source = write_clip(tmp_path / "in.mp4", frames, fps=12)
    options = RestoreOptions(chunk_frames=5)
    stats = RestoreStats()
    result = restore_video(networks(), source, tmp_path / "out.mp4", options, stats=stats)
    given, written = read_clip(source), read_clip(tmp_path / "out.mp4")
    assert result.frames == 24 and len(written.frames) == 24 and stats.frames_total == 24
    assert written.rate == given.rate == 12
    assert written.duration is not None and given.duration is not None
    assert abs(written.duration - given.duration) <= 1 / 12
    assert written.times == pytest.approx(given.times, abs=1e-3)
    assert written.codecs == [("video", "h264"), ("audio", "aac")] and result.audio == "aac, copied"
    assert written.audio == given.audio and len(given.audio) > 10  # the packets, bit for bit
    with torch.inference_mode():
        expected = restore_faces(networks(), given.frames, options, keep_crops=False)
    assert float(expected.masks.amax(dim=(1, 2)).min()) == 1.0  # a face in every frame
    assert masked_psnr(written.frames, given.frames, expected.masks) > 35
    assert masked_psnr(written.frames, expected.images, expected.masks) > 35
    assert not list(tmp_path.glob(".*partial"))


def test_odd_sizes_are_padded_by_repeating_the_last_row_and_column(frames, tmp_path):
    odd = frames[:6, :, : HEIGHT - 1, : WIDTH - 1]
    source = write_clip(tmp_path / "odd.mkv", odd, codec="ffv1", audio=None)
    result = restore_video(networks(), source, tmp_path / "out.mp4")
    written = read_clip(tmp_path / "out.mp4")
    assert result.size == (HEIGHT, WIDTH) and written.frames.shape == (6, 3, HEIGHT, WIDTH)
    assert psnr(written.frames[:, :, :-1, :-1], odd) > 35
    assert psnr(written.frames[:, :, -1, :-1], odd[:, :, -1]) > 35  # the repeated last row
    assert psnr(written.frames[:, :, :-1, -1], odd[:, :, :, -1]) > 35
    assert written.codecs == [("video", "h264")] and result.audio == "none"


def test_a_variable_frame_rate_keeps_every_frames_time(frames, tmp_path):
    times = [0, 40, 140, 180, 220, 400, 440, 480]
    source = write_clip(tmp_path / "vfr.mkv", frames[:8], times_ms=times, audio="aac")
    restore_video(networks(), source, tmp_path / "out.mp4")
    written = read_clip(tmp_path / "out.mp4")
    assert written.times == pytest.approx([t / 1000 for t in times], abs=1e-3)


@pytest.mark.parametrize("rotation", [90, -90])  # -90: an upright phone clip (pixels coded landscape)
def test_a_rotated_phone_clip_comes_out_upright_without_rotation(frames, tmp_path, rotation):
    coded = frames[:4]
    source = write_clip(tmp_path / "phone.mp4", coded, rotation=rotation, audio=None)
    assert read_clip(source).rotations == [rotation] * 4
    result = restore_video(networks(), source, tmp_path / "out.mp4")
    written = read_clip(tmp_path / "out.mp4")
    assert result.rotation == rotation % 360 and result.size == (WIDTH, HEIGHT)
    assert written.rotations == [0.0] * 4  # the pixels are upright; no display matrix is written
    upright = torch.rot90(coded, rotation // 90, dims=(2, 3))  # turned counter-clockwise, as the matrix says
    assert psnr(written.frames, upright) > 30


def test_frames_without_faces_are_written_unchanged(frames, tmp_path):
    empty = torch.full((3, HEIGHT, WIDTH), 0.25)
    clip = torch.stack([empty] * 10 + list(frames[:3]) + [empty] * 10)
    source = write_clip(tmp_path / "few.mp4", clip, audio=None)
    stats = RestoreStats()
    result = restore_video(networks(), source, tmp_path / "out.mp4", stats=stats)
    written = read_clip(tmp_path / "out.mp4")
    assert result.frames == 23 and len(written.frames) == 23
    assert stats.faces_found == 3 and stats.faces_restored == 3
    assert psnr(written.frames[:10], clip[:10]) > 45 and psnr(written.frames[-8:], clip[-8:]) > 45


def test_a_cut_off_file_is_written_up_to_where_it_ends(frames, tmp_path):
    source = write_clip(tmp_path / "full.mp4", frames, faststart=True)
    data = source.read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) * 6 // 10])
    result = restore_video(networks(), tmp_path / "cut.mp4", tmp_path / "out.mp4")
    written = read_clip(tmp_path / "out.mp4")
    assert 0 < result.frames < 24 and len(written.frames) == result.frames
    assert result.problem is not None and f"after {result.frames} of the 24 frames" in result.problem


def test_a_damaged_tail_is_written_up_to_the_damage(frames, tmp_path):
    source = write_clip(tmp_path / "full.mp4", frames, faststart=True)
    data = bytearray(source.read_bytes())
    tail = len(data) * 7 // 10
    data[tail:] = torch.randint(0, 256, (len(data) - tail,), generator=torch.Generator().manual_seed(1),
                                dtype=torch.uint8).numpy().tobytes()
    (tmp_path / "damaged.mp4").write_bytes(bytes(data))
    result = restore_video(networks(), tmp_path / "damaged.mp4", tmp_path / "out.mp4")
    assert 0 < result.frames < 24 and len(read_clip(tmp_path / "out.mp4").frames) == result.frames
    assert result.problem is not None


def test_a_file_that_is_no_video_is_refused_by_name(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"no video here" * 50)
    with pytest.raises(VideoReadError, match=r"junk\.mp4: not a video PyAV can read"):
        probe_video(junk)
    with pytest.raises(VideoReadError, match=r"junk\.mp4: not a video PyAV can read"):
        restore_video(networks(), junk, tmp_path / "out.mp4")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.mp4"]


def test_limits_are_checked_from_the_header(frames, tmp_path):
    source = write_clip(tmp_path / "in.mp4", frames, audio=None)
    info = probe_video(source)
    assert (info.width, info.height, info.frames, info.frame_rate, info.audio) == (WIDTH, HEIGHT, 24, 12, None)
    with pytest.raises(VideoReadError, match="over the limit of 0.01 megapixels"):
        probe_video(source, max_pixels=10_000)
    with pytest.raises(VideoReadError, match="24 frames, more than the limit of 10"):
        restore_video(networks(), source, tmp_path / "out.mp4", max_frames=10)
    assert not (tmp_path / "out.mp4").exists()


def test_an_interrupt_leaves_no_file(frames, tmp_path):
    source = write_clip(tmp_path / "in.mp4", frames)
    target = tmp_path / "out.mp4"
    target.write_bytes(b"an older output")

    def progress(done: int, total: int) -> None:
        if done >= 8 * 100:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        restore_video(networks(), source, target, RestoreOptions(chunk_frames=3), progress=progress)
    assert target.read_bytes() == b"an older output"  # never half-written, never replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "out.mp4"]


def test_audio_mp4_cannot_hold_is_reencoded_as_aac(frames, tmp_path):
    source = write_clip(tmp_path / "pcm.mkv", frames[:12], audio="pcm_s16le", audio_layout="stereo")
    result = restore_video(networks(), source, tmp_path / "out.mp4")
    written = read_clip(tmp_path / "out.mp4")
    assert result.audio.startswith("pcm_s16le re-encoded as AAC")
    assert written.codecs == [("video", "h264"), ("audio", "aac")] and written.audio


def test_memory_follows_the_chunk_not_the_length(portrait, tmp_path):
    """Live tensors: the peak of a 40-frame clip is that of a 10-frame one (within a frame): nothing piles up.
    (The first, unmeasured run builds what is cached once per process.)"""
    peaks = {}
    for count in (10, 10, 40):
        source = write_clip(tmp_path / f"{count}.mp4", portrait_frames(portrait, count, HEIGHT, WIDTH, 0.25))
        with LiveTensorPeak() as counter:
            restore_video(networks(64), source, tmp_path / f"out{count}.mp4",
                          RestoreOptions(track=TrackOptions(smoothing=0.5), chunk_frames=4,
                                         paste=PasteOptions(mask="box")))
        peaks[count] = counter.peak_bytes
    frame_bytes = 3 * HEIGHT * WIDTH * 4
    assert abs(peaks[40] - peaks[10]) < frame_bytes, peaks


def test_frame_rate_and_time_base_come_from_the_header(frames, tmp_path):
    source = write_clip(tmp_path / "in.mkv", frames[:5], fps=25, audio=None)
    info = probe_video(source)
    assert info.frame_rate == Fraction(25) and info.time_base == Fraction(1, 1000) and info.container == "matroska,webm"
    assert info.frames is None and info.estimated_frames == 5  # Matroska states no frame count: its duration does
