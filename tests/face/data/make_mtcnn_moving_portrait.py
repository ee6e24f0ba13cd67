"""Writes ``mtcnn_moving_portrait.npz``: MTCNN's faces (facenet-pytorch's weights, the detector's default
threshold) in each frame of the 48-frame moving portrait of ``tests/face/test_video.py`` (seed 2).

Run from the repository root: ``python tests/face/data/make_mtcnn_moving_portrait.py``. Arrays: ``frame`` (N,)
int64, ``boxes`` (N, 4), ``scores`` (N,), ``landmarks`` (N, 5, 2), float32, one row per face.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parents[2]), str(HERE.parents[1]), str(HERE.parent)]

from test_video import MTCNN_CLIP, MTCNN_SEED, clip  # noqa: E402

from gpen_core.face.detection.api import find_faces  # noqa: E402
from gpen_core.face.detection.loader import load_detector  # noqa: E402
from gpen_core.images.files import read_image  # noqa: E402
from helpers import PHOTOS_DIR  # noqa: E402


def main() -> None:
    frames = clip(read_image(PHOTOS_DIR / "portrait-1947.png")[:3], 48, seed=MTCNN_SEED)
    detector = load_detector("mtcnn", [])
    rows: dict[str, list] = {"frame": [], "boxes": [], "scores": [], "landmarks": []}
    with torch.inference_mode():
        for i, image in enumerate(frames):
            found = find_faces(detector, image)
            for j in range(len(found)):
                rows["frame"].append(i)
                rows["boxes"].append(found.boxes[j].numpy())
                rows["scores"].append(float(found.scores[j]))
                rows["landmarks"].append(found.landmarks[j].numpy())
    np.savez(MTCNN_CLIP, frame=np.array(rows["frame"]), boxes=np.stack(rows["boxes"]),
             scores=np.array(rows["scores"], np.float32), landmarks=np.stack(rows["landmarks"]))
    print(f"wrote {MTCNN_CLIP}: {len(rows['frame'])} faces in {len(frames)} frames")


if __name__ == "__main__":
    main()
