"""The check of a downloaded (or found) file against its official entry: the network and the config its
tensor shapes show, through the registry's one loading path (safe read, recognised, dtypes and values
checked, shapes compared on the meta device, then built)."""
from __future__ import annotations

import dataclasses
import os

from ..official_files import OfficialFile
from ..weights import CheckpointError
from .registry import NETWORKS, network_named

__all__ = ["check_official_file"]


def check_official_file(entry: OfficialFile, path: str | os.PathLike) -> None:
    """Raise unless ``path`` holds the network and config of ``entry``.

    Raises:
        CheckpointError: unreadable, unsafe, another network (the message says which, when recognised), or
            another config than ``entry.config``.
        FileNotFoundError: no such file.
    """
    network = network_named(entry.network)
    (weights,) = network.files  # official files are single-file networks
    module = weights.load(path, others=[file for other in NETWORKS for file in other.files])  # says what it is
    config = getattr(module, "config", None)
    found = dataclasses.asdict(config) if dataclasses.is_dataclass(config) and not isinstance(config, type) else {}
    wrong = {key: found.get(key) for key, value in entry.config.items() if found.get(key) != value}
    if wrong:
        shown = ", ".join(f"{key}={value!r} (expected {entry.config[key]!r})" for key, value in wrong.items())
        raise CheckpointError(f"{path}: not {entry.name}: its shapes show {entry.network} with {shown}")
