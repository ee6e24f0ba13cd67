"""The bad-input corpus of issues 8 and 16 through every entry point: the command line, the core API and
the node logic (callable without ComfyUI). Each case asserts the error text or the documented fallback;
the README's Troubleshooting table lists the same cases."""
from __future__ import annotations

import importlib.util
import logging
import os
import re
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from bad_inputs.make_corpus import (
    BOUNDED_FILES,
    CHECKPOINT_FILES,
    IMAGE_FILES,
    LONG_NAME,
    make_bounded_files,
    make_checkpoint_files,
    make_image_files,
)
from PIL import Image

import gpen_core as g
from gpen_core.enhance import enhance_images
from gpen_core.face.pipeline import FaceNetworks, restore_faces
from gpen_core.images.files import ImageReadError, read_image
from gpen_core.run_options import RunOptions
from gpen_core.tools.cli import main
from helpers import REPO_ROOT


def cli(capsys, *argv) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


# ---------------------------------------------------------------------------------------------
# image files (issue 8, items 1 and 3): one command-line run over the whole corpus folder

READ_RANGE = ["grey16.png", "float.tif", "int32.tif", "netpbm16.ppm"]
WRITTEN = {
    "grey16.png": "grey16.png", "float.tif": "float.png", "int32.tif": "int32.png", "netpbm16.ppm": "netpbm16.png",
    "rotated.jpg": "rotated.png", "palette_alpha.png": "palette_alpha.png", "grey_alpha.png": "grey_alpha.png",
    "bilevel.png": "bilevel.png", "cmyk.jpg": "cmyk.png",
    "anim.gif": ("anim_f0001.png", "anim_f0002.png", "anim_f0003.png"),
}
FAILED = {
    "float_hdr.tif": r"float image with values in \[.*, 4\]; GPEN needs \[0, 1\] \(tone-map",
    "float_nan.tif": "float image with 1 NaN/inf pixel",
    "truncated.png": "cannot decode the image, truncated or corrupt",
    "text.jpg": "not an image Pillow can read",
    "empty.png": "not an image Pillow can read",
}
IGNORED = ["notes.txt"]


def test_every_corpus_file_has_an_expectation():
    assert set(IMAGE_FILES) == set(WRITTEN) | set(FAILED) | set(IGNORED)


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory, tiny_state):
    root = tmp_path_factory.mktemp("corpus")
    files = make_image_files(root / "in")
    weights = root / "tiny.pth"
    torch.save(tiny_state, weights)
    capture = {}
    from contextlib import redirect_stderr
    from io import StringIO

    err = StringIO()
    with redirect_stderr(err):
        capture["code"] = main(["enhance", str(root / "in"), "--aligned", "--keep-size", "--model", str(weights),
                                "-o", str(root / "out"), "--device", "cpu"])
    return files, root / "out", capture["code"], err.getvalue()


def test_corpus_folder_every_readable_file_is_written(corpus_run):
    _, out, code, err = corpus_run
    assert "Traceback" not in err
    assert code == 1  # some files failed; all the others were written
    expected = sorted(n for v in WRITTEN.values() for n in ((v,) if isinstance(v, str) else v))
    assert sorted(p.name for p in out.iterdir()) == expected
    assert f"{len(FAILED)} file(s) failed:" in err


@pytest.mark.parametrize("name", sorted(FAILED))
def test_corpus_folder_failures_are_named_with_their_reason(corpus_run, name):
    files, _, _, err = corpus_run
    assert re.search(re.escape(f"  {files[name]}: ") + FAILED[name], err), err


def test_corpus_folder_other_files_are_listed_not_skipped_silently(corpus_run):
    assert "note: ignored 1 file(s) without an image or video suffix: notes.txt" in corpus_run[3]


@pytest.mark.parametrize("name", READ_RANGE)
def test_corpus_high_bit_depth_files_keep_their_range(corpus_run, name):
    image = read_image(corpus_run[0][name])
    assert image.shape == (1, 48, 40)
    assert float(image.min()) == 0.0 and float(image.max()) == pytest.approx(1.0, abs=1e-6)  # not all white/black
    assert float(image.mean()) == pytest.approx(0.5, abs=1e-3)


def test_corpus_exif_orientation_read_and_written_upright(corpus_run):
    files, out, _, _ = corpus_run
    stored = Image.open(files["rotated.jpg"])
    assert stored.size == (40, 48) and stored.getexif()[274] == 6
    assert read_image(files["rotated.jpg"]).shape == (3, 40, 48)  # upright
    written = Image.open(out / "rotated.png")
    assert written.size == (48, 40) and 274 not in written.getexif()  # upright, no orientation tag


def test_corpus_animation_every_frame(corpus_run):
    files, out, _, _ = corpus_run
    frames = [np.asarray(Image.open(out / f"anim_f000{i}.png")) for i in (1, 2, 3)]
    assert all(f.shape == (48, 40, 3) for f in frames)
    assert not np.array_equal(frames[0], frames[1])
    with pytest.raises(ImageReadError, match=r"anim\.gif: has 3 frames; read them all with read_frames"):
        read_image(files["anim.gif"])  # the core never picks frame 0 silently


def test_corpus_alpha_is_kept(corpus_run):
    _, out, _, _ = corpus_run
    assert Image.open(out / "palette_alpha.png").mode == "RGBA"
    assert Image.open(out / "grey_alpha.png").mode == "RGBA"
    assert Image.open(out / "bilevel.png").mode == "RGB"


# ---------------------------------------------------------------------------------------------
# checkpoints (item 4): the file name and the real reason, from the core and the command line

CHECKPOINT_REASONS = {
    "random.pth": "not a PyTorch checkpoint: unknown content",
    "text.pth": "not a PyTorch checkpoint: a text file, starting 'version https://git-lfs",
    "page.pth": r"not a PyTorch checkpoint: a text file \(a web page: probably an error page saved instead",
    "safetensors_named.pth": "it is a safetensors file; rename it to safetensors_named.safetensors",
    "truncated.pth": "cannot be read; the file is truncated or corrupt",
    "truncated.safetensors": "not a readable safetensors file, truncated or corrupt",
    "empty.pth": r"the file is empty \(0 bytes\)",
    "evil.pth": "refused to load: the pickle asks to run code",
    "folder.pth": "is a folder, not a checkpoint file",
}


def test_every_checkpoint_has_an_expectation():
    assert set(CHECKPOINT_FILES) == set(CHECKPOINT_REASONS)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, tiny_state):
    return make_checkpoint_files(tmp_path_factory.mktemp("checkpoints"), tiny_state)


@pytest.mark.parametrize("name", sorted(CHECKPOINT_REASONS))
def test_corpus_checkpoint_core(checkpoints, name):
    path = checkpoints[name]
    with pytest.raises(g.CheckpointError, match=re.escape(str(path)) + ".*" + CHECKPOINT_REASONS[name]) as info:
        g.load_model(path, device="cpu")
    if name != "evil.pth":
        assert "run code" not in str(info.value)
    assert not (path.parent / "pwned").exists()


@pytest.mark.parametrize("name", sorted(CHECKPOINT_REASONS))
def test_corpus_checkpoint_cli(checkpoints, tmp_path, capsys, name):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    code, err = cli(capsys, "enhance", tmp_path / "a.png", "--aligned", "--model", checkpoints[name],
                    "-o", tmp_path / "out")
    reason = "is a folder; pass the checkpoint file itself" if name == "folder.pth" else CHECKPOINT_REASONS[name]
    assert code == 2 and re.search(re.escape(str(checkpoints[name])) + ".*" + reason, err), err
    assert not (tmp_path / "out").exists()


def test_corpus_convert_pth_to_pth_is_a_pickle(tmp_path, tiny_state, capsys):
    source = tmp_path / "a.safetensors"
    from safetensors.torch import save_file

    save_file(tiny_state, str(source))
    code, err = cli(capsys, "convert", source, tmp_path / "b.pth")
    assert code == 0 and "as a PyTorch state dict (torch.save)" in err
    assert (tmp_path / "b.pth").read_bytes()[:2] == b"PK"  # torch.save's zip, not safetensors bytes
    g.load_model(tmp_path / "b.pth", device="cpu")
    code, err = cli(capsys, "convert", source, tmp_path / "b.ckpt")
    assert code == 2 and "the suffix picks the format; use .safetensors, .pth or .pt" in err


# ---------------------------------------------------------------------------------------------
# tensors (items 1, 2 and 4): one validation in every path, before the model runs

BAD_TENSORS = {
    "[0, 255] floats": (lambda: torch.rand(1, 3, 16, 16) * 255, ValueError,
                        r"must hold values in \[0, 1\]; got values in \[.*\] \(for 8-bit data divide by 255"),
    "NaN pixels": (lambda: torch.rand(1, 3, 16, 16).index_put_((torch.tensor([0]),) * 4, torch.tensor(float("nan"))),
                   ValueError, r"contains 1 NaN or infinite value\(s\)"),
    "inf pixels": (lambda: torch.full((2, 3, 16, 16), float("inf")), ValueError,
                   r"contains 1536 NaN or infinite value\(s\)"),
    "empty batch": (lambda: torch.rand(0, 3, 16, 16), ValueError, r"is empty: shape \(0, 3, 16, 16\)"),
    "0-pixel image": (lambda: torch.rand(1, 3, 0, 16), ValueError, r"is empty: shape \(1, 3, 0, 16\)"),
    "int64 pixels": (lambda: torch.randint(0, 255, (1, 3, 16, 16)), TypeError, "must be float in \\[0, 1\\] or uint8"),
}


@pytest.fixture()
def guarded_model(tiny_state):
    """A tiny GPEN whose forward fails the test: bad inputs must be refused before the model runs."""
    model = g.load_model(tiny_state, device="cpu", precision="auto")

    def forward(*args, **kwargs):
        raise AssertionError("the model ran on a bad input")

    model.forward = forward
    return model


@pytest.mark.parametrize("case", sorted(BAD_TENSORS))
def test_corpus_tensor_core_enhance(guarded_model, case):
    make, error, message = BAD_TENSORS[case]
    weights_before = {k: v.clone() for k, v in guarded_model.state_dict().items()}
    with pytest.raises(error, match="images " + message):
        enhance_images(guarded_model, make())
    # item 2: a NaN input never switches or touches the model
    assert guarded_model.dtype == torch.float32 and guarded_model.precision == "auto"
    assert all(torch.equal(v, weights_before[k]) for k, v in guarded_model.state_dict().items())


@pytest.mark.parametrize("case", sorted(BAD_TENSORS))
def test_corpus_tensor_node_enhance(pack, guarded_model, case):
    make, error, message = BAD_TENSORS[case]
    with pytest.raises(error, match=message):
        pack.nodes.logic.enhance_comfy_images(guarded_model, make().movedim(1, -1))


def test_corpus_uint8_means_0_to_255(tiny_state, pack):
    """uint8 tensors have one meaning everywhere: 0..255 (divided by 255), never garbage."""
    model = g.build_model(tiny_state)
    pixels = torch.randint(0, 256, (1, 3, 20, 24), dtype=torch.uint8)
    with torch.inference_mode():
        as_float = enhance_images(model, pixels.float() / 255)
        assert torch.equal(enhance_images(model, pixels), as_float)
        node = pack.nodes.logic.enhance_comfy_images(model, pixels.movedim(1, -1), RunOptions(32))
    assert torch.allclose(node, as_float.movedim(1, -1), atol=1e-5)


class NoFaceDetector:
    """A detector that must not be reached: bad images are refused before detection."""

    name, device, default_score_threshold = "unreachable", torch.device("cpu"), 0.5

    def detect_rgb255(self, *args, **kwargs):
        raise AssertionError("detection ran on a bad input")


@pytest.mark.parametrize("case", sorted(BAD_TENSORS))
def test_corpus_tensor_core_restore(guarded_model, case):
    make, error, message = BAD_TENSORS[case]
    if case == "int64 pixels":  # whole-photo restore reads frames in place: float only, never a uint8 hint
        message = r"must be float in \[0, 1\] here; got torch.int64"
    with pytest.raises(error, match="images " + message):
        restore_faces(FaceNetworks(guarded_model, NoFaceDetector()), make())


@pytest.mark.parametrize("case", sorted(BAD_TENSORS))
def test_corpus_tensor_node_restore(pack, guarded_model, case):
    make, error, message = BAD_TENSORS[case]
    if case == "int64 pixels":  # the node takes ComfyUI's float IMAGE: .float() first, so the range speaks
        error, message = ValueError, r"must hold values in \[0, 1\]"
    with pytest.raises(error, match=message):
        node_restore(pack)(FaceNetworks(guarded_model, NoFaceDetector()), make().movedim(1, -1))


def test_corpus_uint8_in_restore_is_refused_with_the_fix(guarded_model):
    with pytest.raises(TypeError, match=r"images must be float in \[0, 1\] here; got torch.uint8 \(pass images.float"):
        restore_faces(FaceNetworks(guarded_model, NoFaceDetector()), torch.zeros(1, 3, 8, 8, dtype=torch.uint8))


@pytest.mark.parametrize("shape, message", [((1, 5, 8, 8), r"C in 1..4"), ((3, 8, 8), r"\(B, C, H, W\)")])
def test_corpus_tensor_bad_layout(guarded_model, shape, message):
    with pytest.raises(ValueError, match=message):
        enhance_images(guarded_model, torch.rand(shape))


# ---------------------------------------------------------------------------------------------
# one meaning per value (item 5): the same value through the core, the node logic and the CLI


@pytest.fixture()
def small_budget(monkeypatch, tiny_state, pack, caplog):
    """Free memory in which the whole-image forward does not fit, so that "auto" shows in the strategy;
    patched in both copies of the core (``gpen_core`` and the pack's ``comfyui_gpen.gpen_core``)."""
    from gpen_core.runtime import strategy as strategies

    model = g.build_model(tiny_state)
    whole = strategies.estimate_peak_bytes(model.config, model.dtype, 1, strategies.Strategy())
    budget = int((whole - 1) / 0.8)
    for module in (strategies, sys.modules["comfyui_gpen.gpen_core.runtime.strategy"]):
        monkeypatch.setattr(module, "free_memory_bytes", lambda device: budget)
    for name in ("gpen_core.enhance", "comfyui_gpen.gpen_core.enhance"):
        caplog.set_level(logging.INFO, logger=name)
    return strategies.choose_strategy(model, 1, budget).describe()


def strategies_logged(caplog) -> list[str]:
    return [r.getMessage().removeprefix("GPEN strategy: ") for r in caplog.records
            if r.getMessage().startswith("GPEN strategy: ")]


def test_tile_size_0_is_auto_everywhere(tiny_state, pack, small_budget, tmp_path, capsys, caplog):
    model = g.build_model(tiny_state)
    images = torch.rand(1, 3, 64, 64)
    weights = tmp_path / "tiny.pth"
    torch.save(tiny_state, weights)
    Image.fromarray((images[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(tmp_path / "a.png")
    with torch.inference_mode():
        enhance_images(model, images, tile_size=0)
        enhance_images(model, images, tile_size="auto")
        pack.nodes.logic.enhance_comfy_images(model, images.movedim(1, -1), RunOptions(0))
    for tile in ("0", "auto"):
        assert cli(capsys, "enhance", tmp_path / "a.png", "--aligned", "--model", weights, "-o", tmp_path / tile,
                   "--tile-size", tile)[0] == 0
    assert strategies_logged(caplog) == [small_budget] * 5
    assert small_budget != "whole image"


def test_whole_image_is_none_in_core_and_cli(tiny_state, small_budget, tmp_path, capsys, caplog):
    model = g.build_model(tiny_state)
    weights = tmp_path / "tiny.pth"
    torch.save(tiny_state, weights)
    Image.new("RGB", (64, 64)).save(tmp_path / "a.png")
    with torch.inference_mode():
        enhance_images(model, torch.rand(1, 3, 64, 64), tile_size=None)
    assert cli(capsys, "enhance", tmp_path / "a.png", "--aligned", "--model", weights, "-o", tmp_path / "o",
               "--tile-size", "none")[0] == 0
    assert strategies_logged(caplog) == ["whole image"] * 2


def test_overlap_minus_1_is_exact_everywhere(tiny_state, pack, tmp_path, capsys):
    model = g.build_model(tiny_state)
    pixels = torch.randint(0, 256, (1, 3, 64, 64), dtype=torch.uint8)
    weights = tmp_path / "tiny.pth"
    torch.save(tiny_state, weights)
    Image.fromarray(pixels[0].permute(1, 2, 0).numpy()).save(tmp_path / "a.png")
    with torch.inference_mode():
        core = enhance_images(model, pixels, tile_size=32, overlap=None)
        cut = enhance_images(model, pixels, tile_size=32, overlap=0)
        node = pack.nodes.logic.enhance_comfy_images(model, pixels.movedim(1, -1), RunOptions(32, overlap=-1))
    assert cli(capsys, "enhance", tmp_path / "a.png", "--aligned", "--model", weights, "-o", tmp_path / "o",
               "--tile-size", "32", "--overlap", "-1")[0] == 0
    written = torch.from_numpy(np.array(Image.open(tmp_path / "o" / "a.png"))).permute(2, 0, 1).float() / 255
    assert torch.equal(node, core.movedim(1, -1))
    assert (written - core[0]).abs().max() <= 0.5 / 255 + 1e-6  # 8-bit rounding only
    assert (cut - core).abs().max() > 1e-3  # -1 is not "cut halos"


def test_the_bad_inputs_page_lists_every_case():
    section = (REPO_ROOT / "docs" / "bad-inputs.md").read_text()
    named = [*IMAGE_FILES, *CHECKPOINT_FILES, *BAD_TENSORS, *(name for name in BOUNDED_FILES if name != LONG_NAME)]
    missing = [name for name in named if f"`{name}`" not in section]
    assert not missing, f"docs/bad-inputs.md lacks rows for {missing}"
    assert "a 249-character input name" in section


class ScoredFaces:
    """A stand-in detector: one face per entry of ``scores``, side by side in cells of ``CELL`` pixels,
    each at GPEN's template position; keeps the scores strictly above the threshold it is given."""

    name, device, default_score_threshold = "scored", torch.device("cpu"), 0.5
    CELL = 128

    def __init__(self, scores: list[float]) -> None:
        self.scores = scores

    def detect_rgb255(self, image, score_threshold, min_face_size, *args, **kwargs):
        from gpen_core.face.align import reference_points
        from gpen_core.face.detection.result import FaceDetections

        keep = [i for i, s in enumerate(self.scores) if s > score_threshold]
        side = self.CELL / 2
        points = reference_points(64, dtype=torch.float32) * (side / 64)
        offsets = [torch.tensor([i * self.CELL + side / 2, side / 2]) for i in keep]
        boxes = torch.stack([torch.cat([o, o + side]) for o in offsets]) if keep else torch.zeros(0, 4)
        marks = torch.stack([points + o for o in offsets]) if keep else torch.zeros(0, 5, 2)
        return FaceDetections(boxes, torch.tensor([self.scores[i] for i in keep]), marks,
                              (int(image.shape[-2]), int(image.shape[-1])))


def faces_changed(before: torch.Tensor, after: torch.Tensor) -> int:
    """How many cells of a ``(3, H, W)`` photo changed (a face was pasted there)."""
    cells = before.shape[-1] // ScoredFaces.CELL
    return sum(
        float((after[:, :, i * ScoredFaces.CELL:(i + 1) * ScoredFaces.CELL]
               - before[:, :, i * ScoredFaces.CELL:(i + 1) * ScoredFaces.CELL]).abs().max()) > 0.05
        for i in range(cells)
    )


def node_restore(pack):
    """The node logic's Face Restore (``nodes/face_logic.py``)."""
    return importlib.import_module("comfyui_gpen.nodes.face_logic").restore_comfy_images


@pytest.mark.parametrize("score_threshold, max_faces, expected", [(0, 0, 2), (0, 1, 1), (0.2, 0, 3)])
def test_score_threshold_0_and_max_faces_0_mean_the_same_everywhere(
    tiny_state, pack, tmp_path, capsys, monkeypatch, score_threshold, max_faces, expected
):
    """score_threshold 0 = the detector's default (0.5 here: 2 of the scores 0.9, 0.6, 0.3), max_faces 0 =
    no limit; the core's detect_faces, the node logic and the CLI count the same faces."""
    from gpen_core.face.detection.api import detect_faces
    from gpen_core.face.detection.selection import FaceSelection

    detector = ScoredFaces([0.9, 0.6, 0.3])
    photo = (torch.rand(3, ScoredFaces.CELL, 3 * ScoredFaces.CELL) * 255).round() / 255
    core = detect_faces(detector, photo, score_threshold=score_threshold,
                        selection=FaceSelection(max_faces=max_faces))
    assert len(core) == expected

    model = g.build_model(tiny_state)
    face_logic = importlib.import_module("comfyui_gpen.nodes.face_logic")
    pack_options = importlib.import_module("comfyui_gpen.gpen_core.face.options")
    options = pack_options.RestoreOptions(face_logic.detect_options(score_threshold, 0, "score", max_faces, "", 0))
    with torch.inference_mode():
        node_out = node_restore(pack)(FaceNetworks(model, detector), photo.movedim(0, -1)[None], options)[0]
    assert faces_changed(photo, node_out[0].movedim(-1, 0)) == expected

    weights = tmp_path / "tiny.pth"
    torch.save(tiny_state, weights)
    Image.fromarray((photo.movedim(0, -1).numpy() * 255).round().astype(np.uint8)).save(tmp_path / "photo.png")
    monkeypatch.setattr("gpen_core.face.detection.loader.load_detector", lambda *args, **kwargs: detector)
    code, _ = cli(capsys, "enhance", tmp_path / "photo.png", "--model", weights, "-o", tmp_path / "out",
                  "--score-threshold", score_threshold, "--max-faces", max_faces)
    written = torch.from_numpy(np.array(Image.open(tmp_path / "out" / "photo.png"))).permute(2, 0, 1).float() / 255
    assert code == 0 and faces_changed(photo, written) == expected


# ---------------------------------------------------------------------------------------------
# issue 16, bounded inputs: special files, sizes declared by headers, names, --save-mask targets,
# index lists, and the small items; each through the command line and the core

posix_only = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs and symbolic links need a POSIX system")


@pytest.fixture()
def no_hang():
    """A read that blocks (a FIFO opened for reading) fails the test after 60 s instead of hanging the suite."""
    if not hasattr(signal, "SIGALRM"):
        yield
        return

    def stop(*args):
        raise AssertionError("a read blocked: a FIFO or device was opened")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


BOUNDED_REASONS = {
    "huge_12000x12000.png": r"12000x12000 pixels \(144.0 megapixels\), over the limit of 100 megapixels: not decoded; "
                            r"shrink the image, or raise the limit \(max_pixels, command line --max-pixels\)",
    "frames_2147483647.png": r"2147483647 frames, more than the limit of 10000; split the file, or raise the limit "
                             r"\(max_frames, command line --max-frames\)",
    "pipe.png": r"is a FIFO \(named pipe\), not a regular file; it is not opened",
    "dangling.png": r"is a dangling symbolic link \(to 'missing-target.png', which does not exist\)",
    "loop.png": "is a symbolic link loop",
    "device.png": "is a character device, not a regular file",
}
TOO_LONG = "y" * 248 + ".png"
"""252 characters: with ``--suffix _gpen`` its output name is 257 bytes, over the usual limit of 255."""


def test_every_bounded_file_has_an_expectation():
    assert set(BOUNDED_FILES) == set(BOUNDED_REASONS) | {"pages_small_large.tif", LONG_NAME}


@pytest.fixture(scope="module")
def bounded(tmp_path_factory):
    root = tmp_path_factory.mktemp("bounded")
    if not hasattr(os, "mkfifo"):
        pytest.skip("FIFOs and symbolic links need a POSIX system")
    files = make_bounded_files(root / "in")
    Image.fromarray(np.full((48, 40, 3), 90, np.uint8)).save(root / "in" / "good.png")
    Image.fromarray(np.full((48, 40, 3), 90, np.uint8)).save(root / "in" / TOO_LONG)
    return root, files


@posix_only
def test_bounded_folder_cli_lists_each_file_with_its_reason_and_does_the_rest(bounded, tiny_state, capsys, no_hang):
    root, files = bounded
    weights = root / "tiny.pth"
    torch.save(tiny_state, weights)
    code, err = cli(capsys, "enhance", root / "in", "--aligned", "--keep-size", "--model", weights, "-o", root / "out",
                    "--suffix", "_gpen", "--device", "cpu")
    assert code == 1  # the documented status: some files failed, the others were written
    assert sorted(p.name for p in (root / "out").iterdir()) == sorted([
        "good_gpen.png", "pages_small_large_f0001_gpen.png", "pages_small_large_f0002_gpen.png",
        LONG_NAME.removesuffix(".png") + "_gpen.png",  # 254 characters: within the limit, temporary name too
    ])
    assert f"{len(BOUNDED_REASONS) + 1} file(s) failed:" in err
    for name, reason in BOUNDED_REASONS.items():
        assert re.search(re.escape(f"  {files[name]}: ") + reason, err), (name, err)
    assert re.search(re.escape(f"  {root / 'in' / TOO_LONG}: its output name ") + r"y+\.\.\.y+_gpen\.png would be "
                     r"257 bytes, over the limit of \d+ bytes of the file system of .*; rename the file", err), err


@posix_only
def test_bounded_files_fail_at_planning_before_any_model(bounded, tmp_path, capsys, no_model_load, no_hang):
    root, files = bounded
    (tmp_path / "w.pth").write_bytes(b"never read")
    code, err = cli(capsys, "enhance", *(files[name] for name in BOUNDED_REASONS), "--model", tmp_path / "w.pth",
                    "-o", tmp_path / "out")
    assert code == 1 and f"{len(BOUNDED_REASONS)} file(s) failed:" in err  # nothing to run: the model never loads
    assert not (tmp_path / "out").exists()


@posix_only
@pytest.mark.parametrize("name", sorted(BOUNDED_REASONS))
def test_bounded_files_core_readers(bounded, name, no_hang):
    from gpen_core.images.files import frame_count, read_frames

    path = bounded[1][name]
    for read in (read_image, frame_count, read_frames):
        reason = BOUNDED_REASONS[name]
        if read is read_image and name == "frames_2147483647.png":  # one frame is read: the count limits no work
            reason = "has 2147483647 frames; read them all with read_frames"
        with pytest.raises(ImageReadError, match=re.escape(f"{path}: ") + reason):
            read(path)


@posix_only
def test_bounded_limits_are_options(bounded, tiny_state, capsys):
    """The limits apply to each frame and can be moved: --max-pixels / max_pixels, --max-frames / max_frames."""
    from gpen_core.images.files import frame_count, read_frames

    root, files = bounded
    pages = files["pages_small_large.tif"]  # 1920 pixels, then 7680
    assert read_image(pages, frame=0, max_pixels=2000).shape == (3, 48, 40)
    with pytest.raises(ImageReadError, match=re.escape(f"{pages}: frame 1 (counted from 0): 80x96 pixels")):
        read_image(pages, frame=1, max_pixels=2000)
    with pytest.raises(ImageReadError, match=r"frame 1 \(counted from 0\): 80x96"):
        read_frames(pages, max_pixels=2000)
    with pytest.raises(ImageReadError, match=r": 40x48 pixels \(0.0 megapixels\), over the limit of 0.001 megapix"):
        frame_count(pages, max_pixels=1000)
    with pytest.raises(ImageReadError, match="2 frames, more than the limit of 1"):
        frame_count(pages, max_frames=1)
    weights = root / "tiny.pth"
    torch.save(tiny_state, weights)
    code, err = cli(capsys, "enhance", pages, "--aligned", "--model", weights, "-o", root / "pages",
                    "--max-pixels", 2000)
    assert code == 1 and sorted(p.name for p in (root / "pages").iterdir()) == ["pages_small_large_f0001.png"]
    assert f"{pages} (frame 2): frame 1 (counted from 0): 80x96 pixels (0.0 megapixels), over the limit of 0.002" in err
    code, err = cli(capsys, "enhance", pages, "--aligned", "--model", weights, "-o", root / "one", "--max-frames", 1)
    assert code == 1 and "2 frames, more than the limit of 1" in err
    for option in ("--max-pixels", "--max-frames"):
        code, err = cli(capsys, "enhance", pages, "--aligned", "--model", weights, "-o", root / "x", option, 0)
        assert code == 2 and f"{option} must be in [1, inf]; got 0" in err


def test_pillow_limit_follows_ours_and_is_restored(tmp_path, monkeypatch):
    """Pillow's own bomb check (warning above its limit, error above twice it) does not refuse what max_pixels
    allows, warns about nothing, and is left as it was."""
    import warnings

    Image.fromarray(np.zeros((48, 40, 3), np.uint8)).save(tmp_path / "a.png")  # 1920 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # Pillow alone refuses above 1000
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_image(tmp_path / "a.png", max_pixels=10_000).shape == (3, 48, 40)
    assert Image.MAX_IMAGE_PIXELS == 500
    with pytest.raises(ImageReadError, match="over the limit of 0.0015 megapixels"):
        read_image(tmp_path / "a.png", max_pixels=1500)
    assert Image.MAX_IMAGE_PIXELS == 500


def test_regular_file_check_of_the_open_descriptor(tmp_path, monkeypatch):
    """A path swapped for something else between the check and the open is refused on the opened file."""
    from gpen_core.images import regular

    (tmp_path / "a.png").write_bytes(b"x")
    monkeypatch.setattr(regular, "non_regular_reason", lambda path: None)  # the path check passes ...
    with pytest.raises(regular.NotRegularFileError, match="is a folder, not a file"):
        regular.open_regular(tmp_path)  # ... the descriptor's check still refuses
    with regular.open_regular(tmp_path / "a.png") as f:
        assert f.read() == b"x"


# ---- names: the file system's limit, checked while planning


def test_name_limit_is_the_file_systems(tmp_path):
    from gpen_core.images.files import name_max

    assert name_max(tmp_path) == os.pathconf(tmp_path, "PC_NAME_MAX")
    assert name_max(tmp_path / "not" / "yet") == os.pathconf(tmp_path, "PC_NAME_MAX")  # the nearest existing folder


def test_long_output_name_is_written_with_a_short_temporary_name(tmp_path, monkeypatch):
    from gpen_core.images import files

    name = "z" * 250 + ".png"
    written = []
    save = Image.Image.save
    def recorded_save(img, fp, *args, **kwargs):
        written.append(Path(fp).name)
        return save(img, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", recorded_save)
    files.write_image(tmp_path / name, torch.zeros(3, 4, 4))
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]
    assert len(written) == 1 and written[0].startswith(".") and written[0].endswith(".partial") and len(written[0]) < 60
    files.write_image(tmp_path / "short.png", torch.zeros(3, 4, 4))
    assert written[1] == ".short.png.partial"  # the usual temporary name when it fits


def test_long_suffix_is_refused_before_any_model(tmp_path, capsys, no_model_load):
    from gpen_core.tools.batch import Failures, UsageError, plan_jobs

    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    (tmp_path / "w.pth").write_bytes(b"never read")
    suffix = "s" * 300
    code, err = cli(capsys, "enhance", tmp_path / "a.png", "--model", tmp_path / "w.pth", "-o", tmp_path / "out",
                    "--suffix", suffix)
    assert code == 2 and re.search(r"error: --suffix 's+'\.\.\. is 300 bytes: even a one-letter input would get a "
                                   r"305-byte output name, over the limit of \d+ bytes", err), err
    assert not (tmp_path / "out").exists()
    with pytest.raises(UsageError, match="is 300 bytes"):
        plan_jobs([tmp_path / "a.png"], tmp_path / "out", suffix, Failures())


def test_long_input_name_core_planning(tmp_path):
    from gpen_core.tools.batch import Failures, plan_jobs

    for name in (LONG_NAME, TOO_LONG):
        Image.new("RGB", (8, 8)).save(tmp_path / name)
    failures = Failures()
    jobs = plan_jobs([tmp_path / LONG_NAME, tmp_path / TOO_LONG], tmp_path / "out", "_gpen", failures)
    assert [job.target.name for job in jobs] == [LONG_NAME.removesuffix(".png") + "_gpen.png"]
    assert failures.items == [(str(tmp_path / TOO_LONG), failures.items[0][1])]
    assert "would be 257 bytes, over the limit of" in failures.items[0][1]
    failures = Failures()
    assert plan_jobs([tmp_path / LONG_NAME], tmp_path / "out", "_gpen", failures, save_mask=True) == []
    assert "_gpen_mask.png would be 259 bytes" in failures.items[0][1]  # the mask's name counts too


# ---- --save-mask: its target is part of the job, checked as the image output is


@pytest.fixture()
def photos(tmp_path):
    """A folder ``in`` of photos with two stand-in faces each, and GPEN weights beside it."""
    folder = tmp_path / "in"
    folder.mkdir()
    photo = (torch.rand(3, ScoredFaces.CELL, 2 * ScoredFaces.CELL, generator=torch.Generator().manual_seed(3)) * 255)
    for name in ("good1.png", "good2.png"):
        Image.fromarray(photo.round().byte().movedim(0, -1).numpy()).save(folder / name)
    return folder


def mask_cli(capsys, monkeypatch, tiny_state, folder, *argv):
    weights = folder.parent / "tiny.pth"
    if not weights.exists():
        torch.save(tiny_state, weights)
    monkeypatch.setattr("gpen_core.face.detection.loader.load_detector", lambda *a, **k: ScoredFaces([0.9, 0.8]))
    return cli(capsys, "enhance", *argv, "--model", weights, "--mask", "box", "--save-mask")


def test_save_mask_writes_the_planned_targets(photos, tiny_state, capsys, monkeypatch):
    out = photos.parent / "out"
    code, err = mask_cli(capsys, monkeypatch, tiny_state, photos, photos, "-o", out, "--suffix", "_g")
    assert code == 0, err
    expected = ["good1_g.png", "good1_g_mask.png", "good2_g.png", "good2_g_mask.png"]
    assert sorted(p.name for p in out.iterdir()) == expected
    mask = np.asarray(Image.open(out / "good1_g_mask.png"))
    assert mask.shape == (ScoredFaces.CELL, 2 * ScoredFaces.CELL, 3) and mask.max() == 255 and mask.min() == 0


def test_save_mask_never_replaces_an_input(photos, tiny_state, capsys, monkeypatch, no_model_load):
    """-o = the input folder and --suffix _g: good1's mask would be good1_g_mask.png, an input photo."""
    (photos / "good1_g_mask.png").write_bytes((photos / "good2.png").read_bytes())
    before = {p.name: p.read_bytes() for p in photos.iterdir()}
    code, err = cli(capsys, "enhance", photos, "-o", photos, "--suffix", "_g", "--save-mask", "--force",
                    "--model", photos / "good1.png")
    assert code == 2 and f"the output {photos / 'good1_g_mask.png'} would replace the input file" in err
    assert {p.name: p.read_bytes() for p in photos.iterdir()} == before


def test_save_mask_two_writes_to_one_name_are_refused(tmp_path, capsys, no_model_load):
    """a.png's mask and a_mask.jpg's output are both a_mask.png."""
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "a_mask.jpg")
    code, err = cli(capsys, "enhance", tmp_path / "a.png", tmp_path / "a_mask.jpg", "--save-mask",
                    "--model", tmp_path / "a.png", "-o", tmp_path / "out")
    assert code == 2 and (f"{tmp_path / 'a.png'} (its mask) and {tmp_path / 'a_mask.jpg'} would both be written to "
                          f"{tmp_path / 'out' / 'a_mask.png'}") in err
    assert not (tmp_path / "out").exists()


def test_save_mask_existing_mask_needs_force(photos, tiny_state, capsys, monkeypatch):
    out = photos.parent / "out"
    out.mkdir()
    (out / "good1_mask.png").write_bytes(b"kept")
    code, err = mask_cli(capsys, monkeypatch, tiny_state, photos, photos, "-o", out)
    assert code == 2 and f"1 of 4 output file(s) exist, e.g. {out / 'good1_mask.png'}; use --skip-existing" in err
    assert (out / "good1_mask.png").read_bytes() == b"kept"
    assert sorted(p.name for p in out.iterdir()) == ["good1_mask.png"]
    # --skip-existing skips a job only when all its outputs exist: good1 lacks its image, so it runs in full
    code, err = mask_cli(capsys, monkeypatch, tiny_state, photos, photos, "-o", out, "--skip-existing")
    assert code == 0 and "wrote 2 image(s)" in err
    written = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert sorted(written) == ["good1.png", "good1_mask.png", "good2.png", "good2_mask.png"]
    code, err = mask_cli(capsys, monkeypatch, tiny_state, photos, photos, "-o", out, "--skip-existing")
    assert code == 0 and "nothing to do" in err
    (out / "good2_mask.png").unlink()
    code, err = mask_cli(capsys, monkeypatch, tiny_state, photos, photos, "-o", out, "--skip-existing")
    assert code == 0 and "skipping 1 image(s)" in err and "wrote 1 image(s)" in err
    assert (out / "good1.png").stat().st_mtime_ns == written["good1.png"]  # the complete job was not run again


def test_save_mask_core_planning(tmp_path):
    from gpen_core.tools.batch import Failures, Job, UsageError, plan_jobs, select_jobs

    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "a_mask.jpg")
    out = tmp_path / "out"
    jobs = plan_jobs([tmp_path / "a.png"], out, "_g", Failures(), save_mask=True)
    assert jobs == [Job(tmp_path / "a.png", None, out / "a_g.png", out / "a_g_mask.png")]
    assert jobs[0].outputs == (out / "a_g.png", out / "a_g_mask.png")
    both = plan_jobs([tmp_path / "a.png", tmp_path / "a_mask.jpg"], out, "", Failures(), save_mask=True)
    with pytest.raises(UsageError, match=r"a\.png \(its mask\) and .*a_mask\.jpg would both be written to"):
        select_jobs(both, [tmp_path / "a.png", tmp_path / "a_mask.jpg"], force=True, skip_existing=False)
    into_inputs = plan_jobs([tmp_path / "a.png"], tmp_path, "_g", Failures(), save_mask=True)
    (tmp_path / "a_g_mask.png").write_bytes(b"an input")
    with pytest.raises(UsageError, match="a_g_mask.png would replace the input file"):
        select_jobs(into_inputs, [tmp_path / "a.png", tmp_path / "a_g_mask.png"], force=True, skip_existing=True)


# ---- index lists: ranges, never expanded


def test_huge_face_index_range_cli(tiny_state, tmp_path, capsys, monkeypatch, caplog):
    detector = ScoredFaces([0.9, 0.6, 0.3])
    photo = (torch.rand(3, ScoredFaces.CELL, 3 * ScoredFaces.CELL) * 255).round() / 255
    weights = tmp_path / "tiny.pth"
    torch.save(tiny_state, weights)
    Image.fromarray((photo.movedim(0, -1).numpy() * 255).round().astype(np.uint8)).save(tmp_path / "photo.png")
    monkeypatch.setattr("gpen_core.face.detection.loader.load_detector", lambda *args, **kwargs: detector)
    with caplog.at_level(logging.WARNING, logger="gpen_core.face.detection.selection"):
        code, _ = cli(capsys, "enhance", tmp_path / "photo.png", "--model", weights, "-o", tmp_path / "out",
                      "--score-threshold", 0.2, "--faces", "1-1000000000")
    written = torch.from_numpy(np.array(Image.open(tmp_path / "out" / "photo.png"))).permute(2, 0, 1).float() / 255
    assert code == 0 and faces_changed(photo, written) == 2
    assert caplog.messages == ["face indices 3-1000000000 skipped: only 3 face(s) in score order after the size bounds"]
    code, err = cli(capsys, "enhance", tmp_path / "photo.png", "--model", weights, "-o", tmp_path / "o2",
                    "--faces", "0-3000000000")
    assert code == 2 and "face selection: face indices '0-3000000000': '0-3000000000' is above the largest index" in err


# ---- the small items


def test_progress_line_is_ended_before_interrupted(tmp_path, tiny_state, capsys, monkeypatch):
    for name in ("a.png", "b.png"):
        Image.new("RGB", (8, 8)).save(tmp_path / name)
    weights = tmp_path / "tiny.pth"
    torch.save(tiny_state, weights)
    reads = []

    def read_then_interrupt(*args, **kwargs):
        reads.append(args)
        if len(reads) == 2:
            raise KeyboardInterrupt
        return read_image(*args, **kwargs)

    monkeypatch.setattr("gpen_core.images.files.read_image", read_then_interrupt)
    code, err = cli(capsys, "enhance", tmp_path / "a.png", tmp_path / "b.png", "--aligned", "--model", weights,
                    "-o", tmp_path / "out")
    lines = err.splitlines()
    assert code == 130 and err.endswith("\ninterrupted\n") and "] 1/2 files | b.png" in lines[-2]


@pytest.mark.parametrize("arguments, error, message", [
    ({"tile_size": "64"}, TypeError, r"tile_size must be an int >= 16 .* or None \(whole image\); got '64' \(str\)"),
    ({"tile_size": 32.0}, TypeError, r"got 32.0 \(float\)"),
    ({"tile_size": True}, TypeError, r"got True \(bool\)"),
    ({"tile_size": 8}, ValueError, "tile_size must be at least 16, got 8"),
    ({"tile_size": 32, "overlap": "2"}, TypeError, r"overlap must be an int >= 0 .*; got '2' \(str\)"),
    ({"tile_size": 32, "overlap": -1}, ValueError, r"overlap must be >= 0 or None \(exact\), got -1"),
    ({"recompute": "yes"}, TypeError, r"recompute must be True or False; got 'yes' \(str\)"),
    ({"grad_checkpoint": 1}, TypeError, r"grad_checkpoint must be True or False; got 1 \(int\)"),
])
def test_forward_arguments_are_checked(tiny_state, arguments, error, message):
    model = g.build_model(tiny_state)
    with pytest.raises(error, match=message):
        model(torch.rand(1, 3, 64, 64), **arguments)


def test_meta_device_is_refused(tiny_state, tmp_path, capsys):
    with pytest.raises(ValueError, match="device meta: the meta device holds shapes but no values"):
        g.load_model(tiny_state, device="meta")
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    torch.save(tiny_state, tmp_path / "tiny.pth")
    code, err = cli(capsys, "enhance", tmp_path / "a.png", "--aligned", "--model", tmp_path / "tiny.pth",
                    "-o", tmp_path / "out", "--device", "meta")
    assert code == 2 and "error: --device meta: device meta: the meta device holds shapes but no values" in err
    assert not (tmp_path / "out").exists()
