"""Benchmark of the face detectors' non-maximum suppression (``python -m gpen_core bench --nms``).

Seeded box layouts of a few thousand boxes, timed with the best of ``repeat`` runs:

* ``spread``: 5-60 px boxes over a canvas where most survive (the worst case of a greedy
  loop over kept boxes);
* ``crowded``: the same boxes on a canvas 10x smaller: most are suppressed, many pairs
  intersect (the worst case of this implementation);
* ``clustered``: jittered copies of 40 face boxes, as a detector's raw output on a group photo.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from ..face.detection.nms import greedy_nms

LAYOUTS = ("spread", "crowded", "clustered")
COUNTS = (1000, 5000, 20000)
HEADER = f"{'boxes':>6} {'layout':<10} {'threshold':>9} {'kept':>6} {'time ms':>8} {'cpu ms':>7}"


def nms_boxes(count: int, layout: str, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded (count, 4) float32 boxes and (count,) scores in ``layout`` (see the module docstring).
    The canvas grows with ``sqrt(count)`` so that density, hence the kept fraction, stays put."""
    rng = np.random.default_rng(seed)
    scale = float(np.sqrt(count / 5000))
    if layout == "clustered":
        faces = 40
        centres = rng.uniform(0, 4000 * scale, size=(faces, 2))
        sides = rng.uniform(40, 200, size=faces)
        which = rng.integers(0, faces, size=count)
        jitter = rng.normal(0, 0.1, size=(count, 4)) * sides[which, None]
        half = sides[which, None] / 2
        boxes = np.concatenate([centres[which] - half, centres[which] + half], axis=1) + jitter
    elif layout in ("spread", "crowded"):
        canvas = (2000.0 if layout == "spread" else 200.0) * scale
        centres = rng.uniform(0, canvas, size=(count, 2))
        sizes = rng.uniform(5, 60, size=(count, 2))
        boxes = np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=1)
    else:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    scores = rng.uniform(0, 1, size=count)
    return torch.from_numpy(boxes.astype(np.float32)), torch.from_numpy(scores.astype(np.float32))


def nms_rows(counts: tuple[int, ...] = COUNTS, repeat: int = 3, threshold: float = 0.4) -> list[str]:
    """One formatted row per box count and layout: boxes kept, the best wall-clock time and the
    best CPU time of the calling thread (where all the work runs; on a busy machine the wall
    clock also counts the time spent waiting for a core) of ``repeat`` runs."""
    rows = []
    for count in counts:
        for layout in LAYOUTS:
            boxes, scores = nms_boxes(count, layout)
            wall = cpu = float("inf")
            for _ in range(repeat):
                wall_start, cpu_start = time.perf_counter(), time.thread_time()
                kept = greedy_nms(boxes, scores, threshold)
                wall = min(wall, time.perf_counter() - wall_start)
                cpu = min(cpu, time.thread_time() - cpu_start)
            rows.append(
                f"{count:>6} {layout:<10} {threshold:>9.2f} {kept.numel():>6} {wall * 1000:>8.1f} {cpu * 1000:>7.1f}"
            )
    return rows


def run_nms_bench(repeat: int) -> None:
    """Print the NMS table (CLI output)."""
    print(f"NMS benchmark (greedy, torchvision semantics), CPU, torch {torch.__version__}; best of {repeat}")
    print(HEADER)
    for row in nms_rows(repeat=repeat):
        print(row)
