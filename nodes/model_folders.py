"""Model folders in ComfyUI's ``folder_paths``: ``models/gpen`` and ``models/facedetection``."""
from __future__ import annotations

import os

import folder_paths

MODEL_EXTENSIONS = {".pth", ".pt", ".safetensors"}
FOLDERS = ("gpen", "facedetection")


def register_model_folders() -> None:
    """Add ``models/<name>`` for every folder, merging with paths from ``extra_model_paths.yaml``.

    ComfyUI reads the yaml before custom nodes load, so a user's ``gpen:`` entry may already
    exist: keep its paths, append the default folder, and add our file extensions.
    """
    for name in FOLDERS:
        default = os.path.join(folder_paths.models_dir, name)
        if name in folder_paths.folder_names_and_paths:
            paths, extensions = folder_paths.folder_names_and_paths[name]
            if default not in paths:
                paths.append(default)
            folder_paths.folder_names_and_paths[name] = (paths, set(extensions) | MODEL_EXTENSIONS)
        else:
            folder_paths.folder_names_and_paths[name] = ([default], set(MODEL_EXTENSIONS))


def gpen_files() -> list[str]:
    return folder_paths.get_filename_list("gpen")


def gpen_path(name: str) -> str:
    """Full path of a file of the ``gpen`` folders; the error names the folders searched."""
    path = folder_paths.get_full_path("gpen", name)
    if path is None:
        folders = ", ".join(folder_paths.get_folder_paths("gpen"))
        raise FileNotFoundError(
            f"GPEN model {name!r} not found in {folders}. Put the official GPEN-BFR-512.pth (or another "
            "GPEN generator .pth/.safetensors) there and refresh."
        )
    return path


def facedetection_folders() -> list[str]:
    return list(folder_paths.get_folder_paths("facedetection"))
