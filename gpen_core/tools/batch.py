"""Batch planning for the command line: inputs, output names, the output folder, failures.

Everything here runs before any model is loaded, so that a wrong path or option costs nothing:
:func:`collect_inputs` (files and folders), :func:`plan_jobs` (one job per image or per frame),
:func:`select_jobs` (existing outputs: refuse, skip or overwrite; never an input file) and
:class:`OutputFolder` (created and probed for writing; removed again when a run writes nothing).
"""
from __future__ import annotations

import errno
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..images.files import (
    IMAGE_SUFFIXES,
    ImageReadError,
    frame_count,
    frame_output_name,
)


class UsageError(ValueError):
    """A wrong option, path or combination, found before anything was loaded (exit status 2)."""


@dataclass(frozen=True)
class Job:
    """One output image: ``frame`` of ``source`` (None: a single-frame file) written to ``target``."""

    source: Path
    frame: int | None
    target: Path

    @property
    def mask_target(self) -> Path:
        """Where ``--save-mask`` writes the paste mask: ``<target stem>_mask.png``."""
        return self.target.with_name(f"{self.target.stem}_mask.png")


@dataclass
class Failures:
    """Per-file failures of a batch, reported together at the end."""

    items: list[tuple[str, str]] = field(default_factory=list)

    def add(self, source: Path | str, reason: str) -> None:
        self.items.append((str(source), reason))

    def __len__(self) -> int:
        return len(self.items)

    def report(self) -> str:
        lines = [f"{len(self.items)} file(s) failed:"]
        lines += [f"  {source}: {reason}" for source, reason in self.items]
        return "\n".join(lines)


def collect_inputs(paths: list[str]) -> tuple[list[Path], list[Path]]:
    """Image files named or found in folders (not recursive), and the folder entries ignored.

    Files named directly are taken whatever their suffix (an unreadable one fails later, by name);
    in folders, files with a suffix of :data:`IMAGE_SUFFIXES` are taken and other non-hidden
    files are returned as ignored, so that the caller can list them.

    Raises:
        UsageError: an input does not exist, or nothing to read was found.
    """
    files: list[Path] = []
    ignored: list[Path] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            for entry in sorted(path.iterdir()):
                if entry.is_file() and entry.suffix.lower() in IMAGE_SUFFIXES:
                    files.append(entry)
                elif entry.is_file() and not entry.name.startswith("."):
                    ignored.append(entry)
        elif path.exists():
            files.append(path)
        else:
            raise UsageError(f"input not found: {path}")
    if not files:
        raise UsageError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {', '.join(paths)}")
    unique: dict[Path, Path] = {}
    for f in files:  # the same file named twice (or via a folder) is read once
        unique.setdefault(f.resolve(), f)
    return list(unique.values()), ignored


def plan_jobs(files: list[Path], out_dir: Path, suffix: str, failures: Failures) -> list[Job]:
    """One :class:`Job` per image, one per frame of animations / multi-page files.

    Frame counts come from the file headers (Pillow walks GIF frames); a file that cannot be
    opened is recorded in ``failures`` and gets no job.
    """
    jobs = []
    for source in files:
        try:
            frames = frame_count(source)
        except ImageReadError as err:
            failures.add(source, str(err).removeprefix(f"{source}: "))
            continue
        if frames == 1:
            jobs.append(Job(source, None, out_dir / frame_output_name(source.stem, None, suffix)))
        else:
            jobs += [Job(source, i, out_dir / frame_output_name(source.stem, i, suffix)) for i in range(frames)]
    return jobs


def select_jobs(jobs: list[Job], inputs: list[Path], *, force: bool, skip_existing: bool) -> tuple[list[Job], int]:
    """The jobs to run, and how many were skipped because their output exists.

    Raises:
        UsageError: two jobs write the same file; an output would replace an input file (never
            allowed, even with ``force``); or outputs exist without ``force`` / ``skip_existing``.
    """
    seen: dict[Path, Job] = {}
    for job in jobs:
        key = job.target.resolve()
        if key in seen:
            other = seen[key]
            raise UsageError(
                f"{other.source} and {job.source} would both be written to {job.target}; "
                "enhance them into different output folders, or rename one"
            )
        seen[key] = job
    sources = {p.resolve() for p in inputs}
    for job in jobs:
        if job.target.resolve() in sources:
            raise UsageError(
                f"the output {job.target} would replace the input file {job.target}; choose another output folder "
                "(-o) or a --suffix (inputs are never overwritten, even with --force)"
            )
    existing = [job for job in jobs if job.target.exists()]
    if existing and not force and not skip_existing:
        raise UsageError(
            f"{len(existing)} of {len(jobs)} output file(s) exist, e.g. {existing[0].target}; use --skip-existing "
            "to finish only the missing ones, or --force to overwrite them"
        )
    if skip_existing:
        return [job for job in jobs if not job.target.exists()], len(existing)
    return jobs, 0


class OutputFolder:
    """The output folder: checked and created before any model loads, removed if the run writes nothing.

    Args:
        path: the folder (created with its parents if missing).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.created: list[Path] = []

    def prepare(self) -> None:
        """Create the folder if needed and check that a file can be written in it.

        Raises:
            UsageError: a file is in the way, or the folder cannot be created or written to.
        """
        if self.path.exists() and not self.path.is_dir():
            raise UsageError(f"output {self.path} exists and is not a folder; pass a folder with -o")
        missing = []
        parent = self.path
        while not parent.exists():
            missing.append(parent)
            parent = parent.parent
        try:
            for folder in reversed(missing):
                folder.mkdir()
                self.created.append(folder)
            with tempfile.NamedTemporaryFile(dir=self.path, prefix=".gpen-write-test-"):
                pass
        except OSError as err:
            self.remove_if_empty()
            raise UsageError(f"cannot write to the output folder {self.path}: {err.strerror or err}") from err

    def remove_if_empty(self) -> None:
        """Remove the folders :meth:`prepare` created, innermost first, while they are empty."""
        for folder in reversed(self.created):
            try:
                folder.rmdir()
            except OSError:
                break
        self.created = []


def is_disk_full(err: BaseException) -> bool:
    """Whether an error means no space is left (every later write would fail too)."""
    return isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT)
