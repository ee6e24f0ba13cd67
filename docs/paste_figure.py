"""Make ``docs/paste_masks.jpg`` (the paste masks of the command line on a real photo, parse against box)
and ``docs/colour_match.jpg`` (``--color-match`` off / lab / ycbcr, with ``--no-keep-grey``).

Seeded weights stand in for the released ones (nothing can be downloaded here): GPEN-BFR-512's and
ParseNet's official layouts, so the restored face is noise and the parse map is that of random
weights. What the figure shows is where each mask lets the restored face in and how its edge looks.

Usage (from the repository root; about a minute on a CPU)::

    python docs/paste_figure.py ../shared/photos/portrait-1947.png docs/paste_masks.jpg docs/colour_match.jpg
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import gpen_core as g  # noqa: E402
from gpen_core.face.parsing import seeded_parsenet_state_dict  # noqa: E402

TILE = 300
"""Side of each panel in the figure."""


def run_cli(photo: Path, work: Path, mask: str, *extra: str) -> tuple[Image.Image, Image.Image]:
    out = work / "-".join((mask, *extra)).replace("--", "")
    subprocess.run(
        [sys.executable, "-m", "gpen_core", "enhance", str(photo), "--model", str(work / "GPEN-BFR-512.pth"),
         "--parser", str(work / "parsing_parsenet.pth"), "--mask", mask, "--save-mask", "--device", "cpu",
         "--precision", "fp32", "-o", str(out), "--force", *extra],
        check=True, cwd=ROOT,
    )
    return Image.open(out / f"{photo.stem}.png").convert("RGB"), Image.open(out / f"{photo.stem}_mask.png").convert("L")


def boundary_box(mask: Image.Image) -> tuple[int, int, int, int]:
    """A square (inside the image) around the mask's upper edge, where it falls from ~1 to 0 over the hair."""
    m = np.asarray(mask, dtype=np.float32) / 255
    rows, cols = np.nonzero(m > 0.5)
    cx, top = int(cols.mean()), int(rows.min())
    side = 96
    x0 = min(max(cx - side // 2, 0), m.shape[1] - side)
    y0 = min(max(top - side // 2, 0), m.shape[0] - side)
    return x0, y0, x0 + side, y0 + side


def panel(image: Image.Image, label: str) -> Image.Image:
    scale = TILE / max(image.width, image.height)
    tile = image.convert("RGB").resize((round(image.width * scale), round(image.height * scale)), Image.LANCZOS)
    canvas = Image.new("RGB", (TILE, TILE + 22), "white")
    canvas.paste(tile, ((TILE - tile.width) // 2, 22))
    ImageDraw.Draw(canvas).text((4, 4), label, fill="black")
    return canvas


def main(photo: str, target: str, colour_target: str) -> None:
    photo_path = Path(photo).resolve()
    target = str(Path(target).resolve())
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        torch.save(g.seeded_state_dict(g.GPENConfig(512, 2, 1.0), 1), work / "GPEN-BFR-512.pth")
        torch.save(seeded_parsenet_state_dict(), work / "parsing_parsenet.pth")
        results = {mask: run_cli(photo_path, work, mask) for mask in ("parse", "box")}
        colours = {space: run_cli(photo_path, work, "box", "--no-keep-grey", "--color-match", space)[0]
                   for space in ("off", "lab", "ycbcr")}
    source = Image.open(photo_path).convert("RGB")
    row = [panel(source, "input")] + [panel(out, f"--color-match {space}") for space, out in colours.items()]
    figure = Image.new("RGB", (4 * TILE + 30, row[0].height), "white")
    for c, p in enumerate(row):
        figure.paste(p, (c * (TILE + 10), 0))
    figure.save(str(Path(colour_target).resolve()), quality=88)
    print(f"wrote {colour_target}")
    box = boundary_box(results["box"][1])
    panels = [panel(source, "input")]
    for mask, (out, paste_mask) in results.items():
        panels += [panel(paste_mask, f"{mask} mask"), panel(out, f"{mask}: output"),
                   panel(out.crop(box).resize((TILE, TILE), Image.NEAREST), f"{mask}: edge, zoomed")]
    source_zoom = panel(source.crop(box).resize((TILE, TILE), Image.NEAREST), "input: same place")
    rows = [[panels[0], panels[1], panels[2], panels[3]], [source_zoom, panels[4], panels[5], panels[6]]]
    height = max(p.height for row in rows for p in row)
    figure = Image.new("RGB", (4 * TILE + 30, 2 * height + 10), "white")
    for r, row in enumerate(rows):
        for c, p in enumerate(row):
            figure.paste(p, (c * (TILE + 10), r * (height + 10)))
    figure.save(target, quality=88)
    print(f"wrote {target}; zoomed box {box}")


if __name__ == "__main__":
    main(*sys.argv[1:4])
