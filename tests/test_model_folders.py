"""Where the nodes look for weights: models/gpen, GPEN files in models/facerestore_models, models/facedetection,
and the folders ``extra_model_paths.yaml`` adds (ComfyUI reads it before custom nodes load)."""
from __future__ import annotations

import importlib

import comfy_stubs
import pytest

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
    assert module.gpen_files() == ["GPEN-BFR-512.pth", "GPEN-BFR-1024.pth", "sub/gpen_bfr_256.safetensors"]
    assert module.gpen_path("GPEN-BFR-1024.pth") == str(models / "facerestore_models" / "GPEN-BFR-1024.pth")
    found = module.gpen_path("sub/gpen_bfr_256.safetensors")
    assert found == str(extra / "restorers" / "sub" / "gpen_bfr_256.safetensors")
    with pytest.raises(FileNotFoundError, match="codeformer.pth.*facerestore_models"):
        module.gpen_path("codeformer.pth")  # there, but not a GPEN file


def test_yaml_folders_are_kept_and_the_defaults_added(folders):
    module, models, extra = folders
    assert module.facedetection_folders() == [str(extra / "detectors"), str(models / "facedetection")]
    assert module.gpen_folders() == [str(models / "gpen")]
