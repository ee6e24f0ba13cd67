"""Model folders in ComfyUI's ``folder_paths``: ``models/gpen``, ``models/facedetection``, and
``models/facerestore_models`` where other face-restoration packs (GPENO, ReActor, facerestore_cf) keep
GPEN files. Paths from ``extra_model_paths.yaml`` count for every one of them."""
from __future__ import annotations

import os

import folder_paths

MODEL_EXTENSIONS = {".pth", ".pt", ".safetensors"}
FACERESTORE = "facerestore_models"
"""Shared with other packs: only files whose names say GPEN are listed from it (not CodeFormer, GFPGAN ...)."""
FOLDERS = ("gpen", "facedetection", FACERESTORE)


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


def is_gpen_file(name: str) -> bool:
    """A weights file whose name says GPEN (``GPEN-BFR-512.pth``, ``sub/gpen_bfr_256.safetensors``)."""
    base = os.path.basename(name)
    return "gpen" in base.lower() and os.path.splitext(base)[1].lower() in MODEL_EXTENSIONS


def gpen_files() -> list[str]:
    """Every file of the ``gpen`` folders, then the GPEN-named files of the ``facerestore_models`` folders."""
    names = list(folder_paths.get_filename_list("gpen"))
    shared = [n for n in folder_paths.get_filename_list(FACERESTORE) if is_gpen_file(n) and n not in names]
    return names + shared


def gpen_path(name: str) -> str:
    """Full path of a file listed by :func:`gpen_files` (``gpen`` folders first); the error names the folders."""
    path = folder_paths.get_full_path("gpen", name)
    if path is None and is_gpen_file(name):
        path = folder_paths.get_full_path(FACERESTORE, name)
    if path is None:
        folders = ", ".join([*folder_paths.get_folder_paths("gpen"), *folder_paths.get_folder_paths(FACERESTORE)])
        raise FileNotFoundError(
            f"GPEN model {name!r} not found in {folders}. Put the official GPEN-BFR-512.pth (or another "
            "GPEN generator .pth/.safetensors) in models/gpen (or a GPEN-named file in models/facerestore_models) "
            "and refresh."
        )
    return path


def gpen_folders() -> list[str]:
    """The ``gpen`` folders (e.g. where the official repository's ``ParseNet-latest.pth`` sits beside the weights)."""
    return list(folder_paths.get_folder_paths("gpen"))


def facedetection_folders() -> list[str]:
    """The ``facedetection`` folders: face detectors and face parsers (facexlib's file names)."""
    return list(folder_paths.get_folder_paths("facedetection"))


def parser_folders() -> list[str]:
    """Where a face parser (ParseNet-latest.pth / parsing_parsenet.pth) is looked for."""
    return facedetection_folders() + list(folder_paths.get_folder_paths("gpen"))
