"""One shape for every network this package loads (GPEN, the face detectors, the face parser).

A :class:`NetworkEntry` says what a network is called, where its files live, what they are called when
published, how a state dict of it is recognised and built, and what it supports; its
:class:`WeightsFile` objects (one per file: MTCNN has three) carry the recognising and building.
Loading always takes the same steps, whatever the network::

    read_state(path)             the file read safely: zip directory, nesting depth, expanded views
    file.accept(state, path)     recognised from its keys and shapes; float dtypes, finite values
    file.build(state, path)      the architecture read from the shapes, compared on the meta device,
                                 then the real module built and filled (weights.build_checked)

Each network declares its entry next to its own code (:data:`gpen_core.loading.GPEN_NETWORK`,
:mod:`gpen_core.face.detection.catalog`, :data:`gpen_core.face.parsing.load.PARSENET_NETWORK`);
:mod:`gpen_core.zoo.registry` collects them.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from .official_files import FolderKind, download_url, official_file
from .weight_checks import CheckpointError, check_values
from .weights import CheckpointSource, StateDict, describe, read_state

Task = Literal["restore", "detect", "parse"]


@dataclass(frozen=True)
class WeightsFile:
    """One file of a network: its published names, how its state dict is recognised and built.

    Attributes:
        names: the names it is published under, preferred first; each is also looked for with a
            ``.safetensors`` suffix, and compared case-insensitively.
        what: what it holds, for messages (``"GPEN generator"``, ``"MTCNN RNet"``).
        why_not: ``why_not(state)`` is None when the (prefix-stripped) state dict is this file's, else
            the reason it is not, said from its keys and shapes (e.g. ``"this is a GPEN discriminator"``).
        build: ``build(state, source)``: the ready module (CPU, float32, eval mode, gradients off),
            built by :func:`gpen_core.weights.build_checked` (shapes compared on the meta device first);
            raises :class:`CheckpointError`.
        counters: key suffixes whose tensors may be integers (BatchNorm's ``num_batches_tracked``); every
            other tensor must be float (:func:`gpen_core.weight_checks.check_values`).
    """

    names: tuple[str, ...]
    what: str
    why_not: Callable[[Mapping[str, torch.Tensor]], str | None]
    build: Callable[[StateDict, str], torch.nn.Module]
    counters: tuple[str, ...] = ()

    def accept(
        self,
        state: Mapping[str, torch.Tensor],
        name: str,
        error: type[CheckpointError] = CheckpointError,
        others: Sequence[WeightsFile] = (),
    ) -> None:
        """Raise unless ``state`` is this file's, with float dtypes and finite values.

        Args:
            others: files it might be instead: named in the message when one of them recognises it.

        Raises:
            CheckpointError (``error``): naming ``name`` and the reason (or the key).
        """
        reason = self.why_not(state)
        if reason is not None:
            instead = next((other for other in others if other is not self and other.why_not(state) is None), None)
            if instead is not None:
                raise error(
                    f"{name} holds {instead.what} weights, but '{self.what}' was requested "
                    f"(file named {self.names[0]!r})"
                )
            raise error(f"{name}: {reason}")
        check_values(state, name, self.counters, error)

    def read(
        self, source: CheckpointSource, error: type[CheckpointError] = CheckpointError,
        others: Sequence[WeightsFile] = (),
    ) -> StateDict:
        """The state dict of ``source`` (a file or a state dict), read safely then :meth:`accept` -ed; not built.

        Raises:
            FileNotFoundError: no such file.
            CheckpointError (``error``): every refusal, naming the file.
        """
        state = read_state(source, error)
        self.accept(state, describe(source), error, others)
        return state

    def load(
        self, source: CheckpointSource, error: type[CheckpointError] = CheckpointError,
        others: Sequence[WeightsFile] = (),
    ) -> torch.nn.Module:
        """:meth:`read` ``source``, then :attr:`build` it: the steps of the module doc.

        Raises:
            FileNotFoundError: no such file.
            CheckpointError (``error``): every refusal, naming the file.
        """
        return self._built(self.read(source, error, others), describe(source), error)

    def load_state(
        self, state: StateDict, name: str, error: type[CheckpointError] = CheckpointError,
        others: Sequence[WeightsFile] = (),
    ) -> torch.nn.Module:
        """:meth:`accept` then :attr:`build` a state dict from :func:`gpen_core.weights.read_state`."""
        self.accept(state, name, error, others)
        return self._built(state, name, error)

    def _built(self, state: StateDict, name: str, error: type[CheckpointError]) -> torch.nn.Module:
        """:attr:`build` of an accepted state dict, its refusal raised as ``error``."""
        try:
            return self.build(state, name)
        except CheckpointError as err:
            if isinstance(err, error):
                raise
            raise error(str(err)) from err

    def candidates(self) -> list[str]:
        """File names to look for, in order: each name, then its ``.safetensors`` twin."""
        names: list[str] = []
        for name in self.names:
            names += [name, str(Path(name).with_suffix(".safetensors"))]
        return names


def find_named(directory: str | os.PathLike, names: Iterable[str]) -> Path | None:
    """The file in ``directory`` itself under the first of ``names`` it holds, or None.

    Each name is looked for under its exact spelling first, then compared case-insensitively with the
    folder's files (the first in sorted order), before the next name is tried.
    """
    folder = Path(directory)
    listed: dict[str, Path] | None = None
    for name in names:
        exact = folder / name
        if exact.is_file():
            return exact
        if listed is None:
            listed = _files_by_lower_name(folder)
        found = listed.get(name.lower())
        if found is not None:
            return found
    return None


def _files_by_lower_name(folder: Path) -> dict[str, Path]:
    """The files of ``folder`` by lower-cased name, the first in sorted order for each; empty when no folder."""
    if not folder.is_dir():
        return {}
    files: dict[str, Path] = {}
    for entry in sorted(folder.iterdir()):
        if entry.is_file():
            files.setdefault(entry.name.lower(), entry)
    return files


def _single(modules: tuple[torch.nn.Module, ...]) -> Any:
    (module,) = modules
    return module


def _no_folders() -> list[Path]:
    return []


@dataclass(frozen=True)
class NetworkEntry:
    """A network of the model zoo: one entry per network, all of the same shape.

    Attributes:
        name: the name options use (``"retinaface_resnet50"``); lower case.
        task: what it does: ``"restore"``, ``"detect"`` or ``"parse"``.
        folder: the ComfyUI ``models/`` folder kind its files live in: ``"gpen"`` or ``"facedetection"``.
        files: its files; all are needed (MTCNN: P-Net, R-Net, O-Net), each under one of its names.
        aliases: other accepted names (lower case).
        subfolder: a subfolder of each search folder that may hold the files (MTCNN: ``mtcnn``).
        sizes: input sizes of the published weights (empty: any size).
        supports_half, supports_bfloat16: whether this package runs it in float16 / bfloat16.
        assemble: the built modules (one per file, in order) -> the network object (default: the
            one module).
        runner: what wraps the network for use, called ``runner(network, device=..., **options)``
            (a detector's :class:`~gpen_core.face.detection.detectors.FaceDetector`); None: used as built.
        more_folders: folders outside the model folders that may hold the files, looked in last
            (MTCNN: an installed facenet-pytorch's data folder).
        advice: said when the files are not found, after where to put them (an alternative).
    """

    name: str
    task: Task
    folder: FolderKind
    files: tuple[WeightsFile, ...]
    aliases: tuple[str, ...] = ()
    subfolder: str | None = None
    sizes: tuple[int, ...] = ()
    supports_half: bool = False
    supports_bfloat16: bool = False
    assemble: Callable[[tuple[torch.nn.Module, ...]], Any] = _single
    runner: Callable[..., Any] | None = None
    more_folders: Callable[[], list[Path]] = _no_folders
    advice: str = ""

    def folders(self, search_dirs: Iterable[str | os.PathLike]) -> list[Path]:
        """Where the files are looked for, in order: each search folder (then its :attr:`subfolder`),
        then :attr:`more_folders`."""
        found: list[Path] = []
        for directory in map(Path, search_dirs):
            found += [directory, directory / self.subfolder] if self.subfolder else [directory]
        return found

    def find(self, search_dirs: Iterable[str | os.PathLike]) -> tuple[Path, ...] | None:
        """The paths of all :attr:`files`, from the first of :meth:`folders` then :attr:`more_folders` that
        holds every one of them (:meth:`find_in`), or None."""
        for directory in [*self.folders(search_dirs), *self.more_folders()]:
            found = self.find_in(directory)
            if found is not None:
                return found
        return None

    def find_in(self, directory: Path) -> tuple[Path, ...] | None:
        """The paths of all :attr:`files` in ``directory`` itself, or None when one is missing.

        Names are compared case-insensitively, the exact spelling first; each file's
        :meth:`WeightsFile.candidates` are tried in order (:func:`find_named`).
        """
        if not directory.is_dir():
            return None
        paths = [find_named(directory, file.candidates()) for file in self.files]
        return tuple(path for path in paths if path is not None) if None not in paths else None

    def load(
        self, sources: Sequence[CheckpointSource], error: type[CheckpointError] = CheckpointError,
        others: Sequence[WeightsFile] = (),
    ) -> Any:
        """The network from one source per file (in :attr:`files` order), each loaded by :meth:`WeightsFile.load`."""
        if len(sources) != len(self.files):
            raise ValueError(f"{self.name} needs {len(self.files)} file(s), got {len(sources)}")
        siblings = [*self.files, *others]
        return self.assemble(tuple(
            file.load(source, error, siblings) for file, source in zip(self.files, sources, strict=True)
        ))

    def missing_message(self, search_dirs: Sequence[str | os.PathLike]) -> str:
        """What to say when :meth:`find` finds nothing: the files, the folders looked in, where to get them."""
        names = [file.names[0] for file in self.files]
        files = f"the file '{names[0]}'" if len(names) == 1 else f"the files {', '.join(names)}"
        where = ", ".join(str(d) for d in self.folders(search_dirs)) or "(no folders were given)"
        first = Path(search_dirs[0]) if search_dirs else Path("ComfyUI/models") / self.folder
        target = first / self.subfolder if self.subfolder else first
        comfy = f"models/{self.folder}/" + (f"{self.subfolder}/" if self.subfolder else "")
        published = [entry for entry in map(official_file, names) if entry is not None]
        advice = f" {self.advice}" if self.advice else ""
        if published:
            urls = ", ".join(download_url(e) for e in published)
            fetch = (f"Download it from {urls} and put it in {target} (for ComfyUI: {comfy}), or run "
                     f"`gpen download {published[0].name}` (it fetches and verifies it; the nodes and the command "
                     "line also fetch it when needed, unless GPEN_NO_DOWNLOAD=1).")
        else:
            fetch = f"Copy {', '.join(names)} into {target} (for ComfyUI: {comfy})."
        return (
            f"'{self.name}' needs {files}, which {'was' if len(names) == 1 else 'were'} not found in: {where}. "
            f"{fetch}{advice}"
        )


def entry_named(entries: Iterable[NetworkEntry], name: str) -> NetworkEntry | None:
    """The entry called ``name`` or one of its aliases (case-insensitive, spaces stripped), or None."""
    wanted = name.strip().lower()
    return next((entry for entry in entries if wanted == entry.name or wanted in entry.aliases), None)


def recognise(
    entries: Iterable[NetworkEntry], state: Mapping[str, torch.Tensor]
) -> tuple[NetworkEntry, WeightsFile] | None:
    """The entry and file whose :attr:`WeightsFile.why_not` accepts ``state``, first in ``entries`` order; or None."""
    for entry in entries:
        for file in entry.files:
            if file.why_not(state) is None:
                return entry, file
    return None
