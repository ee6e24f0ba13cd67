"""Hostile weights files (issue 16's probe), for any network: written at test time, nothing binary stored.

Each maker takes the path to write and a valid state dict of the network (and, for ``huge.pth``, the
shapes of a much larger network of the same kind) and writes a file every loader must refuse with a
clear error naming the file (and the key), in bounded memory, before building anything:

* ``bool.pth``, ``int64.pth``, ``complex.pth``, ``fp8.pth``: one weight of another dtype;
* ``nan.pth``, ``inf.pth``: one non-finite value in one weight;
* ``deep.pth``: the weights nested 200,000 dicts deep (``{"state_dict": {"state_dict": ...}}``);
* ``bomb.pth``: a ``torch.save`` zip whose first storage record is a DEFLATE stream of zeros
  (``bomb_bytes`` once inflated: 64 MiB in the tests, 2 GiB in ``rss_hostile.py``);
* ``oversized.pth``: a stored record whose directory entry declares 2 GiB in a small file;
* ``expanded.pth``: every tensor an expanded view of one number, with the network's own shapes;
* ``huge.pth``: expanded views declaring a much larger network (about 1 GiB in the tests, 13.6 GB
  in ``rss_hostile.py``), a few kilobytes on disk;
* ``legacy_huge.pth``: a legacy (non-zip) ``torch.save`` file whose first storage declares 8 GiB.

Run by hand to look at the files: ``python tests/weights/make_hostile.py DIR`` (GPEN-64 files).
"""
from __future__ import annotations

import io
import pickle
import pickletools
import struct
import sys
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

import torch

State = Mapping[str, torch.Tensor]

DEEP = 200_000
TEST_BOMB_BYTES = 64 << 20


def hostile_key(state: State) -> str:
    """The weight the dtype and value cases change: the middle floating tensor."""
    floats = [key for key, value in state.items() if value.is_floating_point()]
    return floats[len(floats) // 2]


def _with(state: State, key: str, value: torch.Tensor) -> dict[str, torch.Tensor]:
    changed = dict(state)
    changed[key] = value
    return changed


def _dtype(dtype: torch.dtype) -> Callable[[Path, State], None]:
    def make(path: Path, state: State) -> None:
        key = hostile_key(state)
        source = state[key]
        value = (source != 0) if dtype == torch.bool else source.to(dtype)
        torch.save(_with(state, key, value), path)

    return make


def _non_finite(number: float) -> Callable[[Path, State], None]:
    def make(path: Path, state: State) -> None:
        key = hostile_key(state)
        value = state[key].clone()
        value.view(-1)[value.numel() // 2] = number
        torch.save(_with(state, key, value), path)

    return make


def _rewrite_zip(path: Path, replace: Callable[[str, bytes], bytes | None], *, bomb_bytes: int = 0) -> None:
    """Rewrite the zip at ``path`` record by record; ``replace(name, data)`` gives new stored bytes (or None:
    keep). With ``bomb_bytes``, the first ``data/<n>`` record becomes DEFLATE-compressed zeros of that size."""
    with zipfile.ZipFile(path) as source:
        records = [(info.filename, source.read(info.filename)) for info in source.infolist()]
    bombed = False
    with zipfile.ZipFile(path, "w") as target:
        for name, data in records:
            if bomb_bytes and not bombed and "/data/" in name and not name.endswith(".pkl"):
                info = zipfile.ZipInfo(name)
                info.compress_type = zipfile.ZIP_DEFLATED
                chunk = bytes(min(bomb_bytes, 1 << 20))
                with target.open(info, "w", force_zip64=True) as stream:
                    for start in range(0, bomb_bytes, len(chunk)):
                        stream.write(chunk[: bomb_bytes - start])
                bombed = True
                continue
            target.writestr(name, replace(name, data) or data)
    assert not bomb_bytes or bombed, "no storage record to replace"


def nested_pickle(depth: int, key: str = "state_dict") -> bytes:
    """Protocol-2 pickle of ``{key: {key: ... {} ...}}``, ``depth`` dicts deep, written without recursion."""
    encoded = key.encode()
    level = b"}" + b"X" + struct.pack("<I", len(encoded)) + encoded  # EMPTY_DICT, BINUNICODE key
    return b"\x80\x02" + level * depth + b"}" + b"s" * depth + b"."  # innermost {}, SETITEM per level, STOP


def _deep(path: Path, state: State) -> None:
    torch.save({}, path)
    _rewrite_zip(path, lambda name, data: nested_pickle(DEEP) if name.endswith("data.pkl") else None)


def bomb(bomb_bytes: int) -> Callable[[Path, State], None]:
    def make(path: Path, state: State) -> None:
        torch.save(dict(state), path)
        _rewrite_zip(path, lambda name, data: None, bomb_bytes=bomb_bytes)

    return make


def _oversized(path: Path, state: State) -> None:
    """The central directory entry of the first storage record declares 2 GiB (its data stays as it was)."""
    torch.save(dict(state), path)
    data = bytearray(path.read_bytes())
    at = 0
    while (at := data.find(b"PK\x01\x02", at)) >= 0:
        name_length = struct.unpack_from("<H", data, at + 28)[0]
        name = bytes(data[at + 46: at + 46 + name_length])
        if b"/data/" in name and not name.endswith(b".pkl"):
            struct.pack_into("<II", data, at + 20, 2**31, 2**31)  # compressed and uncompressed size
            path.write_bytes(bytes(data))
            return
        at += 4
    raise AssertionError("no storage record found")


def expanded_views(shapes: Mapping[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """One shared float32 number, viewed (stride 0) as a tensor of every shape in ``shapes``."""
    one = torch.zeros(1)
    return {key: one.expand(*shape) if shape else one[0] for key, shape in shapes.items()}


def _expanded(path: Path, state: State) -> None:
    torch.save(expanded_views({k: tuple(v.shape) for k, v in state.items() if v.is_floating_point()}), path)


def huge(shapes: Mapping[str, tuple[int, ...]]) -> Callable[[Path, State], None]:
    def make(path: Path, state: State) -> None:
        torch.save(expanded_views(shapes), path)

    return make


LEGACY_NUMEL = 2**31 - 1


def _legacy_huge(path: Path, state: State) -> None:
    """A legacy-format file (as facenet-pytorch's MTCNN files are) whose first storage declares 8 GiB."""
    buffer = io.BytesIO()
    torch.save(dict(state), buffer, _use_new_zipfile_serialization=False)
    data = buffer.getvalue()
    stream = io.BytesIO(data)
    for _ in range(3):  # magic number, protocol version, system info: our own plain pickles
        pickle.load(stream)
    ops = []
    for opcode, _, pos in pickletools.genops(stream):
        ops.append((opcode.name, pos))
        if opcode.name == "BINPERSID":  # ('storage', type, key, location, numel, None) was just built
            break
    last = max(i for i, (name, _) in enumerate(ops) if name in ("BININT1", "BININT2", "BININT", "LONG1"))
    start, end = ops[last][1], ops[last + 1][1]
    path.write_bytes(data[:start] + b"J" + struct.pack("<i", LEGACY_NUMEL) + data[end:])


HostileMaker = Callable[[Path, State], None]


def hostile_makers(
    huge_shapes: Mapping[str, tuple[int, ...]], bomb_bytes: int = TEST_BOMB_BYTES
) -> dict[str, HostileMaker]:
    """Every hostile file by name; ``huge_shapes``: the shapes ``huge.pth`` declares."""
    return {
        "bool.pth": _dtype(torch.bool),
        "int64.pth": _dtype(torch.int64),
        "complex.pth": _dtype(torch.complex64),
        "fp8.pth": _dtype(torch.float8_e4m3fn),
        "nan.pth": _non_finite(float("nan")),
        "inf.pth": _non_finite(float("-inf")),
        "deep.pth": _deep,
        "bomb.pth": bomb(bomb_bytes),
        "oversized.pth": _oversized,
        "expanded.pth": _expanded,
        "huge.pth": huge(huge_shapes),
        "legacy_huge.pth": _legacy_huge,
    }


def meta_shapes(make: Callable[[], torch.nn.Module]) -> dict[str, tuple[int, ...]]:
    """The state-dict shapes of the module ``make`` builds, built on the meta device (no memory)."""
    with torch.device("meta"):
        return {key: tuple(value.shape) for key, value in make().state_dict().items() if value.is_floating_point()}


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python tests/weights/make_hostile.py DIR")
    root = Path(sys.argv[1])
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    import gpen_core as g

    root.mkdir(parents=True, exist_ok=True)
    tiny = g.seeded_state_dict(g.GPENConfig(64, 2, 0.125), 7)
    for name, make in hostile_makers(meta_shapes(lambda: g.GPEN(g.GPENConfig(512, 2, 2)))).items():
        make(root / name, tiny)
    print(f"hostile GPEN files written to {root}")
