"""Where the nodes look for weights: models/gpen, GPEN files in models/facerestore_models, models/facedetection,
and the folders ``extra_model_paths.yaml`` adds (ComfyUI reads it before custom nodes load)."""
from __future__ import annotations

import importlib
import io
import sys

import comfy_stubs
import pytest
import torch
from weights_server import serve

from gpen_core.arch.config import GPENConfig
from gpen_core.arch.generator import GPEN
from helpers import forget_pack, import_pack

PACK = "gpen_pack_model_folders"


@pytest.fixture()
def folders(monkeypatch, tmp_path):
    models, extra = tmp_path / "models", tmp_path / "elsewhere"
    files = [
        models / "gpen" / "GPEN-BFR-512.pth",
        models / "facerestore_models" / "GPEN-BFR-1024.pth",
        models / "facerestore_models" / "codeformer.pth",
        models / "facerestore_models" / "GFPGANv1.4.pth",
        models / "facerestore_models" / "GPEN-BFR-2048.onnx",  # facerestore_cf's ONNX: not ours to load
        models / "facedetection" / "detection_Resnet50_Final.pth",
        extra / "restorers" / "sub" / "gpen_bfr_256.safetensors",
        extra / "restorers" / "RestoreFormer.pth",
        extra / "detectors" / "parsing_parsenet.pth",
    ]
    for path in files:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    stubs = comfy_stubs.install(monkeypatch, models)
    # what ComfyUI's extra_model_paths.yaml loader leaves behind (add_model_folder_path): no extensions
    stubs.folder_paths.folder_names_and_paths["facerestore_models"] = ([str(extra / "restorers")], set())
    stubs.folder_paths.folder_names_and_paths["facedetection"] = ([str(extra / "detectors")], set())
    forget_pack(PACK)
    import_pack(PACK)
    module = importlib.import_module(f"{PACK}.nodes.model_folders")
    module.register_model_folders()
    yield module, models, extra
    forget_pack(PACK)


def test_gpen_files_come_from_gpen_and_facerestore_folders(folders):
    module, models, extra = folders
    assert module.gpen_files() == ["GPEN-BFR-512.pth", "GPEN-BFR-1024.pth", "sub/gpen_bfr_256.safetensors",
                                   *OFFICIAL_MISSING]
    assert module.gpen_path("GPEN-BFR-1024.pth") == str(models / "facerestore_models" / "GPEN-BFR-1024.pth")
    found = module.gpen_path("sub/gpen_bfr_256.safetensors")
    assert found == str(extra / "restorers" / "sub" / "gpen_bfr_256.safetensors")
    with pytest.raises(FileNotFoundError, match="codeformer.pth.*facerestore_models"):
        module.gpen_path("codeformer.pth")  # there, but not a GPEN file


def test_yaml_folders_are_kept_and_the_defaults_added(folders):
    module, models, extra = folders
    assert module.facedetection_folders() == [str(extra / "detectors"), str(models / "facedetection")]
    assert module.gpen_folders() == [str(models / "gpen")]


# ------------------------------------------------------------------------ official files, downloads
OFFICIAL_MISSING = ["GPEN-BFR-256.pth (download)", "GPEN-BFR-2048.pth (download)"]
"""The fixture has GPEN-BFR-512.pth in models/gpen and GPEN-BFR-1024.pth in models/facerestore_models."""


@pytest.fixture()
def weights_host(monkeypatch):
    """A loopback server standing in for the release hosts, with downloads allowed."""
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("GPEN_NO_DOWNLOAD")
    with serve() as running:
        monkeypatch.setenv("GPEN_WEIGHTS_BASE_URL", running.base_url)
        yield running


def zero_gpen_file(config: GPENConfig) -> bytes:
    """An official-layout generator with zero weights: what the download check reads are the shapes."""
    with torch.device("meta"):
        layout = GPEN(config).state_dict()
    buffer = io.BytesIO()
    torch.save({key: torch.zeros(value.shape) for key, value in layout.items()}, buffer)
    return buffer.getvalue()


def test_official_files_not_on_disk_are_listed_marked(folders):
    module, models, extra = folders
    assert module.gpen_files()[3:] == OFFICIAL_MISSING
    for name in (*OFFICIAL_MISSING, "GPEN-BFR-2048.pth", "GPEN-BFR-512.pth", "sub/gpen_bfr_256.safetensors"):
        assert module.is_known_gpen_name(name), name
    for name in ("codeformer.pth", "detection_Resnet50_Final.pth", "GPEN-BFR-300.pth (download)"):
        assert not module.is_known_gpen_name(name), name


def test_a_marked_name_is_refused_with_the_put_it_here_error_when_downloads_are_off(folders):
    module, models, extra = folders  # GPEN_NO_DOWNLOAD=1 for every test unless lifted (conftest)
    with pytest.raises(FileNotFoundError) as caught:
        module.gpen_path("GPEN-BFR-2048.pth (download)")
    message = str(caught.value)
    assert f"put it in {models / 'gpen'}" in message and "GPEN_NO_DOWNLOAD" in message
    assert "https://public-vigen-video.oss-cn-shanghai.aliyuncs.com/robin/models/GPEN-BFR-2048.pth" in message
    assert not (models / "gpen" / "GPEN-BFR-2048.pth").exists()


@pytest.mark.slow
def test_choosing_a_marked_name_downloads_it_into_models_gpen_with_progress(folders, weights_host, monkeypatch):
    module, models, extra = folders
    stubs_progress = sys.modules["comfy.utils"].ProgressBar.shown
    body = zero_gpen_file(GPENConfig(256, 1, 0.5))
    weights_host.add("GPEN-BFR-256.pth", body)
    # the yaml folder comes first in the gpen list: downloads still go to ComfyUI's own models/gpen
    monkeypatch.setitem(module.folder_paths.folder_names_and_paths, "gpen", ([str(extra / "gpen-yaml"),
                                                                                str(models / "gpen")],
                                                                               module.MODEL_EXTENSIONS))
    path = module.gpen_path("GPEN-BFR-256.pth (download)")
    assert path == str(models / "gpen" / "GPEN-BFR-256.pth")
    assert (models / "gpen" / "GPEN-BFR-256.pth").read_bytes() == body
    assert (models / "gpen" / "GPEN-BFR-256.pth.sha256").exists()
    assert stubs_progress and stubs_progress[-1] == (len(body), len(body))
    assert len(stubs_progress) <= 101  # once per percent
    assert "GPEN-BFR-256.pth" in module.gpen_files() and "GPEN-BFR-256.pth (download)" not in module.gpen_files()
    assert module.gpen_path("GPEN-BFR-256.pth (download)") == path  # a workflow saved before the download
    assert len(weights_host.requested("GPEN-BFR-256.pth")) == 1


def test_auto_detector_and_mask_fetch_into_models_facedetection(folders, weights_host):
    module, models, extra = folders
    assert module.fetch_auto_detector("auto") is None  # detection_Resnet50_Final.pth is there
    assert module.fetch_auto_parser("auto") == extra / "detectors" / "parsing_parsenet.pth"
    assert module.fetch_auto_parser("box") is None
    (extra / "detectors" / "parsing_parsenet.pth").unlink()
    weights_host.add("ParseNet-latest.pth", b"not weights")
    with pytest.raises(OSError, match="ParseNet-latest.pth failed: the file that arrived was refused") as caught:
        module.fetch_auto_parser("parse")
    assert str(models / "facedetection" / "ParseNet-latest.pth") in str(caught.value)
    assert sorted(p.name for p in (models / "facedetection").iterdir()) == ["detection_Resnet50_Final.pth"]
    with pytest.raises(OSError, match="detection_mobilenet0.25_Final.pth failed: HTTP 404"):
        module.fetch_auto_detector("retinaface_mobile0.25")


def test_cancelling_a_download_in_comfyui_keeps_its_part(folders, weights_host, monkeypatch):
    module, models, extra = folders
    weights_host.add("GPEN-BFR-2048.pth", bytes(3 << 20))  # 3 MiB: several chunks
    calls = []

    def cancel_on_second_chunk() -> None:
        calls.append(1)
        if len(calls) == 3:
            raise comfy_stubs.InterruptProcessingException()

    monkeypatch.setattr(sys.modules["comfy.model_management"], "throw_exception_if_processing_interrupted",
                        cancel_on_second_chunk)
    with pytest.raises(comfy_stubs.InterruptProcessingException):
        module.gpen_path("GPEN-BFR-2048.pth (download)")
    assert sorted(p.name for p in (models / "gpen").iterdir()) == ["GPEN-BFR-2048.pth.part", "GPEN-BFR-512.pth"]
    assert (models / "gpen" / "GPEN-BFR-2048.pth.part").stat().st_size == 2 << 20  # two 1 MiB chunks kept
