"""From a name to a weights file: ComfyUI's models folders, the official names, a download when one is missing.

Where the models folders are (the ComfyUI ``models`` folder, holding ``gpen/`` and
``facedetection/``), in this order: the folders passed (``--models-dir``), ``GPEN_MODELS_DIR``
(several separated by ``os.pathsep``), and the ``models`` folder of the ComfyUI whose
``custom_nodes`` holds this pack. Downloads go to the first one; ``GPEN_NO_DOWNLOAD=1`` turns
them off (the "put the file here" errors then say where the file goes and where it comes from).
Nothing here imports ComfyUI: the nodes pass their own folder lists.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from functools import partial
from pathlib import Path

from ..face.detection.catalog import DETECTORS
from ..face.masks import mask_mode
from ..face.parsing.load import find_parser_weights
from ..network_entry import NetworkEntry, entry_named, find_named
from ..official_files import (
    AUTO_DETECTOR,
    AUTO_PARSER,
    FolderKind,
    OfficialFile,
    download_url,
    official_file,
    official_names,
    require_official,
)
from .download import Progress, download_file
from .verify import check_official_file

log = logging.getLogger(__name__)

NO_DOWNLOAD_ENV = "GPEN_NO_DOWNLOAD"
"""``GPEN_NO_DOWNLOAD=1``: never download (the pack then only uses files already on disk)."""
MODELS_DIR_ENV = "GPEN_MODELS_DIR"
"""ComfyUI ``models`` folder(s) for the command line, after ``--models-dir``."""
SEARCHED_SUBFOLDERS: dict[str, tuple[str, ...]] = {
    "gpen": ("gpen", "facerestore_models"),  # other face-restore packs keep GPEN files in facerestore_models
    "facedetection": ("facedetection", "gpen"),  # yangxy/GPEN keeps ParseNet-latest.pth beside its weights
}
"""The subfolders of each models folder searched for a kind of file, the download destination first."""
_OFF = ("1", "true", "yes", "on")
_ON = ("", "0", "false", "no", "off")


class WeightsNotFoundError(FileNotFoundError):
    """An official file is not on disk and may not be downloaded; the message says where to put it and its URL."""


def downloads_allowed() -> bool:
    """False when ``GPEN_NO_DOWNLOAD`` is ``1``/``true``/``yes``/``on``.

    Raises:
        ValueError: any other value than those or ``0``/``false``/``no``/``off``/empty.
    """
    value = os.environ.get(NO_DOWNLOAD_ENV, "").strip().lower()
    if value in _ON:
        return True
    if value in _OFF:
        return False
    raise ValueError(f"{NO_DOWNLOAD_ENV}={value!r} is not understood: set it to 1 to turn downloads off, or to 0 "
                     "(or unset it) to allow them")


def comfyui_models_dir(pack_root: str | os.PathLike | None = None) -> Path | None:
    """``ComfyUI/models`` when the pack sits in ``ComfyUI/custom_nodes/<pack>``, else None.

    Args:
        pack_root: the pack's folder (default: the one holding this ``gpen_core``, as imported,
            so a pack linked into ``custom_nodes`` counts when run from there).
    """
    root = Path(pack_root) if pack_root is not None else Path(os.path.abspath(__file__)).parents[2]
    if root.parent.name != "custom_nodes":
        return None
    return root.parent.parent / "models"


def models_dirs(explicit: Iterable[str | os.PathLike] = ()) -> list[Path]:
    """The ComfyUI ``models`` folders, in order: ``explicit``, ``GPEN_MODELS_DIR``, the pack's ComfyUI."""
    found = [Path(d).expanduser() for d in explicit]
    found += [Path(d).expanduser() for d in os.environ.get(MODELS_DIR_ENV, "").split(os.pathsep) if d.strip()]
    comfy = comfyui_models_dir()
    if comfy is not None:
        found.append(comfy)
    unique: list[Path] = []
    for d in found:
        if d not in unique:
            unique.append(d)
    return unique


def search_folders(kind: FolderKind, dirs: Sequence[Path]) -> list[Path]:
    """Where files of ``kind`` are looked for: :data:`SEARCHED_SUBFOLDERS` of each models folder, in order."""
    return [d / sub for d in dirs for sub in SEARCHED_SUBFOLDERS[kind]]


def find_file(file_name: str, folders: Iterable[str | os.PathLike]) -> Path | None:
    """``folder / file_name`` in the first folder that has it (names compared case-insensitively, the exact
    spelling first: :func:`gpen_core.network_entry.find_named`), or None."""
    for folder in folders:
        found = find_named(folder, (file_name,))
        if found is not None:
            return found
    return None


def fetch_official(
    entry: OfficialFile,
    search: Sequence[str | os.PathLike],
    *,
    into: str | os.PathLike | None = None,
    allow_download: bool = True,
    progress: Progress | None = None,
) -> Path:
    """The file of ``entry``: found in ``search``, else downloaded (verified) into ``into``.

    Args:
        entry: an official file (:data:`.official.OFFICIAL_FILES`).
        search: folders to look in, in order.
        into: the folder to download into (default: the first of ``search``).
        allow_download: False: only look (as ``GPEN_NO_DOWNLOAD=1``).
        progress: ``progress(done_bytes, total_bytes)`` while downloading.

    Raises:
        WeightsNotFoundError: not on disk, and downloads are off (message: where to put it, its URL).
        FileNotFoundError: no folder was given at all.
        DownloadError: the download failed (see :func:`.download.download_file`).
    """
    found = find_file(entry.file_name, search)
    if found is not None:
        return found
    target_dir = Path(into) if into is not None else (Path(search[0]) if search else None)
    if target_dir is None:
        raise FileNotFoundError(
            f"{entry.name} ({entry.file_name}) cannot be looked for: no models folder is known. Pass --models-dir "
            f"(ComfyUI's models folder, or any folder to keep weights in) or set {MODELS_DIR_ENV}."
        )
    url = download_url(entry)
    if not (allow_download and downloads_allowed()):
        where = ", ".join(str(f) for f in search) or "(no folders)"
        off = f" Automatic downloads are off ({NO_DOWNLOAD_ENV} is set)." if not downloads_allowed() else ""
        raise WeightsNotFoundError(
            f"{entry.name} needs the file {entry.file_name}, which was not found in: {where}.{off} Download it "
            f"from {url} and put it in {target_dir}."
        )
    log.info("%s is not on disk: downloading %s into %s", entry.name, url, target_dir)
    verify = partial(check_official_file, entry)
    return download_file(url, target_dir / entry.file_name, verify=verify, progress=progress).path


def resolve_weights(
    name_or_path: str | os.PathLike,
    kind: FolderKind,
    models_dirs_given: Iterable[str | os.PathLike] = (),
    *,
    allow_download: bool = True,
    progress: Progress | None = None,
) -> Path:
    """The weights file a user named: an existing path, a file in the models folders, or an official file
    downloaded into the first models folder.

    Args:
        name_or_path: a path, a file name in the models folders (``my-gpen.pth``), or an official
            name (``GPEN-BFR-512``, ``GPEN-BFR-512.pth``, ``retinaface_resnet50``, ``ParseNet-latest``).
        kind: ``"gpen"`` (generators) or ``"facedetection"`` (detectors, parsers).
        models_dirs_given: ``--models-dir`` values (ComfyUI ``models`` folders), before
            ``GPEN_MODELS_DIR`` and the pack's ComfyUI (:func:`models_dirs`).
        allow_download: False: never download (also when ``GPEN_NO_DOWNLOAD=1``).
        progress: ``progress(done_bytes, total_bytes)`` while downloading.

    Raises:
        FileNotFoundError: not a file, not in the folders, and not an official name (the message
            lists the folders and the official names); :class:`WeightsNotFoundError` for an
            official file when downloads are off.
        ValueError: an official name of another kind (e.g. a detector given as a GPEN model).
        DownloadError: the download failed.
    """
    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    if path.is_file():
        return path
    entry = official_file(text)
    if entry is not None and entry.folder != kind:
        raise ValueError(f"{entry.name} is a {entry.network} file (models/{entry.folder}), not one for models/{kind}")
    folders = search_folders(kind, models_dirs(models_dirs_given))
    if entry is not None:
        return fetch_official(entry, folders, allow_download=allow_download, progress=progress)
    if path.parent != Path(".") or path.is_absolute():
        raise FileNotFoundError(f"no such file: {path}")
    found = find_file(text, folders)
    if found is not None:
        return found
    where = ", ".join(str(f) for f in folders) or "(no models folder: pass --models-dir or set GPEN_MODELS_DIR)"
    raise FileNotFoundError(
        f"'{text}' is not a file, and not in {where}. Official names, downloaded when missing: "
        f"{', '.join(official_names(kind))}."
    )


def fetch_detector_weights(
    detector: str, folders: Sequence[str | os.PathLike], *, into: str | os.PathLike | None = None,
    progress: Progress | None = None,
) -> Path | None:
    """Put on disk the RetinaFace file a detector choice needs, before ``load_detector`` looks for it.

    ``auto`` fetches RetinaFace ResNet-50 when no published detector's file is in ``folders``; a detector
    named with a published file (``retinaface_resnet50`` / ``retinaface_mobile0.25`` and their aliases) fetches
    its own file.
    ``mtcnn``, paths, and everything when downloads are off (``GPEN_NO_DOWNLOAD=1``) do nothing,
    so the loader's own choice and errors stay as they are.

    Args:
        detector: the detector option (``auto``, a name, or a path).
        folders: where ``load_detector`` will look (e.g. ``models/facedetection``).
        into: the folder to download into (default: the first of ``folders``).
        progress: ``progress(done_bytes, total_bytes)`` while downloading.

    Returns:
        The file found or downloaded, or None when nothing was needed or allowed.
    """
    if not downloads_allowed():
        return None
    if detector.strip().lower() == "auto":
        published = [entry for entry in DETECTORS if official_file(entry.name) is not None]
        if any(entry.find(folders) is not None for entry in published):
            return None  # auto takes the one on disk
        chosen: NetworkEntry | None = entry_named(DETECTORS, AUTO_DETECTOR)
    else:
        chosen = entry_named(DETECTORS, detector)
    official = None if chosen is None else official_file(chosen.name)
    if official is None:  # mtcnn, a path: nothing to fetch
        return None
    return fetch_official(official, folders, into=into, progress=progress)


def fetch_parser_weights(
    mask: str, folders: Sequence[str | os.PathLike], *, into: str | os.PathLike | None = None,
    progress: Progress | None = None,
) -> Path | None:
    """Put a ParseNet file on disk for the ``auto`` and ``parse`` masks when none is in ``folders``.

    Downloads ``ParseNet-latest.pth`` (GPEN's own file). ``box``, and everything when downloads
    are off, do nothing (``auto`` then falls back to the box as before; ``parse`` raises the
    parser loader's "put the file here" error).

    Returns:
        The file found or downloaded, or None when none is needed or allowed.
    """
    if mask_mode(mask).parser == "never" or not downloads_allowed():
        return None
    found = find_parser_weights(folders)
    if found is not None:
        return found
    return fetch_official(require_official(AUTO_PARSER), folders, into=into, progress=progress)
