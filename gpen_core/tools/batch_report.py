"""What a batch run tells the user, whoever runs its jobs (this process or a Ray cluster).

:class:`BatchReport` takes the :class:`~gpen_core.tools.jobs.JobResult` of each job as it comes
(in any order), draws the progress line, prints each photo's summary, and at the end adds the
failures to the run's :class:`~gpen_core.tools.batch.Failures` in job order, so that the local
and the distributed runner print the same failure list and return the same exit status.
"""
from __future__ import annotations

import sys

from ..face.stats import RestoreStats
from .batch import Failures, Job
from .jobs import JobResult, job_label
from .progress import ProgressLine

__all__ = ["DISK_FULL", "BatchReport"]

DISK_FULL = "not processed: the output disk is full"
"""The reason given to the jobs left when a write found the disk full."""


class BatchReport:
    """Progress, per-photo messages, failures and the count written of one batch.

    Args:
        jobs: every job of the run, in planned order (indices refer to it).
        failures: where the failures go (after those found while planning), in job order, at :meth:`finish`.
        debug: print the traceback of unexpected errors as they come.
    """

    def __init__(self, jobs: list[Job], failures: Failures, *, debug: bool = False) -> None:
        self.jobs = jobs
        self.failures = failures
        self.debug = debug
        self.line = ProgressLine("enhance", len(jobs))
        self.written: list[Job] = []
        self.disk_full = False
        self._failed: dict[int, str] = {}
        self._no_faces: dict[int, str] = {}
        self._recorded: set[int] = set()

    def start(self, index: int, stats: RestoreStats) -> None:
        """Job ``index`` begins in this process (``stats``: its live figures, shown on the line)."""
        job = self.jobs[index]
        self.line.start(job.source.name if job.frame is None else f"{job.source.name} (frame {job.frame + 1})", stats)

    def record(self, index: int, result: JobResult) -> bool:
        """Job ``index`` ended with ``result``. Returns True when no later job can succeed (the disk is full)."""
        self.line.finish()
        self._recorded.add(index)
        label = job_label(self.jobs[index])
        if result.summary:  # also for a clip cut short (written up to its break, listed as failed)
            self.line.message(f"{label}: {result.summary}")
        if result.ok:
            self.written.append(self.jobs[index])
            if result.faces == 0:
                self._no_faces[index] = label
            return False
        if self.debug and result.traceback:
            self.line.message(result.traceback.rstrip())
        assert result.error is not None
        self._failed[index] = result.error
        self.disk_full = self.disk_full or result.disk_full
        return result.disk_full

    def fail_unrecorded(self, reason: str) -> None:
        """Every job without a result yet failed for ``reason`` (e.g. :data:`DISK_FULL`)."""
        for index in range(len(self.jobs)):
            if index not in self._recorded:
                self._recorded.add(index)
                self._failed[index] = reason

    def end_line(self) -> None:
        """End the progress line (also when the run is interrupted)."""
        self.line.end()

    def finish(self) -> list[Job]:
        """Add the failures in job order, list the photos without faces; returns the jobs whose outputs were
        written, in the order they ended."""
        for index in sorted(self._failed):
            self.failures.add(job_label(self.jobs[index]), self._failed[index])
        if self._no_faces:
            names = [self._no_faces[index] for index in sorted(self._no_faces)]
            print(f"no face found (written unchanged) in {len(names)} image(s): {', '.join(names)}", file=sys.stderr)
        return self.written

    def succeeded(self, index: int) -> bool:
        """Whether job ``index`` wrote its outputs."""
        return index in self._recorded and index not in self._failed
