"""Every network of the package in one list, collected from the entries declared next to each network's code.

:data:`NETWORKS` is what a downloader or a model list reads (names, published file names and URLs, the
ComfyUI folder kind, capabilities); :func:`network_named` resolves a name or alias; :func:`identify`
says which network a weights file holds, from its keys and shapes (never its name), after the same
safe read and checks every file gets.

Example:
    >>> from gpen_core.zoo.registry import NETWORKS, network_named
    >>> [entry.name for entry in NETWORKS]
    ['gpen', 'retinaface_resnet50', 'retinaface_mobile0.25', 'mtcnn', 'parsenet']
    >>> network_named("RetinaFace").name
    'retinaface_resnet50'
"""
from __future__ import annotations

from ..face.detection.catalog import DETECTORS
from ..face.parsing.load import PARSENET_NETWORK
from ..loading import GPEN_NETWORK
from ..network_entry import NetworkEntry, WeightsFile, entry_named, recognise
from ..weights import CheckpointError, CheckpointSource, describe, read_state

NETWORKS: tuple[NetworkEntry, ...] = (GPEN_NETWORK, *DETECTORS, PARSENET_NETWORK)
"""GPEN, the face detectors (in ``auto`` order), the face parser."""


def network_named(name: str) -> NetworkEntry:
    """The network called ``name`` or one of its aliases (case-insensitive).

    Raises:
        ValueError: no such network; the message lists the names.
    """
    entry = entry_named(NETWORKS, name)
    if entry is None:
        raise ValueError(f"unknown network {name!r}; known: {', '.join(e.name for e in NETWORKS)}")
    return entry


def identify(source: CheckpointSource) -> tuple[NetworkEntry, WeightsFile]:
    """Which network (and which of its files) ``source`` holds, recognised from its keys and shapes.

    The file is read as every weights file is (:func:`gpen_core.weights.read_state`), then accepted by
    that file's checks (float dtypes, finite values); nothing is built.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: unreadable, refused by a check, or the weights of no network of :data:`NETWORKS`.
    """
    name = describe(source)
    state = read_state(source)
    found = recognise(NETWORKS, state)
    if found is None:
        sample = ", ".join(sorted(state)[:5])
        raise CheckpointError(
            f"{name}: the weights of none of {', '.join(e.name for e in NETWORKS)} "
            f"({len(state)} tensors like {sample})"
        )
    found[1].accept(state, name)
    return found
