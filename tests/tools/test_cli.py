"""The command line as a careful batch tool: checks first, every file, failures listed, resume."""
from __future__ import annotations

import errno

import numpy as np
import pytest
import torch
from PIL import Image

import gpen_core as g
from gpen_core.tools import cli
from gpen_core.tools.cli import main
from helpers import run_cli as run


def noise_image(path, size=(24, 20), mode="RGB"):
    channels = {"RGB": 3, "RGBA": 4}[mode]
    pixels = np.random.default_rng(len(str(path))).integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    Image.fromarray(pixels, mode).save(path)


@pytest.fixture()
def folder(tmp_path):
    """good a.png, c.jpg, a 3-frame anim.gif, a truncated b.png and notes.txt."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    noise_image(inputs / "a.png")
    noise_image(inputs / "c.jpg")
    big = tmp_path / "big.png"
    noise_image(big, (64, 64))
    (inputs / "b.png").write_bytes(big.read_bytes()[:3000])
    frames = [Image.new("RGB", (16, 16), (60 * i, 20, 20)) for i in range(3)]
    frames[0].save(inputs / "anim.gif", save_all=True, append_images=frames[1:])
    (inputs / "notes.txt").write_text("not an image")
    return inputs


def test_one_bad_file_does_not_lose_the_batch(folder, weights, tmp_path, capsys):
    out = tmp_path / "out"
    code, err = run(capsys, "enhance", folder, "--aligned", "--model", weights, "-o", out, "--device", "cpu")
    assert code == 1
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "anim_f0001.png", "anim_f0002.png", "anim_f0003.png",
                                                      "c.png"]
    assert "1 file(s) failed:" in err and f"{folder / 'b.png'}: cannot decode the image, truncated or corrupt" in err
    assert "ignored 1 file(s) without an image or video suffix: notes.txt" in err
    frames = [np.asarray(Image.open(out / f"anim_f000{i}.png")) for i in (1, 2, 3)]
    assert not np.array_equal(frames[0], frames[2])  # each frame restored, not frame 0 three times

    # a rerun refuses to overwrite; --skip-existing finishes only what is missing
    code, err = run(capsys, "enhance", folder, "--aligned", "--model", weights, "-o", out)
    assert code == 2 and "5 of 6 output file(s) exist" in err and "--skip-existing" in err
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    (folder / "b.png").unlink()
    noise_image(folder / "b.png")  # the user fixes the bad file
    code, err = run(capsys, "enhance", folder, "--aligned", "--model", weights, "-o", out, "--skip-existing")
    assert code == 0 and "skipping 5" in err and "wrote 1 image(s)" in err
    after = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert set(after) == set(before) | {"b.png"}
    assert all(after[name] == before[name] for name in before)
    code, err = run(capsys, "enhance", folder, "--aligned", "--model", weights, "-o", out, "--skip-existing")
    assert code == 0 and "nothing to do" in err


def test_force_never_overwrites_an_input(folder, weights, capsys):
    original = (folder / "a.png").read_bytes()
    code, err = run(capsys, "enhance", folder / "a.png", "--aligned", "--model", weights, "-o", folder, "--force")
    assert code == 2 and "would replace the input file" in err
    assert (folder / "a.png").read_bytes() == original
    # a suffix makes it safe
    code, _ = run(
        capsys, "enhance", folder / "a.png", "--aligned", "--model", weights, "-o", folder, "--suffix", "_gpen"
    )
    assert code == 0 and (folder / "a_gpen.png").is_file()


def test_two_inputs_with_one_output_name(tmp_path, weights, capsys):
    noise_image(tmp_path / "x.png")
    noise_image(tmp_path / "x.jpg")
    code, err = run(capsys, "enhance", tmp_path / "x.png", tmp_path / "x.jpg", "--aligned", "--model", weights,
                    "-o", tmp_path / "o")
    assert code == 2 and "would both be written to" in err
    assert not (tmp_path / "o").exists()


OPTION_ERRORS = [
    (["--aligned", "--fidelity", "2"], "--fidelity: only for whole photos"),
    (["--fidelity", "2"], r"--fidelity must be in [0, 1]; got 2.0"),
    (["--fidelity", "nan"], "--fidelity must be a number"),
    (["--tile-size", "abc"], "--tile-size must be auto (or 0: chosen from free memory), none (whole image)"),
    (["--tile-size", "8"], ">= 16; got '8'"),
    (["--overlap", "-2"], "--overlap (-1: exact) must be in [-1, inf]; got -2"),
    (["--overlap", "2", "--tile-size", "none"], "--overlap cuts the halos of tiles: give a --tile-size"),
    (["--max-faces", "-1"], "face selection: --max-faces must be >= 0 (0 or None = no limit); got -1"),
    (["--score-threshold", "1.5"], "--score-threshold (0: the detector's default) must be in [0, 0.999]"),
    (["--min-face-size", "-3"], "--min-face-size must be >= 0 pixels (0 = no bound); got -3.0"),
    (["--faces", "1-x"], "face selection: face indices '1-x': cannot read '1-x'"),
    (["--min-face-size", "50", "--max-face-size", "40"], "--max-face-size (40) is below --min-face-size (50)"),
    (["--aligned", "--faces", "0"], "--faces: only for whole photos"),
    (["--keep-size"], "--keep-size only applies to --aligned"),
    (["--suffix", "x/y"], "--suffix 'x/y': a file-name part without folder separators"),
    (["--device", "gpu"], "--device gpu:"),
    (["--device", "cuda:7"], "--device cuda:7:"),
]


@pytest.mark.parametrize("options, message", OPTION_ERRORS)
def test_option_errors_come_before_any_model_and_leave_no_folder(tmp_path, weights, capsys, no_model_load,
                                                                   options, message):
    noise_image(tmp_path / "a.png")
    out = tmp_path / "new" / "out"
    code, err = run(capsys, "enhance", tmp_path / "a.png", "--model", weights, "-o", out, *options)
    assert code == 2 and err.startswith("error: ") and message in err
    assert not (tmp_path / "new").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("command", ["enhance", "bench"])
def test_cuda_without_cuda(tmp_path, weights, capsys, no_model_load, command):
    noise_image(tmp_path / "a.png")
    argv = ["enhance", tmp_path / "a.png", "--model", weights, "-o", tmp_path / "o"] if command == "enhance" else [
        "bench", "--sizes", "64"]
    code, err = run(capsys, *argv, "--device", "cuda")
    assert code == 2 and "error: --device cuda: device cuda was asked for, but this PyTorch build sees no CUDA" in err


def test_path_errors(tmp_path, weights, capsys, no_model_load):
    noise_image(tmp_path / "a.png")
    (tmp_path / "file").write_text("x")
    cases = [
        (["enhance", tmp_path / "missing.png", "--model", weights, "-o", tmp_path / "o"], "input not found"),
        (["enhance", tmp_path / "a.png", "--model", tmp_path, "-o", tmp_path / "o"],
         f"--model {tmp_path} is a folder; pass the checkpoint file itself (tiny.pth there)"),
        (["enhance", tmp_path / "a.png", "--model", tmp_path / "none.pth", "-o", tmp_path / "o"], "no such file"),
        (["enhance", tmp_path / "a.png", "--model", weights, "-o", tmp_path / "file"], "is not a folder"),
        (["enhance", tmp_path / "a.png", "--model", weights, "-o", tmp_path / "file" / "sub"],
         "cannot write to the output folder"),
    ]
    for argv, message in cases:
        code, err = run(capsys, *argv)
        assert code == 2 and message in err, (argv, err)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("content, message", [
    (b"\x13\x37" + bytes(range(256)) * 20, "not a PyTorch checkpoint: unknown content"),
    ("just some text\n", "not a PyTorch checkpoint: a text file, starting 'just some text'"),
])
def test_bad_checkpoint_is_named_with_the_right_reason(tmp_path, capsys, content, message):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(content) if isinstance(content, bytes) else bad.write_text(content)
    noise_image(tmp_path / "a.png")
    code, err = run(capsys, "enhance", tmp_path / "a.png", "--aligned", "--model", bad, "-o", tmp_path / "o")
    assert code == 2 and f"{bad}: {message}" in err and "run code" not in err
    assert not (tmp_path / "o").exists()  # no empty output folder left by a failed run


def test_full_disk_stops_and_lists_the_rest(folder, weights, tmp_path, capsys, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", full)
    out = tmp_path / "out"
    code, err = run(capsys, "enhance", folder / "a.png", folder / "c.jpg", "--aligned", "--model", weights, "-o", out)
    assert code == 1
    assert "a.png: cannot write the output" in err and "No space left on device" in err
    assert "c.jpg: not processed: the output disk is full" in err
    assert not out.exists()  # created by this run, nothing written: removed


def test_unexpected_error_per_file(folder, weights, tmp_path, capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise KeyError("surprise")

    monkeypatch.setattr("gpen_core.enhance.enhance_images", broken)
    code, err = run(capsys, "enhance", folder / "a.png", "--aligned", "--model", weights, "-o", tmp_path / "o")
    assert code == 1 and "KeyError: 'surprise' (an unexpected error: run with --debug for the traceback)" in err
    code = main(["enhance", str(folder / "a.png"), "--aligned", "--model", str(weights), "-o", str(tmp_path / "o2"),
                 "--debug"])
    assert code == 1 and "Traceback" in capsys.readouterr().err  # --debug shows it, and goes on


@pytest.mark.parametrize("suffix", [".pth", ".pt", ".safetensors"])
def test_convert_writes_what_the_suffix_says(weights, tmp_path, tiny_state, capsys, suffix):
    target = tmp_path / f"out{suffix}"
    code, err = run(capsys, "convert", weights, target)
    assert code == 0
    if suffix == ".safetensors":
        from safetensors.torch import load_file

        loaded = load_file(str(target))
        assert "safetensors" in err
    else:
        loaded = torch.load(target, weights_only=True)
        assert "torch.save" in err
    assert loaded.keys() == tiny_state.keys() and all(torch.equal(loaded[k], tiny_state[k]) for k in tiny_state)
    g.load_model(target, device="cpu")  # and our loader reads it back


def test_convert_refusals(weights, tmp_path, capsys):
    (tmp_path / "exists.pth").write_text("x")
    for target, message in [(tmp_path / "out.bin", "the suffix picks the format"), (weights, "is the input"),
                            (tmp_path / "exists.pth", "exists; use --force"),
                            (tmp_path / "no" / "out.pth", "does not exist")]:
        code, err = run(capsys, "convert", weights, target)
        assert code == 2 and message in err
    assert (tmp_path / "exists.pth").read_text() == "x"


@pytest.mark.parametrize("argv, message", [
    (["--repeat", "0"], "--repeat must be in [1, inf]; got 0"),
    (["--tile-size", "8"], "--tile-size must be in [16, inf]"),
    (["--sizes", "100"], "--sizes 100: size must be a power of two"),
    (["--official", "/nonexistent/GPEN"], "--official /nonexistent/GPEN: not a yangxy/GPEN checkout"),
    (["--plot", "/nonexistent/p.png"], "the folder /nonexistent does not exist"),
])
def test_bench_option_errors(capsys, monkeypatch, argv, message):
    monkeypatch.setattr("gpen_core.tools.bench.run_bench", lambda args: pytest.fail("bench ran"))
    code, err = run(capsys, "bench", *argv)
    assert code == 2 and message in err


def test_bench_error_is_always_against_fp32(monkeypatch, tiny_state):
    from gpen_core.tools import bench

    monkeypatch.setattr(bench, "strategies", lambda *args: [("plain", {})])  # the reference is under test
    monkeypatch.setattr(bench, "seeded_state_dict", lambda config, seed: tiny_state)
    (row,) = bench.bench_size(64, ["bf16"], 32, torch.device("cpu"), 1, backward=False, log=lambda _: None,
                              overlaps=())
    x = bench.seeded_input(64, 1)
    model = g.build_model(tiny_state)
    with torch.inference_mode():
        reference = model(x)
        model.set_dtype(torch.bfloat16)
        error = float((model(x).float() - reference).abs().max())
    assert row.max_error == error > 0  # against fp32, not against itself


def test_tile_size_parsing():
    assert cli.parse_tile_size("0") == cli.parse_tile_size("auto") == 0
    assert cli.parse_tile_size("none") is None and cli.parse_tile_size("whole") is None
    assert cli.parse_tile_size("64") == 64


def test_a_photo_shows_its_faces_on_the_progress_line_and_a_summary(tmp_path, weights, capsys, monkeypatch):
    """Per-face progress (here every redraw is printed: the stream is not a terminal) and one summary line per
    photo at the default verbosity."""
    from standins import TemplateFaceDetector

    from gpen_core.tools import progress

    monkeypatch.setattr(progress, "LOG_SECONDS", 0.0)
    monkeypatch.setattr("gpen_core.face.detection.loader.load_detector", lambda *a, **k: TemplateFaceDetector(0.5))
    noise_image(tmp_path / "photo.png", (48, 40))
    code, err = run(capsys, "enhance", tmp_path / "photo.png", "--model", weights, "-o", tmp_path / "out",
                    "--mask", "box")
    assert code == 0
    assert "photo.png: face 0/1" in err and "photo.png: face 1/1" in err and "elapsed" in err
    summary = next(line for line in err.splitlines() if "restored (template, mask box)" in line)
    assert summary.startswith(f"{tmp_path / 'photo.png'}: 1 face(s) found, 1 restored")
    for stage in ("detect", "align", "restore", "parse", "paste", "read/write"):
        assert f"{stage} " in summary
    assert "; peak RAM" in summary
