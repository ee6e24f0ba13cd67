"""Input files are opened only when they are regular files.

A FIFO (named pipe) would block the reader until some other process writes to it, a device may
never end (``/dev/zero``), a socket cannot be read as a file, and a dangling symbolic link or a
link loop has no content: each is refused with the reason, naming the path, and never read.

:func:`open_regular` checks twice: the path before opening (the reason in words), and the opened
descriptor (a file swapped for a FIFO in between is still refused). It opens with ``O_NONBLOCK``,
so that even a FIFO swapped in at that instant cannot block the ``open`` call itself.
"""
from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO


class NotRegularFileError(ValueError):
    """An input path is not a regular file that can be read; the message names it and says what it is."""


def _kind_problem(mode: int) -> str | None:
    """What a file of ``mode`` (``st_mode``) is, when it is not a regular file; None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "is a folder, not a file"
    if stat.S_ISFIFO(mode):
        return "is a FIFO (named pipe), not a regular file; it is not opened (reading it would wait for a writer)"
    if stat.S_ISCHR(mode):
        return "is a character device, not a regular file"
    if stat.S_ISBLK(mode):
        return "is a block device, not a regular file"
    if stat.S_ISSOCK(mode):
        return "is a socket, not a regular file"
    return "is not a regular file"


def non_regular_reason(path: str | Path) -> str | None:
    """Why ``path`` cannot be read as a regular file (symbolic links followed), or None if it can.

    The reason is a predicate for ``f"{path}: {reason}"``: ``"no such file"``, ``"is a dangling
    symbolic link (to 'x', which does not exist)"``, ``"is a symbolic link loop"``, ``"is a FIFO
    (named pipe) ..."``, ``"is a folder, not a file"``, a device, a socket.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if os.path.islink(path):
            return f"is a dangling symbolic link (to {os.readlink(path)!r}, which does not exist)"
        return "no such file"
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "is a symbolic link loop (the links lead back to each other, never to a file)"
        return f"cannot be read ({err.strerror or err})"
    return _kind_problem(mode)


def open_regular(path: str | Path) -> BinaryIO:
    """``path`` opened for binary reading, only if it is a regular file (the caller closes it).

    Raises:
        NotRegularFileError: ``path`` is missing, a dangling link, a link loop, a folder, a FIFO,
            a device or a socket (see :func:`non_regular_reason`); the message names the path.
        OSError: the file exists but cannot be opened (no permission).
    """
    reason = non_regular_reason(path)
    if reason is not None:
        raise NotRegularFileError(f"{path}: {reason}")
    nonblocking = getattr(os, "O_NONBLOCK", 0)
    descriptor = os.open(path, os.O_RDONLY | nonblocking | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0))
    try:
        reason = _kind_problem(os.fstat(descriptor).st_mode)  # replaced between the two checks: still refused
        if reason is not None:
            raise NotRegularFileError(f"{path}: {reason}")
        if nonblocking:
            os.set_blocking(descriptor, True)
        return os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise
