"""Batch planning for the command line: inputs, output names, the output folder, failures.

Everything here runs before any model is loaded, so that a wrong path or option costs nothing:
:func:`collect_inputs` (files and folders), :func:`plan_jobs` (one job per image, per frame of an
animation, or per video clip, each with all its outputs: the image and, with ``--save-mask``, the
mask; a clip's ``<stem><suffix>.mp4``; file headers checked against the limits; names checked against
the file system's limit), :func:`select_jobs`
(existing outputs: refuse, skip or overwrite; never an input file; never two writes to one name)
and :class:`OutputFolder` (created and probed for writing; removed again when a run writes nothing).
"""
from __future__ import annotations

import errno
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..images.files import (
    IMAGE_SUFFIXES,
    MAX_FRAMES,
    MAX_PIXELS,
    ImageReadError,
    frame_count,
    frame_output_name,
    name_bytes,
    name_max,
)
from ..video.source import VIDEO_SUFFIXES, VideoReadError, probe_video

MASK_SUFFIX = "_mask"
"""``--save-mask`` writes the paste mask of ``<name>.png`` as ``<name>_mask.png`` (images only)."""
VIDEO_OUTPUT_SUFFIX = ".mp4"
"""A clip is written as ``<stem><suffix>.mp4`` (H.264, with the source's audio)."""


class UsageError(ValueError):
    """A wrong option, path or combination, found before anything was loaded (exit status 2)."""


@dataclass(frozen=True)
class Job:
    """One output: ``frame`` of ``source`` (None: a single-frame file) written to ``target``, and its
    paste mask to ``mask`` (``--save-mask``; None: no mask); or, with ``video``, the whole clip ``source``
    written to ``target`` (``.mp4``; ``frames``: the count its header declares, None when unknown)."""

    source: Path
    frame: int | None
    target: Path
    mask: Path | None = None
    video: bool = False
    frames: int | None = None

    @property
    def outputs(self) -> tuple[Path, ...]:
        """Every file the job writes: ``target``, then ``mask`` when there is one."""
        return (self.target,) if self.mask is None else (self.target, self.mask)

    def describe(self, output: Path) -> str:
        """``output`` (one of :attr:`outputs`) as the source it comes from, e.g. ``a.png (its mask)``."""
        frame = "" if self.frame is None else f" frame {self.frame + 1}"
        return f"{self.source}{frame}" + (" (its mask)" if output == self.mask else "")


def mask_path(target: Path) -> Path:
    """Where ``--save-mask`` writes the mask of the output ``target``: ``<stem>_mask.png`` beside it."""
    return target.with_name(f"{target.stem}{MASK_SUFFIX}.png")


def _identity(path: Path) -> Path:
    """``path`` with its links resolved, to compare files; a link loop compares as itself."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # RuntimeError: a symbolic link loop (Python < 3.13)
        return path.absolute()


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


def is_video(path: Path) -> bool:
    """Whether ``path`` is read as a video clip (its suffix is one of :data:`VIDEO_SUFFIXES`, any case)."""
    return path.suffix.lower() in VIDEO_SUFFIXES


def collect_inputs(paths: list[str]) -> tuple[list[Path], list[Path]]:
    """Image and video files named or found in folders (not recursive), and the folder entries ignored.

    Files named directly are taken whatever their suffix (an unreadable one fails later, by name);
    in folders, entries with a suffix of :data:`IMAGE_SUFFIXES` or :data:`VIDEO_SUFFIXES` are taken and
    other non-hidden entries are returned as ignored, so that the caller can list them. Sub-folders are not read.
    Entries that are not regular files (a FIFO, a device, a dangling link, a link loop) are taken
    like the others: :func:`plan_jobs` lists each as failed with its reason, never opening it.

    Raises:
        UsageError: an input does not exist, or nothing to read was found.
    """
    files: list[Path] = []
    ignored: list[Path] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            for entry in sorted(path.iterdir()):
                if entry.is_dir():
                    continue
                if entry.suffix.lower() in IMAGE_SUFFIXES or is_video(entry):
                    files.append(entry)
                elif not entry.name.startswith("."):
                    ignored.append(entry)
        elif os.path.lexists(path):  # a named broken link is listed as failed, with its reason
            files.append(path)
        else:
            raise UsageError(f"input not found: {path}")
    if not files:
        raise UsageError(f"no images ({', '.join(IMAGE_SUFFIXES)}) or videos ({', '.join(VIDEO_SUFFIXES)}) in "
                         f"{', '.join(paths)}")
    unique: dict[Path, Path] = {}
    for f in files:  # the same file named twice (or via a folder) is read once
        unique.setdefault(_identity(f), f)
    return list(unique.values()), ignored


OutputNames = list[tuple[int | None, str, str | None]]
"""``(frame, image name, mask name)`` of each output of one source (frame None: a single image)."""


def _output_names(source: Path, frames: int, suffix: str, save_mask: bool) -> OutputNames:
    """The output file names of ``source`` (mask None without ``save_mask``)."""
    names: OutputNames = []
    for frame in [None] if frames == 1 else range(frames):
        image = frame_output_name(source.stem, frame, suffix)
        names.append((frame, image, mask_path(Path(image)).name if save_mask else None))
    return names


def _too_long(names: OutputNames, limit: int) -> str | None:
    """The first of ``names`` longer than ``limit`` bytes, or None."""
    for _, image, mask in names:
        for name in (image, mask):
            if name is not None and name_bytes(name) > limit:
                return name
    return None


def plan_jobs(files: list[Path], out_dir: Path, suffix: str, failures: Failures, *, save_mask: bool = False,
              max_pixels: int = MAX_PIXELS, max_frames: int = MAX_FRAMES, videos: bool = True) -> list[Job]:
    """One :class:`Job` per image, one per frame of animations / multi-page files, one per video clip.

    Frame counts come from the file headers (Pillow walks GIF frames; PyAV reads a clip's header),
    checked against ``max_pixels`` and ``max_frames`` (:func:`gpen_core.images.files.frame_count`,
    :func:`gpen_core.video.probe_video`); a file that is not a regular image or video file within them,
    or whose output name would be longer than the file system of ``out_dir`` accepts (``PC_NAME_MAX``),
    is recorded in ``failures`` and gets no job.

    Args:
        save_mask: each image job also writes its paste mask (:func:`mask_path` of its target); clips
            write no mask.
        videos: clips are accepted (False: ``--aligned``, which takes face crops: each clip is a failure).

    Raises:
        UsageError: ``suffix`` alone makes every output name too long.
    """
    limit = name_max(out_dir)
    shortest = _output_names(Path("x.png"), 1, suffix, save_mask)
    if _too_long(shortest, limit) is not None:
        longest = max(name_bytes(n) for _, image, mask in shortest for n in (image, mask) if n is not None)
        raise UsageError(
            f"--suffix {suffix[:24]!r}... is {name_bytes(suffix)} bytes: even a one-letter input would get a "
            f"{longest}-byte output name, over the limit of {limit} bytes of the file system of {out_dir}; "
            "use a shorter --suffix"
        )
    jobs = []
    for source in files:
        if is_video(source):
            job = _plan_video(source, out_dir, suffix, failures, limit, max_pixels, max_frames, videos)
            jobs += [] if job is None else [job]
            continue
        try:
            frames = frame_count(source, max_pixels=max_pixels, max_frames=max_frames)
        except ImageReadError as err:
            failures.add(source, str(err).removeprefix(f"{source}: "))
            continue
        names = _output_names(source, frames, suffix, save_mask)
        too_long = _too_long(names, limit)
        if too_long is not None:
            failures.add(source, _name_too_long(too_long, limit, out_dir))
            continue
        for frame, image, mask in names:
            jobs.append(Job(source, frame, out_dir / image, None if mask is None else out_dir / mask))
    return jobs


def _name_too_long(name: str, limit: int, out_dir: Path) -> str:
    return (f"its output name {name[:24]}...{name[-20:]} would be {name_bytes(name)} bytes, over the limit of "
            f"{limit} bytes of the file system of {out_dir}; rename the file (or use a shorter --suffix)")


def _plan_video(source: Path, out_dir: Path, suffix: str, failures: Failures, limit: int, max_pixels: int,
                max_frames: int, videos: bool) -> Job | None:
    """The job of a clip (its header read and checked), or None with the reason in ``failures``."""
    if not videos:
        failures.add(source, "a video: --aligned takes aligned face crops (images); drop --aligned to restore the "
                             "faces of a clip")
        return None
    try:
        info = probe_video(source, max_pixels=max_pixels, max_frames=max_frames)
    except VideoReadError as err:
        failures.add(source, str(err).removeprefix(f"{source}: "))
        return None
    name = f"{source.stem}{suffix}{VIDEO_OUTPUT_SUFFIX}"
    if name_bytes(name) > limit:
        failures.add(source, _name_too_long(name, limit, out_dir))
        return None
    return Job(source, None, out_dir / name, video=True, frames=info.frames)


def select_jobs(jobs: list[Job], inputs: list[Path], *, force: bool, skip_existing: bool) -> tuple[list[Job], int]:
    """The jobs to run, and how many were skipped because all their outputs exist.

    Every output of a job (its image and its mask) is checked alike. With ``skip_existing`` a job
    is skipped only when all its outputs exist (a job missing its mask runs again in full).

    Raises:
        UsageError: two outputs are one file; an output would replace an input file (never
            allowed, even with ``force``); an output name is a folder; or outputs exist without
            ``force`` / ``skip_existing``.
    """
    seen: dict[Path, tuple[Job, Path]] = {}
    for job in jobs:
        for output in job.outputs:
            key = _identity(output)
            if key in seen:
                other, other_output = seen[key]
                raise UsageError(
                    f"{other.describe(other_output)} and {job.describe(output)} would both be written to {output}; "
                    "enhance them into different output folders, or rename one"
                )
            seen[key] = (job, output)
    sources = {_identity(p) for p in inputs}
    for key, (_, output) in seen.items():
        if key in sources:
            raise UsageError(
                f"the output {output} would replace the input file {output}; choose another output folder "
                "(-o) or a --suffix (inputs are never overwritten, even with --force)"
            )
        if output.is_dir():
            raise UsageError(f"the output {output} is a folder; move it away or choose another output folder (-o)")
    outputs = [output for job in jobs for output in job.outputs]
    existing = [output for output in outputs if os.path.lexists(output)]
    if existing and not force and not skip_existing:
        raise UsageError(
            f"{len(existing)} of {len(outputs)} output file(s) exist, e.g. {existing[0]}; use --skip-existing "
            "to finish only the missing ones, or --force to overwrite them"
        )
    if skip_existing:
        missing = [job for job in jobs if not all(os.path.lexists(output) for output in job.outputs)]
        return missing, len(jobs) - len(missing)
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
