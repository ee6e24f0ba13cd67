"""A Ray worker that fails on purpose, for the fault tests of ``gpen enhance --ray`` (importable as
``ray_faults``; the workers import it by name).

It is steered by files in ``<output folder>/../faults/`` (the workers know the output folder from each
job; nothing is passed to them):

* ``started.log``: one line per job started (its source file name and frame): who ran what, how often.
* ``kill``: a source file name; the worker running it writes half of the output's temporary file, then
  ends its own process (SIGKILL: no clean-up runs), once per run (``killed`` marks it done), or on every
  try when the file holds ``always`` on its second line.
* ``hang``: a source file name; the worker running it writes half of the output's temporary file, creates
  ``hanging``, then waits (a write that is in progress when the run is cancelled).
"""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from gpen_core.images.files import partial_path
from gpen_core.tools.batch import Job
from gpen_core.tools.jobs import JobResult
from gpen_core.tools.ray_runner import JobWorker

HANG_SECONDS = 300.0


def faults_dir(job: Job) -> Path:
    return job.target.parent.parent / "faults"


def _claimed(marker: Path) -> bool:
    """Create ``marker``; False when it was there already."""
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


class FaultyWorker(JobWorker):
    def run(self, job: Job) -> JobResult:
        faults = faults_dir(job)
        with open(faults / "started.log", "a", encoding="utf-8") as log:
            log.write(f"{job.source.name} {job.frame}\n")
        kill = (faults / "kill").read_text().split() if (faults / "kill").exists() else []
        hang = (faults / "hang").read_text().strip() if (faults / "hang").exists() else ""
        if job.source.name in (hang, *kill[:1]):
            partial_path(job.target).write_bytes(b"\x89PNG half written")
            if job.source.name == hang:
                (faults / "hanging").touch()
                time.sleep(HANG_SECONDS)
            elif kill[1:] == ["always"] or _claimed(faults / "killed"):
                os.kill(os.getpid(), signal.SIGKILL)
        return super().run(job)
