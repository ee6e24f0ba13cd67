"""Where the time of a whole-photo run goes: faces found and restored, seconds per stage, measured runs.

The pipeline fills a :class:`RestoreStats` as it works (it may be read at any progress call, e.g. by
the command line's progress line); :meth:`RestoreStats.summary` is the one line printed per photo.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import torch

from ..runtime.report import RunRecord
from .tracking import TrackCounts

__all__ = ["STAGES", "RestoreStats", "merge_records"]

STAGES = ("detect", "align", "restore", "parse", "paste")
"""The pipeline's stages, in order (the command line adds ``read/write``)."""


@dataclass
class RestoreStats:
    """Live figures of a restoration run.

    Attributes:
        frames_done: frames restored and handed on.
        frames_total: frames the caller announced (None: unknown, a stream).
        faces_found: faces the detector found above the threshold, before the selection.
        faces_selected: faces chosen for restoration (the selection, then the tracks).
        faces_restored: faces through GPEN and pasted so far.
        track: what the tracker changed (faces bridged, false faces dropped, scene cuts); None before the
            first frame.
        seconds: wall seconds per stage of :data:`STAGES` (a stage on CUDA is synchronised before it is
            timed, so each stage carries its own GPU work).
        measure: measure GPEN's peak memory (:class:`gpen_core.runtime.memory.PeakMeter`: cheap on CUDA, slow
            live-tensor counting on the CPU); the records are kept in ``records``.
        records: one :class:`RunRecord` per measured GPEN call (a face batch).
        phase_peaks: when measured, the peak bytes of each phase above what it found allocated:
            ``detect`` (a frame's detection) and ``restore`` (a chunk of frames: crops, both networks, paste).
        started: ``time.perf_counter()`` at creation (for the elapsed time and the ETA).
    """

    frames_total: int | None = None
    measure: bool = False
    frames_done: int = 0
    faces_found: int = 0
    faces_selected: int = 0
    faces_restored: int = 0
    track: TrackCounts | None = None
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    records: list[RunRecord] = field(default_factory=list)
    phase_peaks: dict[str, int] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)

    @contextmanager
    def stage(self, name: str, device: torch.device | None = None) -> Iterator[None]:
        """Time a stage (``with stats.stage("restore", model.device): ...``)."""
        if device is not None and device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        try:
            yield
        finally:
            if device is not None and device.type == "cuda":
                torch.cuda.synchronize(device)
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def eta(self) -> float | None:
        """Seconds left, from the faces (within a photo) or the frames (a clip) done so far; None if unknown."""
        if self.frames_total and self.frames_total > 1 and self.frames_done:
            return self.elapsed * (self.frames_total - self.frames_done) / self.frames_done
        if self.faces_selected and self.faces_restored:
            return self.elapsed * (self.faces_selected - self.faces_restored) / self.faces_restored
        return None

    @property
    def record(self) -> RunRecord | None:
        """The measured runs as one record, with the whole-run peak (None when nothing was measured)."""
        merged = merge_records(self.records)
        return None if merged is None else replace(merged, whole_peak_bytes=self.whole_peak_bytes)

    @property
    def whole_peak_bytes(self) -> int | None:
        """The highest phase peak (None when nothing was measured)."""
        return max(self.phase_peaks.values()) if self.phase_peaks else None

    def summary(self, detector: str, mask: str, extra: dict[str, float] | None = None, peak: str | None = None) -> str:
        """One line: faces found and restored, detector, mask, seconds per stage, peak memory.

        Args:
            detector, mask: names to show.
            extra: more stages (e.g. ``{"read/write": 0.4}``), shown after the pipeline's.
            peak: the peak memory, in words (:meth:`gpen_core.runtime.report.ProcessPeak.describe`).
        """
        stages = {**self.seconds, **(extra or {})}
        times = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in stages.items())
        frames = ""
        if self.frames_done > 1:
            frames = f"{self.frames_done} frames ({self.frames_done / max(self.elapsed, 1e-9):.2f} fps), "
        tracked = ""
        if self.track is not None and (self.track.bridged or self.track.dropped or self.track.cuts):
            tracked = (f", {self.track.bridged} bridged, {self.track.dropped} dropped as false, "
                       f"{self.track.cuts} scene cut(s)")
        return (f"{frames}{self.faces_found} face(s) found, {self.faces_restored} restored{tracked} ({detector}, "
                f"mask {mask}) in {self.elapsed:.1f} s: {times}" + ("" if peak is None else f"; peak {peak}"))


def merge_records(records: list[RunRecord]) -> RunRecord | None:
    """Several measured GPEN runs as one: the highest peak, the summed time, the last strategy."""
    if not records:
        return None
    precisions = list(dict.fromkeys(r.precision for r in records))
    return RunRecord(records[-1].device, max(r.peak_bytes for r in records), records[-1].peak_method,
                     sum(r.seconds for r in records), records[-1].strategy, " / ".join(precisions))
