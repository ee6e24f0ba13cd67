"""The example inputs the templates load (``workflows/*.json``), copied into ComfyUI's input folder when the pack
loads, so every template runs as loaded on a fresh install. A user's file of the same name is never replaced.

Imports nothing of ComfyUI: ``nodes/extension.py`` passes the input folder in.
"""
from __future__ import annotations

import filecmp
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

EXAMPLE_INPUTS_DIR = Path(__file__).resolve().parent.parent / "example_inputs"
"""The pack's ``example_inputs/`` folder."""
EXAMPLE_INPUTS: tuple[str, ...] = ("portrait-1947.png", "solvay-1927.png", "gpen_clip.mp4")
"""The files the templates load by name (Load Image, Load Video); a test checks this against the templates."""


@dataclass(frozen=True)
class ExampleInputsReport:
    """What :func:`install_example_inputs` did with each file name."""

    copied: tuple[str, ...] = ()
    """Not in the input folder before: copied there."""
    present: tuple[str, ...] = ()
    """Already there with the same bytes: nothing to do."""
    kept: tuple[str, ...] = ()
    """A different file of that name is there: left as it is (the templates load it)."""
    failed: tuple[str, ...] = ()
    """Could not be copied (e.g. a read-only input folder): logged with the fix."""


def install_example_inputs(input_dir: Path, source_dir: Path = EXAMPLE_INPUTS_DIR,
                           names: tuple[str, ...] = EXAMPLE_INPUTS) -> ExampleInputsReport:
    """Copy every file of ``names`` from ``source_dir`` into ``input_dir`` where no file of that name exists.

    A file already there is never replaced: one with other content is kept and logged. A file that cannot be
    copied is logged (with where to copy it from by hand) and the others still are: loading the pack never
    fails here. A copy is created exclusively (``open(..., "xb")``), so a file that appears meanwhile is not
    overwritten either; a copy that fails halfway is removed.
    """
    copied: list[str] = []
    present: list[str] = []
    kept: list[str] = []
    failed: list[str] = []
    for name in names:
        source, dest = source_dir / name, input_dir / name
        try:
            if dest.exists():
                if filecmp.cmp(source, dest, shallow=False):
                    present.append(name)
                else:
                    kept.append(name)
                    logger.warning("GPEN example input %s: a different file of that name is already in %s; it is "
                                   "kept, and the GPEN templates that load %s will use it.", name, input_dir, name)
                continue
            input_dir.mkdir(parents=True, exist_ok=True)
            _copy_exclusive(source, dest)
            copied.append(name)
        except OSError as e:
            failed.append(name)
            logger.warning("GPEN example input %s could not be copied to %s (%s). The templates that load it need "
                           "it there: copy %s by hand.", name, input_dir, e, source)
    if copied:
        logger.info("GPEN: copied the templates' example inputs %s to %s", ", ".join(copied), input_dir)
    return ExampleInputsReport(tuple(copied), tuple(present), tuple(kept), tuple(failed))


def _copy_exclusive(source: Path, dest: Path) -> None:
    """Copy ``source`` to a new file ``dest`` (FileExistsError if it exists); nothing is left if it fails."""
    with open(source, "rb") as src, open(dest, "xb") as out:
        try:
            shutil.copyfileobj(src, out)
        except BaseException:
            out.close()
            dest.unlink()
            raise
