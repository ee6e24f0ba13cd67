"""Writes ``gpen_clip.mp4`` beside this file: ``portrait-1947.png`` (resized to 256x342) moving across a black
416x384 canvas, 12 frames at 12 fps, H.264. Needs PyAV (ComfyUI's environment has it):

    python example_inputs/make_clip.py
"""
from __future__ import annotations

from pathlib import Path

import av
import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
FRAMES, FPS, WIDTH, HEIGHT = 12, 12, 416, 384


def main() -> None:
    face = np.asarray(Image.open(HERE / "portrait-1947.png").convert("RGB").resize((256, 342)))
    with av.open(str(HERE / "gpen_clip.mp4"), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for t in range(FRAMES):
            canvas = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
            x, y = 20 + 10 * t, 20 + (t % 3)
            canvas[y:y + 342, x:x + 256] = face
            for packet in stream.encode(av.VideoFrame.from_ndarray(canvas, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


if __name__ == "__main__":
    main()
