"""SHA-256 of weight files, and the ``<file>.sha256`` sidecar a verified download leaves beside its file.

No hash of any official file is pinned in this package (none could be checked here). Instead the
downloader records the SHA-256 of the first download that passed verification in a sidecar
(``GPEN-BFR-512.pth.sha256``, in ``sha256sum`` format, so ``sha256sum -c`` reads it too), and every
later load compares the file with it (:func:`changed_since_recorded`, called by
:func:`gpen_core.weights.read_file`): a file damaged or replaced on disk after its download is
reported instead of loaded. Files placed by hand have no sidecar and are not checked.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

SIDECAR_SUFFIX = ".sha256"
CHUNK_BYTES = 1 << 20


def sha256_of(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes, as 64 lowercase hex digits (read in 1 MiB chunks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def sidecar_path(path: str | os.PathLike) -> Path:
    """``<path>.sha256``: where the SHA-256 of a downloaded ``path`` is recorded."""
    path = Path(path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def write_sidecar(path: str | os.PathLike, digest: str) -> Path:
    """Record ``digest`` as the SHA-256 of ``path`` (written to a temporary file, then renamed into place)."""
    sidecar = sidecar_path(path)
    temporary = sidecar.with_name(sidecar.name + ".tmp")
    temporary.write_text(f"{digest}  {Path(path).name}\n", encoding="ascii")
    os.replace(temporary, sidecar)
    return sidecar


def recorded_sha256(path: str | os.PathLike) -> str | None:
    """The SHA-256 recorded for ``path`` by its download, or None when there is no sidecar.

    Raises:
        ValueError: the sidecar exists but does not hold a SHA-256 (the message names it).
    """
    sidecar = sidecar_path(path)
    if not sidecar.exists():
        return None
    try:
        text = sidecar.read_text(encoding="ascii", errors="replace")
    except OSError as err:
        raise ValueError(f"{sidecar} cannot be read ({err}); delete it to load {Path(path).name} unchecked") from err
    words = text.split()
    digest = words[0].lower() if words else ""
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError(
            f"{sidecar} does not hold a SHA-256 (it starts {text[:40]!r}); delete it to load "
            f"{Path(path).name} unchecked, or delete both files and download again"
        )
    return digest


def changed_since_recorded(path: str | os.PathLike) -> str | None:
    """Why ``path`` must not be loaded: its bytes differ from the SHA-256 its download recorded.

    Returns None when there is no sidecar or the file matches it; otherwise a message saying what
    differs and what to do.
    """
    path = Path(path)
    try:
        recorded = recorded_sha256(path)
    except ValueError as err:
        return str(err)
    if recorded is None:
        return None
    actual = sha256_of(path)
    if actual == recorded:
        return None
    sidecar = sidecar_path(path)
    return (
        f"{path} has changed since it was downloaded and verified: its SHA-256 is now {actual}, but {sidecar.name} "
        f"recorded {recorded}. The file is damaged or was replaced. Delete {path.name} and {sidecar.name} and fetch "
        f"it again (`gpen download {path.name}`, or run the ComfyUI workflow again); if you replaced it on purpose "
        f"with a file you trust, delete only {sidecar.name}."
    )
