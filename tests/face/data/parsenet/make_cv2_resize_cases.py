"""Small cv2.resize (INTER_LINEAR, uint8, 3 channels) cases for tests/face/data/parsenet/cv2_resize_cases.npz.

Run with opencv-python-headless 5.0.0 and numpy: python gen_cases.py out.npz
"""
import sys

import cv2
import numpy as np

CASES = [((64, 64), (32, 32)), ((128, 96), (32, 24)), ((20, 31), (77, 45)),
         ((37, 53), (20, 31)), ((50, 50), (64, 64)), ((3, 5), (7, 9)), ((1, 1), (4, 4)),
         ((2, 7), (1, 3)), ((32, 32), (64, 64)), ((24, 24), (41, 41)), ((75, 75), (64, 64))]
rng = np.random.default_rng(2026)
arrays = {}
for i, ((h, w), (oh, ow)) in enumerate(CASES):
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    arrays[f"in{i}"] = image
    arrays[f"out{i}"] = cv2.resize(image, (ow, oh))
arrays["cv2_version"] = np.array(cv2.__version__)
np.savez_compressed(sys.argv[1], **arrays)
