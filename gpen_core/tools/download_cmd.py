"""``gpen download [NAME ...|--all] [--models-dir DIR]``: fetch and verify official weights.

Each file goes to ``<models dir>/<gpen|facedetection>/`` of the first models folder (``--models-dir``,
then ``GPEN_MODELS_DIR``, then the ComfyUI whose ``custom_nodes`` holds this pack), with a tqdm
progress bar; a file already there is left as it is (and compared with its download record, if it
has one). Exit status: 0 every file is in place, 1 some failed (the others were placed), 2 nothing
was tried (an unknown name, no models folder, downloads turned off).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..digests import changed_since_recorded, recorded_sha256
from ..official_files import BASE_URL_ENV, OFFICIAL_FILES, OfficialFile, official_file, official_names
from ..zoo.download import DownloadError
from ..zoo.locate import (
    MODELS_DIR_ENV,
    NO_DOWNLOAD_ENV,
    downloads_allowed,
    fetch_official,
    find_file,
    models_dirs,
    search_folders,
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def add_download_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """The ``download`` subcommand of :mod:`gpen_core.tools.cli`."""
    p = sub.add_parser(
        "download", parents=[common], help="fetch and verify official weights into ComfyUI's models folders",
        description=f"Official files: {', '.join(official_names())}. Each is checked after the download (read "
                    "safely; network and size read from its shapes) and its SHA-256 recorded beside it "
                    f"(<file>.sha256). {BASE_URL_ENV}=URL fetches every file from URL/<file name> (a mirror); "
                    f"{NO_DOWNLOAD_ENV}=1 turns downloads off. Exit status 0: all in place, 1: some failed, "
                    "2: nothing tried.")
    p.add_argument("names", nargs="*", metavar="NAME", help="official names (or file names), e.g. GPEN-BFR-512")
    p.add_argument("--all", action="store_true", help="every official file")
    p.add_argument("--models-dir", action="append", default=None,
                   help=f"ComfyUI's models folder, or any folder to keep weights in (repeatable; the first receives "
                        f"the downloads; default: {MODELS_DIR_ENV}, then the ComfyUI this pack sits in)")
    p.set_defaults(func=cmd_download)


def cmd_download(args: argparse.Namespace) -> int:
    entries, problem = _chosen(args)
    if problem is None and not downloads_allowed():
        problem = f"downloads are turned off ({NO_DOWNLOAD_ENV} is set): unset it, or place the files by hand"
    dirs = models_dirs(args.models_dir or ())
    if problem is None and not dirs:
        problem = (f"no models folder: pass --models-dir DIR (ComfyUI's models folder, or any folder) or set "
                   f"{MODELS_DIR_ENV}")
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    failed = [entry.name for entry in entries if not _place(entry, search_folders(entry.folder, dirs))]
    if failed:
        print(f"failed: {', '.join(failed)} (see the errors above); the others are in place", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _chosen(args: argparse.Namespace) -> tuple[list[OfficialFile], str | None]:
    """The entries asked for, or why the command line is wrong."""
    if args.all and args.names:
        return [], "give names or --all, not both"
    if args.all:
        return list(OFFICIAL_FILES), None
    if not args.names:
        return [], f"name the files to download, or pass --all; official names: {', '.join(official_names())}"
    unknown = [name for name in args.names if official_file(name) is None]
    if unknown:
        return [], f"not official names: {', '.join(unknown)}; official names: {', '.join(official_names())}"
    entries: list[OfficialFile] = []
    for name in args.names:
        entry = official_file(name)
        if entry is not None and entry not in entries:
            entries.append(entry)
    return entries, None


def _place(entry: OfficialFile, folders: list[Path]) -> bool:
    """Download ``entry`` into ``folders[0]`` unless it is in ``folders``; print what happened; False on failure."""
    existing = find_file(entry.file_name, folders)
    if existing is not None:
        changed = changed_since_recorded(existing)
        if changed:
            print(f"error: {entry.name}: {changed}", file=sys.stderr)
            return False
        print(f"{entry.name}: already there: {existing}")
        return True
    progress = TqdmProgress(entry.file_name)
    try:
        path = fetch_official(entry, folders, progress=progress)
    except DownloadError as err:
        print(f"error: {entry.name}: {err}", file=sys.stderr)
        return False
    finally:
        progress.close()
    print(f"{entry.name}: {path} (sha256 {recorded_sha256(path)})")
    return True


class TqdmProgress:
    """``progress(done_bytes, total_bytes)`` shown as a tqdm bar on stderr (created on the first call)."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.bar: Any = None

    def __call__(self, done: int, total: int | None) -> None:
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(total=total, desc=self.label, unit="B", unit_scale=True, unit_divisor=1024,
                            file=sys.stderr, leave=True)
        if done < self.bar.n:  # the server ignored the resume: the file starts over
            self.bar.reset(total=total)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
