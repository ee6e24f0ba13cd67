"""The command line's progress line: files done, the current file's faces, elapsed time and ETA."""
from __future__ import annotations

import sys
import time
from typing import TextIO

from ..face.stats import RestoreStats

__all__ = ["ProgressLine", "clock"]

REDRAW_SECONDS = 0.1
"""Least time between two redraws of the line on a terminal (detectors report many stages a second)."""
LOG_SECONDS = 5.0
"""Least time between two progress lines when the stream is not a terminal (a log file, a pipe)."""


def clock(seconds: float) -> str:
    """``1:02`` / ``1:02:03`` for a duration in seconds."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class ProgressLine:
    """One line on ``stream`` (stderr), rewritten in place::

        enhance [######              ] 1/3 files | solvay-1927.png: face 12/29 | 1:02 elapsed, ETA 1:30
        enhance [######              ] 1/3 files | clip.mp4: frame 120/750, 4.10 fps | 0:31 elapsed, ETA 2:34

    The ETA comes from the faces (or frames) of the current file, else from the files done. Messages
    (:meth:`message`) end the line first, so nothing is printed into the middle of it. When the stream is
    not a terminal (a log file, a pipe), each state is a line of its own, at most one per
    :data:`LOG_SECONDS` (and at every file's start and end).

    Args:
        label: the command, shown first.
        total: the number of files (jobs).
        stream: where to write.
    """

    def __init__(self, label: str, total: int, stream: TextIO | None = None) -> None:
        self.label, self.total = label, total
        self.stream = stream if stream is not None else sys.stderr
        self.done = 0
        self.name = ""
        self.stats: RestoreStats | None = None
        self.fraction = 0.0
        """The current file's work done, from the pipeline's ``progress(done, total)``."""
        self.started = time.perf_counter()
        self._drawn = 0.0
        self._open = False
        self.terminal = bool(getattr(self.stream, "isatty", lambda: False)())

    def start(self, name: str, stats: RestoreStats | None = None) -> None:
        """A file begins (``stats``: its live figures, read at each redraw)."""
        self.name, self.stats, self.fraction = name, stats, 0.0
        self.draw(force=True)

    def update(self, done: int = 0, total: int = 0) -> None:
        """A ``progress(done, total)`` callback for the pipeline: redraws at most every :data:`REDRAW_SECONDS`."""
        if total > 0:
            self.fraction = min(1.0, done / total)
        self.draw()

    def finish(self) -> None:
        """The current file is done."""
        self.done += 1
        self.name, self.stats, self.fraction = "", None, 0.0
        self.draw(force=True)

    def draw(self, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self._drawn < (REDRAW_SECONDS if self.terminal else LOG_SECONDS):
            return
        self._drawn = now
        filled = int(20 * self.done / max(self.total, 1))
        parts = [f"{self.label} [{'#' * filled}{' ' * (20 - filled)}] {self.done}/{self.total} files"]
        stats = self.stats
        eta = None
        if self.name:
            what = self.name
            eta = stats.eta() if stats is not None else None
            if stats is not None and stats.frames_total and stats.frames_total > 1:
                # a clip: frames as the pipeline's work done (its chunks hand frames on several at a time)
                frames = self.fraction * stats.frames_total
                what += f": frame {int(frames)}/{stats.frames_total}"
                if frames >= 1:
                    what += f", {frames / max(stats.elapsed, 1e-9):.2f} fps"
                    eta = stats.elapsed * (1 - self.fraction) / self.fraction
            elif stats is not None and stats.faces_selected:
                what += f": face {stats.faces_restored}/{stats.faces_selected}"
            parts.append(what)
        elapsed = now - self.started
        if eta is None and self.done and self.done < self.total:
            eta = elapsed * (self.total - self.done) / self.done
        parts.append(f"{clock(elapsed)} elapsed" + ("" if eta is None else f", ETA {clock(eta)}"))
        if self.terminal:
            print("\r" + " | ".join(parts) + "\x1b[K", end="", file=self.stream, flush=True)
            self._open = True
        else:
            print(" | ".join(parts), file=self.stream, flush=True)

    def end(self) -> None:
        """End the line (a newline), if one is drawn."""
        if self._open:
            print(file=self.stream, flush=True)
            self._open = False

    def message(self, text: str) -> None:
        """Print ``text`` on a line of its own (the progress line is ended first, then redrawn)."""
        was_open = self._open
        self.end()
        print(text, file=self.stream, flush=True)
        if was_open:
            self.draw(force=True)
