"""Image files: every Pillow mode at its real range, EXIF orientation, frames, safe writes."""
from __future__ import annotations

import errno

import numpy as np
import pytest
import torch
from PIL import Image

from gpen_core.images.files import (
    ImageReadError,
    frame_count,
    read_frames,
    read_image,
    write_image,
)


def ramp(height: int = 6, width: int = 8) -> np.ndarray:
    """Values 0 .. 1 over the pixels, row-major."""
    return np.arange(height * width, dtype=np.float64).reshape(height, width) / (height * width - 1)


def test_16_bit_grey_keeps_its_range(tmp_path):
    values = (ramp() * 65535).round().astype(np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode == "I;16"
    image = read_image(tmp_path / "g16.png")
    assert image.shape == (1, 6, 8) and image.dtype == torch.float32
    assert torch.allclose(image[0].double(), torch.from_numpy(values / 65535.0), atol=1e-7)
    assert float(image.min()) == 0.0 and float(image.max()) == 1.0  # not all white


def test_big_endian_16_bit(tmp_path):
    values = (ramp() * 65535).round().astype(np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.tif")
    image = Image.open(tmp_path / "g16.tif")
    from gpen_core.images.files import image_to_tensor

    big = Image.frombytes("I;16B", image.size, values.astype(">u2").tobytes())
    assert torch.allclose(image_to_tensor(big)[0].double(), torch.from_numpy(values / 65535.0), atol=1e-7)


def test_float_tiff_keeps_its_values(tmp_path):
    values = ramp().astype(np.float32)
    Image.fromarray(values).save(tmp_path / "f.tif")
    assert Image.open(tmp_path / "f.tif").mode == "F"
    assert torch.equal(read_image(tmp_path / "f.tif")[0], torch.from_numpy(values))  # not all black


@pytest.mark.parametrize("bad, message", [(2.5, r"values in \[0, 2.5\].*tone-map"), (np.nan, "1 NaN/inf pixel")])
def test_float_tiff_out_of_range_or_nan_is_refused(tmp_path, bad, message):
    values = ramp().astype(np.float32)
    values[-1, -1] = bad
    Image.fromarray(values).save(tmp_path / "f.tif")
    with pytest.raises(ImageReadError, match=r"f\.tif: float image.*" + message):
        read_image(tmp_path / "f.tif")


def test_float_overshoot_within_tolerance_is_clamped(tmp_path):
    values = ramp().astype(np.float32) * 1.02 - 0.01
    Image.fromarray(values).save(tmp_path / "f.tif")
    image = read_image(tmp_path / "f.tif")
    assert float(image.min()) == 0.0 and float(image.max()) == 1.0


def test_int32_tiff_uses_the_declared_32_bit_range(tmp_path):
    values = (ramp() * (2**31 - 1)).round().astype(np.int32)
    Image.fromarray(values).save(tmp_path / "i.tif")
    assert Image.open(tmp_path / "i.tif").mode == "I"
    image = read_image(tmp_path / "i.tif")
    assert torch.allclose(image[0].double(), torch.from_numpy(values / (2**31 - 1)), atol=1e-7)  # not clipped


def test_16_bit_data_in_mode_I_and_negative_ints(tmp_path):
    from gpen_core.images.files import image_to_tensor

    values = (ramp() * 65535).round().astype(np.int32)
    image = image_to_tensor(Image.fromarray(values))  # mode I without a TIFF header: 16-bit samples
    assert torch.allclose(image[0].double(), torch.from_numpy(values / 65535.0), atol=1e-7)
    with pytest.raises(ImageReadError, match=r"x: 16-bit integer image with values in \[-5, 65535\]"):
        image_to_tensor(Image.fromarray(np.where(values == 0, -5, values).astype(np.int32)), "x")


def test_16_bit_ppm(tmp_path):
    values = (ramp() * 65535).round().astype(np.uint16)
    Image.fromarray(values).save(tmp_path / "g.ppm")
    assert torch.allclose(read_image(tmp_path / "g.ppm")[0].double(), torch.from_numpy(values / 65535.0), atol=1e-7)


def rgb_ramp() -> np.ndarray:
    return (np.stack([ramp(), 1 - ramp(), ramp() * 0.5], axis=-1) * 255).round().astype(np.uint8)


@pytest.mark.parametrize(
    "mode, channels",
    [("1", 1), ("L", 1), ("LA", 2), ("RGB", 3), ("RGBA", 4), ("P", 3), ("PA", 4), ("CMYK", 3), ("YCbCr", 3),
     ("LAB", 3), ("HSV", 3), ("RGBX", 3), ("RGBa", 4), ("La", 2)],
)
def test_every_mode(mode, channels):
    from gpen_core.images.files import image_to_tensor

    source = Image.fromarray(rgb_ramp(), "RGB")
    if mode == "P":
        img = source.convert("P", palette=Image.Palette.ADAPTIVE)
    elif mode in ("PA", "La", "RGBa"):
        img = source.convert("RGBA").convert(mode)
    else:
        img = source.convert(mode)
    image = image_to_tensor(img)
    assert image.shape == (channels, 6, 8) and image.dtype == torch.float32
    assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
    if mode in ("L", "RGB", "RGBA"):
        expected = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255).reshape(6, 8, -1).permute(2, 0, 1)
        assert torch.equal(image, expected)
    if mode == "1":
        assert set(image.unique().tolist()) <= {0.0, 1.0}
    if mode in ("P", "CMYK", "YCbCr", "RGBX", "HSV"):  # a colour image stays colourful, roughly the same
        assert (image - torch.from_numpy(rgb_ramp() / 255.0).permute(2, 0, 1).float()).abs().mean() < 0.05


def test_palette_with_transparency_keeps_alpha(tmp_path):
    img = Image.new("P", (4, 4), 1)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    img.info["transparency"] = 0
    img.putpixel((0, 0), 0)
    img.save(tmp_path / "p.png", transparency=0)
    image = read_image(tmp_path / "p.png")
    assert image.shape == (4, 4, 4)
    assert float(image[3, 0, 0]) == 0.0 and float(image[3, 1, 1]) == 1.0
    assert float(image[0, 1, 1]) == 1.0


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_is_applied(tmp_path, orientation):
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:6, :6] = 255  # a white corner marks the stored top-left
    exif = Image.Exif()
    exif[274] = orientation
    Image.fromarray(pixels).save(tmp_path / "phone.jpg", exif=exif.tobytes(), quality=100)
    image = read_image(tmp_path / "phone.jpg")
    upright = {3: np.rot90(pixels, 2), 6: np.rot90(pixels, -1), 8: np.rot90(pixels, 1)}[orientation]
    assert image.shape[1:] == upright.shape[:2]
    expected = torch.from_numpy(upright.copy()).permute(2, 0, 1).float() / 255
    assert (image - expected).abs().max() < 0.2  # JPEG ringing only


def test_exif_orientation_on_16_bit_png(tmp_path):
    values = np.zeros((20, 40), np.uint16)
    values[:6, :6] = 65535
    exif = Image.Exif()
    exif[274] = 6
    Image.fromarray(values).save(tmp_path / "o.png", exif=exif.tobytes())
    image = read_image(tmp_path / "o.png")
    assert image.shape == (1, 40, 20)
    assert torch.equal(image[0], torch.from_numpy(np.rot90(values, -1) / 65535.0).float())


def make_gif(path, count: int = 3) -> list[tuple[int, int, int]]:
    colours = [(40 * (i + 1), 200 - 50 * i, 10) for i in range(count)]
    frames = [Image.new("RGB", (12, 10), c) for c in colours]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50)
    return colours


@pytest.mark.parametrize("suffix", [".gif", ".png", ".webp", ".tiff"])
def test_every_frame_of_animations_and_pages(tmp_path, suffix):
    path = tmp_path / f"anim{suffix}"
    colours = [(200, 20, 20), (20, 200, 20), (20, 20, 200)]
    frames = [Image.new("RGB", (12, 10), c) for c in colours]
    frames[0].save(path, save_all=True, append_images=frames[1:], lossless=True)
    assert frame_count(path) == 3
    images = read_frames(path)
    assert len(images) == 3
    for image, colour in zip(images, colours, strict=True):
        assert image.shape[1:] == (10, 12)
        assert (image[:3, 5, 5] * 255 - torch.tensor(colour, dtype=torch.float32)).abs().max() <= 8  # GIF palette
    with pytest.raises(ImageReadError, match=rf"anim\{suffix}: has 3 frames; read them all with read_frames"):
        read_image(path)
    assert torch.equal(read_image(path, frame=2), images[2])
    with pytest.raises(ImageReadError, match="frame 3 asked for, the file has 3"):
        read_image(path, frame=3)


def test_single_frame_gif(tmp_path):
    Image.new("RGB", (5, 4), (255, 0, 0)).save(tmp_path / "one.gif")
    assert frame_count(tmp_path / "one.gif") == 1
    assert read_image(tmp_path / "one.gif").shape == (3, 4, 5)


def test_unreadable_files_are_named(tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(good)
    (tmp_path / "cut.png").write_bytes(good.read_bytes()[:2000])
    (tmp_path / "text.jpg").write_text("not an image")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match=r"cut\.png: cannot decode the image, truncated or corrupt"):
        read_image(tmp_path / "cut.png")
    with pytest.raises(ImageReadError, match=r"text\.jpg: not an image Pillow can read"):
        read_image(tmp_path / "text.jpg")
    with pytest.raises(ImageReadError, match=r"empty\.png: not an image"):
        read_image(tmp_path / "empty.png")
    with pytest.raises(ImageReadError, match=r"missing\.png: no such file"):
        read_image(tmp_path / "missing.png")
    with pytest.raises(ImageReadError, match="is a folder"):
        read_image(tmp_path)


def test_write_round_trip_and_no_partial_file(tmp_path, monkeypatch):
    image = torch.from_numpy(rgb_ramp()).permute(2, 0, 1).float() / 255
    write_image(tmp_path / "out.png", image)
    assert torch.equal(read_image(tmp_path / "out.png"), image)
    write_image(tmp_path / "out.jpg", torch.cat([image, torch.ones(1, 6, 8)]))  # alpha dropped for JPEG
    assert Image.open(tmp_path / "out.jpg").mode == "RGB"

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", full)
    with pytest.raises(OSError, match="No space left"):
        write_image(tmp_path / "full.png", image)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jpg", "out.png"]
