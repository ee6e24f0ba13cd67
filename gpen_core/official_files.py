"""The official weight files, declared once: where each is published, where it lands, what it must be.

One entry per file. The downloader (:mod:`gpen_core.zoo.download`), the resolver
(:mod:`gpen_core.zoo.locate`), the ``gpen download`` command, the nodes' model list and the loaders'
"put the file here" messages all read this table. No size or hash is pinned (none could be checked
here): the first download that passes verification records its SHA-256 beside the file
(:mod:`gpen_core.digests`).

This module imports nothing from the package (it sits in the lowest layer: the loaders import it);
the check of a file against its entry is :func:`gpen_core.zoo.verify.check_official_file`.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote

FolderKind = Literal["gpen", "facedetection"]
"""The ComfyUI models subfolder a file lands in (``models/gpen``, ``models/facedetection``)."""
Network = Literal["gpen", "retinaface_resnet50", "retinaface_mobile0.25", "parsenet"]
"""The registry's name of the network a file holds (:data:`gpen_core.zoo.registry.NETWORKS`)."""

GPEN_HOST = "https://public-vigen-video.oss-cn-shanghai.aliyuncs.com/robin/models/"
"""GPEN's release host (yangxy/GPEN README)."""
FACEXLIB_RELEASES = "https://github.com/xinntao/facexlib/releases/download/"
BASE_URL_ENV = "GPEN_WEIGHTS_BASE_URL"
"""When set, every file is fetched from ``<base>/<file name>`` instead (a mirror; the tests' loopback server)."""


@dataclass(frozen=True)
class OfficialFile:
    """One official weights file.

    Attributes:
        name: what users type (``gpen download GPEN-BFR-512``; the detector names of
            :data:`gpen_core.face.detection.DETECTOR_NAMES`).
        file_name: the published file name, kept on disk.
        url: where its project publishes it.
        folder: the models subfolder it lands in.
        network: the network the file must hold (a name of the registry, :mod:`gpen_core.zoo.registry`).
        config: what its tensor shapes must show beyond the network (fields of ``GPENConfig`` /
            ``ParseNetConfig``); a file under this name that shows anything else is refused.
        published_in: where the URL comes from.
    """

    name: str
    file_name: str
    url: str
    folder: FolderKind
    network: Network
    config: Mapping[str, object]
    published_in: str


GPEN_RELEASES: dict[int, tuple[float, float]] = {256: (1, 0.5), 512: (2, 1), 1024: (2, 1), 2048: (2, 1)}
"""``size: (channel_multiplier, narrow)`` of the official GPEN-BFR releases (yangxy/GPEN); the one table
(:data:`gpen_core.arch.config.OFFICIAL_CONFIGS` is this one)."""


def _gpen(size: int, published_in: str) -> OfficialFile:
    name = f"GPEN-BFR-{size}"
    channel_multiplier, narrow = GPEN_RELEASES[size]
    # narrow as the file entries always showed it in messages: 1.0, 0.5
    config = {"size": size, "channel_multiplier": channel_multiplier, "narrow": float(narrow), "style_dim": 512,
              "n_mlp": 8}
    return OfficialFile(name, f"{name}.pth", f"{GPEN_HOST}{name}.pth", "gpen", "gpen", config, published_in)


_PARSENET = {"in_size": 512, "out_size": 512, "min_feat_size": 32, "base_ch": 64, "parsing_ch": 19, "res_depth": 10,
             "ch_range": (32, 256)}
_GPEN_README = "yangxy/GPEN README.md"
_SAME_HOST = ("the GPEN release host under the same name pattern (used by GPENO); yangxy/GPEN's README points to "
              "ModelScope for 1024/2048")

OFFICIAL_FILES: tuple[OfficialFile, ...] = (
    _gpen(256, _GPEN_README),
    _gpen(512, _GPEN_README),
    _gpen(1024, _SAME_HOST),
    _gpen(2048, _SAME_HOST),
    OfficialFile("retinaface_resnet50", "detection_Resnet50_Final.pth",
                 f"{FACEXLIB_RELEASES}v0.1.0/detection_Resnet50_Final.pth", "facedetection", "retinaface_resnet50",
                 {}, "xinntao/facexlib detection/__init__.py"),
    OfficialFile("retinaface_mobile0.25", "detection_mobilenet0.25_Final.pth",
                 f"{FACEXLIB_RELEASES}v0.1.0/detection_mobilenet0.25_Final.pth", "facedetection",
                 "retinaface_mobile0.25", {}, "xinntao/facexlib detection/__init__.py"),
    OfficialFile("ParseNet-latest", "ParseNet-latest.pth", f"{GPEN_HOST}ParseNet-latest.pth", "facedetection",
                 "parsenet", _PARSENET, _GPEN_README),
    OfficialFile("parsing_parsenet", "parsing_parsenet.pth", f"{FACEXLIB_RELEASES}v0.2.2/parsing_parsenet.pth",
                 "facedetection", "parsenet", _PARSENET, "xinntao/facexlib parsing/__init__.py"),
)

AUTO_DETECTOR = "retinaface_resnet50"
"""What the ``auto`` face detector fetches when no RetinaFace file is on disk."""
AUTO_PARSER = "ParseNet-latest"
"""What the ``auto`` and ``parse`` masks fetch when no ParseNet file is on disk (GPEN's own file)."""


def official_file(name: str) -> OfficialFile | None:
    """The entry whose name or file name is ``name`` (case-insensitive), or None."""
    wanted = name.strip().lower()
    for entry in OFFICIAL_FILES:
        if wanted in (entry.name.lower(), entry.file_name.lower()):
            return entry
    return None


def require_official(name: str) -> OfficialFile:
    """The entry named ``name`` (see :func:`official_file`).

    Raises:
        KeyError: no such entry; the message lists the names.
    """
    entry = official_file(name)
    if entry is None:
        raise KeyError(f"{name!r} is not an official file; known: {', '.join(official_names())}")
    return entry


def official_names(folder: FolderKind | None = None) -> list[str]:
    """The names of the table, in order (only those landing in ``folder`` when given)."""
    return [entry.name for entry in OFFICIAL_FILES if folder is None or entry.folder == folder]


def download_url(entry: OfficialFile) -> str:
    """Where ``entry`` is fetched from: its URL, or ``<GPEN_WEIGHTS_BASE_URL>/<file name>`` when that is set."""
    base = os.environ.get(BASE_URL_ENV, "").strip()
    if not base:
        return entry.url
    return f"{base.rstrip('/')}/{quote(entry.file_name)}"
