"""Peak memory of restoring a clip, short against long: the command line and the VIDEO node's logic.

    python scripts/bench_video_memory.py [--frames 30 600] [--size 640x480] [--detector fixed|mtcnn] [--device cpu]
                                      [--work DIR]

For each frame count, a clip of the shared portrait moving over a canvas (H.264, 12 fps, an AAC tone) is written,
then restored in a fresh process per path, whose peak resident set is read by ``/usr/bin/time -f %M``:

* ``decode+encode``: the clip decoded and encoded again by :mod:`gpen_core.video` with no face work (what PyAV,
  the decoder and x264 hold on their own);
* ``cli``: ``python -m gpen_core enhance clip.mp4 ...``;
* ``node``: ``nodes.video_logic.restore_comfy_video`` (GPEN Restore Video without ComfyUI), the VIDEO a file.

The GPEN model is a tiny seeded one (the memory of GPEN itself does not depend on the clip's length); the detector
is ``fixed`` (a stand-in finding one face in the middle of every frame, so every frame has a face to restore and
the run is quick) or a real one (``mtcnn``: slow on a CPU). Prints a table; asserts nothing (figures, not tests).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

FIXED_DETECTOR = textwrap.dedent('''
    import torch
    from gpen_core.face.align import reference_points
    from gpen_core.face.detection.result import FaceDetections

    class FixedFace:
        """One face, the template's landmarks over a third of the shorter side, in the middle of every frame."""
        name, device, default_score_threshold = "fixed", torch.device("cpu"), 0.5

        def detect_rgb255(self, image, score_threshold, min_face_size, progress=None):
            h, w = image.shape[-2:]
            side = min(h, w) / 3
            offset = torch.tensor([(w - side) / 2, (h - side) / 2])
            points = reference_points(64, dtype=torch.float32) * (side / 64) + offset
            box = torch.tensor([[*offset.tolist(), *(offset + side).tolist()]])
            return FaceDetections(box, torch.tensor([0.999]), points[None], (h, w))
''')

RUNNERS = {
    "decode+encode": '''
from gpen_core.video import VideoSource, VideoWriter
with VideoSource(CLIP) as video, VideoWriter(OUT, frame_rate=video.info.frame_rate, time_base=video.info.time_base,
                                             audio=video.audio_stream) as writer:
    for frame in video.frames():
        writer.colour = writer.colour or video.colour
        writer.write(frame.image, frame.pts)
        writer.mux_audio(video.audio_until(writer.video_time))
    writer.finish(video.remaining_audio())
''',
    "cli": '''
import gpen_core.face.detection.loader as loader
if DETECTOR == "fixed":
    loader.load_detector = lambda *a, **k: FixedFace()
from gpen_core.tools.cli import main
code = main(["enhance", CLIP, "--model", MODEL, "-o", OUT_DIR, "--mask", "box", "--detector",
             "auto" if DETECTOR == "fixed" else DETECTOR, "--force", "--device", DEVICE])
assert code == 0, code
''',
    "node": '''
import importlib
from pathlib import Path
from helpers import import_pack
pack = import_pack("comfyui_gpen")
core = importlib.import_module("comfyui_gpen.gpen_core")
logic = importlib.import_module("comfyui_gpen.nodes.video_logic")
detector = FixedFace() if DETECTOR == "fixed" else core.face.detection.loader.load_detector(DETECTOR, [])
model = core.loading.load_model(MODEL, device=DEVICE)
class Video:  # ComfyUI's VideoFromFile, as far as the node uses it
    def get_stream_source(self):
        return CLIP
options = core.face.RestoreOptions(paste=core.face.PasteOptions(mask="box"))
logic.restore_comfy_video(core.face.FaceNetworks(model, detector), Video(), options, Path(OUT_DIR))
''',
}


def write_inputs(work: Path, frames: int, height: int, width: int) -> tuple[Path, Path]:
    """The clip (written frame by frame: the benchmark's own memory stays small) and a tiny seeded model."""
    import av
    import numpy as np
    import torch

    import gpen_core as g
    from gpen_core.images.files import read_image
    from helpers import PHOTOS_DIR, TINY

    model = work / "tiny.pth"
    if not model.exists():
        torch.save(g.seeded_state_dict(TINY, 7), model)
    clip = work / f"clip{frames}.mp4"
    if clip.exists():
        return clip, model
    portrait = read_image(PHOTOS_DIR / "portrait-1947.png")[:3]
    face = (torch.nn.functional.interpolate(portrait[None], scale_factor=0.7, mode="area")[0] * 255).round()
    face = face.to(torch.uint8).permute(1, 2, 0).numpy()
    fh, fw = face.shape[:2]
    with av.open(str(clip), "w") as out:
        video = out.add_stream("libx264", rate=12)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        sound = out.add_stream("aac", rate=16000)
        sound.layout = "mono"
        tone = (0.2 * np.sin(np.arange(16000 * frames // 12) * 2 * np.pi * 440 / 16000)).astype(np.float32)
        written = 0
        for i in range(frames):
            canvas = np.full((height, width, 3), 60, np.uint8)
            x = int((width - fw) * (0.5 + 0.4 * np.sin(i / 15)))
            y = (height - fh) // 2 + (i % 3)
            canvas[y : y + fh, x : x + fw] = face
            for packet in video.encode(av.VideoFrame.from_ndarray(canvas, format="rgb24")):
                out.mux(packet)
            while written < (i + 1) * 16000 // 12:
                part = tone[written : written + 1600][None]
                wave = av.AudioFrame.from_ndarray(np.ascontiguousarray(part), format="flt", layout="mono")
                wave.sample_rate, wave.pts = 16000, written
                written += part.shape[1]
                for packet in sound.encode(wave):
                    out.mux(packet)
        for stream in (video, sound):
            for packet in stream.encode(None):
                out.mux(packet)
    return clip, model


def measure(path: str, clip: Path, model: Path, work: Path, detector: str, device: str) -> tuple[int, float]:
    """(peak resident KiB, seconds) of a fresh process restoring ``clip`` along ``path``."""
    out_dir = work / f"out-{path}-{clip.stem}"
    out_dir.mkdir(exist_ok=True)
    script = (f"import sys\nsys.path[:0] = [{str(REPO)!r}, {str(REPO / 'tests')!r}]\n{FIXED_DETECTOR}\n"
              f"CLIP, MODEL, OUT_DIR, DETECTOR = {str(clip)!r}, {str(model)!r}, {str(out_dir)!r}, {detector!r}\n"
              f"DEVICE = {device!r}\n"
              f"OUT = {str(out_dir / 'out.mp4')!r}\n{RUNNERS[path]}")
    started = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-f", "%M", sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=REPO)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{path} on {clip.name} failed:\n{done.stderr[-3000:]}")
    return int(done.stderr.strip().splitlines()[-1]), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, nargs="+", default=[30, 600])
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--detector", default="fixed")
    parser.add_argument("--device", default="cpu", help="where GPEN runs (cpu, cuda)")
    parser.add_argument("--paths", nargs="+", default=list(RUNNERS), choices=list(RUNNERS))
    parser.add_argument("--work", default=None, help="folder for the clips and outputs (default: a temporary one)")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    work = Path(args.work or tempfile.mkdtemp(prefix="gpen-video-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"{'path':<14} {'frames':>6} {'peak RSS MiB':>12} {'seconds':>8} {'fps':>6}")
    peaks: dict[str, dict[int, int]] = {}
    for frames in args.frames:
        clip, model = write_inputs(work, frames, height, width)
        for path in args.paths:
            kib, seconds = measure(path, clip, model, work, args.detector, args.device)
            peaks.setdefault(path, {})[frames] = kib
            print(f"{path:<14} {frames:>6} {kib / 1024:>12.1f} {seconds:>8.1f} {frames / seconds:>6.2f}", flush=True)
    if len(args.frames) > 1:
        low, high = min(args.frames), max(args.frames)
        for path, by_frames in peaks.items():
            print(f"{path}: {high} frames minus {low}: {(by_frames[high] - by_frames[low]) / 1024:+.1f} MiB")
    print(f"(clips and outputs in {work}; {width}x{height}, detector {args.detector}, GPEN on {args.device})")


if __name__ == "__main__":
    main()
