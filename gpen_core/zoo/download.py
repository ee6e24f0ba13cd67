"""One downloader for weight files (standard library only), used by the command line and the nodes.

:func:`download_file` streams ``url`` into ``<destination>.part`` beside the destination, resumes
an interrupted transfer with an HTTP ``Range`` request (also across runs: the ``.part`` stays),
treats a body shorter than its ``Content-Length`` as an interruption, verifies the complete file
(the caller's check: for official files, the safe loader and the network/shape check of
:mod:`.verify`), records its SHA-256 in a ``.sha256`` sidecar (:mod:`gpen_core.digests`) and only
then renames it into place. So the final name only ever holds a verified file:

* a refused file (verification failed) leaves nothing behind, not even its ``.part``;
* an interrupted one (connection cut, short body, timeout, Ctrl-C) leaves only its ``.part``;
* an HTTP error, an unreachable host or an unwritable folder leaves nothing new.

Two processes (or threads) fetching the same file take turns on ``<destination>.lock`` (removed
when done): the second finds the first one's file in place, or resumes its ``.part``. Redirects are
followed up to :data:`MAX_REDIRECTS`; a loop is an error. Every error names the URL, the destination
and how to place the file by hand.
"""
from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import re
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..digests import recorded_sha256, sha256_of, sidecar_path, write_sidecar

log = logging.getLogger(__name__)

Progress = Callable[[int, int | None], None]
"""``progress(done_bytes, total_bytes)``; ``total_bytes`` is None when the server does not say."""

CHUNK_BYTES = 1 << 20
MAX_REDIRECTS = 5
MAX_BYTES = 8 << 30
"""Larger than any official file (the largest GPEN release is well under 1 GiB): a bound against a runaway body."""
ATTEMPTS = 3
"""Connections per call: the first, then resumes after an interruption (each must bring new bytes)."""
TIMEOUT_S = 60.0
"""Seconds without a byte before a connection counts as cut."""
LOCK_POLL_S = 0.1
USER_AGENT = "gpen-restore-downloader"


class DownloadError(OSError):
    """A download did not produce the file; the message names the URL, the destination and the manual way."""


class DownloadRefusedError(DownloadError):
    """The file arrived but is not what its name promises (it was deleted, with its ``.part``)."""


class DownloadInterruptedError(DownloadError):
    """The transfer broke off; the bytes received are kept in the ``.part`` file and the next run resumes."""


@dataclass(frozen=True)
class Downloaded:
    """A file in place: its path, SHA-256 and size; ``fetched`` is False when another process had placed it."""

    path: Path
    sha256: str
    size: int
    fetched: bool


def part_path(destination: Path) -> Path:
    """``<destination>.part``: where the bytes of an unfinished download are kept."""
    return destination.with_name(destination.name + ".part")


def lock_path(destination: Path) -> Path:
    """``<destination>.lock``: held while one process downloads ``destination``."""
    return destination.with_name(destination.name + ".lock")


def manual_steps(url: str, destination: Path) -> str:
    """How to place the file by hand (the end of every download error)."""
    return (f"To place it by hand: download {url} with a browser or `curl -L -o` and save it as {destination} "
            f"(or set GPEN_WEIGHTS_BASE_URL to a mirror that serves the same file names).")


def download_file(
    url: str,
    destination: str | os.PathLike,
    *,
    verify: Callable[[Path], None],
    progress: Progress | None = None,
    attempts: int = ATTEMPTS,
    timeout: float = TIMEOUT_S,
) -> Downloaded:
    """Fetch ``url`` into ``destination``, verified, atomically; see the module docstring.

    Args:
        url: ``http(s)://`` address of the file.
        destination: the final path; its folder is created when missing.
        verify: raises (``CheckpointError`` / ``ValueError``) when the complete file is not the
            expected one; called on the ``.part`` file before it is renamed into place.
        progress: called as ``progress(done_bytes, total_bytes)`` after every chunk (also the bytes
            of a resumed ``.part``); it may raise (e.g. to cancel) and the ``.part`` is kept.
        attempts: connections to try in this call when transfers break off (>= 1).
        timeout: seconds without data before a connection counts as cut.

    Returns:
        :class:`Downloaded`. When ``destination`` already exists (e.g. placed by another process
        meanwhile) it is returned as it is, with ``fetched=False``.

    Raises:
        DownloadRefusedError: the file is not what ``verify`` expects.
        DownloadInterruptedError: the transfer broke off ``attempts`` times; the ``.part`` is kept.
        DownloadError: an HTTP error, a redirect loop, an unreachable host, an unwritable folder.
    """
    destination = Path(destination)
    part = part_path(destination)
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DownloadError(_message(url, destination, f"its folder cannot be created ({err})")) from err
    with _exclusive(lock_path(destination), url, destination):
        if destination.exists():
            digest = recorded_sha256(destination) or sha256_of(destination)
            return Downloaded(destination, digest, destination.stat().st_size, fetched=False)
        sidecar_path(destination).unlink(missing_ok=True)  # a stale record of a file that is gone
        digest, size = _fetch(url, part, destination, progress, max(1, attempts), timeout)
        try:
            verify(part)
        except (ValueError, OSError) as err:  # CheckpointError is a ValueError
            part.unlink(missing_ok=True)
            raise DownloadRefusedError(
                _message(url, destination, f"the file that arrived was refused and deleted: {err}")
            ) from err
        _place(part, destination, digest, url)
    log.info("downloaded %s to %s (%d bytes, sha256 %s)", url, destination, size, digest)
    return Downloaded(destination, digest, size, fetched=True)


def _message(url: str, destination: Path, what: str) -> str:
    return f"Download of {url} to {destination} failed: {what}. {manual_steps(url, destination)}"


# ------------------------------------------------------------------------------------------- transfer
class _Cut(Exception):
    """A transfer that broke off after some bytes (or none): worth resuming."""


def _fetch(url: str, part: Path, destination: Path, progress: Progress | None, attempts: int,
           timeout: float) -> tuple[str, int]:
    """Bring ``part`` to the complete body of ``url``; its SHA-256 and size."""
    reason = ""
    for attempt in range(attempts):
        before = part.stat().st_size if part.exists() else 0
        try:
            return _transfer(url, part, destination, progress, timeout)
        except _Cut as cut:
            reason = str(cut)
            after = part.stat().st_size if part.exists() else 0
            log.warning("download of %s interrupted at %d bytes (%s)%s", url, after, reason,
                        "; resuming" if attempt + 1 < attempts else "")
            if after <= before and attempt > 0:
                break  # two connections in a row brought nothing new
    kept = part.stat().st_size if part.exists() else 0
    raise DownloadInterruptedError(_message(
        url, destination, f"the transfer broke off ({reason}); the {kept} bytes received are kept in {part} "
                          "and the next run resumes from them"))


def _transfer(url: str, part: Path, destination: Path, progress: Progress | None,
              timeout: float) -> tuple[str, int]:
    """One connection: append the rest of the body to ``part``. Raises :class:`_Cut` when it breaks off."""
    done = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if done:
        headers["Range"] = f"bytes={done}-"
    try:
        response = _OPENER.open(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as err:
        err.close()
        if err.code == 416 and done:  # the .part is not a prefix the server knows: start over
            part.unlink()
            raise _Cut("the server refused to resume (HTTP 416); starting over") from err
        if 300 <= err.code < 400:
            raise DownloadError(_message(url, destination, f"too many redirects or a redirect loop (HTTP {err.code} "
                                                           f"after at most {MAX_REDIRECTS} redirects)")) from err
        raise DownloadError(_message(url, destination, f"HTTP {err.code} {err.reason}")) from err
    except urllib.error.URLError as err:
        if isinstance(err.reason, (TimeoutError, socket.timeout)):
            raise _Cut(f"no answer within {timeout:g} s") from err
        raise DownloadError(_message(url, destination, f"cannot reach the server ({err.reason}); check the network, "
                                                       "a proxy (HTTPS_PROXY) or use a mirror")) from err
    except (TimeoutError, ConnectionError, http.client.HTTPException) as err:
        raise _Cut(f"{type(err).__name__}: {err}") from err
    with response:
        start, total = _body_range(response, done)
        if total is not None and total > MAX_BYTES:
            raise DownloadError(_message(url, destination, f"the server announces {total} bytes, more than the "
                                                           f"{MAX_BYTES} a weights file may have"))
        return _receive(response, part, start, total, progress, url, destination)


def _body_range(response: http.client.HTTPResponse, done: int) -> tuple[int, int | None]:
    """Where the body starts in the file (``done`` when resumed, else 0) and the file's size if known."""
    length_text = response.headers.get("Content-Length")
    length = int(length_text) if length_text and length_text.isdigit() else None
    if response.status == 206:
        match = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+|\*)", response.headers.get("Content-Range", "").strip())
        if not match or int(match.group(1)) != done:
            raise _Cut(f"the server resumed at the wrong place ({response.headers.get('Content-Range')!r})")
        size = match.group(3)
        return done, int(size) if size != "*" else (done + length if length is not None else None)
    return 0, length  # 200: the whole body (a server that ignores Range sends it all again)


def _receive(response: http.client.HTTPResponse, part: Path, start: int, total: int | None,
             progress: Progress | None, url: str, destination: Path) -> tuple[str, int]:
    """Write the body into ``part`` from byte ``start``; the SHA-256 and size of the complete file."""
    digest = hashlib.sha256()
    if start:
        with part.open("rb") as f:
            while chunk := f.read(CHUNK_BYTES):
                digest.update(chunk)
    done = start
    with part.open("r+b" if start else "wb") as f:
        f.seek(start)
        f.truncate()
        if progress is not None:
            progress(done, total)
        while True:
            try:
                chunk = response.read(CHUNK_BYTES)
            except (TimeoutError, ConnectionError, http.client.HTTPException) as err:
                raise _Cut(f"{type(err).__name__}: {err}") from err
            if not chunk:
                break
            f.write(chunk)
            digest.update(chunk)
            done += len(chunk)
            if done > MAX_BYTES or (total is not None and done > total):
                f.close()
                part.unlink()
                raise DownloadError(_message(url, destination, f"the body is longer than announced ({done} bytes "
                                                               f"so far, {total} announced, {MAX_BYTES} at most)"))
            if progress is not None:
                progress(done, total)
        f.flush()
        os.fsync(f.fileno())
    if total is not None and done < total:
        raise _Cut(f"the body ended after {done} of {total} bytes")
    return digest.hexdigest(), done


class _BoundedRedirects(urllib.request.HTTPRedirectHandler):
    max_redirections = MAX_REDIRECTS
    max_repeats = 1


_OPENER = urllib.request.build_opener(_BoundedRedirects())


# ------------------------------------------------------------------------------------- placing, locking
def _place(part: Path, destination: Path, digest: str, url: str) -> None:
    """Rename the verified ``part`` to ``destination`` (never over an existing file), then record its SHA-256."""
    try:
        os.link(part, destination)  # fails if destination exists: nothing is overwritten
        part.unlink()
    except FileExistsError as err:
        part.unlink(missing_ok=True)
        raise DownloadError(_message(url, destination, "a file appeared under that name during the download; it "
                                                       "was kept and the download discarded")) from err
    except OSError:  # no hard links on this file system
        if destination.exists():
            part.unlink(missing_ok=True)
            raise DownloadError(_message(url, destination, "a file appeared under that name during the download; "
                                                           "it was kept and the download discarded")) from None
        os.replace(part, destination)
    write_sidecar(destination, digest)


@contextlib.contextmanager
def _exclusive(lock: Path, url: str, destination: Path) -> Iterator[None]:
    """Hold ``lock`` (created, locked, and removed at the end) so that one process at a time downloads."""
    waited = False
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise DownloadError(_message(url, destination, f"cannot write in {lock.parent} ({err.strerror}); "
                                                           "choose a writable models folder")) from err
        if not _try_lock(fd):
            os.close(fd)
            if not waited:
                log.warning("waiting for another download of %s (%s)", destination.name, lock)
                waited = True
            time.sleep(LOCK_POLL_S)
            continue
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the previous holder removed this lock file: take the new one
    try:
        yield
    finally:
        if sys.platform == "win32":
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(lock)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(lock)  # while still held: a waiter sees its lock is stale and retries
            os.close(fd)


if sys.platform == "win32":
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True
