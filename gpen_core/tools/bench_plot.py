"""Bar charts of benchmark rows (memory and time per strategy), drawn with Pillow."""
from __future__ import annotations

from PIL import Image, ImageDraw

from ..runtime.memory import MiB

COLOURS = {"fp32": (70, 110, 200), "bf16": (220, 120, 50), "fp16": (80, 170, 90)}


def plot_rows(rows: list, width: int = 900) -> Image.Image:
    """Two panels, peak MiB and seconds, one bar per (size, precision, strategy) row."""
    bar, gap, label_w, top = 16, 4, 330, 30
    height = top * 2 + 2 * (len(rows) * (bar + gap) + top)
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    y = 10
    for title, value, unit in (("peak activation memory", lambda r: r.peak_bytes / MiB, "MiB"),
                               ("time", lambda r: r.seconds, "s")):
        draw.text((10, y), f"GPEN {title} ({unit})", fill="black")
        y += top
        top_value = max((value(r) for r in rows), default=1.0) or 1.0
        for r in rows:
            v = value(r)
            draw.text((10, y + 2), f"{r.size} {r.precision} {r.strategy}", fill="black")
            length = int((width - label_w - 90) * v / top_value)
            draw.rectangle([label_w, y, label_w + max(length, 1), y + bar], fill=COLOURS.get(r.precision, "grey"))
            draw.text((label_w + length + 6, y + 2), f"{v:,.1f}", fill="black")
            y += bar + gap
        y += top
    return img
