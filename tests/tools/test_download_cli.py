"""``python -m gpen_core download``: names, --all, --models-dir, exit codes, a tqdm bar (loopback server only)."""
from __future__ import annotations

import importlib.util
import io
import sys
import types

import pytest
import torch
from weights_server import serve

from gpen_core.digests import sidecar_path
from gpen_core.face.detection.retinaface import RetinaFaceNet
from gpen_core.official_files import BASE_URL_ENV, OFFICIAL_FILES, require_official
from gpen_core.tools.cli import main
from gpen_core.zoo import download, locate

MOBILE = require_official("retinaface_mobile0.25")


@pytest.fixture(scope="module")
def mobile_bytes() -> bytes:
    torch.manual_seed(0)
    buffer = io.BytesIO()
    torch.save(RetinaFaceNet("mobile0.25").state_dict(), buffer)
    return buffer.getvalue()


class FakeTqdm:
    """Stands in for tqdm where it is not installed (the shared test environment); records the bar."""

    bars: list[FakeTqdm] = []

    def __init__(self, total=None, **kwargs) -> None:
        self.total, self.n, self.closed = total, 0, False
        FakeTqdm.bars.append(self)

    def update(self, n: int) -> None:
        self.n += n

    def reset(self, total=None) -> None:
        self.n, self.total = 0, total

    def close(self) -> None:
        self.closed = True


@pytest.fixture()
def server(monkeypatch):
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    for name in (locate.NO_DOWNLOAD_ENV, locate.MODELS_DIR_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(download, "CHUNK_BYTES", 64 * 1024)
    monkeypatch.setattr(locate, "comfyui_models_dir", lambda pack_root=None: None)  # wherever the tests run
    if importlib.util.find_spec("tqdm") is None:
        module = types.ModuleType("tqdm")
        module.tqdm = FakeTqdm  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "tqdm", module)
        FakeTqdm.bars = []
    with serve() as running:
        monkeypatch.setenv(BASE_URL_ENV, running.base_url)
        yield running


def test_download_places_a_verified_file_then_finds_it(server, mobile_bytes, tmp_path, capsys):
    server.add(MOBILE.file_name, mobile_bytes)
    assert main(["download", "retinaface_mobile0.25", "--models-dir", str(tmp_path)]) == 0
    placed = tmp_path / "facedetection" / MOBILE.file_name
    assert placed.read_bytes() == mobile_bytes
    out = capsys.readouterr().out
    assert f"retinaface_mobile0.25: {placed} (sha256 " in out
    if FakeTqdm.bars:
        assert FakeTqdm.bars[-1].n == len(mobile_bytes) and FakeTqdm.bars[-1].closed
    assert main(["download", MOBILE.file_name, "--models-dir", str(tmp_path)]) == 0  # by file name, already there
    assert f"already there: {placed}" in capsys.readouterr().out
    assert len(server.requested(MOBILE.file_name)) == 1
    placed.write_bytes(mobile_bytes[:-1] + b"\1")
    assert main(["download", "retinaface_mobile0.25", "--models-dir", str(tmp_path)]) == 1
    assert "has changed since it was downloaded" in capsys.readouterr().err
    assert sidecar_path(placed).exists()


def test_download_all_reports_each_failure_and_exits_1(server, mobile_bytes, tmp_path, capsys):
    server.add(MOBILE.file_name, mobile_bytes)  # the only one served: every other answers 404
    assert main(["download", "--all", "--models-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    others = [e.name for e in OFFICIAL_FILES if e is not MOBILE]
    assert f"failed: {', '.join(others)}" in err
    assert err.count("HTTP 404 Not Found") == len(others)
    assert sorted(p.name for p in (tmp_path / "facedetection").iterdir()) == [MOBILE.file_name,
                                                                              MOBILE.file_name + ".sha256"]
    assert not (tmp_path / "gpen").exists() or list((tmp_path / "gpen").iterdir()) == []


@pytest.mark.parametrize(("argv", "error"), [
    (["download"], "name the files to download, or pass --all; official names: GPEN-BFR-256"),
    (["download", "GPEN-BFR-512", "--all"], "give names or --all, not both"),
    (["download", "GPEN-BFR-600", "GPEN-BFR-512"], "not official names: GPEN-BFR-600"),
    (["download", "GPEN-BFR-512"], "no models folder: pass --models-dir"),
])
def test_usage_errors_exit_2_and_download_nothing(server, capsys, argv, error):
    assert main(argv) == 2
    assert error in capsys.readouterr().err
    assert server.requests == []


def test_the_opt_out_exits_2(server, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv(locate.NO_DOWNLOAD_ENV, "1")
    assert main(["download", "GPEN-BFR-512", "--models-dir", str(tmp_path)]) == 2
    assert "downloads are turned off (GPEN_NO_DOWNLOAD is set)" in capsys.readouterr().err
    assert server.requests == [] and list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def gpen256_bytes() -> bytes:
    from gpen_core.arch.config import GPENConfig
    from gpen_core.arch.seeded import seeded_state_dict

    buffer = io.BytesIO()
    torch.save(seeded_state_dict(GPENConfig(256, 1, 0.5), 3), buffer)
    return buffer.getvalue()


@pytest.mark.slow
def test_enhance_takes_an_official_name_and_fetches_it(server, gpen256_bytes, tmp_path, capsys):
    """``enhance --model GPEN-BFR-256 --models-dir D``: the file is fetched into D/gpen, verified, then used."""
    from PIL import Image

    server.add("GPEN-BFR-256.pth", gpen256_bytes)
    Image.new("RGB", (32, 32), (90, 60, 40)).save(tmp_path / "crop.png")
    argv = ["enhance", str(tmp_path / "crop.png"), "--aligned", "--model", "GPEN-BFR-256", "--models-dir",
            str(tmp_path / "models"), "-o", str(tmp_path / "out")]
    assert main(argv) == 0
    assert (tmp_path / "models" / "gpen" / "GPEN-BFR-256.pth").read_bytes() == gpen256_bytes
    assert Image.open(tmp_path / "out" / "crop.png").size == (256, 256)
    assert main([*argv[:-1], str(tmp_path / "out2")]) == 0  # found on disk the second time
    assert len(server.requested("GPEN-BFR-256.pth")) == 1


def test_enhance_fetches_the_detector_it_names(server, mobile_bytes, tmp_path, capsys, tiny_state):
    from PIL import Image

    server.add(MOBILE.file_name, mobile_bytes)
    torch.save(tiny_state, tmp_path / "tiny.pth")
    Image.new("RGB", (48, 40), (90, 60, 40)).save(tmp_path / "photo.png")
    code = main(["enhance", str(tmp_path / "photo.png"), "--model", str(tmp_path / "tiny.pth"), "--models-dir",
                 str(tmp_path / "models"), "--detector", "retinaface_mobile0.25", "--mask", "box",
                 "-o", str(tmp_path / "out")])
    assert code == 0 and (tmp_path / "models" / "facedetection" / MOBILE.file_name).read_bytes() == mobile_bytes
    assert "0 face(s) found" in capsys.readouterr().err


def test_enhance_with_downloads_off_says_where_the_file_goes(server, monkeypatch, tmp_path, capsys):
    from PIL import Image

    monkeypatch.setenv(locate.NO_DOWNLOAD_ENV, "1")
    Image.new("RGB", (32, 32)).save(tmp_path / "crop.png")
    code = main(["enhance", str(tmp_path / "crop.png"), "--aligned", "--model", "GPEN-BFR-512", "--models-dir",
                 str(tmp_path / "models"), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "GPEN-BFR-512.pth" in err and "GPEN_NO_DOWNLOAD" in err and str(tmp_path / "models") in err
    assert not (tmp_path / "out").exists() and server.requested("GPEN-BFR-512.pth") == []
