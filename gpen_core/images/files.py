"""Reading and writing image files as float tensors (Pillow), every mode at its real range.

Reading (:func:`read_image`, :func:`read_frames`):

* EXIF orientation is applied (a phone photo taken sideways comes out upright), so what is
  written back is upright too (outputs carry no orientation tag).
* Values are mapped from the file's own range to [0, 1]:

  ==========================  ===========================================================
  mode                        read as
  ==========================  ===========================================================
  ``1``                       grey, 0 or 1
  ``L`` / ``LA`` / ``La``     grey (+ alpha), 8-bit / 255
  ``I;16``, ``I;16B/L/N``     grey, 16-bit / 65535
  ``I`` (32-bit integers)     16-bit data held in 32 bits (PNG, PPM): / 65535; a TIFF that
                              declares 32-bit samples: / (2^31 - 1) (signed) or
                              / (2^32 - 1) (unsigned); values outside the range (e.g.
                              negatives) are refused with a message
  ``F`` (32-bit float)        grey as stored, which must be finite and in [0, 1] (up to
                              :data:`~gpen_core.checks.FLOAT_RANGE_TOLERANCE` of overshoot,
                              clamped); HDR data is refused (tone-map it first)
  ``P`` / ``PA``              RGB, or RGBA when the palette has transparency
  ``RGB`` / ``RGBA`` / ...    8-bit / 255 (``RGBa``, ``RGBX`` converted)
  ``CMYK``, ``YCbCr``,        RGB (Pillow's conversion)
  ``LAB``, ``HSV``
  ==========================  ===========================================================

* Multi-frame files: animations and multi-page files (GIF, APNG, animated WebP/AVIF,
  multi-page TIFF, FLI) have :func:`frame_count` > 1; :func:`read_frames` returns every
  frame and :func:`read_image` refuses them unless a ``frame`` is given. Extra pictures of
  other formats (the preview of an MPO "JPEG", PSD layers, ICO sizes) are not frames: those
  files read as their main picture.
* Bounded: only regular files are opened (a FIFO, a device, a dangling link or a link loop is
  refused with the reason, see :mod:`.regular`); a frame larger than :data:`MAX_PIXELS` (an
  option of every reader, ``max_pixels``) is refused from its header, before anything is
  decoded; a file with more than :data:`MAX_FRAMES` frames (``max_frames``) likewise.

Writing (:func:`write_image`) is 8-bit, format by suffix, through a temporary file renamed into
place, so that a failed write (full disk) never leaves a truncated output behind.
"""
from __future__ import annotations

import hashlib
import os
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from ..checks import FLOAT_RANGE_TOLERANCE
from .regular import NotRegularFileError, open_regular

IMAGE_SUFFIXES = (
    ".png", ".apng", ".jpg", ".jpeg", ".jpe", ".jfif", ".webp", ".avif", ".bmp", ".dib", ".gif", ".tif",
    ".tiff", ".tga", ".ppm", ".pgm", ".pbm", ".pnm", ".pfm", ".qoi", ".psd", ".ico", ".sgi", ".jp2",
)
"""Suffixes taken from a folder (any other file in a folder is listed as ignored, never read)."""

SEQUENCE_FORMATS = frozenset({"GIF", "PNG", "WEBP", "AVIF", "TIFF", "FLI", "DCX"})
"""Pillow formats whose frames are a sequence (animation frames, pages), all of them content."""

PIXEL_MODES = {"1": "L", "L": "L", "LA": "LA", "RGB": "RGB", "RGBA": "RGBA"}
"""Modes read directly (8-bit, or bool for ``1``); others are converted or scaled below."""

CONVERTED_MODES = {"La": "LA", "PA": "RGBA", "RGBa": "RGBA", "RGBX": "RGB", "CMYK": "RGB", "YCbCr": "RGB",
                   "LAB": "RGB", "HSV": "RGB"}


MAX_PIXELS = 100_000_000
"""The largest frame read, in pixels (width x height): 100 megapixels (e.g. 12000 x 8333).

Checked from the file's header before anything is decoded, for every frame of an animation,
so a small file declaring a huge picture (a 420 KB PNG of 12000 x 12000) costs nothing. A
frame at the limit takes about 1.2 GB as float32 RGB while it is read (and twice that while
its orientation is applied); raise the limit with ``max_pixels=`` (command line:
``--max-pixels``) on a machine with the memory. Pillow's own bomb check is raised to this
limit for our reads (never lowered)."""

MAX_FRAMES = 10_000
"""The most frames read from one animation / multi-page file (the count comes from the header:
an APNG header can declare two billion frames in a 100-byte file); ``max_frames=`` raises it
(command line: ``--max-frames``)."""

BYTES_PER_PIXEL_READ = 12
"""Float32 RGB bytes per pixel of a read frame: the memory hint of the too-large message."""


class ImageReadError(ValueError):
    """An image file cannot be read (or holds values without a known range); names the file and the cause."""


def sample_format(img: Image.Image) -> str | None:
    """``"uint32"`` / ``"int32"`` when a TIFF declares 32-bit integer samples, else None."""
    tags = getattr(img, "tag_v2", None)
    if tags is None or (tags.get(258) or (None,))[0] != 32:
        return None
    return "uint32" if (tags.get(339) or (1,))[0] == 1 else "int32"


def _scale_int32(array: np.ndarray, declared: str | None, name: str) -> np.ndarray:
    """Mode ``I``: 16-bit samples stored in 32 bits, or a TIFF declaring 32-bit samples."""
    if declared is not None:
        unsigned = declared == "uint32"
        high = 2**32 - 1 if unsigned else 2**31 - 1
        label = "unsigned 32-bit" if unsigned else "signed 32-bit"
    else:
        high, label = 65535, "16-bit"
    low_value, high_value = int(array.min()), int(array.max())
    if low_value < 0 or high_value > high:
        raise ImageReadError(
            f"{name}: {label} integer image with values in [{low_value}, {high_value}], outside [0, {high}], "
            "so it has no known brightness range; save it as 8/16-bit, or as float in [0, 1]"
        )
    return array.astype(np.float64) / high


def _scale_float(array: np.ndarray, name: str) -> np.ndarray:
    finite = np.isfinite(array)
    if not finite.all():
        raise ImageReadError(f"{name}: float image with {int((~finite).sum())} NaN/inf pixel(s); fix the file")
    low, high = float(array.min()), float(array.max())
    if low < -FLOAT_RANGE_TOLERANCE or high > 1 + FLOAT_RANGE_TOLERANCE:
        raise ImageReadError(
            f"{name}: float image with values in [{low:.4g}, {high:.4g}]; GPEN needs [0, 1] "
            "(tone-map HDR data, or divide by its maximum, first)"
        )
    return np.clip(array, 0.0, 1.0)


def image_to_tensor(img: Image.Image, name: str = "image", declared: str | None = None) -> torch.Tensor:
    """One decoded Pillow image (any mode, orientation already applied) as ``(C, H, W)`` float32 in [0, 1].

    C is 1 (grey), 2 (grey+alpha), 3 (RGB) or 4 (RGBA); see the module docstring for each mode's range.
    ``declared``: the file's 32-bit sample format (:func:`sample_format`) for mode ``I``.

    Raises:
        ImageReadError: a mode without a known range, or values outside it.
    """
    mode = img.mode
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif mode in CONVERTED_MODES:
        img = img.convert(CONVERTED_MODES[mode])
    elif mode not in PIXEL_MODES and not mode.startswith("I") and mode != "F":
        try:
            img = img.convert("RGB")
        except (ValueError, OSError) as err:
            raise ImageReadError(f"{name}: Pillow mode {mode!r} cannot be converted to RGB ({err})") from err
    mode = img.mode
    array = np.asarray(img)
    scaled: np.ndarray
    if mode == "1":
        scaled = array.astype(np.float32)
    elif mode.startswith("I;16"):
        scaled = array.astype(np.float64) / 65535.0
    elif mode == "I":
        scaled = _scale_int32(array, declared, name)
    elif mode == "F":
        scaled = _scale_float(array.astype(np.float32), name)
    else:
        scaled = array.astype(np.float32) / 255.0
    if scaled.ndim == 2:
        scaled = scaled[:, :, None]
    return torch.from_numpy(np.ascontiguousarray(scaled, dtype=np.float32)).permute(2, 0, 1).contiguous()


_PILLOW_LIMIT_LOCK = threading.Lock()
"""Held while Pillow's global bomb limit is raised for one of our reads (reads are serialised)."""


@contextmanager
def _pillow_limit(max_pixels: int) -> Iterator[None]:
    """Pillow's own decompression-bomb limit raised to ``max_pixels`` (never lowered) while we read;
    its warning is silenced: :func:`check_pixels` refuses frames over ``max_pixels`` itself."""
    with _PILLOW_LIMIT_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        saved = Image.MAX_IMAGE_PIXELS
        if saved is not None:
            Image.MAX_IMAGE_PIXELS = max(saved, max_pixels)
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _too_large(path: Path, what: str, max_pixels: int) -> ImageReadError:
    return ImageReadError(
        f"{path}: {what}, over the limit of {max_pixels / 1e6:g} megapixels: not decoded; shrink the image, or raise "
        f"the limit (max_pixels, command line --max-pixels) on a machine with about {BYTES_PER_PIXEL_READ} bytes of "
        "memory per pixel"
    )


def check_pixels(img: Image.Image, path: Path, max_pixels: int, frame: int | None = None) -> None:
    """Refuse the current frame of ``img`` (header read, nothing decoded) if it has more than ``max_pixels``."""
    width, height = img.size
    if width * height > max_pixels:
        where = "" if frame is None else f"frame {frame} (counted from 0): "
        raise _too_large(path, f"{where}{width}x{height} pixels ({width * height / 1e6:.1f} megapixels)", max_pixels)


@contextmanager
def _opened(path: Path, max_pixels: int) -> Iterator[Image.Image]:
    """``path`` opened by Pillow (the header read, nothing decoded): a regular file whose first frame
    is within ``max_pixels``; Pillow's limit raised to ours until the block ends."""
    try:
        source = open_regular(path)
    except NotRegularFileError as err:
        raise ImageReadError(str(err).replace(": is a folder, not a file", ": is a folder, not an image")) from err
    except OSError as err:
        raise ImageReadError(f"{path}: cannot open ({err.strerror or err})") from err
    with source, _pillow_limit(max_pixels):
        try:
            img = Image.open(source)
        except Image.UnidentifiedImageError as err:
            raise ImageReadError(f"{path}: not an image Pillow can read (unknown or corrupt format)") from err
        except Image.DecompressionBombError as err:
            raise _too_large(path, f"Pillow's check: {err}", max_pixels) from err
        except OSError as err:
            raise ImageReadError(f"{path}: cannot open ({err.strerror or err})") from err
        with img:
            check_pixels(img, path, max_pixels)
            yield img


def is_sequence(img: Image.Image) -> bool:
    """Whether the frames of ``img`` are all content (animation frames / pages)."""
    return img.format in SEQUENCE_FORMATS and getattr(img, "n_frames", 1) > 1


def _frames(img: Image.Image, path: Path) -> int:
    """Frames of an opened image (:func:`frame_count`)."""
    try:
        return int(getattr(img, "n_frames", 1)) if is_sequence(img) else 1
    except Exception as err:  # Pillow walks the frames for GIF: a truncated file fails here
        raise ImageReadError(f"{path}: cannot count its frames, truncated or corrupt ({err})") from err


def frame_count(path: str | Path, *, max_pixels: int = MAX_PIXELS, max_frames: int = MAX_FRAMES) -> int:
    """Frames of an animation / multi-page file (see the module docstring), 1 for other images.

    Only the header is read; it is checked against the limits, so that a batch can refuse the
    file while planning, before anything is decoded.

    Raises:
        ImageReadError: not a regular file, not an image, a first frame over ``max_pixels``, or
            more than ``max_frames`` frames.
    """
    path = Path(path)
    with _opened(path, max_pixels) as img:
        frames = _frames(img, path)
    if frames > max_frames:
        raise ImageReadError(
            f"{path}: {frames} frames, more than the limit of {max_frames}; split the file, or raise the limit "
            "(max_frames, command line --max-frames)"
        )
    return frames


def _decode(img: Image.Image, name: str) -> torch.Tensor:
    try:
        img.load()
        declared = sample_format(img)
        upright = ImageOps.exif_transpose(img)
    except Exception as err:  # Pillow's decoders raise OSError, SyntaxError, ValueError, struct.error ...
        raise ImageReadError(
            f"{name}: cannot decode the image, truncated or corrupt ({type(err).__name__}: {err})"
        ) from err
    return image_to_tensor(upright, name, declared)


def read_image(path: str | Path, frame: int | None = None, *, max_pixels: int = MAX_PIXELS) -> torch.Tensor:
    """``(C, H, W)`` float32 in [0, 1], upright; C is 1 (grey), 2 (grey+alpha), 3 (RGB) or 4 (RGBA).

    Args:
        path: an image file (a regular file: FIFOs, devices and broken links are refused).
        frame: which frame of an animation / multi-page file (0-based); required for those
            (see :func:`read_frames`), ignored for single images.
        max_pixels: the largest frame decoded (:data:`MAX_PIXELS`), checked from the header.

    Raises:
        ImageReadError: not a regular file, unreadable, truncated, values without a known range,
            a frame over ``max_pixels``, a multi-frame file without ``frame``, or ``frame`` out of
            range; the message names the file.
    """
    path = Path(path)
    with _opened(path, max_pixels) as img:
        frames = _frames(img, path)
        if frames > 1:
            if frame is None:
                raise ImageReadError(
                    f"{path}: has {frames} frames; read them all with read_frames() or pick one with frame=i"
                )
            if not 0 <= frame < frames:
                raise ImageReadError(f"{path}: frame {frame} asked for, the file has {frames} (0..{frames - 1})")
            try:
                img.seek(frame)
            except Image.DecompressionBombError as err:
                raise _too_large(path, f"frame {frame}: Pillow's check: {err}", max_pixels) from err
            except Exception as err:
                raise ImageReadError(f"{path}: cannot reach frame {frame}, truncated or corrupt ({err})") from err
            check_pixels(img, path, max_pixels, frame)  # pages of a TIFF have sizes of their own
        return _decode(img, str(path))


def read_frames(path: str | Path, *, max_pixels: int = MAX_PIXELS, max_frames: int = MAX_FRAMES) -> list[torch.Tensor]:
    """Every frame of an image file (one for single images), each as in :func:`read_image`.

    Frames are what Pillow composes (GIF frames with their disposal applied), in file order;
    their channel counts may differ (an opaque first GIF frame, transparent later ones). The
    limits are :func:`frame_count`'s and :func:`read_image`'s.
    """
    count = frame_count(path, max_pixels=max_pixels, max_frames=max_frames)
    if count == 1:
        return [read_image(path, max_pixels=max_pixels)]
    return [read_image(path, frame=i, max_pixels=max_pixels) for i in range(count)]


def frame_output_name(stem: str, frame: int | None, suffix: str = "") -> str:
    """Output file name: ``<stem><suffix>.png`` for a single image, ``<stem>_f0001<suffix>.png``
    (1-based) for frame 0 of a multi-frame file."""
    return f"{stem}{suffix}.png" if frame is None else f"{stem}_f{frame + 1:04d}{suffix}.png"


DEFAULT_NAME_MAX = 255
"""Bytes in a file name when the file system does not say (``os.pathconf`` is missing or fails)."""


def name_max(folder: str | Path) -> int:
    """The longest file name (bytes) the file system of ``folder`` accepts: ``PC_NAME_MAX`` of the
    folder, or of its nearest existing parent when it is not created yet; else :data:`DEFAULT_NAME_MAX`."""
    existing = Path(folder).absolute()
    while not existing.is_dir() and existing != existing.parent:
        existing = existing.parent
    try:
        limit = int(os.pathconf(existing, "PC_NAME_MAX"))
    except (AttributeError, ValueError, OSError):
        return DEFAULT_NAME_MAX
    return limit if limit > 0 else DEFAULT_NAME_MAX  # -1: the file system states no limit


def name_bytes(name: str) -> int:
    """Length of a file name as the file system counts it (bytes of its encoded form)."""
    return len(os.fsencode(name))


def partial_path(path: Path) -> Path:
    """The temporary file :func:`write_image` writes before renaming: ``.<name>.partial`` next to
    ``path``, or ``.<hash of the name>.partial`` when that would be too long a name (an output
    name that is itself within the limit never fails for its temporary name)."""
    partial = f".{path.name}.partial"
    if name_bytes(partial) > name_max(path.parent):
        partial = f".{hashlib.sha256(os.fsencode(path.name)).hexdigest()[:32]}.partial"
    return path.with_name(partial)


def write_image(path: str | Path, image: torch.Tensor) -> None:
    """Write ``(C, H, W)`` float in [0, 1] (C in 1..4) as 8-bit; the suffix picks the format.

    The bytes go to a temporary file in the same folder (:func:`partial_path`) that is then
    renamed to ``path``: a failed write (full disk, no permission) raises ``OSError`` and leaves
    no partial file.
    JPEG has no alpha: alpha is dropped for ``.jpg``/``.jpeg``.
    """
    array = (image.detach().float().clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    if array.shape[2] == 1:
        array = array[:, :, 0]
    path = Path(path)
    image_format = Image.registered_extensions().get(path.suffix.lower())
    if image_format is None:
        raise ValueError(f"{path}: unknown image suffix {path.suffix!r}; use .png, .jpg, .webp ...")
    if image_format == "JPEG" and array.ndim == 3 and array.shape[2] in (2, 4):
        array = array[:, :, :-1] if array.shape[2] == 4 else array[:, :, 0]  # JPEG has no alpha
    partial = partial_path(path)
    try:
        Image.fromarray(array).save(partial, format=image_format)
        os.replace(partial, path)
    finally:
        if partial.exists():
            partial.unlink()
