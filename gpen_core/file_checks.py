"""Checks on a ``torch.save`` file before ``torch.load`` unpickles it: bounded work, whatever the file says.

1. :func:`check_archive` (zip checkpoints): the zip directory and record headers alone. ``torch.save``
   stores every record uncompressed, so a compressed record (a zip bomb: a 2 MB file inflating to
   2 GiB) or records larger than the file could hold are refused without reading them.
2. :func:`check_file` (both formats; runs 1 first): the checkpoint's pickle scanned by an unpickler that builds
   placeholders and runs nothing of the file: the object at most :data:`MAX_NESTING_DEPTH` containers deep
   (a checkpoint nested 200,000 dicts deep is refused by name, never a ``RecursionError``), and, in a
   legacy (non-zip) file, the storages it declares no larger than the file (``torch.load`` reserves them
   at their declared size before reading them).

Every check raises :class:`~gpen_core.weight_checks.CheckpointError` (or the subclass passed) naming the file.
"""
from __future__ import annotations

import mmap
import os
import pickle
import struct
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import BinaryIO

import torch

from .weight_checks import CheckpointError

MAX_NESTING_DEPTH = 64
"""Containers (dicts, lists, tuples) deeper than this are refused. A state dict is 1 deep, a training
checkpoint (weights, optimizer state, parameter groups) about 5."""

ZIP_MAGIC = b"PK\x03\x04"
"""How a ``torch.save`` zip checkpoint starts (``torch.load``'s own test); a legacy one starts with a pickle."""

_LOCAL_HEADER = struct.Struct("<4s2xHH16xHH")
"""Zip local file header: signature, (version), flags, method, (times, crc, sizes), name length, extra length."""


def check_archive(path: str | os.PathLike, error: type[CheckpointError] = CheckpointError) -> None:
    """Refuse a zip checkpoint whose directory declares compressed or oversized records, reading only the
    directory and the 30-byte record headers (no record is read or inflated).

    Raises:
        CheckpointError (``error``): a record compressed (``torch.save`` never compresses), or declaring
            more bytes than the file holds, or a directory that is not a zip's (truncated file).
    """
    path = Path(path)
    size = path.stat().st_size
    try:
        with zipfile.ZipFile(path) as archive:
            records = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError) as err:
        raise error(f"{path}: cannot be read; the file is truncated or corrupt ({type(err).__name__}: {err})") from err
    with path.open("rb") as raw:
        for record in records:
            _check_record(raw, record, size, path, error)
    total = sum(record.file_size for record in records)
    if total > size:
        raise error(f"{path}: its records declare {total} bytes in all, more than the file's {size} bytes; refused")


def _check_record(raw: BinaryIO, record: zipfile.ZipInfo, size: int, path: Path, error: type[CheckpointError]) -> None:
    if record.compress_type != zipfile.ZIP_STORED or record.compress_size != record.file_size:
        raise error(
            f"{path}: record {record.filename!r} is compressed ({record.compress_size} bytes declared to inflate "
            f"to {record.file_size}); torch.save stores records uncompressed, so this is not a checkpoint it wrote "
            "(a zip bomb looks like this). Refused without inflating it"
        )
    raw.seek(record.header_offset)
    header = raw.read(_LOCAL_HEADER.size)
    if len(header) < _LOCAL_HEADER.size:
        raise error(f"{path}: record {record.filename!r} starts beyond the end of the file; truncated or corrupt")
    signature, _, method, name_length, extra_length = _LOCAL_HEADER.unpack(header)
    if signature != ZIP_MAGIC:
        raise error(f"{path}: record {record.filename!r} has no record header where the directory says; corrupt")
    if method != zipfile.ZIP_STORED:
        raise error(
            f"{path}: record {record.filename!r} is compressed in its header (method {method}), stored in the "
            "directory: a crafted archive. Refused without inflating it"
        )
    end = record.header_offset + _LOCAL_HEADER.size + name_length + extra_length + record.file_size
    if end > size:
        raise error(
            f"{path}: record {record.filename!r} declares {record.file_size} bytes, more than the file's {size} "
            "bytes could hold; truncated or crafted. Refused"
        )


_ELEMENT_SIZES = {
    "DoubleStorage": 8, "FloatStorage": 4, "HalfStorage": 2, "BFloat16Storage": 2, "LongStorage": 8,
    "IntStorage": 4, "ShortStorage": 2, "CharStorage": 1, "ByteStorage": 1, "BoolStorage": 1,
}
"""Bytes per element of the storage classes a checkpoint's pickle names (any other: 16, the most)."""


class _Placeholder(dict):
    """What every global of a scanned pickle is: accepts any construction, keeps the items and state the
    pickle gives it (so its nesting is seen), runs nothing. Hashable and equal by identity."""

    def __hash__(self) -> int:  # type: ignore[override]
        return id(self)

    def __eq__(self, other: object) -> bool:
        return self is other

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__()

    def __setstate__(self, state: object) -> None:
        self["__state__"] = state

    def append(self, item: object) -> None:
        self.setdefault("__items__", []).append(item)

    def extend(self, items: object) -> None:
        for item in items:  # type: ignore[attr-defined]
            self.append(item)


_STORAGE_CLASSES = {name: type(name, (_Placeholder,), {}) for name in _ELEMENT_SIZES}


class _Scan(pickle.Unpickler):
    """Unpickles a checkpoint's pickle into placeholders (no global of the file is looked up, nothing of it
    runs), collecting the storages it declares: ``key -> bytes``."""

    def __init__(self, file: BinaryIO) -> None:
        super().__init__(file)
        self.declared: dict[str, int] = {}

    def find_class(self, module: str, name: str) -> type:
        return _STORAGE_CLASSES.get(name, _Placeholder) if module == "torch" else _Placeholder

    def persistent_load(self, pid: object) -> None:
        if isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage":
            storage_type, key, numel = pid[1], str(pid[2]), pid[4]
            if not isinstance(numel, int) or numel < 0:
                raise ValueError(f"storage {key!r} declares {numel!r} elements")
            size = _ELEMENT_SIZES.get(getattr(storage_type, "__name__", ""), 16)
            self.declared[key] = max(self.declared.get(key, 0), numel * size)


def check_file(path: str | os.PathLike, error: type[CheckpointError] = CheckpointError) -> None:
    """Everything checked before ``torch.load`` may read ``path``: the zip directory (:func:`check_archive`),
    then the pickle scanned without running it (placeholders for every global): refused when nested deeper
    than :data:`MAX_NESTING_DEPTH`, or, in a legacy file, declaring storages larger than the file.

    Raises:
        CheckpointError (``error``): naming the file and what it declares; a pickle that cannot be scanned
            is "truncated or corrupt", with its cause.
    """
    path = Path(path)
    size = path.stat().st_size
    with path.open("rb") as f:
        legacy = f.read(len(ZIP_MAGIC)) != ZIP_MAGIC
    if not legacy:
        check_archive(path, error)
    try:
        obj, declared = _scan_legacy(path) if legacy else _scan_zip(path)
    except RecursionError as err:
        raise error(f"{path}: nested too deeply to read; no checkpoint of weights is. Refused") from err
    except Exception as err:  # a hostile pickle fails in many ways: each is "corrupt", said with its cause
        raise error(f"{path}: cannot be read; the file is truncated or corrupt ({type(err).__name__}: {err})") from err
    check_nesting(obj, str(path), error)
    if legacy and sum(declared.values()) > size:
        raise error(
            f"{path}: its storages declare {sum(declared.values())} bytes, more than the file's {size} bytes could "
            "hold; truncated or crafted. Refused before reading them"
        )


def _scan_zip(path: Path) -> tuple[object, dict[str, int]]:
    with zipfile.ZipFile(path) as archive:
        pickles = [name for name in archive.namelist() if name.endswith("data.pkl")]
        if len(pickles) != 1:
            raise ValueError(f"expected one data.pkl record, found {len(pickles)}")
        with archive.open(pickles[0]) as data:  # a stored record (check_archive): read as it is, bounded
            scan = _Scan(data)  # type: ignore[arg-type]
            return scan.load(), scan.declared


def _scan_legacy(path: Path) -> tuple[object, dict[str, int]]:
    # Mapped, not read: a length field declaring terabytes reads only to the end of the file.
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        first = _Scan(mapped).load()  # type: ignore[arg-type]
        if first != torch.serialization.MAGIC_NUMBER:
            return first, {}  # a pickle, not torch.save's: torch.load refuses it (by its globals or its magic)
        for _ in range(2):  # protocol version, system info
            _Scan(mapped).load()  # type: ignore[arg-type]
        scan = _Scan(mapped)  # type: ignore[arg-type]
        return scan.load(), scan.declared


def check_nesting(obj: object, name: str, error: type[CheckpointError] = CheckpointError) -> None:
    """Refuse an object nested more than :data:`MAX_NESTING_DEPTH` containers deep (walked without recursion,
    stopping at the limit).

    Raises:
        CheckpointError (``error``): naming ``name`` and the limit.
    """
    stack: list[Iterator[object]] = [iter((obj,))]
    while stack:
        child = next(stack[-1], _DONE)
        if child is _DONE:
            stack.pop()
            continue
        children = _children(child)
        if children is None:
            continue
        if len(stack) > MAX_NESTING_DEPTH:
            raise error(
                f"{name}: nested more than {MAX_NESTING_DEPTH} containers deep; no checkpoint of weights is "
                "(a state dict is 1 deep, a training checkpoint about 5). Refused"
            )
        stack.append(children)


_DONE = object()


def _children(obj: object) -> Iterator[object] | None:
    if isinstance(obj, Mapping):
        return iter(obj.values())
    if isinstance(obj, (list, tuple, set, frozenset)):
        return iter(obj)
    return None
