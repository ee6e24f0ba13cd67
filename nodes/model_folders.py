"""Model folders in ComfyUI's ``folder_paths``: ``models/gpen``, ``models/facedetection``, and
``models/facerestore_models`` where other face-restoration packs (GPENO, ReActor, facerestore_cf) keep
GPEN files. Paths from ``extra_model_paths.yaml`` count for every one of them.

Official files not on disk are offered too (``GPEN-BFR-1024.pth (download)``) and fetched, verified,
into ComfyUI's own ``models/<folder>`` on first use, with ComfyUI's progress bar
(:mod:`gpen_core.zoo`); ``GPEN_NO_DOWNLOAD=1`` turns that off."""
from __future__ import annotations

import os
from pathlib import Path

import folder_paths

from ..gpen_core.official_files import OFFICIAL_FILES, OfficialFile, official_file
from ..gpen_core.zoo.locate import fetch_detector_weights, fetch_official, fetch_parser_weights
from .glue import download_progress

DOWNLOAD_MARK = " (download)"
"""Appended to the official files of the loader's list that are not on disk yet."""
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
        default = default_folder(name)
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
    """Every file of the ``gpen`` folders, then the GPEN-named files of the ``facerestore_models`` folders,
    then the official GPEN files not on disk, marked with :data:`DOWNLOAD_MARK`."""
    names = list(folder_paths.get_filename_list("gpen"))
    shared = [n for n in folder_paths.get_filename_list(FACERESTORE) if is_gpen_file(n) and n not in names]
    missing = [f"{e.file_name}{DOWNLOAD_MARK}" for e in OFFICIAL_FILES
               if e.folder == "gpen" and _on_disk(e.file_name) is None]
    return names + shared + missing


def _on_disk(name: str) -> str | None:
    path = folder_paths.get_full_path("gpen", name)
    if path is None and is_gpen_file(name):
        path = folder_paths.get_full_path(FACERESTORE, name)
    return path


def _official_gpen(name: str) -> OfficialFile | None:
    """The official GPEN generator file called ``name`` (None: not one)."""
    entry = official_file(name)
    return entry if entry is not None and entry.folder == "gpen" else None


def is_known_gpen_name(name: str) -> bool:
    """A name the loader accepts: one of :func:`gpen_files`, or an official GPEN file with or without the mark
    (so a workflow saved before or after the download still validates)."""
    return _official_gpen(name.removesuffix(DOWNLOAD_MARK)) is not None or name in gpen_files()


def gpen_path(name: str) -> str:
    """Full path of a file listed by :func:`gpen_files` (``gpen`` folders first); the error names the folders.

    An official file not on disk (``GPEN-BFR-1024.pth (download)``, or its plain name) is downloaded
    into ``models/gpen`` first, with ComfyUI's progress bar, unless ``GPEN_NO_DOWNLOAD=1``.

    Raises:
        FileNotFoundError: not on disk (and not official, or downloads are off: the message names the
            folder to put it in and its URL).
        DownloadError: the download failed (the message says how to place the file by hand).
    """
    name = name.removesuffix(DOWNLOAD_MARK)
    path = _on_disk(name)
    if path is not None:
        return path
    search = [*folder_paths.get_folder_paths("gpen"), *folder_paths.get_folder_paths(FACERESTORE)]
    entry = _official_gpen(name)
    if entry is not None:
        return str(fetch_official(entry, search, into=default_folder("gpen"), progress=download_progress()))
    raise FileNotFoundError(
        f"GPEN model {name!r} not found in {', '.join(search)}. Put the official GPEN-BFR-512.pth (or another "
        "GPEN generator .pth/.safetensors) in models/gpen (or a GPEN-named file in models/facerestore_models) "
        "and refresh."
    )


def gpen_folders() -> list[str]:
    """The ``gpen`` folders (e.g. where the official repository's ``ParseNet-latest.pth`` sits beside the weights)."""
    return list(folder_paths.get_folder_paths("gpen"))


def facedetection_folders() -> list[str]:
    """The ``facedetection`` folders: face detectors and face parsers (facexlib's file names)."""
    return list(folder_paths.get_folder_paths("facedetection"))


def parser_folders() -> list[str]:
    """Where a face parser (ParseNet-latest.pth / parsing_parsenet.pth) is looked for."""
    return facedetection_folders() + list(folder_paths.get_folder_paths("gpen"))


def default_folder(name: str) -> str:
    """ComfyUI's own ``models/<name>``: where downloads go (the folders of ``extra_model_paths.yaml`` may be
    shared or read-only)."""
    return os.path.join(folder_paths.models_dir, name)


def fetch_auto_detector(detector: str) -> Path | None:
    """Before loading a face detector: put the RetinaFace file that ``detector`` needs on disk.

    ``auto`` fetches RetinaFace ResNet-50 into ``models/facedetection`` when no RetinaFace file is in the
    ``facedetection`` folders; ``retinaface_resnet50`` / ``retinaface_mobile0.25`` fetch their own file;
    ``mtcnn``, a path, and ``GPEN_NO_DOWNLOAD=1`` do nothing (the loader's errors then say what to do).
    Returns the file found or fetched, or None.
    """
    return fetch_detector_weights(detector, facedetection_folders(), into=default_folder("facedetection"),
                                  progress=download_progress())


def fetch_auto_parser(mask: str) -> Path | None:
    """Before building the paste mask: for ``auto`` and ``parse``, put ``ParseNet-latest.pth`` into
    ``models/facedetection`` when no ParseNet file is in :func:`parser_folders`. ``box`` and
    ``GPEN_NO_DOWNLOAD=1`` do nothing. Returns the file found or fetched, or None."""
    return fetch_parser_weights(mask, parser_folders(), into=default_folder("facedetection"),
                                progress=download_progress())
