"""Checks before ``torch.load``: the zip directory and record headers, the pickle scanned without running it
(nesting depth, a legacy file's declared storages). Refusals name the file; nothing in the file runs."""
from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path

import pytest
import torch
from bad_inputs.make_corpus import RunsCode
from weights.make_hostile import nested_pickle

from gpen_core.file_checks import MAX_NESTING_DEPTH, check_file, check_nesting
from gpen_core.weight_checks import CheckpointError
from gpen_core.weights import read_file

STATE = {"conv.weight": torch.ones(4, 3, 3, 3), "bn.num_batches_tracked": torch.tensor(5)}


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_torch_save_files_pass(tmp_path, zip_format):
    path = tmp_path / "a.pth"
    torch.save({"state_dict": STATE, "epoch": 3, "optimizer": {"state": {0: {"step": 1}}, "param_groups": [{}]}},
               path, _use_new_zipfile_serialization=zip_format)
    check_file(path)
    assert torch.equal(read_file(path)["state_dict"]["conv.weight"], STATE["conv.weight"])


def nested(depth: int) -> object:
    """``depth`` containers, each in the next: dicts and lists in turn, a tensor innermost."""
    obj: object = torch.zeros(1)
    for level in range(depth):
        obj = {"a": obj} if level % 2 else [obj]
    return obj


def test_nesting_depth_limit():
    check_nesting(nested(MAX_NESTING_DEPTH), "f.pth")
    check_nesting({"state_dict": STATE, "meta": ((1, 2), {"x": [3]})}, "f.pth")
    with pytest.raises(CheckpointError, match=rf"f\.pth: nested more than {MAX_NESTING_DEPTH} containers deep"):
        check_nesting(nested(MAX_NESTING_DEPTH + 1), "f.pth")


def test_nesting_is_walked_without_recursion():
    with pytest.raises(CheckpointError, match="nested more than"):
        check_nesting(nested(200_000), "f.pth")


def _zip_with(path: Path, pickle_bytes: bytes) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("a/data.pkl", pickle_bytes)
        archive.writestr("a/version", "3\n")


def test_a_deep_pickle_is_refused_before_torch_load(tmp_path, monkeypatch):
    path = tmp_path / "deep.pth"
    _zip_with(path, nested_pickle(200_000, "g_ema"))
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load ran"))
    with pytest.raises(CheckpointError, match=rf"{path}: nested more than {MAX_NESTING_DEPTH} containers deep"):
        read_file(path)


def test_a_local_header_that_contradicts_the_directory_is_refused(tmp_path):
    path = tmp_path / "crafted.pth"
    torch.save(STATE, path)
    data = bytearray(path.read_bytes())
    struct.pack_into("<H", data, 8, zipfile.ZIP_DEFLATED)  # the first record's local header: method DEFLATE
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=rf"{path}: record '.*data\.pkl' is compressed in its header "
                                              r"\(method 8\), stored in the directory: a crafted archive"):
        check_file(path)


def test_records_pointing_at_the_same_bytes_are_refused(tmp_path):
    """A directory listing one big record many times: each record fits the file, together they do not."""
    path = tmp_path / "repeated.pth"
    big = bytes(40_000)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a/data.pkl", b"\x80\x02}.")
        archive.writestr("a/data/0", big)
    data = buffer.getvalue()
    directory = data.index(b"PK\x01\x02", data.index(big) + len(big))
    entry_end = data.index(b"PK\x05\x06")
    entries = data[directory:entry_end]
    second = entries[entries.index(b"PK\x01\x02", 4):]
    end = bytearray(data[entry_end:])
    struct.pack_into("<HHI", end, 8, 6, 6, len(entries) + 4 * len(second))  # entries here, in all, directory size
    path.write_bytes(data[:entry_end] + second * 4 + bytes(end))
    with pytest.raises(CheckpointError, match=rf"{path}: its records declare 200\d\d\d bytes in all, more than the "
                                              r"file's \d+ bytes"):
        check_file(path)


def test_the_scan_runs_nothing_of_the_file(tmp_path):
    """A legacy torch.save file whose pickle would run a command: scanned into placeholders, then refused by
    ``torch.load(weights_only=True)``; the command never runs."""
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"w": torch.ones(2), "x": RunsCode(str(marker))}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match="refused to load: the pickle asks to run code"):
        read_file(path)
    assert not marker.exists()


def test_a_legacy_file_declaring_more_than_it_holds(tmp_path, monkeypatch):
    path = tmp_path / "legacy.pth"
    torch.save({"w": torch.ones(70_000)}, path, _use_new_zipfile_serialization=False)
    data = path.read_bytes()
    numel = b"J" + struct.pack("<i", 70_000)
    path.write_bytes(data.replace(numel, b"J" + struct.pack("<i", 2**31 - 1), 1))
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load ran"))
    with pytest.raises(CheckpointError, match=rf"{path}: its storages declare 8589934588 bytes, more than the file's"):
        read_file(path)


def test_garbage_after_a_valid_magic_number_is_corrupt(tmp_path):
    path = tmp_path / "cut.pth"
    torch.save(STATE, path, _use_new_zipfile_serialization=False)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match=rf"{path}: cannot be read; the file is truncated or corrupt"):
        read_file(path)
