"""The weights downloader against a loopback server (never the internet): every way a download can fail
leaves nothing under the final name; a resumed file equals an uninterrupted one byte for byte; a file
changed after its download is reported when loaded.

Small stand-ins keep it fast: a GPEN-32 and a tiny ParseNet under table entries of their own, and the
real (1.7 MB) RetinaFace mobile0.25 layout under its real entry; the official table's own GPEN entries
are used where a file must be refused.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from weights_server import WeightsServer, closed_port, serve

from gpen_core.arch.config import GPENConfig
from gpen_core.arch.seeded import seeded_state_dict
from gpen_core.digests import sidecar_path
from gpen_core.face.detection import load_detector
from gpen_core.face.detection.retinaface import RetinaFaceNet, load_retinaface_net
from gpen_core.face.parsing import ParseNetConfig, load_parser, seeded_parsenet_state_dict
from gpen_core.loading import load_model
from gpen_core.official_files import BASE_URL_ENV, OfficialFile, download_url, require_official
from gpen_core.weights import CheckpointError
from gpen_core.zoo import download, locate
from gpen_core.zoo.download import (
    DownloadError,
    DownloadInterruptedError,
    DownloadRefusedError,
    download_file,
    lock_path,
    part_path,
)
from gpen_core.zoo.locate import (
    WeightsNotFoundError,
    fetch_detector_weights,
    fetch_official,
    fetch_parser_weights,
    resolve_weights,
)
from gpen_core.zoo.verify import check_official_file
from helpers import REPO_ROOT

SMALL_GPEN = GPENConfig(32, channel_multiplier=1, narrow=0.125, style_dim=16, n_mlp=1)
SMALL_PARSENET = ParseNetConfig(64, 64, 32, 8, 19, 1, (8, 16))
GPEN_32 = OfficialFile("GPEN-BFR-32", "GPEN-BFR-32.pth", "https://example.invalid/GPEN-BFR-32.pth", "gpen", "gpen",
                       {k: v for k, v in dataclasses.asdict(SMALL_GPEN).items() if k != "input_range"}, "test")
PARSENET_64 = OfficialFile("ParseNet-64", "ParseNet-64.pth", "https://example.invalid/ParseNet-64.pth",
                           "facedetection", "parsenet", dataclasses.asdict(SMALL_PARSENET), "test")
MOBILE = require_official("retinaface_mobile0.25")


def saved(state: dict[str, torch.Tensor]) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def gpen_bytes() -> bytes:
    return saved(seeded_state_dict(SMALL_GPEN, 1))


@pytest.fixture(scope="module")
def mobile_bytes() -> bytes:
    torch.manual_seed(0)
    return saved(RetinaFaceNet("mobile0.25").state_dict())


@pytest.fixture(scope="module")
def parsenet_bytes() -> bytes:
    return saved(seeded_parsenet_state_dict(SMALL_PARSENET))


@pytest.fixture()
def server(monkeypatch) -> WeightsServer:
    """A running loopback server; every official file is fetched from it (the mirror setting)."""
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv(locate.NO_DOWNLOAD_ENV, raising=False)
    monkeypatch.setattr(download, "CHUNK_BYTES", 64 * 1024)  # many chunks from small files
    with serve() as running:
        monkeypatch.setenv(BASE_URL_ENV, running.base_url)
        yield running


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def assert_no_final_file(destination: Path) -> None:
    assert not destination.exists()
    assert not sidecar_path(destination).exists()
    assert not lock_path(destination).exists()


# ----------------------------------------------------------------------------------------- success
def test_fresh_download_is_verified_placed_and_recorded(server, gpen_bytes, tmp_path):
    server.add("GPEN-BFR-32.pth", gpen_bytes)
    seen: list[tuple[int, int | None]] = []
    path = fetch_official(GPEN_32, [tmp_path / "gpen"], progress=lambda done, total: seen.append((done, total)))
    assert path == tmp_path / "gpen" / "GPEN-BFR-32.pth"
    assert path.read_bytes() == gpen_bytes
    digest = hashlib.sha256(gpen_bytes).hexdigest()
    assert sidecar_path(path).read_text() == f"{digest}  GPEN-BFR-32.pth\n"
    assert leftovers(tmp_path / "gpen") == ["GPEN-BFR-32.pth", "GPEN-BFR-32.pth.sha256"]
    assert seen[0] == (0, len(gpen_bytes)) and seen[-1] == (len(gpen_bytes), len(gpen_bytes))
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
    assert load_model(path).config == SMALL_GPEN
    # found on disk the second time: no new request
    assert fetch_official(GPEN_32, [tmp_path / "gpen"]) == path
    assert len(server.requested("GPEN-BFR-32.pth")) == 1


def test_the_mirror_setting_names_every_url(server, monkeypatch):
    assert download_url(require_official("GPEN-BFR-512")) == f"{server.base_url}/GPEN-BFR-512.pth"
    monkeypatch.delenv(BASE_URL_ENV)
    assert download_url(require_official("GPEN-BFR-512")) == (
        "https://public-vigen-video.oss-cn-shanghai.aliyuncs.com/robin/models/GPEN-BFR-512.pth")


def test_a_bounded_redirect_is_followed(server, gpen_bytes, tmp_path):
    server.add("GPEN-BFR-32.pth", redirect_to="/moved/GPEN-BFR-32.pth")
    server.add("moved/GPEN-BFR-32.pth", gpen_bytes)
    assert fetch_official(GPEN_32, [tmp_path]).read_bytes() == gpen_bytes


# -------------------------------------------------------------------------------- interruptions
def test_a_cut_connection_is_resumed_and_equals_an_uninterrupted_download(server, gpen_bytes, tmp_path):
    server.add("GPEN-BFR-32.pth", gpen_bytes, cut_after=300_000, cuts=1)
    resumed = fetch_official(GPEN_32, [tmp_path / "a"])
    first, second = server.requested("GPEN-BFR-32.pth")
    assert first.range is None and second.range is not None and second.range.startswith("bytes=")
    assert int(second.range[6:-1]) > 0  # the bytes of the first connection were kept and not asked for again
    uninterrupted = fetch_official(GPEN_32, [tmp_path / "b"])
    assert resumed.read_bytes() == uninterrupted.read_bytes() == gpen_bytes
    assert sidecar_path(resumed).read_text() == sidecar_path(uninterrupted).read_text()


def test_an_interrupted_download_keeps_only_its_part_and_the_next_run_resumes(server, gpen_bytes, tmp_path):
    server.add("GPEN-BFR-32.pth", gpen_bytes, cut_after=300_000, cuts=1)
    destination = tmp_path / "GPEN-BFR-32.pth"
    with pytest.raises(DownloadInterruptedError) as caught:
        download_file(download_url(GPEN_32), destination, verify=lambda p: check_official_file(GPEN_32, p), attempts=1)
    message = str(caught.value)
    assert download_url(GPEN_32) in message and str(destination) in message and "by hand" in message
    assert leftovers(tmp_path) == ["GPEN-BFR-32.pth.part"]
    kept = part_path(destination).read_bytes()
    assert 0 < len(kept) < len(gpen_bytes) and gpen_bytes.startswith(kept)
    fetch_official(GPEN_32, [tmp_path])  # the next run
    assert server.requested("GPEN-BFR-32.pth")[-1].range == f"bytes={len(kept)}-"
    assert destination.read_bytes() == gpen_bytes
    assert leftovers(tmp_path) == ["GPEN-BFR-32.pth", "GPEN-BFR-32.pth.sha256"]


def test_a_cancel_from_the_progress_callback_keeps_the_part(server, gpen_bytes, tmp_path):
    server.add("GPEN-BFR-32.pth", gpen_bytes)

    def cancel(done: int, total: int | None) -> None:
        if done >= 200_000:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fetch_official(GPEN_32, [tmp_path], progress=cancel)
    assert leftovers(tmp_path) == ["GPEN-BFR-32.pth.part"]
    assert fetch_official(GPEN_32, [tmp_path]).read_bytes() == gpen_bytes


def test_a_server_that_ignores_range_starts_the_file_over(server, gpen_bytes, tmp_path):
    destination = tmp_path / "GPEN-BFR-32.pth"
    part_path(destination).write_bytes(gpen_bytes[:1000])
    server.add("GPEN-BFR-32.pth", gpen_bytes, ignore_range=True)
    assert fetch_official(GPEN_32, [tmp_path]).read_bytes() == gpen_bytes
    assert server.requested("GPEN-BFR-32.pth")[0].range == "bytes=1000-"


def test_a_body_shorter_than_its_content_length_is_an_error(server, gpen_bytes, tmp_path):
    server.add("GPEN-BFR-32.pth", gpen_bytes, short_by=1000)
    destination = tmp_path / "GPEN-BFR-32.pth"
    with pytest.raises(DownloadInterruptedError, match=f"ended after {len(gpen_bytes) - 1000} of {len(gpen_bytes)}"):
        fetch_official(GPEN_32, [tmp_path])
    assert_no_final_file(destination)
    assert part_path(destination).stat().st_size == len(gpen_bytes) - 1000
    assert len(server.requested("GPEN-BFR-32.pth")) == 2  # the resume brought nothing: no third try


# ------------------------------------------------------------------------------------ refusals
def test_a_wrong_file_under_a_right_name_is_refused_and_nothing_is_left(server, gpen_bytes, mobile_bytes, tmp_path):
    server.add("GPEN-BFR-512.pth", gpen_bytes)  # a GPEN-32 under the 512 name
    server.add("detection_Resnet50_Final.pth", mobile_bytes)  # mobile0.25 under the ResNet-50 name
    server.add("ParseNet-latest.pth", b"<html><body>Access denied</body></html>")
    cases = [("GPEN-BFR-512", "gpen", r"not GPEN-BFR-512: its shapes show gpen with size=32 \(expected 512\)"),
             ("retinaface_resnet50", "facedetection",
                  r"holds retinaface_mobile0.25 weights, but 'retinaface_resnet50' was requested"),
             ("ParseNet-latest", "facedetection", "a web page")]
    for name, folder, reason in cases:
        entry = require_official(name)
        with pytest.raises(DownloadRefusedError, match=reason) as caught:
            fetch_official(entry, [tmp_path / folder])
        destination = tmp_path / folder / entry.file_name
        assert download_url(entry) in str(caught.value) and str(destination) in str(caught.value)
        assert "by hand" in str(caught.value)
        assert leftovers(tmp_path / folder) == []


@pytest.mark.parametrize(("status", "reason"), [(404, "Not Found"), (500, "Internal Server Error")])
def test_http_errors_name_the_url_and_leave_nothing(server, tmp_path, status, reason):
    server.add("GPEN-BFR-32.pth", status=status)
    with pytest.raises(DownloadError, match=f"HTTP {status} {reason}") as caught:
        fetch_official(GPEN_32, [tmp_path])
    assert download_url(GPEN_32) in str(caught.value) and "GPEN_WEIGHTS_BASE_URL" in str(caught.value)
    assert leftovers(tmp_path) == []


def test_a_redirect_loop_is_an_error(server, tmp_path):
    server.add("GPEN-BFR-32.pth", redirect_to="/elsewhere")
    server.add("elsewhere", redirect_to="/GPEN-BFR-32.pth")
    with pytest.raises(DownloadError, match="redirect loop"):
        fetch_official(GPEN_32, [tmp_path])
    assert leftovers(tmp_path) == []
    assert len(server.requests) <= 2 * download.MAX_REDIRECTS


def test_offline_is_a_clear_error(server, monkeypatch, tmp_path):
    monkeypatch.setenv(BASE_URL_ENV, f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(DownloadError, match="cannot reach the server") as caught:
        fetch_official(GPEN_32, [tmp_path])
    assert str(tmp_path / "GPEN-BFR-32.pth") in str(caught.value)
    assert leftovers(tmp_path) == []


READ_ONLY_CHILD = """
import sys
from pathlib import Path
from gpen_core.zoo.download import DownloadError, download_file
try:
    download_file(sys.argv[1], Path(sys.argv[2]), verify=lambda p: None)
except DownloadError as err:
    print(err)
"""


def download_into_read_only(url: str, folder: Path) -> str:
    """The error of a download into ``folder`` made read-only: by its mode, or for root (who writes anyway)
    by a read-only file system mounted on it in a mount namespace of a child process."""
    destination = folder / "GPEN-BFR-32.pth"
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            with pytest.raises(DownloadError) as caught:
                download_file(url, destination, verify=lambda p: None)
        finally:
            folder.chmod(0o755)
        return str(caught.value)
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode:
        pytest.skip("running as root without mount namespaces: no way to make a folder read-only for root")
    script = 'mount -t tmpfs -o ro tmpfs "$1" && exec "$2" -c "$3" "$4" "$5"'
    done = subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", str(folder), sys.executable, READ_ONLY_CHILD,
                           url, str(destination)], capture_output=True, text=True, cwd=REPO_ROOT, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_read_only_destination_is_a_clear_error(server, gpen_bytes, tmp_path):
    server.add("GPEN-BFR-32.pth", gpen_bytes)
    folder = tmp_path / "gpen"
    folder.mkdir()
    message = download_into_read_only(download_url(GPEN_32), folder)
    assert f"cannot write in {folder} (" in message and "choose a writable models folder" in message
    assert str(folder / "GPEN-BFR-32.pth") in message and "by hand" in message
    assert leftovers(folder) == []
    assert server.requested("GPEN-BFR-32.pth") == []


# ----------------------------------------------------------------------------------- concurrency
def test_two_downloads_of_the_same_file_at_once_give_one_good_file(server, gpen_bytes, tmp_path, monkeypatch):
    server.add("GPEN-BFR-32.pth", gpen_bytes)
    started = threading.Barrier(2)
    results: list[download.Downloaded] = []
    errors: list[BaseException] = []
    real_fetch = download._fetch

    def slow_fetch(*args, **kwargs):  # hold the lock long enough for the other thread to find it taken
        threading.Event().wait(0.3)
        return real_fetch(*args, **kwargs)

    monkeypatch.setattr(download, "_fetch", slow_fetch)

    def run() -> None:
        started.wait()
        try:
            results.append(download_file(download_url(GPEN_32), tmp_path / "GPEN-BFR-32.pth",
                                         verify=lambda p: check_official_file(GPEN_32, p)))
        except BaseException as err:  # reported below
            errors.append(err)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(r.fetched for r in results) == [False, True]
    assert results[0].sha256 == results[1].sha256 == hashlib.sha256(gpen_bytes).hexdigest()
    assert (tmp_path / "GPEN-BFR-32.pth").read_bytes() == gpen_bytes
    assert len(server.requested("GPEN-BFR-32.pth")) == 1
    assert leftovers(tmp_path) == ["GPEN-BFR-32.pth", "GPEN-BFR-32.pth.sha256"]


# --------------------------------------------------------------------------------------- opt-out
def test_the_opt_out_never_downloads(server, monkeypatch, tmp_path):
    monkeypatch.setenv(locate.NO_DOWNLOAD_ENV, "1")
    entry = require_official("GPEN-BFR-512")
    with pytest.raises(WeightsNotFoundError) as caught:
        fetch_official(entry, [tmp_path / "gpen"])
    message = str(caught.value)
    assert f"put it in {tmp_path / 'gpen'}" in message and download_url(entry) in message
    assert "GPEN_NO_DOWNLOAD" in message
    assert fetch_detector_weights("auto", [tmp_path]) is None
    assert fetch_parser_weights("auto", [tmp_path]) is None
    assert server.requests == [] and leftovers(tmp_path) == []
    monkeypatch.setenv(locate.NO_DOWNLOAD_ENV, "maybe")
    with pytest.raises(ValueError, match="GPEN_NO_DOWNLOAD='maybe'"):
        locate.downloads_allowed()


# ------------------------------------------------------------------------------- changed on disk
def test_a_file_changed_after_its_download_is_reported_on_load(server, gpen_bytes, mobile_bytes, parsenet_bytes,
                                                               tmp_path):
    server.add("GPEN-BFR-32.pth", gpen_bytes)
    server.add(MOBILE.file_name, mobile_bytes)
    server.add("ParseNet-64.pth", parsenet_bytes)
    gpen = fetch_official(GPEN_32, [tmp_path])
    mobile = fetch_official(MOBILE, [tmp_path])
    parser = fetch_official(PARSENET_64, [tmp_path])
    assert load_model(gpen).config == SMALL_GPEN
    assert load_retinaface_net(mobile).backbone_name == "mobile0.25"
    assert load_parser(parser).config == SMALL_PARSENET
    gpen.write_bytes(saved(seeded_state_dict(SMALL_GPEN, 2)))  # another valid GPEN under the same name
    mobile.write_bytes(mobile_bytes[:-10] + bytes(10))
    parser.write_bytes(parsenet_bytes + b"\0")
    for path, load in ((gpen, load_model), (mobile, load_retinaface_net), (parser, load_parser)):
        with pytest.raises(CheckpointError, match="has changed since it was downloaded") as caught:
            load(path)
        assert f"delete only {path.name}.sha256" in str(caught.value)
    sidecar_path(gpen).unlink()  # "replaced on purpose": loads unchecked
    assert load_model(gpen).config == SMALL_GPEN


# ----------------------------------------------------------------------------------- resolution
def test_resolve_weights_by_path_name_and_official_name(server, gpen_bytes, monkeypatch, tmp_path):
    models = tmp_path / "models"
    (models / "facerestore_models").mkdir(parents=True)
    (models / "facerestore_models" / "my-gpen.pth").write_bytes(gpen_bytes)
    own = tmp_path / "elsewhere.pth"
    own.write_bytes(gpen_bytes)
    assert resolve_weights(own, "gpen") == own
    assert resolve_weights("my-gpen.pth", "gpen", [models]) == models / "facerestore_models" / "my-gpen.pth"
    server.add("GPEN-BFR-256.pth", status=404)
    with pytest.raises(DownloadError, match="HTTP 404") as caught:
        resolve_weights("gpen-bfr-256", "gpen", [models])  # official name, any case: fetched into models/gpen
    assert str(models / "gpen" / "GPEN-BFR-256.pth") in str(caught.value)
    with pytest.raises(FileNotFoundError, match="Official names, downloaded when missing: GPEN-BFR-256, "):
        resolve_weights("GPEN-BFR-300", "gpen", [models])
    with pytest.raises(FileNotFoundError, match="no such file"):
        resolve_weights(str(tmp_path / "missing.pth"), "gpen", [models])
    with pytest.raises(ValueError, match="retinaface_resnet50 is a retinaface_resnet50 file"):
        resolve_weights("retinaface_resnet50", "gpen", [models])
    monkeypatch.setenv(locate.MODELS_DIR_ENV, str(models))
    assert locate.models_dirs(["first"])[:2] == [Path("first"), models]
    assert resolve_weights("my-gpen.pth", "gpen") == models / "facerestore_models" / "my-gpen.pth"


def test_the_comfyui_models_folder_is_found_from_the_pack_location(tmp_path):
    comfy = tmp_path / "ComfyUI"
    assert locate.comfyui_models_dir(comfy / "custom_nodes" / "ComfyUI-GPEN") == comfy / "models"
    assert locate.comfyui_models_dir(tmp_path / "clone" / "ComfyUI-GPEN") is None


def test_auto_detector_fetches_resnet50_only_when_no_retinaface_file_is_there(server, mobile_bytes, tmp_path):
    server.add(MOBILE.file_name, mobile_bytes)
    with pytest.raises(DownloadError, match="detection_Resnet50_Final.pth.*HTTP 404"):
        fetch_detector_weights("auto", [tmp_path])  # nothing there: auto asks for ResNet-50 (not served here)
    fetched = fetch_detector_weights("retinaface_mobilenet", [tmp_path])  # an alias of mobile0.25
    assert fetched == tmp_path / MOBILE.file_name
    assert load_detector("retinaface_mobile0.25", [tmp_path]).name == "retinaface_mobile0.25"
    before = len(server.requests)
    assert fetch_detector_weights("auto", [tmp_path]) is None  # a RetinaFace file is there: auto uses it
    assert fetch_detector_weights("mtcnn", [tmp_path]) is None
    assert len(server.requests) == before


def test_auto_mask_fetches_parsenet_latest_and_verifies_it(server, parsenet_bytes, tmp_path):
    server.add("ParseNet-latest.pth", parsenet_bytes)  # a ParseNet, but not the official 512 layout
    with pytest.raises(DownloadRefusedError, match=r"in_size=64 \(expected 512\)"):
        fetch_parser_weights("auto", [tmp_path])
    assert leftovers(tmp_path) == []
    assert fetch_parser_weights("box", [tmp_path]) is None
    (tmp_path / "parsing_parsenet.pth").write_bytes(parsenet_bytes)
    assert fetch_parser_weights("parse", [tmp_path]) == tmp_path / "parsing_parsenet.pth"
    assert server.requested("ParseNet-latest.pth") and len(server.requests) == 1
