"""Image-level enhancement (channels, sizes, alpha) and the command line."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import gpen_core as g
from gpen_core.enhance import enhance_images
from gpen_core.tools.cli import main


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_channels_and_sizes(tiny_model, channels):
    images = torch.rand(2, channels, 50, 70)
    with torch.inference_mode():
        model_size = enhance_images(tiny_model, images)
        kept = enhance_images(tiny_model, images, keep_size=True, tile_size=32)
    out_channels = 4 if channels in (2, 4) else 3
    assert model_size.shape == (2, out_channels, 64, 64)
    assert kept.shape == (2, out_channels, 50, 70)
    assert float(model_size.min()) >= 0 and float(model_size.max()) <= 1
    if out_channels == 4:  # alpha is carried through, only resized
        assert torch.allclose(kept[:, 3], images[:, -1], atol=1e-6)


def test_enhance_equals_model_on_model_sized_input(tiny_model):
    images = torch.rand(1, 3, 64, 64)
    with torch.inference_mode():
        out = enhance_images(tiny_model, images)
        direct = tiny_model(images * 2 - 1)
    assert torch.allclose(out, ((direct + 1) / 2).clamp(0, 1), atol=1e-6)


def test_zero_to_one_models(tiny_state):
    model = g.load_model(tiny_state, device="cpu", input_range="[0,1]")
    images = torch.rand(1, 3, 64, 64)
    with torch.inference_mode():
        out = enhance_images(model, images)
        direct = model(images)
    assert torch.allclose(out, direct.clamp(0, 1), atol=1e-6)


def test_bad_channels(tiny_model):
    with pytest.raises(ValueError, match=r"C in 1..4.*\(1, 5, 8, 8\)"):
        enhance_images(tiny_model, torch.rand(1, 5, 8, 8))


def test_cli_enhance(tmp_path, tiny_state):
    weights = tmp_path / "tiny.pth"
    torch.save(tiny_state, weights)
    inputs = tmp_path / "in"
    inputs.mkdir()
    Image.fromarray((np.random.rand(40, 30, 3) * 255).astype(np.uint8)).save(inputs / "a.png")
    Image.fromarray((np.random.rand(20, 20) * 255).astype(np.uint8), "L").save(inputs / "b.jpg")
    Image.fromarray((np.random.rand(33, 33, 4) * 255).astype(np.uint8), "RGBA").save(inputs / "c.png")
    out = tmp_path / "out"
    assert main(["enhance", str(inputs), "--aligned", "--model", str(weights), "-o", str(out), "--device", "cpu"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png", "c.png"]
    assert Image.open(out / "a.png").size == (64, 64)
    assert Image.open(out / "c.png").mode == "RGBA"
    # nothing is overwritten without --force
    assert main(["enhance", str(inputs / "a.png"), "--aligned", "--model", str(weights), "-o", str(out)]) == 2
    assert main(["enhance", str(inputs / "a.png"), "--aligned", "--model", str(weights), "-o", str(out), "--force",
                 "--keep-size", "--tile-size", "32"]) == 0
    assert Image.open(out / "a.png").size == (30, 40)


def test_cli_reports_bad_checkpoint(tmp_path, capsys):
    bad = tmp_path / "bad.pth"
    bad.write_text("nope")
    image = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(image)
    assert main(["enhance", str(image), "--aligned", "--model", str(bad), "-o", str(tmp_path / "o")]) == 2
    assert "bad.pth" in capsys.readouterr().err


def test_cli_bench_runs_without_weights(capsys):
    from gpen_core.tools import bench

    rows = bench.bench_size(128, ["fp32", "bf16"], 64, torch.device("cpu"), 1, log=lambda _: None)
    names = [r.strategy for r in rows if r.precision == "fp32"]
    assert names == ["plain", "tiled 64", "recompute", "tiled 64 + recompute", "tiled 64 overlap 0",
                     "tiled 64 overlap 2", "backward", "backward + checkpoint"]
    by = {(r.precision, r.strategy): r for r in rows}
    assert by[("fp32", "tiled 64")].max_error < 2e-5
    assert by[("fp32", "tiled 64 overlap 0")].max_error > 1e-3  # a cut halo shows
    assert by[("fp32", "tiled 64 + recompute")].peak_bytes < by[("fp32", "plain")].peak_bytes
    assert by[("bf16", "plain")].peak_bytes < 0.55 * by[("fp32", "plain")].peak_bytes
    assert 0 < by[("bf16", "plain")].max_error < 0.5
    assert by[("fp32", "backward + checkpoint")].peak_bytes < by[("fp32", "backward")].peak_bytes
    img = __import__("gpen_core.tools.bench_plot", fromlist=["plot_rows"]).plot_rows(rows)
    assert img.size[0] == 900 and img.size[1] > 100


def test_enhance_checks_the_images_first(tiny_model):
    with pytest.raises(ValueError, match=r"images must hold values in \[0, 1\].*divide by 255"):
        enhance_images(tiny_model, torch.full((1, 3, 8, 8), 200.0))
    with pytest.raises(ValueError, match="images is empty"):
        enhance_images(tiny_model, torch.zeros(0, 3, 8, 8))
    grey = torch.randint(0, 256, (1, 1, 64, 64), dtype=torch.uint8)
    with torch.inference_mode():
        assert torch.equal(enhance_images(tiny_model, grey), enhance_images(tiny_model, grey.float() / 255))


def test_bench_parser_rows():
    from gpen_core.face.parsing import ParseNetConfig
    from gpen_core.tools import bench

    small = ParseNetConfig(in_size=64, out_size=64, min_feat_size=16, base_ch=4, res_depth=1, ch_range=(4, 8))
    lines: list[str] = []
    rows = bench.bench_parser(["bf16"], torch.device("cpu"), 1, log=lines.append, config=small, batch=2)
    assert [(r.implementation, r.precision, r.batch) for r in rows] == [("ours", "fp32", 2), ("ours", "bf16", 2)]
    assert rows[0].logit_error == 0 and rows[0].difference.class_flips == 0 and rows[0].difference.paste_max == 0
    assert 0 < rows[1].logit_error < 1 and rows[1].difference.pixels == 2 * 512 * 512
    assert all(r.seconds_per_face > 0 and 19 * 512 * 512 * 2 < r.peak_bytes <= r.estimate_bytes for r in rows)
    assert len(lines) == 3 and lines[0] == bench.PARSER_HEADER


def test_bench_official_parser_needs_a_gpen_checkout(tmp_path):
    from gpen_core.tools import bench

    with pytest.raises(FileNotFoundError, match="no face_parse/parse_model.py"):
        bench.load_official_parser(tmp_path, {}, torch.device("cpu"))
