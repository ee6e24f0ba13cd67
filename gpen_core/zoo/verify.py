"""Is a file what its official name promises? Read safely, then the network and config read from its shapes.

The one check a download must pass before it is renamed into place (:mod:`.download`); a
"GPEN-BFR-512.pth" that holds a 256 generator, a face detector or a web page is refused.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path

import torch

from ..arch.config import ConfigError, config_from_state_dict
from ..arch.generator import GPEN
from ..face.detection.retinaface import load_retinaface_net
from ..face.parsing.load import load_parser
from ..official_files import OfficialFile
from ..weights import CheckpointError, key_mismatch, load_state_dict


def check_official_file(entry: OfficialFile, path: str | os.PathLike) -> None:
    """Raise unless ``path`` holds the network and config of ``entry``.

    The file is read with the pack's safe reader (``torch.load(weights_only=True)``), the network
    is recognised from its keys, its config read from its tensor shapes, and every key and shape
    is checked strictly against that network.

    Raises:
        CheckpointError: unreadable, unsafe, another network, or another config than ``entry.config``
            (the message says what the file is instead).
        FileNotFoundError: no such file.
    """
    found = _found_config(entry, path)
    wrong = {key: found.get(key) for key, value in entry.config.items() if found.get(key) != value}
    if wrong:
        shown = ", ".join(f"{key}={value!r} (expected {entry.config[key]!r})" for key, value in wrong.items())
        raise CheckpointError(f"{path}: not {entry.name}: its shapes show {entry.network} with {shown}")


def _found_config(entry: OfficialFile, path: str | os.PathLike) -> Mapping[str, object]:
    """The config the file's shapes show, for the network ``entry`` names (strict keys and shapes)."""
    if entry.network == "gpen":
        state = load_state_dict(path)
        try:
            config = config_from_state_dict(state)
        except ConfigError as err:
            raise CheckpointError(f"{path}: {err}") from err
        with torch.device("meta"):
            layout = GPEN(config).state_dict()
        mismatch = key_mismatch(layout, state)
        if mismatch:
            raise CheckpointError(f"{path}: does not match GPEN-{config.size} ({config}): {mismatch}")
        return dataclasses.asdict(config)
    if entry.network == "retinaface":
        return {"backbone": load_retinaface_net(Path(path)).backbone_name}
    return dataclasses.asdict(load_parser(path).config)
