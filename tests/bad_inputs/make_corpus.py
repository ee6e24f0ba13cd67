"""The bad-input corpus of issues 8 and 16, written at test time (nothing binary is stored in the repository).

Run by hand to look at the files: ``python tests/bad_inputs/make_corpus.py DIR``; the tests call
:func:`make_image_files`, :func:`make_bounded_files` and :func:`make_checkpoint_files` on a temporary
folder. Each name here has a row in the README's Troubleshooting table (a test checks that).
"""
from __future__ import annotations

import os
import pickle
import struct
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

RAMP = np.linspace(0.0, 1.0, 48 * 40).reshape(48, 40)
"""Values 0 .. 1, a 40 x 48 (W x H) image: its mean is 0.5, its extremes 0 and 1."""


def _noise(height: int = 48, width: int = 40, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[274] = orientation
    return exif.tobytes()


def _anim(path: Path) -> None:
    frames = [Image.fromarray(_noise(seed=i)) for i in range(3)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=80)


def _palette_alpha(path: Path) -> None:
    img = Image.fromarray(_noise()).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    img.save(path, transparency=0)


def _truncated(path: Path) -> None:
    full = path.with_name(".full.png")
    Image.fromarray(_noise(96, 96)).save(full)
    path.write_bytes(full.read_bytes()[:4000])
    full.unlink()


def _float_with(value: float) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        values = RAMP.astype(np.float32)
        values[0, 0] = value
        Image.fromarray(values).save(path)

    return make


IMAGE_FILES: dict[str, Callable[[Path], None]] = {
    "grey16.png": lambda p: Image.fromarray((RAMP * 65535).round().astype(np.uint16)).save(p),
    "float.tif": lambda p: Image.fromarray(RAMP.astype(np.float32)).save(p),
    "int32.tif": lambda p: Image.fromarray((RAMP * (2**31 - 1)).round().astype(np.int32)).save(p),
    "netpbm16.ppm": lambda p: Image.fromarray((RAMP * 65535).round().astype(np.uint16)).save(p),
    "rotated.jpg": lambda p: Image.fromarray(_noise()).save(p, exif=_exif(6), quality=95),
    "anim.gif": _anim,
    "palette_alpha.png": _palette_alpha,
    "grey_alpha.png": lambda p: Image.fromarray(_noise()).convert("LA").save(p),
    "bilevel.png": lambda p: Image.fromarray(_noise()).convert("1").save(p),
    "cmyk.jpg": lambda p: Image.fromarray(_noise()).convert("CMYK").save(p),
    "float_hdr.tif": _float_with(4.0),
    "float_nan.tif": _float_with(float("nan")),
    "truncated.png": _truncated,
    "text.jpg": lambda p: p.write_text("this is not a picture\n"),
    "empty.png": lambda p: p.write_bytes(b""),
    "notes.txt": lambda p: p.write_text("a file without an image suffix\n"),
}
"""Image files: the readable ones are enhanced (at their real range, upright, every frame); the
others fail by name while the rest of the folder is processed."""


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png_of_zeros(width: int, height: int) -> Callable[[Path], None]:
    """A black RGB PNG, compressed row by row: its pixels never exist in memory (432 MB at 12000 x 12000)."""

    def make(path: Path) -> None:
        compress = zlib.compressobj(6)
        row = bytes(1 + 3 * width)  # filter byte 0, then black RGB
        data = b"".join(compress.compress(row) for _ in range(height)) + compress.flush()
        header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", data) + _chunk(b"IEND", b""))

    return make


def _apng_declaring(frames: int) -> Callable[[Path], None]:
    """A two-frame APNG whose header (acTL) declares ``frames`` frames."""

    def make(path: Path) -> None:
        images = [Image.fromarray(_noise(seed=i)) for i in range(2)]
        images[0].save(path, save_all=True, append_images=images[1:])
        data = path.read_bytes()
        at = data.index(b"acTL") - 4
        path.write_bytes(data[:at] + _chunk(b"acTL", struct.pack(">II", frames, 0)) + data[at + 20:])

    return make


def _pages(path: Path) -> None:
    """A TIFF of two pages: 40 x 48 (1920 pixels), then 80 x 96 (7680 pixels)."""
    pages = [Image.fromarray(_noise()), Image.fromarray(_noise(96, 80, seed=1))]
    pages[0].save(path, save_all=True, append_images=pages[1:])


BOUNDED_FILES: dict[str, Callable[[Path], None]] = {
    "huge_12000x12000.png": _png_of_zeros(12000, 12000),
    "frames_2147483647.png": _apng_declaring(2**31 - 1),
    "pipe.png": lambda p: os.mkfifo(p),
    "dangling.png": lambda p: p.symlink_to("missing-target.png"),
    "loop.png": lambda p: p.symlink_to(p.name),
    "device.png": lambda p: p.symlink_to("/dev/zero"),
    "pages_small_large.tif": _pages,
    "x" * 245 + ".png": lambda p: Image.fromarray(_noise()).save(p),
}
"""Issue 16: files that are not regular files, or that declare more than the limits (a 420 KB PNG of
12000 x 12000 pixels, an APNG of 2**31 - 1 frames), and a 249-character name; each is listed as failed
with its reason (or, the last, written) while the rest of the batch is done. The special files (FIFO,
links) need a POSIX file system."""

LONG_NAME = "x" * 245 + ".png"
"""The 249-character input name of :data:`BOUNDED_FILES`."""


class RunsCode:
    """Unpickling this runs ``os.system``: the loader must refuse it without running it."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _truncated_zip(path: Path, state: dict[str, torch.Tensor]) -> None:
    torch.save(state, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _safetensors_as_pth(path: Path, state: dict[str, torch.Tensor]) -> None:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in state.items()}, str(path))


def _truncated_safetensors(path: Path, state: dict[str, torch.Tensor]) -> None:
    _safetensors_as_pth(path, state)
    path.write_bytes(path.read_bytes()[:1000])


def _evil(path: Path, state: dict[str, torch.Tensor]) -> None:
    with path.open("wb") as f:
        pickle.dump({"g_ema": dict(state), "x": RunsCode(str(path.with_name("pwned")))}, f, protocol=2)


CHECKPOINT_FILES: dict[str, Callable[[Path, dict[str, torch.Tensor]], None]] = {
    "random.pth": lambda p, s: p.write_bytes(np.random.default_rng(1).bytes(20000)),
    "text.pth": lambda p, s: p.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:abc\n"),
    "page.pth": lambda p, s: p.write_text("<!DOCTYPE html><html><body>404 Not Found</body></html>"),
    "safetensors_named.pth": _safetensors_as_pth,
    "truncated.pth": _truncated_zip,
    "truncated.safetensors": _truncated_safetensors,
    "empty.pth": lambda p, s: p.write_bytes(b""),
    "evil.pth": _evil,
    "folder.pth": lambda p, s: p.mkdir(),
}
"""Checkpoints that are not GPEN weights: each is refused with the file name and the real reason."""


def _make_files(folder: Path, makers: dict[str, Callable[[Path], None]]) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    made = {}
    for name, make in makers.items():
        made[name] = folder / name
        make(made[name])
    return made


def make_image_files(folder: Path) -> dict[str, Path]:
    return _make_files(folder, IMAGE_FILES)


def make_bounded_files(folder: Path) -> dict[str, Path]:
    return _make_files(folder, BOUNDED_FILES)


def make_checkpoint_files(folder: Path, state: dict[str, torch.Tensor]) -> dict[str, Path]:
    return _make_files(folder, {name: _with_state(make, state) for name, make in CHECKPOINT_FILES.items()})


def _with_state(make: Callable[[Path, dict[str, torch.Tensor]], None],
                state: dict[str, torch.Tensor]) -> Callable[[Path], None]:
    return lambda path: make(path, state)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python tests/bad_inputs/make_corpus.py DIR")
    root = Path(sys.argv[1])
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    import gpen_core as g

    make_image_files(root / "images")
    make_bounded_files(root / "bounded")
    make_checkpoint_files(root / "checkpoints", g.seeded_state_dict(g.GPENConfig(64, 2, 0.125), 7))
    print(f"corpus written to {root}")
